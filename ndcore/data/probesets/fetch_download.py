"""Resumable HTTP download of one file to a ``.partial`` file (standard library only).

An interrupted transfer leaves the bytes received in ``<dest>`` and what is needed to resume
them in ``<dest>.json`` (the URL, the total length, the server's validator). The next attempt
asks for the rest with ``Range``, and with ``If-Range`` so that a server whose file changed
sends the whole new file (200) instead of the rest of another one. A server that ignores
``Range`` answers 200 too: the download restarts from zero.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional, Tuple

from ...version import __version__

CHUNK = 1 << 20
ProgressFn = Callable[[int, Optional[int]], None]  # (bytes on disk, total or None)


class MirrorError(Exception):
    """This URL cannot deliver the file now (connection error, HTTP error, bad answer)."""


class Interrupted(MirrorError):
    """The transfer stopped part way; the bytes received are kept for a resume."""


def _read_meta(dest: Path) -> Optional[dict]:
    try:
        meta = json.loads(Path(f"{dest}.json").read_text())
        return meta if isinstance(meta, dict) else None
    except (OSError, ValueError):
        return None


def _write_meta(dest: Path, meta: dict) -> None:
    tmp = Path(f"{dest}.json.tmp")
    tmp.write_text(json.dumps(meta) + "\n")
    os.replace(tmp, f"{dest}.json")


def fetch_discard(dest: Path) -> None:
    """Remove a partial download and its resume record."""
    for path in (Path(dest), Path(f"{dest}.json"), Path(f"{dest}.json.tmp")):
        path.unlink(missing_ok=True)


def _content_range(value: Optional[str]) -> Tuple[Optional[int], Optional[int]]:
    """'bytes 100-199/1000' -> (100, 1000); 'bytes */1000' -> (None, 1000); total None if '*'."""
    m = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value or "")
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return start, total


def _length(response) -> Optional[int]:
    value = response.headers.get("Content-Length")
    return int(value) if value and value.strip().isdigit() else None


def _open(url: str, offset: int, meta: Optional[dict], timeout: float):
    headers = {"User-Agent": f"ndcore/{__version__}", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if meta and meta.get("url") == url and meta.get("validator"):
            headers["If-Range"] = meta["validator"]
    request = urllib.request.Request(url, headers=headers)
    return urllib.request.urlopen(request, timeout=timeout)


def _attempt(url: str, dest: Path, timeout: float, progress: Optional[ProgressFn]) -> int:
    """One request: returns the complete size, raises Interrupted (bytes kept) or MirrorError."""
    meta = _read_meta(dest)
    offset = dest.stat().st_size if dest.is_file() and meta else 0
    if not offset:
        fetch_discard(dest)  # bytes without a resume record cannot be trusted
    try:
        response = _open(url, offset, meta, timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # nothing after `offset`: complete already, or another file
            _, total = _content_range(e.headers.get("Content-Range"))
            if total == offset == (meta or {}).get("total"):
                return offset
            fetch_discard(dest)
            raise Interrupted("the server refused to resume (HTTP 416); restarting") from None
        raise MirrorError(f"HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", None) or e
        raise MirrorError(f"cannot connect ({reason})") from None

    with response:
        if response.status == 206:
            start, total = _content_range(response.headers.get("Content-Range"))
            known = (meta or {}).get("total")
            if start != offset or (known is not None and total != known):
                fetch_discard(dest)  # not the rest of the bytes we hold
                raise Interrupted("the server sent another range of the file; restarting")
            mode = "ab"
        elif response.status == 200:  # no Range support, or the file changed: from zero
            offset, total, mode = 0, _length(response), "wb"
        else:
            raise MirrorError(f"unexpected HTTP {response.status}")
        validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
        _write_meta(dest, {"url": url, "total": total, "validator": validator})
        done = offset
        try:
            with open(dest, mode) as out:
                while True:
                    chunk = response.read(CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
        except (http.client.HTTPException, socket.timeout, ConnectionError) as e:
            raise Interrupted(f"transfer interrupted at {done} of {total or '?'} bytes "
                              f"({type(e).__name__})") from None
    if total is not None and done != total:
        raise Interrupted(f"transfer interrupted at {done} of {total} bytes")
    return done


def fetch_download(url: str, dest: os.PathLike, timeout: float = 60.0, retries: int = 3,
                   progress: Optional[ProgressFn] = None) -> int:
    """Download ``url`` to ``dest``, resuming the bytes already there; returns the size.

    With ``retries`` > 0 an interrupted transfer is resumed at once, as long as each try
    brings new bytes, and up to ``retries`` times in a row when they do not; after that
    :class:`Interrupted` is raised and the bytes stay for the next call. Other failures raise
    :class:`MirrorError`; disk errors (OSError on ``dest``) propagate.
    """
    dest = Path(dest)
    failures = 0
    while True:
        before = dest.stat().st_size if dest.is_file() else 0
        try:
            return _attempt(url, dest, timeout, progress)
        except Interrupted:
            after = dest.stat().st_size if dest.is_file() else 0
            failures = 1 if after > before else failures + 1
            if failures > retries:
                raise
