"""Image and label-plane decoding: torchvision.io where it applies, PIL otherwise, the same
pixels and the same errors either way."""


import numpy as np
import pytest
from PIL import Image

from broden_fixture import encode_plane, write_broden
from ndcore.data import decode
from ndcore.data.broden import BrodenDataset


def pil_rgb(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def smooth_image(h=48, w=40, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 5 + yy * 2) % 256, (yy * 7) % 256, (xx * yy) % 256], -1)
    return np.clip(img + rng.integers(-20, 20, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def files(tmp_path):
    img = smooth_image()
    out = {}
    Image.fromarray(img).save(tmp_path / "color.jpg", quality=90)  # 4:2:0 subsampling
    Image.fromarray(img).save(tmp_path / "color444.jpg", quality=95, subsampling=0)
    Image.fromarray(img).save(tmp_path / "progressive.jpg", progressive=True)
    Image.fromarray(img[..., 0]).save(tmp_path / "gray.jpg")
    Image.fromarray(img).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(img).save(tmp_path / "rgb.png")
    Image.fromarray(img).convert("P", palette=Image.ADAPTIVE).save(tmp_path / "palette.png")
    Image.fromarray(np.dstack([img, img[..., :1]])).save(tmp_path / "rgba.png")
    Image.fromarray(img[..., 1]).save(tmp_path / "gray.png")
    Image.fromarray(img).save(tmp_path / "image.bmp")
    for p in tmp_path.iterdir():
        out[p.name] = p
    return out


def test_images_decode_as_pil_decodes_them(files):
    for name, path in files.items():
        got = decode.read_rgb(path)
        assert got.dtype == np.uint8 and got.shape == (48, 40, 3), name
        np.testing.assert_array_equal(got, pil_rgb(path), err_msg=name)


def test_torchvision_decodes_jpeg_and_png(files, monkeypatch):
    """The fast path is taken (PIL is not called) for JPEG and PNG; other files go to PIL."""
    def no_pil(path):
        raise AssertionError(f"PIL used for {path}")

    monkeypatch.setattr(decode, "_pil_rgb", no_pil)
    for name in ("color.jpg", "color444.jpg", "progressive.jpg", "gray.jpg", "rgb.png",
                 "palette.png", "rgba.png", "gray.png"):
        decode.read_rgb(files[name])
    for name in ("cmyk.jpg", "image.bmp"):  # CMYK: PIL's conversion decides; BMP: PIL only
        with pytest.raises(AssertionError, match="PIL used"):
            decode.read_rgb(files[name])
    monkeypatch.setenv("NDCORE_DECODE", "pil")
    with pytest.raises(AssertionError, match="PIL used"):
        decode.read_rgb(files["color.jpg"])


def test_jpeg_components(files):
    assert decode.jpeg_components(files["color.jpg"].read_bytes()) == 3
    assert decode.jpeg_components(files["progressive.jpg"].read_bytes()) == 3
    assert decode.jpeg_components(files["gray.jpg"].read_bytes()) == 1
    assert decode.jpeg_components(files["cmyk.jpg"].read_bytes()) == 4
    assert decode.jpeg_components(b"\xff\xd8\xff") is None


def test_label_planes_decode_as_pil_decodes_them(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    plane = rng.integers(0, 1200, (20, 24))
    Image.fromarray(encode_plane(plane)).save(tmp_path / "plane.png")
    rgba = np.dstack([encode_plane(plane), np.full((20, 24, 1), 255, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "plane_rgba.png")
    for name in ("plane.png", "plane_rgba.png"):
        got = decode.read_label_png(tmp_path / name)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, plane, err_msg=name)
    monkeypatch.setenv("NDCORE_DECODE", "pil")
    np.testing.assert_array_equal(decode.read_label_png(tmp_path / "plane.png"), plane)


def test_broden_reader_same_items_and_errors_with_either_decoder(tmp_path, monkeypatch):
    images = [{"image": smooth_image(16, 16, i),
               "planes": {"object": [np.full((8, 8), 300 + i, np.int32)]}} for i in range(3)]
    root = write_broden(tmp_path / "b", ["object"], [(300 + i, f"l{i}", {"object": 1.0})
                                                      for i in range(3)], images)
    fast = [BrodenDataset(root).read(i) for i in range(3)]
    monkeypatch.setenv("NDCORE_DECODE", "pil")
    slow = [BrodenDataset(root).read(i) for i in range(3)]
    for a, b in zip(fast, slow):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.planes, b.planes)
    monkeypatch.delenv("NDCORE_DECODE")
    (root / "images" / "src" / "img0001.png").write_bytes(b"\x89PNG\r\n\x1a\njunk")
    (root / "images" / "src" / "img0002.png").unlink()
    (root / "images" / "src" / "img0000_object_1.png").write_bytes(b"\x89PNG\r\n\x1a\nxx")
    ds = BrodenDataset(root)
    assert "img0001.png: cannot decode image (UnidentifiedImageError" in ds.read(1).error
    assert ds.read(2).error.endswith("img0002.png: image file not found")
    assert "img0000_object_1.png: cannot decode label PNG" in ds.read(0).error


@pytest.mark.cuda
def test_nvjpeg_decodes_on_the_device(files):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    out = decode.decode_jpegs_on_device([files["color444.jpg"]], "cuda")
    assert out[0].device.type == "cuda" and out[0].shape == (3, 48, 40)
    # nvJPEG's IDCT may differ from libjpeg-turbo's by a grey level or two
    diff = np.abs(out[0].permute(1, 2, 0).cpu().numpy().astype(int) -
                  pil_rgb(files["color444.jpg"]).astype(int))
    assert diff.max() <= 4
