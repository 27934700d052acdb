"""``ndcore data fetch broden``: download, verify and unpack a Broden release, safely.

The archive ``broden1_<res>.zip`` (the folder ``broden1_<res>/`` inside) is downloaded to
``DIR/broden1_<res>.zip.partial`` (resumable, see fetch_download), tried mirror after mirror,
its size checked against the server's length, its central directory and every member's CRC
checked while it is extracted into a temporary folder next to the target (fetch_extract); the
result must pass the Broden format check before it is renamed to ``DIR/broden1_<res>`` with
a completion stamp, so that the target is either absent or complete and a second call does
nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Callable, Optional, Sequence

from ...errors import DatasetError, OutputError
from ...progress import progress_bar
from ..broden import BrodenDataset
from ..source_check import check_items
from .fetch_download import MirrorError, fetch_discard, fetch_download
from .fetch_extract import BadArchive, fetch_extract

RESOLUTIONS = (224, 227)
# The release's home (offline at times, NetDissect #19) and the Internet Archive's copy of it.
BRODEN_MIRRORS = (
    "http://netdissect.csail.mit.edu/data/",
    "https://web.archive.org/web/20240418040425id_/http://netdissect.csail.mit.edu/data/",
)
STAMP_NAME = "ndcore_fetch.json"
CHECKED_ITEMS = 40  # items read through the format check, spread over the index


def broden_name(resolution: int) -> str:
    """'broden1_224': the archive's stem and the folder it holds."""
    if resolution not in RESOLUTIONS:
        raise DatasetError(f"Broden resolution {resolution} does not exist; "
                         f"choose {' or '.join(map(str, RESOLUTIONS))}")
    return f"broden1_{resolution}"


def mirror_url(mirror: str, archive: str) -> str:
    """A mirror is the archive's own URL (ends with .zip) or the URL of a folder holding it."""
    return mirror if mirror.lower().endswith(".zip") else mirror.rstrip("/") + "/" + archive


def read_stamp(target: Path) -> Optional[dict]:
    try:
        stamp = json.loads((target / STAMP_NAME).read_text())
        return stamp if isinstance(stamp, dict) else None
    except (OSError, ValueError):
        return None


def _dataset_root(folder: Path, name: str) -> Path:
    """The extracted dataset: ``folder/name`` (as released) or ``folder`` itself."""
    for root in (folder / name, folder):
        if (root / "index.csv").is_file():
            return root
    raise BadArchive(f"it holds no {name}/index.csv (not a Broden release)")


def _format_check(root: Path) -> None:
    try:
        dataset = BrodenDataset(root)
        step = max(1, len(dataset) // CHECKED_ITEMS)
        check_items(dataset, indices=range(0, len(dataset), step)[:CHECKED_ITEMS])
    except DatasetError as e:
        raise BadArchive(f"the Broden format check failed: {e}") from None


def _unpack(archive: Path, directory: Path, name: str, url: str, quiet: bool) -> Path:
    """Extract, check and stamp in a temporary sibling; rename it into place at the end."""
    target = directory / name
    tmp = directory / f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with progress_bar(not quiet) as bar:
            task = bar.add_task(f"extracting {name}.zip (MB)", total=None)
            members = fetch_extract(archive, tmp, progress=lambda done, total: bar.update(
                task, completed=done / 1e6, total=total / 1e6))
        root = _dataset_root(tmp, name)
        _format_check(root)
        stamp = {"dataset": name, "url": url, "archive_bytes": archive.stat().st_size,
                 "members": members, "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (root / STAMP_NAME).write_text(json.dumps(stamp, indent=1) + "\n")  # written last
        os.replace(root, target)  # atomic; replaces an empty directory too
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def fetch_broden(resolution: int, directory: os.PathLike,
                 mirrors: Optional[Sequence[str]] = None, quiet: bool = False,
                 timeout: float = 60.0, retries: int = 3,
                 notify: Optional[Callable[[str], None]] = None) -> Path:
    """Put the Broden release at ``directory/broden1_<resolution>`` and return its path.

    ``mirrors`` (default :data:`BRODEN_MIRRORS`) are tried in order; a mirror that fails
    (connection, HTTP error, bad archive) passes to the next. An interrupted download is kept
    and resumed by the next call. Raises :class:`DatasetError` when no mirror delivers.
    ``notify`` receives one line per mirror that failed.
    """
    name = broden_name(resolution)
    directory = Path(directory)
    target = directory / name
    if (read_stamp(target) or {}).get("dataset") == name:
        fetch_discard(directory / f"{name}.zip.partial")  # left if a call died after the rename
        return target  # complete already
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DatasetError(f"{target} exists but was not fetched by ndcore (no {STAMP_NAME}); "
                           f"use it as --dataset broden:{target}, or remove it and fetch again")
    mirrors = list(mirrors if mirrors is not None else BRODEN_MIRRORS)
    if not mirrors:
        raise DatasetError("no mirror to fetch Broden from")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{directory}: cannot be created ({e.strerror or e})") from None
    archive = f"{name}.zip"
    partial = directory / f"{archive}.partial"
    failures = []
    for mirror in mirrors:
        url = mirror_url(mirror, archive)
        try:
            with progress_bar(not quiet) as bar:
                task = bar.add_task(f"downloading {archive} (MB)", total=None)
                fetch_download(url, partial, timeout=timeout, retries=retries,
                               progress=lambda done, total: bar.update(
                                   task, completed=done / 1e6,
                                   total=None if total is None else total / 1e6))
        except MirrorError as e:
            failures.append((url, str(e)))
            if notify:
                notify(f"{url}: {e}")
            continue
        except OSError as e:
            raise OutputError(f"{partial}: cannot be written ({e.strerror or e})") from None
        try:
            result = _unpack(partial, directory, name, url, quiet)
        except BadArchive as e:
            fetch_discard(partial)  # these bytes will never verify: the next try starts anew
            failures.append((url, f"bad archive: {e}"))
            if notify:
                notify(f"{url}: bad archive: {e}")
            continue
        fetch_discard(partial)
        return result
    tried = "; ".join(f"{url}: {why}" for url, why in failures)
    hint = "pass --mirror URL of a copy (the archive's URL or its folder's)"
    if partial.is_file():
        hint = f"run the same command again to resume ({partial.name} is kept), or {hint}"
    raise DatasetError(f"cannot fetch {archive} ({tried}); {hint}")
