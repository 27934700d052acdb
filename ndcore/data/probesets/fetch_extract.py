"""Checked extraction of a downloaded zip archive into a fresh folder.

The central directory must read, every member name must stay inside the folder (no zip slip:
absolute paths, ``..``, drive letters, symbolic links are refused) and every member's CRC must
match as it is written (zipfile checks it when a member has been read to its end).
"""

from __future__ import annotations

import re
import shutil
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Callable, List, Optional

from ...errors import OutputError


class BadArchive(Exception):
    """The archive is not the complete, intact zip expected (another mirror may have it)."""


def _unsafe(info: zipfile.ZipInfo) -> Optional[str]:
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "an absolute path"
    if ".." in parts:
        return "a '..' component"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link"
    return None


def fetch_members(archive: Path) -> List[zipfile.ZipInfo]:
    """The members of ``archive`` after the central directory and name checks (BadArchive)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise BadArchive(f"not a complete zip archive ({e})") from None
    for info in members:
        why = _unsafe(info)
        if why:
            raise BadArchive(f"member {info.filename!r} is {why}; refused")
    return members


def fetch_extract(archive: Path, folder: Path,
                  progress: Optional[Callable[[int, int], None]] = None) -> int:
    """Extract ``archive`` into the new ``folder``; returns the number of members.

    Raises BadArchive for a broken archive (bad CRC, truncated data, unsafe names) and
    OutputError when the disk cannot take it. ``progress(bytes_done, bytes_total)`` follows
    the uncompressed bytes. ``folder`` is left as is on failure: the caller removes it.
    """
    members = fetch_members(archive)
    total = sum(info.file_size for info in members)
    folder.mkdir(parents=True)
    free = shutil.disk_usage(folder).free
    if total > free:
        raise OutputError(f"{folder.parent}: extracting {archive.name} needs "
                           f"{total / 1e9:.1f} GB but {free / 1e9:.1f} GB are free")
    prefix = str(folder.resolve()) + "/"
    done = 0
    with zipfile.ZipFile(archive) as zf:
        for info in members:
            target = (folder / info.filename).resolve()
            if not (str(target) + "/").startswith(prefix):  # belt and braces after _unsafe
                raise BadArchive(f"member {info.filename!r} leaves the folder; refused")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)  # CRC checked at the member's end
            except (zipfile.BadZipFile, zlib.error, EOFError) as e:
                raise BadArchive(f"member {info.filename!r} is corrupt ({e})") from None
            except (NotImplementedError, RuntimeError) as e:  # compression method, encryption
                raise BadArchive(f"member {info.filename!r} cannot be read ({e})") from None
            except OSError as e:
                raise OutputError(f"{target}: cannot be written ({e})") from None
            done += info.file_size
            if progress:
                progress(done, total)
    return len(members)
