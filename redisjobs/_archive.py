"""Zip handling: safe extraction of job content, app packaging, and save_workspace's list layout.

Job content arrives from users, so extraction refuses absolute paths, ``..`` components, drive
letters, backslashes, symlink entries, encrypted or unsupported entries, and names that clash (a
file where a folder must go) or are too long; bounds the unpacked size and the compression ratio
(zip bombs); and only ever writes inside the target directory.
"""

from __future__ import annotations

import contextlib
import lzma
import math
import os
import posixpath
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from typing import IO

#: Default bound on the total uncompressed size of a job zip that get_app unpacks (4 GiB).
DEFAULT_MAX_UNZIPPED = 4 * 1024**3
#: Default bound on the compression ratio (unpacked bytes per stored byte), of each entry and of the
#: whole zip (its unpacked total per byte of the zip itself). Deflate reaches about 1030:1 on
#: repetitive input, so this leaves ordinary content (text, configs, models: below 20:1) a wide margin.
DEFAULT_MAX_RATIO = 200
#: An entry, or a whole zip, that unpacks to at most this many bytes is not held to the ratio bound:
#: a small file of zeros compresses far beyond any ratio and is harmless. ``max_total`` still holds.
DEFAULT_RATIO_MIN_SIZE = 1 << 20
#: Bound on the number of entries (files and folders) of a job zip that get_app unpacks: each costs
#: the disk an inode and a block, whatever its size, so many empty ones pass every byte bound.
DEFAULT_MAX_ENTRIES = 100_000
#: Bounds on entry names, in bytes (UTF-8): a whole name, and one component of it.
MAX_NAME_BYTES = 1024
MAX_NAME_PART_BYTES = 255
#: Compression methods zipfile can unpack.
_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA})
#: General purpose flags: encrypted (0), compressed patched data (5), strong encryption (6).
_UNSUPPORTED_FLAGS = 0x1 | 0x20 | 0x40
#: What zipfile and its decompressors raise on corrupt data besides BadZipFile (bz2 raises OSError, a
#: forged offset a ValueError from seek, a bad local name UnicodeDecodeError): reported as BadZipFile.
_CORRUPT = (zlib.error, lzma.LZMAError, EOFError, OSError, ValueError)
_BLOCK = 1 << 20


class UnsafeArchive(ValueError):
    """A zip entry that would escape the extraction directory or cannot be unpacked safely
    (symlink, encrypted, unsupported, clashing or overlong name), or a zip too large or too
    compressed to unpack (a zip bomb)."""


def _check_entry(info: zipfile.ZipInfo) -> None:
    name = info.filename
    if not name:
        raise UnsafeArchive("zip entry without a name")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise UnsafeArchive(f"symlink entry in zip: {name!r}")
    if "\\" in name or "\x00" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchive(f"absolute or non-portable path in zip: {name!r}")
    parts = name.split("/")
    if ".." in parts:
        raise UnsafeArchive(f"'..' in zip entry: {name!r}")
    try:
        encoded = os.fsencode(name)
    except UnicodeError:
        raise UnsafeArchive(f"zip entry name cannot be a file name here: {name!r}") from None
    if len(encoded) > MAX_NAME_BYTES or max(map(len, encoded.split(b"/"))) > MAX_NAME_PART_BYTES:
        raise UnsafeArchive(
            f"zip entry name too long (over {MAX_NAME_BYTES} bytes, or a part over "
            f"{MAX_NAME_PART_BYTES}): {name[:80]!r}..."
        )
    if info.flag_bits & _UNSUPPORTED_FLAGS:
        raise UnsafeArchive(f"encrypted or patched zip entry (flags {info.flag_bits:#x}): {name!r}")
    if info.compress_type not in _METHODS:
        raise UnsafeArchive(f"unsupported compression method {info.compress_type} in zip entry: {name!r}")


def _check_layout(infos: list[zipfile.ZipInfo]) -> None:
    """Refuse a file entry that names the target itself, or a path that some other entry needs as
    a folder (``a`` and ``a/b``, or ``a`` and ``a/``): extraction could not succeed."""
    files: dict[str, str] = {}
    folders: set[str] = set()
    for info in infos:
        path = posixpath.normpath(info.filename)
        if info.is_dir():
            folders.add(path)
        elif path == ".":
            raise UnsafeArchive(f"zip entry names the extraction folder itself: {info.filename!r}")
        else:
            files.setdefault(path, info.filename)
        parent = posixpath.dirname(path)
        while parent and parent not in folders:
            folders.add(parent)
            parent = posixpath.dirname(parent)
    for path in sorted(files.keys() & folders):
        raise UnsafeArchive(f"zip entry {files[path]!r} is a file, but other entries need it as a folder")


def _archive_size(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> int:
    """The zip's own size in bytes: every compressed byte must come from it, so no forged header can
    make the overall ratio look smaller (overlapping entries, inflated ``compress_size``)."""
    fp = zf.fp
    if fp is not None and fp.seekable():
        here = fp.tell()
        try:
            return fp.seek(0, os.SEEK_END)
        finally:
            fp.seek(here)
    return sum(i.compress_size for i in infos)  # an unseekable stream: the declared sizes


def _ratio_limit(max_ratio: float, packed: int, floor: int) -> float:
    """The most bytes ``packed`` compressed bytes may unpack to: at least ``floor``; no bound at all
    when ``max_ratio`` is infinite (inf * 0 would be NaN)."""
    return math.inf if math.isinf(max_ratio) else max(float(floor), max_ratio * packed)


def _ratio(unpacked: int, packed: int) -> str:
    return f"{unpacked / packed:.0f}:1" if packed else "unbounded"


def open_zip(file: str | os.PathLike[str] | IO[bytes]) -> zipfile.ZipFile:
    """``zipfile.ZipFile(file)`` for reading, every way a forged zip can fail to parse reported as
    ``zipfile.BadZipFile``: zipfile itself also raises NotImplementedError (an unknown "version
    needed"), UnicodeDecodeError (a name flagged UTF-8 that is not) or ValueError. A file that cannot
    be opened at all still raises its OSError."""
    try:
        return zipfile.ZipFile(file)
    except zipfile.BadZipFile:
        raise
    except (NotImplementedError, ValueError, EOFError, struct.error) as e:
        raise zipfile.BadZipFile(f"not a readable zip: {e}") from None


def safe_extract(
    zf: zipfile.ZipFile,
    target: str,
    max_total: int = DEFAULT_MAX_UNZIPPED,
    *,
    max_ratio: float = DEFAULT_MAX_RATIO,
    ratio_min_size: int = DEFAULT_RATIO_MIN_SIZE,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> None:
    """Extract every entry of ``zf`` under ``target`` after checking them all.

    Args:
        max_total: bound on the unpacked bytes, in all.
        max_entries: bound on the number of entries (files and folders).
        max_ratio: bound on the compression ratio of each entry (unpacked / compressed size) and of
            the whole zip (unpacked total / the zip's own size); ``math.inf`` turns it off.
        ratio_min_size: entries and zips unpacking to at most this many bytes skip the ratio bound.

    Every bound is checked from the declared sizes before anything is written, and again on the
    bytes actually unpacked while streaming, since declared sizes can lie.

    Raises:
        UnsafeArchive: an entry is unsafe (see ``_check_entry``), or a bound is exceeded; raised
            before anything is written, except when the declared sizes lied.
        zipfile.BadZipFile: the zip is corrupt (bad CRC, truncated or undecodable data, ...).

    On an error, files already extracted stay under ``target``: extract into a folder of your own
    and remove it. Nothing is ever written outside ``target``.
    """
    if not max_ratio > 0:  # also refuses NaN
        raise ValueError(f"max_ratio must be positive, got {max_ratio!r}")
    infos = zf.infolist()
    if len(infos) > max_entries:
        raise UnsafeArchive(f"zip has {len(infos)} entries, above the limit of {max_entries}")
    total = 0
    for info in infos:
        _check_entry(info)
        total += info.file_size
    _check_layout(infos)
    if total > max_total:
        raise UnsafeArchive(f"zip unpacks to {total} bytes, above the limit of {max_total}")
    for info in infos:
        if info.file_size > _ratio_limit(max_ratio, info.compress_size, ratio_min_size):
            raise UnsafeArchive(
                f"zip entry {info.filename!r} unpacks {info.compress_size} bytes to {info.file_size}: a "
                f"compression ratio of {_ratio(info.file_size, info.compress_size)}, above the limit of "
                f"{max_ratio:g}:1 (a zip bomb?)"
            )
    size = _archive_size(zf, infos)
    overall_limit = _ratio_limit(max_ratio, size, ratio_min_size)
    if total > overall_limit:
        raise UnsafeArchive(
            f"zip of {size} bytes unpacks to {total}: a compression ratio of {_ratio(total, size)}, "
            f"above the limit of {max_ratio:g}:1 (a zip bomb?)"
        )
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
        entry_limit = _ratio_limit(max_ratio, info.compress_size, ratio_min_size)
        entry_written = 0
        with _open_entry(zf, info) as src, open(dest, "wb") as out:
            while block := _read(src, info):
                written += len(block)
                entry_written += len(block)
                if written > max_total:  # the declared sizes lied
                    raise UnsafeArchive(f"zip unpacks to more than the limit of {max_total} bytes")
                if entry_written > entry_limit:
                    raise UnsafeArchive(
                        f"zip entry {info.filename!r} unpacks {info.compress_size} bytes to more than "
                        f"{entry_limit:.0f}, above the compression ratio limit of {max_ratio:g}:1 "
                        "(its declared size lied)"
                    )
                if written > overall_limit:
                    raise UnsafeArchive(
                        f"zip of {size} bytes unpacks to more than {overall_limit:.0f} (at entry "
                        f"{info.filename!r}), above the compression ratio limit of {max_ratio:g}:1 "
                        "(its declared sizes lied)"
                    )
                out.write(block)


@contextlib.contextmanager
def _corrupt_is_bad_zip(info: zipfile.ZipInfo, what: str) -> Iterator[None]:
    """Decompression and parse errors of one entry, as ``BadZipFile`` naming it."""
    try:
        yield
    except zipfile.BadZipFile:
        raise
    except _CORRUPT as e:
        raise zipfile.BadZipFile(f"zip entry {info.filename!r} {what}: {e}") from None


def _open_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> IO[bytes]:
    with _corrupt_is_bad_zip(info, "cannot be opened"):
        return zf.open(info)


def _read(src: IO[bytes], info: zipfile.ZipInfo) -> bytes:
    with _corrupt_is_bad_zip(info, "is corrupt"):
        return src.read(_BLOCK)


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
