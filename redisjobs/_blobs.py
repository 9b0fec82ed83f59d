"""Blobs: job content, workspaces and client logs, stored as chunks behind a manifest.

A write first registers itself in the ``uploads`` zset, then streams its bytes into chunk keys of a
fresh random version (never touching the current one), pipelining a few chunks at a time, so memory
stays bounded by a few chunks whatever the blob's size; then one script swaps the component's
manifest and drops the registration, and the old version's chunks are unlinked. A writer that dies
leaves only unreferenced chunks: ``gc`` removes them once the registration is older than its grace
period (or at once, when there is no registration: deleted jobs, replaced versions). A commit whose
registration gc already collected fails with ``UploadExpired`` rather than point at freed chunks.
A blob of at most ``PIPED_CHUNKS`` chunks given as bytes saves a round trip (``PipedUpload``): its
registration and chunks go out in the same write as the committing script, which checks that every
chunk is there before it commits (a chunk the server refused was not written).

Small blobs (at most ``inline_max`` bytes, 64 KiB by default) skip the chunks: their bytes travel
inside the committing script and live in the job's ``inline:<jid>`` hash, beside the manifests, so a
small job is created, replaced, read and deleted in one round trip, and nothing is left to collect.
A reader that finds a chunk gone (the value was replaced under it) re-reads the manifest and starts
again, so it gets the old or the new value whole. The manifest keeps size and sha256, checked on
read unless ``verify`` is off.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson

from ._archive import zip_paths
from ._connection import Lane, pack
from ._errors import BlobCorrupt, BlobNotFound, BlobTooLarge
from ._keys import Keys

#: 1 MiB less 64 bytes: a power-of-two value would land in jemalloc's next size class (~25% waste).
DEFAULT_CHUNK_SIZE = (1 << 20) - 64
#: Blobs up to this size are stored inline (in the committing script), not as chunks.
DEFAULT_INLINE_MAX = 64 * 1024
#: Default bound on one blob's size (configurable per manager: ``max_blob_size``).
DEFAULT_MAX_BLOB_SIZE = 64 * 1024**3
#: Chunks sent per pipeline round trip while writing, and fetched per MGET while reading.
CHUNKS_PER_BATCH = 4
#: A blob given as bytes, of at most this many chunks, is sent with its commit (``PipedUpload``).
PIPED_CHUNKS = CHUNKS_PER_BATCH
#: A single chunk to verify is read in pieces of this size, each hashed while the next arrives.
SPLIT = 256 * 1024
#: How often a reader restarts after the value was replaced under it before giving up; between
#: attempts it backs off (jittered, doubling from 1 ms up to 100 ms) so a writer that replaces
#: the value again and again cannot starve it.
READ_ATTEMPTS = 20

#: What a blob can be written from: bytes, a file path, a list of paths (zipped), or an iterator of
#: byte strings (another blob being copied).
BlobSource = bytes | bytearray | memoryview | str | os.PathLike[str] | Sequence[str] | Iterator[bytes]


class _Replaced(Exception):
    """A chunk vanished mid-read: the blob was replaced or deleted."""


def _attempts() -> Iterator[int]:
    for attempt in range(READ_ATTEMPTS):
        if attempt:
            time.sleep(random.uniform(0.5, 1.0) * min(0.1, 0.001 * 2**attempt))
        yield attempt


class _Hasher:
    """sha256 that moves off the calling thread once a blob spans several chunks, so hashing
    overlaps network I/O (hashlib and socket calls both release the GIL). Updates stay in order:
    one shared single-worker executor runs them first-in, first-out. At most ``BACKLOG`` pieces
    wait to be hashed: a reader faster than sha256 then waits, instead of holding the blob in memory."""

    _executor: ThreadPoolExecutor | None = None
    _executor_lock = threading.Lock()
    INLINE_BYTES = 256 * 1024
    BACKLOG = 4

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._seen = 0
        self._last: Future[None] | None = None
        self._pending: deque[Future[None]] = deque()

    @classmethod
    def _pool(cls) -> ThreadPoolExecutor:
        with cls._executor_lock:
            if cls._executor is None:
                cls._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="redisjobs-sha256")
                os.register_at_fork(after_in_child=cls._forget)
            return cls._executor

    @classmethod
    def _forget(cls) -> None:  # a forked child has no worker thread: start its own when needed
        cls._executor = None

    def update(self, data: bytes | memoryview) -> None:
        self._seen += len(data)
        if self._seen <= self.INLINE_BYTES and self._last is None:
            self._sha.update(data)
        else:
            self._last = self._pool().submit(self._sha.update, data)
            self._pending.append(self._last)
            if len(self._pending) > self.BACKLOG:
                self._pending.popleft().result()

    def hexdigest(self) -> str:
        if self._last is not None:
            self._last.result()
        return self._sha.hexdigest()


class ChunkWriter:
    """A write-only binary stream that stores what it is given as chunks of one blob version.

    Whole chunks of an immutable input (``bytes``, or a view of one) are sent without copying.
    """

    def __init__(
        self,
        client: Any,
        keys: Keys,
        jid: str,
        component: str,
        chunk_size: int,
        inline_max: int = 0,
        max_size: int = DEFAULT_MAX_BLOB_SIZE,
    ) -> None:
        self._client, self._keys = client, keys
        self.jid, self.component, self.chunk_size = jid, component, chunk_size
        self.inline_max, self.max_size = inline_max, max_size
        #: The bytes of an inline blob (set by ``finish`` when nothing had to be sent as chunks).
        self.inline: bytes | None = None
        self.version = os.urandom(8).hex()
        #: This upload's member in the uploads zset; sent with the first batch of chunks.
        self.registration = orjson.dumps([jid, component, self.version])
        self._registered = False
        self._buf = bytearray()
        self._tail: memoryview | None = None
        self._pending: list[bytes | memoryview] = []
        self._sha = _Hasher()
        self.size = 0
        self.chunks = 0

    # The file-like surface zipfile needs for an unseekable output.
    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        pass

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        if not isinstance(view.obj, bytes):
            view = memoryview(bytes(view))  # the caller may reuse a mutable buffer: keep a copy
        n = len(view)
        if self.size + n > self.max_size:
            raise BlobTooLarge(self.jid, self.component, self.max_size)
        self._sha.update(view)
        self.size += n
        cs = self.chunk_size
        if self._tail is not None:  # a second write: the tail joins the buffer after all
            self._buf += self._tail
            self._tail = None
        if self._buf:
            take = min(n, cs - len(self._buf))
            self._buf += view[:take]
            view = view[take:]
            if len(self._buf) == cs:
                self._queue_buffer()
        while len(view) >= cs:
            self._queue(view[:cs])
            view = view[cs:]
        if len(view):
            if self._buf:
                self._buf += view
            else:
                self._tail = view  # kept by reference: often the last piece, sent without a copy
        return n

    def _queue_buffer(self) -> None:
        # Hand the buffer itself over (no copy) and start a new one. A memoryview also takes
        # redis-py's fast path: hiredis packs a bytes value by copying, a view far faster.
        self._queue(memoryview(self._buf))
        self._buf = bytearray()

    def _queue(self, piece: bytes | memoryview) -> None:
        self._pending.append(piece)
        if len(self._pending) >= CHUNKS_PER_BATCH:
            self._send()

    def _send(self) -> None:
        if not self._pending and self._registered:
            return
        pipe = self._client.pipeline(transaction=False)
        if not self._registered:
            pipe.zadd(self._keys.uploads, {self.registration: time.time()})
            self._registered = True
        for piece in self._pending:
            pipe.set(self._keys.chunk(self.jid, self.component, self.version, self.chunks), piece)
            self.chunks += 1
        self._pending.clear()
        pipe.execute()

    def finish(self) -> dict[str, Any]:
        """Send what is buffered and return the manifest of the version written."""
        rest = self._tail if self._tail is not None else memoryview(self._buf)
        self._tail, self._buf = None, bytearray()
        if not self._registered and not self._pending and self.size <= self.inline_max:
            # Everything is still held here: keep it for the committing script instead.
            return self._keep_inline(bytes(rest), self._sha.hexdigest())
        if len(rest):
            self._pending.append(rest)
        self._send()
        return _chunked_manifest(self.version, self.size, self.chunks, self.chunk_size, self._sha.hexdigest())

    def _keep_inline(self, data: bytes, sha256: str) -> dict[str, Any]:
        self.inline, self.registration = data, b""
        return _inline_manifest(self.version, self.size, sha256)

    def commit_args(self) -> list[bytes | str]:
        """What a committing script needs besides the manifest: the registration to drop, whether
        the blob is inline, and its bytes if so."""
        if self.inline is not None:
            return [b"", "1", self.inline]
        return [self.registration, "0", b""]

    def chunk_keys(self) -> list[str]:
        """Every chunk key this writer may have written (for clean-up after a failure)."""
        if self.inline is not None:
            return []
        n = self.chunks + len(self._pending) + 1
        return [self._keys.chunk(self.jid, self.component, self.version, i) for i in range(n)]


class InlineUpload:
    """Bytes small enough to travel inside the committing script, held for it: what ``stage``
    returns for them instead of a ChunkWriter, as nothing is sent or registered before the commit."""

    __slots__ = ("inline",)
    registration = b""

    def __init__(self, data: bytes) -> None:
        self.inline = data

    def commit_args(self) -> list[bytes | str]:
        """As ``ChunkWriter.commit_args``: no registration to drop, inline, these bytes."""
        return [b"", "1", self.inline]

    def chunk_keys(self) -> list[str]:
        return []


class PipedUpload:
    """A chunked blob given whole as bytes, of at most ``PIPED_CHUNKS`` chunks, sent in the same
    round trip as the script that commits it: its registration and its chunks first (``head``),
    then the script (see ``LaneScript.run_after``), which is given the chunk keys and commits only
    if every chunk is there (a chunk the server refused, out of memory say, was not written). The
    sha256 the manifest carries is computed after the head is sent, while the server reads it."""

    inline = None

    def __init__(self, keys: Keys, jid: str, component: str, data: memoryview, chunk_size: int) -> None:
        self._keys, self._data = keys, data
        self.jid, self.component, self.chunk_size = jid, component, chunk_size
        self.version = os.urandom(8).hex()
        self.registration = orjson.dumps([jid, component, self.version])
        self.size = len(data)
        self.chunks = -(-self.size // chunk_size)

    def head(self) -> tuple[list[bytes | memoryview], int]:
        """The commands sent before the hash is known, packed (the chunks as views of the data,
        not copied): the registration, then the chunks; and how many commands that is."""
        pieces = pack("ZADD", self._keys.uploads, repr(time.time()), self.registration)
        cs = self.chunk_size
        for i, key in enumerate(self.chunk_keys()):
            pieces += pack("SET", key, self._data[i * cs : (i + 1) * cs])
        return pieces, 1 + self.chunks

    def manifest(self) -> dict[str, Any]:
        """The manifest of this version (hashes the data: call it once)."""
        sha256 = hashlib.sha256(self._data).hexdigest()
        return _chunked_manifest(self.version, self.size, self.chunks, self.chunk_size, sha256)

    def commit_args(self) -> list[bytes | str]:
        """As ``ChunkWriter.commit_args``: the registration to drop, not inline."""
        return [self.registration, "0", b""]

    def chunk_keys(self) -> list[str]:
        return [self._keys.chunk(self.jid, self.component, self.version, i) for i in range(self.chunks)]


#: What ``stage`` (or ``piped``) returns with a manifest: the upload to commit or abort.
Upload = ChunkWriter | InlineUpload | PipedUpload


def _corrupt(jid: str, component: str, size: int, sha256: str, manifest: dict[str, Any]) -> BlobCorrupt:
    return BlobCorrupt(
        jid,
        component,
        f"read {size} bytes with sha256 {sha256}, "
        f"manifest says {manifest['size']} bytes, {manifest['sha256']}",
    )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _inline_manifest(version: str, size: int, sha256: str) -> dict[str, Any]:
    return {"v": version, "size": size, "chunks": 0, "inline": True, "sha256": sha256}


def _chunked_manifest(version: str, size: int, chunks: int, chunk_size: int, sha256: str) -> dict[str, Any]:
    return {"v": version, "size": size, "chunks": chunks, "cs": chunk_size, "sha256": sha256}


def chunk_keys(keys: Keys, jid: str, component: str, manifest: dict[str, Any]) -> list[str]:
    return [keys.chunk(jid, component, manifest["v"], i) for i in range(int(manifest["chunks"]))]


class BlobStore:
    """Chunked blobs of one namespace."""

    def __init__(
        self,
        client: Any,
        keys: Keys,
        chunk_size: int,
        verify: bool,
        inline_max: int = DEFAULT_INLINE_MAX,
        max_size: int = DEFAULT_MAX_BLOB_SIZE,
    ) -> None:
        if max_size < 0:
            raise ValueError(f"max_blob_size must be at least 0, got {max_size}")
        self.max_size = max_size
        if chunk_size < 1024:
            raise ValueError(f"chunk_size must be at least 1024 bytes, got {chunk_size}")
        if inline_max < 0:
            raise ValueError(f"inline_max must be at least 0, got {inline_max}")
        self._client, self._keys = client, keys
        #: The manager's lane for single round trips, when its client has one (set by the manager).
        self.lane: Lane | None = None
        # An inline blob fits in one chunk's buffer: never more than a chunk.
        self.chunk_size, self.verify, self.inline_max = chunk_size, verify, min(inline_max, chunk_size - 1)

    # -- writing ---------------------------------------------------------------------------------

    def stage(self, jid: str, component: str, source: BlobSource) -> tuple[dict[str, Any], Upload]:
        """Write ``source`` as a new, registered, not yet visible version; return its manifest and
        upload. The caller commits it (a script that swaps the manifest) or calls ``abort``.

        On failure the chunks written so far are removed and the error re-raised.
        """
        if type(source) is bytes and len(source) <= min(self.inline_max, self.max_size):
            # Small bytes: held for the committing script, nothing sent, no chunking.
            manifest = _inline_manifest(os.urandom(8).hex(), len(source), _sha256(source))
            return manifest, InlineUpload(source)
        writer = ChunkWriter(
            self._client, self._keys, jid, component, self.chunk_size, self.inline_max, self.max_size
        )
        try:
            self._pour(source, writer)
            return writer.finish(), writer
        except BaseException:
            self.abort(writer)
            raise

    def piped(self, jid: str, component: str, source: BlobSource) -> PipedUpload | None:
        """``source`` as a ``PipedUpload`` when it can travel with its commit over the lane: bytes
        (or a view of them) above ``inline_max`` and within ``PIPED_CHUNKS`` chunks and
        ``max_size``; else None (``stage`` it)."""
        if self.lane is None or (type(source) is bytes and len(source) <= self.inline_max):
            return None  # (the usual small content: one check)
        if not isinstance(source, bytes | bytearray | memoryview):
            return None
        view = memoryview(source).cast("B")
        if not self.inline_max < len(view) <= min(self.max_size, PIPED_CHUNKS * self.chunk_size):
            return None
        if not isinstance(view.obj, bytes):
            view = memoryview(bytes(view))  # a mutable buffer: hash and send one state of it
        return PipedUpload(self._keys, jid, component, view, self.chunk_size)

    def abort(self, writer: Upload) -> bool:
        """Remove an uncommitted upload: its chunks and its registration. True, removing only the
        registration, if the component's manifest names the upload's version after all: a call
        whose first attempt committed it can fail on a retry (out of memory, say), not knowing."""
        if writer.inline is not None:
            return False  # nothing was written
        committed = _references(self._client, self._keys, writer.jid, writer.component, writer.version)
        if not committed:
            self.unlink(writer.chunk_keys())
        self._client.zrem(self._keys.uploads, writer.registration)
        return committed

    def _pour(self, source: BlobSource, writer: ChunkWriter) -> None:
        if isinstance(source, bytes | bytearray | memoryview):
            view = memoryview(source).cast("B")
            for start in range(0, len(view), self.chunk_size):
                writer.write(view[start : start + self.chunk_size])
        elif isinstance(source, str | os.PathLike):
            path = os.fspath(source)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"no such file: {path!r}")
            with open(path, "rb") as f:
                while block := f.read(self.chunk_size):
                    writer.write(block)
        elif isinstance(source, Iterator):
            for piece in source:
                writer.write(piece)
        elif isinstance(source, Sequence):
            zip_paths([os.fspath(p) for p in source], writer)  # type: ignore[arg-type]
        else:
            raise TypeError(f"blob content must be bytes, a file path or a list of paths, not {type(source)}")

    def unlink(self, keys: Sequence[str], batch: int = 512) -> int:
        freed = 0
        for start in range(0, len(keys), batch):
            freed += int(self._client.unlink(*keys[start : start + batch]))
        return freed

    def unlink_manifest(self, jid: str, component: str, raw_manifest: bytes | None) -> int:
        if not raw_manifest:
            return 0
        return self.unlink(chunk_keys(self._keys, jid, component, orjson.loads(raw_manifest)))

    # -- reading ---------------------------------------------------------------------------------

    def manifest(self, jid: str, component: str) -> dict[str, Any] | None:
        raw = self._client.hget(self._keys.blobs(jid), component)
        return orjson.loads(raw) if raw else None

    def _lookup(self, jid: str, component: str) -> tuple[dict[str, Any] | None, bytes | None]:
        """The manifest and, for an inline blob, its bytes: one round trip."""
        blobs, inline_key = self._keys.blobs(jid), self._keys.inline(jid)
        if self.lane is not None:
            raw, inline = self.lane.execute_many(("HGET", blobs, component), ("HGET", inline_key, component))
        else:
            pipe = self._client.pipeline(transaction=False)
            pipe.hget(blobs, component)
            pipe.hget(inline_key, component)
            raw, inline = pipe.execute()
        return (orjson.loads(raw) if raw else None), inline

    def _iter_version(
        self, jid: str, component: str, manifest: dict[str, Any], inline: bytes | None = None
    ) -> Iterator[bytes]:
        sha = _Hasher()
        size = 0
        hashed = False  # each piece hashed on arrival already
        if manifest.get("inline"):
            if inline is None:
                raise _Replaced
            if self.verify and (len(inline) != manifest["size"] or _sha256(inline) != manifest["sha256"]):
                # _lookup's two reads are not one step: a commit that landed between them pairs
                # this manifest with the next version's bytes. Then read again; else corrupt.
                if self.manifest(jid, component) != manifest:
                    raise _Replaced
                raise _corrupt(jid, component, len(inline), _sha256(inline), manifest)
            yield inline
            return
        if self.verify and self.lane is not None and manifest["chunks"] == 1 and manifest["size"] > SPLIT:
            # One chunk to verify: read it as pieces, and hash each while the next arrives (the
            # hash is slower than the read here). A piece cut short: the chunk is gone, replaced.
            key = chunk_keys(self._keys, jid, component, manifest)[0]
            ranges = [(a, min(a + SPLIT, manifest["size"]) - 1) for a in range(0, manifest["size"], SPLIT)]
            hashers: list[_Hasher] = []

            def hash_piece(index: int, piece: Any) -> None:
                if index == 0:  # the first attempt, or one retried after a lost connection
                    hashers.append(_Hasher())
                if isinstance(piece, bytes):
                    hashers[-1].update(piece)

            pieces = self.lane.execute_many(*[("GETRANGE", key, a, b) for a, b in ranges], each=hash_piece)
            sha = hashers[-1]
            if any(len(piece) != b - a + 1 for (a, b), piece in zip(ranges, pieces, strict=True)):
                raise _Replaced
            batches, hashed = iter([pieces]), True
        else:
            keys = chunk_keys(self._keys, jid, component, manifest)
            lane = self.lane
            mget = self._client.mget if lane is None else (lambda batch: lane.execute("MGET", *batch))
            batches = (mget(keys[i : i + CHUNKS_PER_BATCH]) for i in range(0, len(keys), CHUNKS_PER_BATCH))
        for batch in batches:
            for piece in batch:
                if piece is None:
                    raise _Replaced
                if self.verify and not hashed:
                    sha.update(piece)
                size += len(piece)
                yield piece
        if self.verify and (size != manifest["size"] or sha.hexdigest() != manifest["sha256"]):
            raise _corrupt(jid, component, size, sha.hexdigest(), manifest)

    def iter_chunks(self, jid: str, component: str) -> Iterator[bytes]:
        """Yield the blob's chunks. If it is replaced before the first chunk arrives, the new value
        is read instead; if it is replaced later, ``BlobCorrupt`` is raised (no mix is ever given)."""
        for _ in _attempts():
            manifest, inline = self._lookup(jid, component)
            if manifest is None:
                raise BlobNotFound(jid, component)
            started = False
            try:
                for piece in self._iter_version(jid, component, manifest, inline):
                    started = True
                    yield piece
                return
            except _Replaced:
                if started:
                    raise BlobCorrupt(jid, component, "replaced while it was being streamed") from None
        raise BlobCorrupt(jid, component, f"replaced {READ_ATTEMPTS} times while reading")

    def read(self, jid: str, component: str) -> bytes:
        for _ in _attempts():
            manifest, inline = self._lookup(jid, component)
            if manifest is None:
                raise BlobNotFound(jid, component)
            try:
                return b"".join(self._iter_version(jid, component, manifest, inline))
            except _Replaced:
                continue
        raise BlobCorrupt(jid, component, f"replaced {READ_ATTEMPTS} times while reading")

    def download(self, jid: str, component: str, dest: str) -> bool:
        """Stream the blob into ``dest`` via a temporary file renamed into place.

        Returns False (writing nothing) when there is no such component.
        """
        folder = os.path.dirname(os.path.abspath(dest))
        for _ in _attempts():
            manifest, inline = self._lookup(jid, component)
            if manifest is None:
                return False
            fd, tmp = tempfile.mkstemp(prefix=".redisjobs-", dir=folder)
            try:
                with os.fdopen(fd, "wb") as out:
                    for piece in self._iter_version(jid, component, manifest, inline):
                        out.write(piece)
                os.replace(tmp, dest)
                return True
            except _Replaced:
                os.unlink(tmp)
                continue
            except BaseException:
                os.unlink(tmp)
                raise
        raise BlobCorrupt(jid, component, f"replaced {READ_ATTEMPTS} times while reading")


class BlobReader(io.RawIOBase):
    """A read-only binary stream over one blob, fetched chunk by chunk (see ``iter_chunks``)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self._chunks = chunks
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            piece = next(self._chunks, None)
            if piece is None:
                return 0
            self._buf = memoryview(piece)
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


@dataclass
class GcReport:
    """What ``gc`` freed."""

    #: uploads older than the grace period whose writer never committed (crashed or hung)
    abandoned_uploads: int = 0
    #: chunk keys removed: of abandoned uploads, deleted jobs, replaced versions, other orphans
    chunks_freed: int = 0
    #: chunk keys looked at by the orphan sweep
    chunks_scanned: int = 0
    #: finished jobs deleted by the retention policy
    jobs_expired: int = 0
    #: events trimmed from the stream by age
    events_trimmed: int = 0
    #: function libraries of other versions of redisjobs deleted from the server (``old_functions``)
    functions_dropped: list[str] = field(default_factory=list)


def collect_garbage(client: Any, keys: Keys, grace: float, batch: int = 500) -> GcReport:
    """Free what no manifest references: abandoned uploads first, then an orphan sweep.

    Works in bounded batches (ZRANGE / SCAN / UNLINK of at most ``batch`` keys at a time).
    Uploads registered less than ``grace`` seconds ago are in progress and left alone.
    """
    report = GcReport()
    cutoff = time.time() - grace
    while True:
        stale = client.zrangebyscore(keys.uploads, "-inf", cutoff, start=0, num=batch)
        if not stale:
            break
        for member in stale:
            # Drop the registration first: a late commit then fails instead of using freed chunks.
            # If it is gone already, a commit (or another gc) took it since it was listed: those
            # chunks may be a manifest's now.
            if not client.zrem(keys.uploads, member):
                continue
            jid, component, version = orjson.loads(member)
            # A registration left by a call that committed after all (one resent with its chunks,
            # whose resend stopped before its script ran): its chunks are the manifest's.
            if _references(client, keys, jid, component, version):
                continue
            report.abandoned_uploads += 1
            report.chunks_freed += _unlink_version(client, keys, jid, component, version, batch)
        if len(stale) < batch:
            break

    candidates: list[tuple[str, tuple[str, str, str, int]]] = []
    for raw in client.scan_iter(match=keys.chunk_pattern(), count=batch):
        name = raw.decode()
        parsed = keys.parse_chunk(name)
        if parsed is None:  # another namespace's ("team/prod" for "team")
            continue
        report.chunks_scanned += 1
        candidates.append((name, parsed))
        if len(candidates) >= batch:
            report.chunks_freed += _sweep(client, keys, candidates)
            candidates = []
    report.chunks_freed += _sweep(client, keys, candidates)
    return report


def _references(client: Any, keys: Keys, jid: str, component: str, version: str) -> bool:
    """Whether the component's manifest names this version."""
    raw = client.hget(keys.blobs(jid), component)
    return bool(raw) and orjson.loads(raw).get("v") == version


def _unlink_version(client: Any, keys: Keys, jid: str, component: str, version: str, batch: int) -> int:
    """Unlink chunks 0, 1, ... of a version until a whole batch is already gone (chunks are
    written in order, so a version's chunks are a prefix of the indexes)."""
    freed, start = 0, 0
    while True:
        names = [keys.chunk(jid, component, version, i) for i in range(start, start + batch)]
        n = int(client.unlink(*names))
        freed += n
        if n == 0:
            return freed
        start += batch


def _sweep(client: Any, keys: Keys, chunks: list[tuple[str, tuple[str, str, str, int]]]) -> int:
    """Unlink the chunks among ``chunks`` (names, parsed) that no manifest references and no live
    upload owns.

    Registrations and manifests are read after the chunks were seen: an upload registers before
    it writes its first chunk, and commits only while registered, so a chunk that is neither
    registered nor referenced now can never become referenced later.
    """
    if not chunks:
        return 0
    jids = sorted({p[0] for _, p in chunks})
    pipe = client.pipeline(transaction=False)
    pipe.zrange(keys.uploads, 0, -1)
    for jid in jids:
        pipe.hgetall(keys.blobs(jid))
    uploads, *manifests = pipe.execute()
    live = {tuple(orjson.loads(m)) for m in uploads}
    referenced: set[tuple[str, str, str, int]] = set()
    for jid, fields in zip(jids, manifests, strict=True):
        for comp, raw in fields.items():
            m = orjson.loads(raw)
            referenced.update((jid, comp.decode(), m["v"], i) for i in range(int(m["chunks"])))
    doomed: dict[str, list[str]] = {}
    for name, p in chunks:
        if p not in referenced and p[:3] not in live:
            doomed.setdefault(p[0], []).append(name)
    if not doomed:
        return 0
    pipe = client.pipeline(transaction=False)
    for group in doomed.values():  # one UNLINK per job: a job's chunks share one hash slot
        pipe.unlink(*group)
    return sum(int(n) for n in pipe.execute())
