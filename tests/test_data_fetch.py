"""``ndcore data fetch broden`` against a local HTTP server on the loopback (nothing from outside).

The archive is a tiny Broden-format probe set written by ndcore.data.synthetic and zipped here
as the release is (one ``broden1_224/`` folder). The oracles are the files the test zipped (byte
for byte) and the bytes the server logged as sent.
"""

from __future__ import annotations

import http.server
import io
import os
import threading
import zipfile
from pathlib import Path

import pytest

from ndcore.cli import main
from ndcore.data.broden import BrodenDataset
from ndcore.data.probesets.fetch import STAMP_NAME, fetch_broden
from ndcore.data.synthetic import generate
from ndcore.errors import DatasetError

NAME = "broden1_224"
ETAG = '"release-1"'


def _zip(files: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:  # stored: bytes are the data
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """(files {relative path: bytes} of the probe set, the archive's bytes)."""
    root = generate(tmp_path_factory.mktemp("src") / "probe", size=3, image_size=16,
                    label_size=8)
    files = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
             if p.is_file()}
    return files, _zip({f"{NAME}/{rel}": data for rel, data in files.items()})


class Server:
    """Serves ``routes[path] = (bytes, mode, etag)``; mode: 'range' (206 on Range, unless an
    If-Range names another ETag), 'norange' (always 200), 'cut' (first GET sends half the body
    then closes; later ones as 'range'), '404'."""

    def __init__(self):
        self.routes, self.log = {}, []  # log: (path, Range header, status, body bytes sent)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                data, mode, etag = outer.routes.get(self.path, (b"", "404", ETAG))
                rng = self.headers.get("Range")
                if mode == "404":
                    return self._send(404, b"", rng)
                if mode == "cut":
                    outer.routes[self.path] = (data, "range", etag)
                    return self._send(200, data, rng, etag, cut=len(data) // 2)
                if rng and mode == "range" and self.headers.get("If-Range", etag) == etag:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        return self._send(416, b"", rng, etag, extra={
                            "Content-Range": f"bytes */{len(data)}"})
                    return self._send(206, data[start:], rng, etag, extra={
                        "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})
                self._send(200, data, rng, etag)

            def _send(self, status, body, rng, etag=ETAG, extra=None, cut=None):
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", etag)
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                sent = body if cut is None else body[:cut]
                self.wfile.write(sent)
                self.wfile.flush()
                self.close_connection = True  # with `cut`: the connection ends mid-body
                outer.log.append((self.path, rng, status, len(sent)))

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def serve(self, path, data, mode="range", etag=ETAG):
        self.routes[path] = (data, mode, etag)
        return self.base + path


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def fetch(directory, *mirrors, **kw):
    kw.setdefault("retries", 0)
    return fetch_broden(224, directory, mirrors=list(mirrors), quiet=True, timeout=5, **kw)


def assert_release(target: Path, files: dict):
    """The extracted set is the zipped one, byte for byte, plus the stamp, and it reads."""
    got = {str(p.relative_to(target)): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert got.pop(STAMP_NAME)
    assert got == files
    assert len(BrodenDataset(target)) == 3


def test_fetch_verifies_extracts_and_second_call_does_nothing(tmp_path, server, release):
    files, archive = release
    url = server.serve("/data/broden1_224.zip", archive)
    target = fetch(tmp_path, server.base + "/data/")  # a folder mirror: the name is appended
    assert target == tmp_path / NAME
    assert_release(target, files)
    assert sorted(os.listdir(tmp_path)) == [NAME]  # no partial, no temporary folder
    assert server.log == [("/data/broden1_224.zip", None, 200, len(archive))]
    assert fetch(tmp_path, url) == target
    assert len(server.log) == 1  # complete: not even a request


def test_interrupted_download_resumes_with_range_on_the_next_call(tmp_path, server, release):
    files, archive = release
    url = server.serve("/broden1_224.zip", archive, mode="cut")
    with pytest.raises(DatasetError, match="interrupted.*run the same command again to resume"):
        fetch(tmp_path, url)
    cut = len(archive) // 2
    assert (tmp_path / "broden1_224.zip.partial").stat().st_size == cut  # premise: half came
    assert not (tmp_path / NAME).exists()
    fetch(tmp_path, url)
    assert server.log == [("/broden1_224.zip", None, 200, cut),
                          ("/broden1_224.zip", f"bytes={cut}-", 206, len(archive) - cut)]
    assert sum(sent for *_, sent in server.log) == len(archive)  # nothing downloaded twice
    assert_release(tmp_path / NAME, files)


def test_interrupted_download_resumes_within_the_call(tmp_path, server, release):
    files, archive = release
    url = server.serve("/broden1_224.zip", archive, mode="cut")
    fetch(tmp_path, url, retries=1)
    assert [rng for _, rng, _, _ in server.log] == [None, f"bytes={len(archive) // 2}-"]
    assert_release(tmp_path / NAME, files)


def test_a_complete_download_is_not_fetched_again_after_a_crash(tmp_path, server, release,
                                                               monkeypatch):
    files, archive = release
    url = server.serve("/broden1_224.zip", archive)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("ndcore.data.probesets.fetch.fetch_extract", crash)
    with pytest.raises(KeyboardInterrupt):
        fetch(tmp_path, url)
    assert sorted(os.listdir(tmp_path)) == ["broden1_224.zip.partial",
                                           "broden1_224.zip.partial.json"]
    monkeypatch.undo()
    fetch(tmp_path, url)
    assert server.log[-1][1:] == (f"bytes={len(archive)}-", 416, 0)  # nothing sent again
    assert_release(tmp_path / NAME, files)


def test_server_without_range_support_restarts_from_zero(tmp_path, server, release):
    files, archive = release
    url = server.serve("/broden1_224.zip", archive, mode="cut")
    with pytest.raises(DatasetError):
        fetch(tmp_path, url)
    server.serve("/broden1_224.zip", archive, mode="norange")
    fetch(tmp_path, url)
    path, rng, status, sent = server.log[-1]
    assert (rng, status, sent) == (f"bytes={len(archive) // 2}-", 200, len(archive))  # premise
    assert_release(tmp_path / NAME, files)  # appended to the half it would not verify


def test_a_file_changed_since_the_interruption_is_fetched_anew(tmp_path, server, release):
    files, archive = release
    old = _zip({f"{NAME}/README.txt": b"an older release " * 200})
    url = server.serve("/broden1_224.zip", old, mode="cut", etag='"old"')
    with pytest.raises(DatasetError):
        fetch(tmp_path, url)
    server.serve("/broden1_224.zip", archive, etag='"new"')
    fetch(tmp_path, url)
    assert server.log[-1][1:] == (f"bytes={len(old) // 2}-", 200, len(archive))  # If-Range
    assert_release(tmp_path / NAME, files)


def test_truncated_archive_is_refused_and_nothing_is_left(tmp_path, server, release):
    _, archive = release
    url = server.serve("/broden1_224.zip", archive[:-200])  # a complete transfer of a bad file
    with pytest.raises(DatasetError, match=r"broden1_224\.zip: bad archive: not a complete zip"):
        fetch(tmp_path, url)
    assert server.log[-1][2:] == (200, len(archive) - 200)  # premise: all its bytes came
    assert os.listdir(tmp_path) == []


def _corrupt_member_byte(archive: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        info = max(zf.infolist(), key=lambda i: i.file_size)
    header = archive[info.header_offset:info.header_offset + 30]
    start = info.header_offset + 30 + int.from_bytes(header[26:28], "little") + \
        int.from_bytes(header[28:30], "little")
    data = bytearray(archive)
    data[start + info.file_size // 2] ^= 0xFF  # in the member's bytes, not in any header
    return bytes(data)


def test_corrupted_byte_fails_the_crc_and_nothing_is_left(tmp_path, server, release):
    _, archive = release
    bad = _corrupt_member_byte(archive)
    with zipfile.ZipFile(io.BytesIO(bad)) as zf:  # premise: size and central directory are fine
        assert len(bad) == len(archive) and len(zf.infolist()) > 1
    url = server.serve("/broden1_224.zip", bad)
    with pytest.raises(DatasetError, match="bad archive: member .* is corrupt .*CRC"):
        fetch(tmp_path, url)
    assert os.listdir(tmp_path) == []


def test_404_on_the_first_mirror_falls_to_the_second(tmp_path, server, release):
    files, archive = release
    good = server.serve("/mirror2/broden1_224.zip", archive)
    notes = []
    fetch(tmp_path, server.base + "/mirror1", good, notify=notes.append)
    assert [(p, status) for p, _, status, _ in server.log] == [
        ("/mirror1/broden1_224.zip", 404), ("/mirror2/broden1_224.zip", 200)]
    assert notes == [f"{server.base}/mirror1/broden1_224.zip: HTTP 404 Not Found"]
    assert_release(tmp_path / NAME, files)


def test_bad_archive_on_the_first_mirror_falls_to_the_second(tmp_path, server, release):
    files, archive = release
    bad = server.serve("/m1/broden1_224.zip", _corrupt_member_byte(archive))
    good = server.serve("/m2/broden1_224.zip", archive)
    fetch(tmp_path, bad, good)
    assert [sent for *_, sent in server.log] == [len(archive), len(archive)]  # from zero
    assert_release(tmp_path / NAME, files)


@pytest.mark.parametrize("member", ["../evil.txt", "ABSOLUTE", f"{NAME}/../../evil.txt"])
def test_unsafe_member_paths_are_refused(tmp_path, server, release, member):
    files, _ = release
    member = str(tmp_path / "evil.txt") if member == "ABSOLUTE" else member
    archive = _zip({**{f"{NAME}/{k}": v for k, v in files.items()}, member: b"x"})
    url = server.serve("/broden1_224.zip", archive)
    out = tmp_path / "out"
    with pytest.raises(DatasetError, match="bad archive: member .* refused"):
        fetch(out, url)
    assert os.listdir(out) == []
    assert not list(tmp_path.rglob("evil.txt"))


def test_an_archive_that_is_no_broden_fails_the_format_check(tmp_path, server, release):
    files, _ = release
    broken = {f"{NAME}/{k}": v for k, v in files.items() if k != "label.csv"}
    url = server.serve("/broden1_224.zip", _zip(broken))
    with pytest.raises(DatasetError, match="format check failed: .*label.csv: file not found"):
        fetch(tmp_path, url)
    assert os.listdir(tmp_path) == []


def test_a_foreign_folder_at_the_target_is_left_alone(tmp_path, server, release):
    (tmp_path / NAME).mkdir()
    (tmp_path / NAME / "mine.txt").write_text("keep")
    with pytest.raises(DatasetError, match="exists but was not fetched by ndcore"):
        fetch(tmp_path, server.serve("/broden1_224.zip", release[1]))
    assert server.log == [] and os.listdir(tmp_path / NAME) == ["mine.txt"]


def test_cli_fetches_and_errors_in_one_line(tmp_path, server, release, capsys):
    _, archive = release
    url = server.serve("/broden1_224.zip", archive)
    argv = ["data", "fetch", "broden", "--resolution", "224", "--dir", str(tmp_path), "--quiet"]
    assert main(argv + ["--mirror", server.base + "/gone.zip"]) == 2
    err = capsys.readouterr().out.strip()  # the CLI prints errors with the results
    assert err.count("\n") == 0 and err.startswith("error: cannot fetch broden1_224.zip")
    assert f"{server.base}/gone.zip: HTTP 404" in err and "pass --mirror URL" in err
    assert main(argv + ["--mirror", url]) == 0
    assert f"broden:{tmp_path / NAME}" in capsys.readouterr().out
