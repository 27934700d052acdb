"""``dcgan-faces``: the DCGAN of ``gan-face-generate`` (DigiFace1M faces, z 100x1x1 -> 3x64x64),
with the weights its wheel ships. Install it with ``pip install --no-deps gan-face-generate``.

Only its ``models`` module is imported: the package's dataset and training modules download
data and need wandb. Its ReLUs are in place; ndcore's capture copies what it keeps. Layers worth
dissecting are the ReLUs after each block: main.2 (512 units, 4x4), main.5 (256, 8x8),
main.8 (128, 16x16), main.11 (64, 32x32).
"""

from pathlib import Path

from ndcore.plugin_api import ModelAdapter, ModelRequest, PluginError, apply_weights, hookimpl, sha256_of

DISTRIBUTION = "gan-face-generate"


def weights_file() -> Path:
    try:
        import gan_face_generate
    except ImportError:
        raise PluginError(f"dcgan-faces needs the {DISTRIBUTION} package: "
                          f"pip install --no-deps {DISTRIBUTION}==1.1.1") from None
    return Path(gan_face_generate.__file__).parent / "weights.tar"


def build(target: str, request: ModelRequest) -> ModelAdapter:
    import torch

    if target:
        raise PluginError(f"model dcgan-faces takes no target, got dcgan-faces:{target}")
    path = weights_file()
    from gan_face_generate.models import Generator  # imports only torch

    module = Generator(ngpu=0, nc=3, nz=100, ngf=64)
    packaged = request.weights and Path(request.weights).resolve() == path.resolve()
    if (request.weights and not packaged) or (request.random_init and not request.weights):
        sha = apply_weights(module, request, "dcgan-faces")
        weights = request.weights
    else:
        try:  # the tensors were saved on CUDA
            state = torch.load(path, map_location="cpu", weights_only=True)["netG_state_dict"]
        except Exception as e:
            raise PluginError(f"{path}: cannot load the DCGAN weights ({type(e).__name__}: {e})") from None
        module.load_state_dict(state, strict=True)
        weights, sha = str(path), sha256_of(path)
    module.latent_shape = (100, 1, 1)
    return ModelAdapter(spec="dcgan-faces", module=module, input_size=(64, 64), weights=weights,
                        weights_sha256=sha, latent_shape=(100, 1, 1), output_range=(-1.0, 1.0),
                        description="DCGAN trained on DigiFace1M faces (gan-face-generate 1.1.1)")


@hookimpl
def ndcore_register_models(register):
    register("dcgan-faces", build,
             description="DCGAN face generator (gan-face-generate's weights): dcgan-faces")
