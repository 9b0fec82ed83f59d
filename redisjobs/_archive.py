"""Zip handling: safe extraction of job content, app packaging, and save_workspace's list layout.

Job content arrives from users, so extraction refuses absolute paths, ``..`` components, drive
letters, backslashes and symlink entries, bounds the unpacked size, and only ever writes inside a
private temporary directory.
"""

from __future__ import annotations

import os
import stat
import zipfile
from collections.abc import Iterable
from typing import IO

#: Default bound on the total uncompressed size of a job zip that get_app unpacks (4 GiB).
DEFAULT_MAX_UNZIPPED = 4 * 1024**3


class UnsafeArchive(ValueError):
    """A zip entry that would escape the extraction directory, or a zip too large to unpack."""


def _check_entry(info: zipfile.ZipInfo) -> None:
    name = info.filename
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise UnsafeArchive(f"symlink entry in zip: {name!r}")
    if "\\" in name or "\x00" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchive(f"absolute or non-portable path in zip: {name!r}")
    if ".." in name.split("/"):
        raise UnsafeArchive(f"'..' in zip entry: {name!r}")


def safe_extract(zf: zipfile.ZipFile, target: str, max_total: int = DEFAULT_MAX_UNZIPPED) -> None:
    """Extract every entry of ``zf`` under ``target`` after checking them all."""
    infos = zf.infolist()
    total = 0
    for info in infos:
        _check_entry(info)
        total += info.file_size
    if total > max_total:
        raise UnsafeArchive(f"zip unpacks to {total} bytes, above the limit of {max_total}")
    real_target = os.path.realpath(target)
    written = 0
    for info in infos:
        dest = os.path.realpath(os.path.join(real_target, info.filename))
        if os.path.commonpath([real_target, dest]) != real_target:
            raise UnsafeArchive(f"zip entry escapes the target: {info.filename!r}")
        if info.is_dir():
            os.makedirs(dest, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with zf.open(info) as src, open(dest, "wb") as out:
            while block := src.read(1 << 20):
                written += len(block)
                if written > max_total:  # the declared sizes lied
                    raise UnsafeArchive(f"zip unpacks to more than the limit of {max_total} bytes")
                out.write(block)


def zip_folder(folder: str, out: IO[bytes]) -> None:
    """Zip ``folder``'s contents (files and folder entries) with paths relative to it."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        _add_tree(z, folder)


def _add_tree(z: zipfile.ZipFile, folder: str) -> None:
    base = os.path.normpath(folder)
    for root, dirs, files in os.walk(base):
        dirs.sort()
        for name in sorted(files) + dirs:
            full = os.path.join(root, name)
            if os.path.islink(full) and os.path.isdir(full):
                continue  # never follow a directory symlink out of the tree
            z.write(full, arcname=os.path.relpath(full, base).replace(os.sep, "/"))


def zip_paths(paths: Iterable[str], out: IO[bytes]) -> None:
    """save_workspace's layout: a file by its base name, a folder's contents at the zip root
    (with folder entries), stored uncompressed. Sources are left untouched."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for path in paths:
            if os.path.isfile(path):
                z.write(path, arcname=os.path.basename(path))
            elif os.path.isdir(path):
                _add_tree(z, path)
            else:
                raise FileNotFoundError(f"save_workspace: {path!r} is neither a file nor a folder")
