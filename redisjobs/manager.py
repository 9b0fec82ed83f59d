"""``RedisJobDefManager``: NVFlare's job-manager API on Redis.

Every single-job write is one Lua script (one round trip, atomic, safe to repeat); reads are one
pipelined round trip; listings read indexes in bounded batches instead of scanning every job.
``fl_ctx`` is accepted everywhere, in NVFlare's position, and ignored.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import inspect
import io
import itertools
import logging
import math
import os
import re
import socket
import tempfile
import threading
import time
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeGuard, TypeVar

import orjson
import redis
from redis.retry import Retry

from . import _connection, _records
from ._archive import (
    DEFAULT_MAX_RATIO,
    DEFAULT_MAX_UNZIPPED,
    UnsafeArchive,
    open_zip,
    safe_extract,
    zip_folder,
)
from ._blobs import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_INLINE_MAX,
    DEFAULT_MAX_BLOB_SIZE,
    BlobReader,
    BlobSource,
    BlobStore,
    GcReport,
    PipedUpload,
    Upload,
    chunk_keys,
    collect_garbage,
)
from ._codec import (
    DEFAULT_MAX_META_BYTES,
    approval_field,
    approval_pairs,
    check_app_name,
    check_component,
    check_job_id,
    check_priority,
    check_status,
    decode_flat_meta,
    decode_metas,
    dumps,
    encode_fields,
    is_valid_component,
    pairs_to_dict,
)
from ._connection import (
    DEFAULT_BACKOFF_BASE,
    DEFAULT_BACKOFF_CAP,
    DEFAULT_RETRIES,
    Lane,
    bulks,
    bulks_prefixed,
    is_cluster,
    lane_for,
    make_client,
    make_retry,
)
from ._errors import (
    E_EXISTS,
    E_NOT_FOUND,
    BlobNotFound,
    InvalidComponent,
    InvalidMeta,
    InvalidStatus,
    InvalidTransition,
    JobNotFound,
    NotReplicated,
    RecordNotFound,
    StoreFull,
    StoreUnavailable,
    raise_for_code,
)
from ._events import Event, Settled
from ._keys import Keys
from ._lifecycle import FINISHED, STATUSES
from ._scripts import LaneScript, ReplicaTimeout, Scripts, drop_old_libraries, run_marked
from ._types import Job, RunStatus, SubmitRecordState

log = logging.getLogger("redisjobs")
P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_URL = "redis://127.0.0.1:6379/0"
#: The largest page ``page_jobs`` serves.
MAX_PAGE = 1000
#: Ids read or fetched per round trip by listings.
DEFAULT_BATCH = 500
#: Jobs per chunk of a streamed listing (at most ``batch_size``): small enough that the client's
#: decoding of one chunk overlaps the server's reading of the next from the start.
_STREAM_CHUNK = 100
#: Uploads younger than this (seconds) are in progress: gc() leaves them alone.
DEFAULT_GC_GRACE = 3600.0
#: Approximate cap of the event stream (XADD MAXLEN ~).
DEFAULT_EVENT_MAXLEN = 100_000

FlCtx = Any


#: Status names the hot paths use (an enum member's ``.value`` costs a descriptor call each time).
_SUBMITTED, _RUNNING = RunStatus.SUBMITTED.value, RunStatus.RUNNING.value


def _now() -> float:
    return time.time()


def _utc_iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat()


#: The second that ``_local_iso`` formatted last: (epoch second, ``time.tzname`` then, its local
#: date and time, its UTC offset), both as ISO 8601 has them.
_last_second: tuple[int, object, str, str] = (-1, None, "", "")


def _local_iso(epoch: float) -> str:
    """``epoch`` in this machine's local time, with its UTC offset then, as ISO 8601: what
    ``datetime.fromtimestamp(epoch).astimezone().isoformat()`` gives (microseconds rounded half to
    even, as datetime does), with the second's part reused while calls stay within one second
    (offsets change at whole seconds) and the zone is the same (``time.tzset`` makes a new
    ``time.tzname``)."""
    global _last_second
    second = math.floor(epoch)
    micro = round((epoch - second) * 1e6)
    if micro == 1_000_000:
        second, micro = second + 1, 0
    last = _last_second
    if last[0] != second or last[1] is not time.tzname:
        t = time.localtime(second)
        date = f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
        clock = f"{t.tm_hour:02d}:{t.tm_min:02d}:{min(t.tm_sec, 59):02d}"  # (datetime's leap second)
        hours, rest = divmod(abs(t.tm_gmtoff), 3600)
        minutes, seconds = divmod(rest, 60)
        offset = f"{'-' if t.tm_gmtoff < 0 else '+'}{hours:02d}:{minutes:02d}"
        if seconds:
            offset += f":{seconds:02d}"
        last = _last_second = (second, time.tzname, f"{date}T{clock}", offset)
    return f"{last[2]}.{micro:06d}{last[3]}" if micro else last[2] + last[3]


def _uuid4() -> str:
    """A random (version 4) UUID as text, as ``str(uuid.uuid4())`` makes it, at half the cost."""
    bits = int.from_bytes(os.urandom(16), "big") & _UUID_CLEAR | _UUID_SET
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# Version 4 in bits 76-79, the RFC 4122 variant (binary 10) in bits 62-63.
_UUID_CLEAR = ~((0xF << 76) | (0x3 << 62))
_UUID_SET = (0x4 << 76) | (0x2 << 62)


#: ``host:pid`` of this process, made on first use and again in a forked child.
_this_actor: str | None = None


def _default_actor() -> str:
    global _this_actor
    if _this_actor is None:
        _this_actor = f"{socket.gethostname()}:{os.getpid()}"
    return _this_actor


def _forget_actor() -> None:
    global _this_actor
    _this_actor = None


os.register_at_fork(after_in_child=_forget_actor)


def _check_owner(owner: object) -> None:
    if not isinstance(owner, str) or not owner:
        raise ValueError(f"owner must be a non-empty str, got {owner!r}")


def _guarded(fn: Callable[P, T]) -> Callable[P, T]:
    """Turn Redis being unreachable (after the retries) or out of memory into ``StoreUnavailable``
    or ``StoreFull``, naming the operation, the job and the server."""
    op = fn.__name__
    takes_jid = list(inspect.signature(fn).parameters)[1:2] in (["jid"], ["from_jid"])

    def translate(self: RedisJobDefManager, args: tuple[Any, ...], error: Exception) -> Exception | None:
        first = args[1] if len(args) > 1 else None
        # The job: the jid argument, or the job_id of a meta (create, get_content) or a Job.
        jid = first if takes_jid else getattr(first, "job_id", None)
        if jid is None and isinstance(first, dict):
            jid = first.get("job_id")
        if isinstance(error, StoreUnavailable | StoreFull):
            return None
        if isinstance(error, ReplicaTimeout):
            return NotReplicated(op, jid, self.where, error.acked, error.wanted, error.timeout_ms / 1000)
        if isinstance(error, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
            return StoreUnavailable(op, jid, self.where, error)
        if _is_out_of_memory(error):
            return StoreFull(op, jid, self.where)
        return None

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args: Any, **kwargs: Any) -> Any:
            try:
                return (yield from fn(*args, **kwargs))
            except redis.exceptions.RedisError as e:
                mapped = translate(args[0], args, e)
                if mapped is None:
                    raise
                raise mapped from e

        return generator

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except redis.exceptions.RedisError as e:
            mapped = translate(args[0], args, e)  # type: ignore[arg-type]
            if mapped is None:
                raise
            raise mapped from e

    return call


@dataclass(frozen=True)
class Retention:
    """How long ``gc`` keeps finished jobs and events. ``None`` keeps them all.

    A finished job goes when it is beyond the newest ``keep_finished`` finished jobs (by submit
    order) or finished more than ``keep_finished_days`` days ago (when it ran: its ``start_time``
    plus its ``duration``; a job that never ran, by its ``submit_time``); events go when older
    than ``event_max_age_days``. Jobs in any other status are never expired.
    """

    keep_finished: int | None = None
    keep_finished_days: float | None = None
    event_max_age_days: float | None = None

    def __post_init__(self) -> None:
        for name in ("keep_finished", "keep_finished_days", "event_max_age_days"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not value >= 0):
                raise ValueError(f"{name} must be None or at least 0, got {value!r}")


def _is_out_of_memory(error: Exception) -> bool:
    # redis-py raises OutOfMemoryError for OOM replies (rewording the message inside pipelines).
    return isinstance(error, redis.exceptions.OutOfMemoryError)


#: A duration as NVFlare writes it, ``str(datetime.timedelta)``: "[-]D day(s), H:MM:SS[.ffffff]".
_DURATION = re.compile(r"(?:(-?\d+) days?, )?(\d+):(\d\d):(\d\d(?:\.\d+)?)")


def _loads_or_none(raw: bytes | None) -> Any:
    if raw is None:
        return None
    with contextlib.suppress(orjson.JSONDecodeError):
        return orjson.loads(raw)
    return None


def _finished_at(submitted: Any, start: Any, duration: Any) -> float:
    """When a finished job finished (epoch seconds), as well as its meta tells: its start time plus
    its duration when it ran, else its submit time (0 when even that is unreadable)."""
    with contextlib.suppress(TypeError, ValueError, OverflowError, OSError, AttributeError):
        match = _DURATION.fullmatch(duration)
        if start and match:
            days, hours, minutes, seconds = match.groups()
            ran = datetime.timedelta(
                days=int(days or 0), hours=int(hours), minutes=int(minutes), seconds=float(seconds)
            )
            return datetime.datetime.fromisoformat(start).timestamp() + ran.total_seconds()
    with contextlib.suppress(TypeError, ValueError, OverflowError):
        return float(submitted or 0)
    return 0.0


def _bound(score: bytes | float) -> bytes:
    """A sorted-set score as Redis reads a bound: its own text over a RESP2 lane, else (a float
    from redis-py's commands, or over RESP3) the integer it holds (scores here are integers)."""
    return score if isinstance(score, bytes) else b"%.0f" % score


def _lease_ms(lease: object) -> int:
    """A lease (a number of seconds above 0, up to 30 days; NaN and infinity are not) in whole
    milliseconds, the server's unit, and at least one: a shorter one would run out on arrival."""
    if isinstance(lease, bool) or not isinstance(lease, (int, float)) or not 0 < lease <= 86_400 * 30:
        raise ValueError(f"lease must be a number of seconds above 0, up to 30 days, got {lease!r}")
    return max(1, round(lease * 1000))


def _seen(candidates: list[bytes], got: list[Any], stale: int) -> int:
    """How many candidates other processes had taken before a claim: all of them when the queue's
    head held none (``stale``), else the position of the first claimed job. (The claim's estimate
    of this gap grows at once, and shrinks by one per claim, so one quiet moment does not undo it.)"""
    if stale or not got:
        return len(candidates) if stale else 0
    try:
        return candidates.index(got[0][0])
    except ValueError:
        return len(candidates)


def _flat(reply: Any) -> Any:
    """A hash as a flat ``[field, value, ...]`` list, from RESP3's map as from RESP2's array."""
    return list(itertools.chain.from_iterable(reply.items())) if isinstance(reply, dict) else reply


def _seconds_text() -> bytes:
    """Now, epoch seconds with six decimals, as text (cheaper than a float's repr)."""
    return b"%d.%06d" % divmod(time.time_ns() // 1000, 1_000_000)


class _ClaimBulks:
    """The claim script's arguments that repeat from call to call (an owner's name, a lease, a
    limit; the actor, the event cap and the key prefix), packed (``bulks``) once."""

    def __init__(self, prefix: bytes, queue: bytes) -> None:
        self._prefix = bulks([prefix])
        self._tail: tuple[str, int, bytes] = ("", 0, b"")
        self._seen: dict[tuple[str, int, int, int], bytes] = {}
        self._zrange = b"*4\r\n" + bulks([b"ZRANGE", queue, b"0"])
        self._head: tuple[int, bytes] = (0, b"")
        self._flags: dict[int, tuple[bytes, bytes]] = {}

    def of(self, owner: str, lease_ms: int, take: int, last: int) -> bytes:
        key = (owner, lease_ms, take, last)
        packed = self._seen.get(key)
        if packed is None:
            packed = bulks([owner.encode(), b"%d" % lease_ms, b"%d" % take, b"%d" % last])
            if len(self._seen) >= 256:  # (owners are few; a new one now and then starts afresh)
                self._seen.clear()
            self._seen[key] = packed
        return packed

    def head(self, window: int) -> bytes:
        """``ZRANGE queue 0 window-1``, packed: the queue's head, read right after a claim."""
        head = self._head
        if head[0] != window:
            head = self._head = (window, self._zrange + bulks([b"%d" % (window - 1)]))
        return head[1]

    def flags(self, mine: int) -> tuple[bytes, bytes]:
        """ARGV[10] and ARGV[11], packed, for a first send and for a repeat: ``mine`` is the rank of
        the candidate whose hash the caller reads itself (0: none)."""
        packed = self._flags.get(mine)
        if packed is None:
            rank = bulks([b"%d" % mine])
            packed = (_FIRST + rank, _REPEAT + rank)
            if len(self._flags) < 1024:
                self._flags[mine] = packed
        return packed

    def hgetall(self, prefix: bytes, jid: bytes) -> bytes:
        """``HGETALL <prefix><jid>``, packed."""
        return b"*2\r\n$7\r\nHGETALL\r\n$%d\r\n%b%b\r\n" % (len(prefix) + len(jid), prefix, jid)

    def tail(self, actor: str, event_maxlen: int) -> bytes:
        """The actor (it changes in a forked child), the event cap and the key prefix."""
        tail = self._tail
        if tail[0] != actor or tail[1] != event_maxlen:
            packed = bulks([actor.encode(), b"%d" % event_maxlen]) + self._prefix
            tail = self._tail = (actor, event_maxlen, packed)
        return tail[2]


#: Locks that claims take by their owner's hash (see _owner_lock).
_OWNER_LOCKS = 16

#: The claim script's ARGV[10]: whether this send may repeat one that ran (see its header).
_FIRST, _REPEAT = bulks([b"0"]), bulks([b"1"])
#: A claim reads the hash of the job it expects itself when, lately, at least this share of claims
#: found their job where the claim before had (one process, or two: nearly all; eight: one in ten).
#: The read saves the server about 29k instructions when the guess is right, and costs it about 15k
#: when it is wrong: it pays above one in three.
_EXPECT_HITS = 0.5


def _request_id() -> str:
    """A fresh id for one call's request record (the same for redis-py's repeats of that call)."""
    return os.urandom(9).hex()


def _local_offset_seconds(epoch: float) -> int:
    """This machine's UTC offset at ``epoch``, in seconds east of UTC."""
    return time.localtime(epoch).tm_gmtoff


class RedisJobDefManager:
    """A job definition store on Redis, shared safely by any number of server processes.

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` URL. Defaults to ``$REDISJOBS_URL``, else
            ``redis://127.0.0.1:6379/0``. Ignored when ``client`` is given.
        client: a ready redis-py (or fakeredis) client, created with ``decode_responses=False``.
        namespace: keeps several stores apart on one Redis; all its keys share one hash tag.
        chunk_size: bytes per blob chunk.
        inline_max: blobs up to this size skip the chunks and travel inside the committing script.
        verify_blobs: check size and sha256 of every blob read.
        event_maxlen: approximate cap of the event stream.
        batch_size: ids per round trip in listings (their jobs are read in chunks of at most
            ``min(batch_size, 100)``, streamed on one connection).
        actor: recorded in events; defaults to ``host:pid``.
        max_unzipped: bound on the unpacked size of job content that ``get_app`` extracts.
        max_unzip_ratio: bound on its compression ratio (per entry and overall; zip bombs).
        max_meta_bytes: bound on the JSON size of the meta (and, apart, approvals) one call writes.
        socket_timeout, socket_connect_timeout: seconds, for clients built from ``url``.
        retries, backoff_base, backoff_cap: the retry policy of clients built from ``url``: up to
            ``retries`` more attempts after a connection error or timeout, sleeping a random time
            up to ``min(backoff_cap, backoff_base * 2**failure)`` seconds before each. Every
            operation is safe to repeat. ``retry`` (a redis-py ``Retry``) replaces the three.
        max_blob_size: bytes; a larger component raises ``BlobTooLarge`` and stores nothing.
        wait_replicas, wait_timeout: durability: every write returns only once this many replicas
            confirm it (``WAIT``), up to ``wait_timeout`` seconds, else raises ``NotReplicated``
            (the master has it; a failover now may lose it). 0, the default, does not wait.
        keep_finished: retention: ``gc`` deletes finished jobs beyond the newest this many.
        keep_finished_days: retention: ``gc`` deletes finished jobs that finished more than this
            many days ago (see ``Retention``).
        event_max_age_days: ``gc`` trims events older than this (the stream is also capped at
            ``event_maxlen`` entries).
        functions: run the scripts as one Redis Functions library (``FCALL``), where the server
            lets this user load it (Redis 7 and later, ``FUNCTION LOAD``; not under the rules of
            ``redisjobs.acl``): the same Lua, about 15% less server work for a status change.
            Elsewhere, or with False, by ``EVALSHA``. The library stays on the server (in its
            RDB and AOF too), named after a digest of its code: ``redisjobs_<digest>``.

    The connection is made lazily, on first use, so constructing a manager costs nothing.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        namespace: str = "redisjobs",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        inline_max: int = DEFAULT_INLINE_MAX,
        verify_blobs: bool = True,
        event_maxlen: int = DEFAULT_EVENT_MAXLEN,
        batch_size: int = DEFAULT_BATCH,
        actor: str | None = None,
        max_unzipped: int = DEFAULT_MAX_UNZIPPED,
        max_unzip_ratio: float = DEFAULT_MAX_RATIO,
        max_meta_bytes: int = DEFAULT_MAX_META_BYTES,
        socket_timeout: float = 10.0,
        socket_connect_timeout: float = 5.0,
        retries: int = DEFAULT_RETRIES,
        backoff_base: float = DEFAULT_BACKOFF_BASE,
        backoff_cap: float = DEFAULT_BACKOFF_CAP,
        retry: Retry | None = None,
        max_blob_size: int = DEFAULT_MAX_BLOB_SIZE,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
        keep_finished: int | None = None,
        keep_finished_days: float | None = None,
        event_max_age_days: float | None = None,
        functions: bool = True,
    ) -> None:
        self.url = url or os.environ.get("REDISJOBS_URL") or DEFAULT_URL
        self.keys = Keys(namespace)
        self.namespace = namespace
        self.chunk_size = chunk_size
        self.inline_max = inline_max
        self.verify_blobs = verify_blobs
        self.event_maxlen = event_maxlen
        self.batch_size = max(1, batch_size)
        self.max_blob_size = max_blob_size
        if wait_replicas < 0 or wait_timeout <= 0:
            raise ValueError(
                f"wait_replicas must be >= 0 and wait_timeout > 0, got {wait_replicas}, {wait_timeout}"
            )
        if wait_replicas and wait_timeout >= socket_timeout:
            raise ValueError(
                f"wait_timeout ({wait_timeout} s) must be below socket_timeout ({socket_timeout} s): the "
                "client would give up on a WAIT the server is still serving"
            )
        self.wait_replicas, self.wait_timeout = wait_replicas, wait_timeout
        self.retention = Retention(keep_finished, keep_finished_days, event_max_age_days)
        self.max_unzipped = max_unzipped
        self.max_unzip_ratio = max_unzip_ratio
        self.max_meta_bytes = max_meta_bytes
        self._actor = actor
        self._functions = functions
        self._socket_timeout = socket_timeout
        self._connect_timeout = socket_connect_timeout
        self._retry = retry if retry is not None else make_retry(retries, backoff_base, backoff_cap)
        self._client = client
        self._scripts: Scripts | None = None
        self._lane: Lane | None = None
        self._blobs: BlobStore | None = None
        #: The queue's head (ids, as bytes) as the last claim saw it: the next claim's candidates.
        self._queue_head: list[bytes] = []
        #: How many of the queue's head other processes took between two claims, lately.
        self._claim_gap = 7
        #: Where among its candidates the last claim found its job, and how often lately (a moving
        #: average) the next claim found its job at the same place: a claim that expects its job
        #: there reads the job's hash itself (see _claim_once).
        self._claim_seen = 0
        self._claim_hits = 1.0
        #: The owners' claim locks of this process, by how many forks made it (see _owner_lock).
        self._owner_locks: dict[int, list[threading.Lock]] = {}
        self._claim_keys_packed = bulks([key.encode() for key in self.keys.claim_keys])
        self._claim_bulks = _ClaimBulks(self.keys.job_prefix, self.keys.queue.encode())
        self._lock = threading.Lock()
        if chunk_size < 1024:
            raise ValueError(f"chunk_size must be at least 1024 bytes, got {chunk_size}")

    # -- connection ------------------------------------------------------------------------------

    def _connect(self) -> None:
        with self._lock:
            if self._scripts is not None:
                return
            if self._client is None:
                self._client = make_client(
                    self.url,
                    socket_timeout=self._socket_timeout,
                    socket_connect_timeout=self._connect_timeout,
                    retry=self._retry,
                )
            self._blobs = BlobStore(
                self._client,
                self.keys,
                self.chunk_size,
                self.verify_blobs,
                self.inline_max,
                self.max_blob_size,
            )
            if self.wait_replicas and is_cluster(self._client):
                # A cluster client sends WAIT to a node of its choosing, not the one that wrote.
                raise ValueError("wait_replicas is not supported on a Redis Cluster client")
            self._warn_on_eviction()
            self._lane = self._blobs.lane = lane_for(self._client)
            self._scripts = Scripts(
                self._client, self.wait_replicas, int(self.wait_timeout * 1000), self._lane, self._functions
            )

    def _warn_on_eviction(self) -> None:
        try:
            reply = self._client.config_get("maxmemory-policy")
        except Exception:  # fakeredis and locked-down servers have no CONFIG: nothing to check
            return
        # redis-py decodes CONFIG GET's reply itself; older versions and other clients may not.
        found = {(k.decode() if isinstance(k, bytes) else k): v for k, v in reply.items()}
        raw = found.get("maxmemory-policy")
        policy = raw.decode() if isinstance(raw, bytes) else raw
        if policy not in (None, "noeviction"):
            warnings.warn(
                f"Redis maxmemory-policy is {policy}: evicted keys lose jobs. Set it to noeviction.",
                RuntimeWarning,
                stacklevel=3,
            )

    @property
    def client(self) -> Any:
        """The redis-py client (connecting on first use)."""
        if self._scripts is None:
            self._connect()
        return self._client

    @property
    def _s(self) -> Scripts:
        if self._scripts is None:
            self._connect()
        assert self._scripts is not None
        return self._scripts

    @property
    def blobs(self) -> BlobStore:
        if self._blobs is None:
            self._connect()
        assert self._blobs is not None
        return self._blobs

    @property
    def where(self) -> str:
        """The server, as errors name it: ``host:port``, a socket path, or the client's class."""
        if is_cluster(self._client):
            nodes = self._client.get_nodes()
            return (
                "cluster " + ",".join(sorted(n.name for n in nodes)[:3]) + (",..." if len(nodes) > 3 else "")
            )
        try:
            pool = self._client.connection_pool
            kwargs = pool.connection_kwargs
        except AttributeError:
            return type(self._client).__name__
        if hasattr(pool, "service_name"):  # a Sentinel-managed pool
            return f"the master {pool.service_name!r} named by Sentinel"
        if "path" in kwargs:
            return str(kwargs["path"])
        return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"

    @property
    def actor(self) -> str:
        """Who the events say did it: the ``actor`` given, else ``host:pid`` (of this process, so
        that a forked child reports itself)."""
        return self._actor or _default_actor()

    def close(self) -> None:
        """Release the connection pool (a client passed in is closed too)."""
        if self._lane is not None:
            self._lane.close()
        if self._client is not None:
            self._client.close()

    def __enter__(self) -> RedisJobDefManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- creating --------------------------------------------------------------------------------

    @_guarded
    def create(
        self, meta: dict[str, Any], uploaded_content: BlobSource, fl_ctx: FlCtx = None
    ) -> dict[str, Any]:
        """Store a new job: its meta and its content (bytes, or a file path that is consumed).

        Sets ``job_id`` (a new uuid4 unless given), ``submit_time``, ``submit_time_iso``,
        ``start_time``, ``duration``, ``data_storage_format`` and ``status``; drops ``submit_token``;
        mutates and returns ``meta``. The job becomes visible whole, or not at all.

        Raises:
            InvalidJobId, InvalidMeta: before anything is written.
            JobExists: the id is taken (nothing is overwritten).
        """
        jid = self._new_id(meta)
        meta.pop("submit_token", None)
        self._stamp(meta)
        meta["data_storage_format"] = 2
        self._store_new(jid, meta, uploaded_content)
        if _is_path(uploaded_content):
            _consume(uploaded_content)
        return meta

    @_guarded
    def clone(self, from_jid: str, meta: dict[str, Any], fl_ctx: FlCtx = None) -> dict[str, Any]:
        """Create a job from another job's content (its data only: no workspace, no client data).

        ``data_storage_format`` defaults to the source's. Raises ``JobNotFound`` for a missing
        source and ``JobExists`` for a taken id, writing nothing either way.
        """
        check_job_id(from_jid)
        jid = self._new_id(meta)
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(self.keys.job(from_jid), "data_storage_format")
        pipe.exists(self.keys.job(from_jid))
        raw_format, exists = pipe.execute()
        if not exists:
            raise JobNotFound(from_jid)
        self._stamp(meta)
        if "data_storage_format" not in meta and raw_format is not None:
            meta["data_storage_format"] = orjson.loads(raw_format)
        self._store_new(jid, meta, self.blobs.iter_chunks(from_jid, "data"))
        return meta

    def _new_id(self, meta: dict[str, Any]) -> str:
        if not isinstance(meta, dict):
            raise InvalidMeta(None, f"meta must be a dict, got {type(meta).__name__}")
        jid = meta.get("job_id")
        if not jid:
            jid = meta["job_id"] = _uuid4()
            return jid
        return check_job_id(jid)

    @staticmethod
    def _stamp(meta: dict[str, Any]) -> None:
        now = _now()
        meta["submit_time"] = now
        meta["submit_time_iso"] = _local_iso(now)
        meta["start_time"] = ""
        meta["duration"] = "N/A"
        meta["status"] = _SUBMITTED

    def _store_new(self, jid: str, meta: dict[str, Any], content: BlobSource, op: str = "create") -> None:
        """Stage the content, then create the job whole in one script (``op="import"`` keeps the
        meta's own status, for migrations)."""
        try:
            priority = self._queue_priority(jid, meta.get("priority", 0))
        except InvalidMeta:
            if op != "import":
                raise
            priority = 0  # (NVFlare's store keeps any value there: imported as is, queued at 0)
        status = _SUBMITTED if op == "create" else check_status(jid, meta.get("status"))
        fields = dict(meta)
        # The script writes the status (from its ARGV), and a create's start_time and duration
        # (always "" and "N/A", from _stamp): six arguments fewer for the client to pack and for
        # the server to turn into Lua strings.
        del fields["status"]
        if op == "create":
            del fields["start_time"], fields["duration"]
        approvals = _split_approvals(jid, fields, self.max_meta_bytes)
        encoded = encode_fields(jid, fields, max_bytes=self.max_meta_bytes)
        create = self._s.create
        manifest, writer = self._upload(create, jid, "data", content)
        k = self.keys
        keys = [
            k.job(jid),
            k.blobs(jid),
            k.jobs,
            k.queue,
            k.seq,
            k.events,
            k.status(status),
            k.uploads,
            k.inline(jid),
        ]
        args = [
            jid,
            priority,
            self.actor,
            _now(),
            self.event_maxlen,
            1,
            *_registration_then(writer, status, op),
            "data",
            b"",  # the manifest (ARGV[13]), set below
            *approvals,
            *encoded,
        ]
        refused = None  # a chunk the server refused (piped): what a failure code stands for
        try:
            if isinstance(writer, PipedUpload):
                keys += writer.chunk_keys()  # (KEYS[10..]: the script checks they are all there)
                code, refused = create.run_after(
                    *writer.head(), functools.partial(_with_manifest, keys, args, writer), writer.chunks
                )
            else:
                args[12] = dumps(manifest)
                code = create(keys=keys, args=args)
        except redis.exceptions.ResponseError:
            # Refused by the server (out of memory, ...): this send of the script did not run. If
            # an earlier one of this call did (a retry), the job holds this very upload: created.
            if self.blobs.abort(writer):
                return
            raise
        # Any other failure (a lost connection, a timeout, an interrupt) leaves it unknown whether
        # the script ran: the upload stays registered, and gc() frees its chunks once the grace
        # period is over, unless the job now references them.
        if code < 0:
            self.blobs.abort(writer)
            if refused is not None:
                raise refused
            raise_for_code(code, jid, [])

    # -- deleting --------------------------------------------------------------------------------

    @_guarded
    def delete(self, jid: str, fl_ctx: FlCtx = None) -> None:
        """Delete a job with its blobs and index entries. Raises ``JobNotFound`` if missing.

        Submit-token records are kept (see ``mark_submit_records_job_deleted``).
        """
        check_job_id(jid)
        k = self.keys
        code, *rest = self._s.delete(
            keys=[
                k.job(jid),
                k.blobs(jid),
                k.jobs,
                k.queue,
                k.events,
                k.leases,
                k.owners,
                k.inline(jid),
                *k.status_sets,
                k.request(_request_id()),
            ],
            args=[jid, self.actor, _now(), self.event_maxlen],
        )
        raise_for_code(code, jid, rest)
        for component, raw in pairs_to_dict(rest[1]).items():
            self.blobs.unlink_manifest(jid, component.decode(), raw)

    # -- reading jobs ----------------------------------------------------------------------------

    @_guarded
    def get_job(self, jid: str, fl_ctx: FlCtx = None) -> Job | None:
        """The job, with a fresh ``meta`` dict, or None if there is no such job."""
        check_job_id(jid)
        # One job: a plain HGETALL, cheaper for the server than the batch script (no Lua tables).
        key = self.keys.job(jid)
        client = self.client  # connects on first use, making the lane
        if self._lane is not None:
            flat = _flat(self._lane.execute("HGETALL", key))
        else:
            flat = list(itertools.chain.from_iterable(client.hgetall(key).items()))
        if not flat:
            return None
        return self._job_from_meta(decode_flat_meta(flat))

    @_guarded
    def get_meta(self, jid: str) -> dict[str, Any]:
        """A job's meta; raises ``JobNotFound`` if missing."""
        job = self.get_job(jid)
        if job is None:
            raise JobNotFound(jid)
        return job.meta

    def _queue_priority(self, jid: str, value: object) -> int:
        """The priority a job is queued at, from its meta's ``priority``: an int within
        ``MAX_PRIORITY`` either way, else ``InvalidMeta`` (the NVFlare adapter queues it at 0)."""
        return check_priority(jid, value)

    def _job_from_meta(self, meta: dict[str, Any]) -> Job:
        """The job object callers get (the NVFlare adapter returns NVFlare's ``Job`` instead)."""
        return Job.from_meta(meta)

    def _fetch(self, ids: Sequence[str | bytes]) -> list[Job]:
        """Jobs for ``ids`` (str, or bytes as Redis returns them) in that order; missing ones
        skipped. Read in chunks of ``min(batch_size, 100)`` jobs, streamed on one connection: the
        jobs of one chunk are decoded while the server answers the next."""
        out: list[Job] = []
        prefix = self.keys.job_prefix
        keys = [prefix + (jid.encode() if isinstance(jid, str) else jid) for jid in ids]
        lane = self._lane
        if lane is None:
            for start in range(0, len(keys), self.batch_size):
                replies = self._s.get_jobs(keys=keys[start : start + self.batch_size], args=[0])
                out += [self._job_from_meta(meta) for meta in decode_metas(replies)]
            return out

        def each(k: int, replies: list[Any]) -> None:
            if k == 0:
                out.clear()  # a retry starts over
            if not lane.resp2:
                replies = [_flat(reply) for reply in replies]
            out.extend([self._job_from_meta(meta) for meta in decode_metas(replies)])

        step = min(self.batch_size, _STREAM_CHUNK)
        if keys:  # pipelined HGETALLs: cheaper for the server than a script's
            lane.stream_per_key("HGETALL", [keys[i : i + step] for i in range(0, len(keys), step)], each)
        return out

    @_guarded
    def iter_job_ids(self) -> Iterator[str]:
        """Every job id in submit order, read in bounded batches (jobs deleted meanwhile are skipped,
        jobs created meanwhile appear at the end)."""
        low: float | str = "-inf"
        while True:
            batch = self.client.zrangebyscore(
                self.keys.jobs, low, "+inf", start=0, num=self.batch_size, withscores=True
            )
            if not batch:
                return
            for member, _score in batch:
                yield member.decode()
            low = f"({batch[-1][1]:.0f}"
            if len(batch) < self.batch_size:
                return

    @_guarded
    def page_jobs(
        self, status: str | RunStatus | None = None, *, cursor: str | None = None, limit: int = 100
    ) -> tuple[list[Job], str | None]:
        """One page of jobs, for listings too large to hold at once: ``(jobs, next_cursor)``; pass
        ``next_cursor`` back for the following page, until it is None.

        Without ``status``, pages follow submit order (jobs created meanwhile come last). With
        one, pages walk that status's set with SSCAN, whose COUNT is a hint: a page holds about
        ``limit`` jobs (fewer, even none, before the end; a small set, up to 512 ids, comes whole),
        and a job that changes status meanwhile may be missed or seen twice. ``limit`` is at most
        ``MAX_PAGE``, and no page is larger.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be an int from 1 to {MAX_PAGE}, got {limit!r}")
        if cursor is not None and (not isinstance(cursor, str) or not cursor.isdigit()):
            raise ValueError(f"cursor must be a cursor this method returned, got {cursor!r}")
        if status is not None:
            key = self.keys.status(check_status(None, status))
            next_scan, members = self.client.sscan(key, int(cursor or 0), count=limit)
            ids = sorted(m.decode() for m in members)
            return self._fetch(ids), (str(next_scan) if int(next_scan) else None)
        low = f"({cursor}" if cursor else "-inf"
        batch = self.client.zrangebyscore(self.keys.jobs, low, "+inf", start=0, num=limit, withscores=True)
        jobs = self._fetch([m.decode() for m, _ in batch])
        return jobs, (f"{batch[-1][1]:.0f}" if len(batch) == limit else None)

    def _ids_in_batches(self, ids: Iterable[str]) -> Iterator[list[str]]:
        batch: list[str] = []
        for jid in ids:
            batch.append(jid)
            if len(batch) >= self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    @_guarded
    def get_all_jobs(self, fl_ctx: FlCtx = None) -> list[Job]:
        """Every job, in submit order."""
        out: list[Job] = []
        for batch in self._ids_in_batches(self.iter_job_ids()):
            out += self._fetch(batch)
        return out

    @_guarded
    def get_jobs_to_schedule(self, fl_ctx: FlCtx = None) -> list[Job]:
        """The SUBMITTED jobs, highest ``priority`` first, then first submitted first.

        Reads only the queue, so its cost does not grow with the number of finished jobs; a job put
        back to SUBMITTED is schedulable again. A long queue is read a page at a time
        (``batch_size`` ids): a job that other servers change while it is read keeps the place it
        was read at, and one moved ahead of the place reached (a new job, a raised priority, a
        job put back) is offered at the next call; none is offered twice, and a job that stays
        where it was is not missed.
        """
        # The ids first, a page per round trip; then the jobs, streamed. A page after the first
        # starts at the score where the one before ended, not at a rank: a claim, a new job or a
        # priority change between two pages shifts the ranks, and paging by rank would then read
        # a job twice or skip one that stayed queued. The start is inclusive, and ids read already
        # are dropped (a job's score is unique, from its submit sequence). The first page is read
        # by rank, without scores: a queue shorter than a page costs one round trip, as before.
        lane, queue, size = self._lane, self.keys.queue, self.batch_size
        ids: list[bytes] = (
            lane.execute("ZRANGE", queue, 0, size - 1)
            if lane is not None
            else self.client.zrange(queue, 0, size - 1)
        )
        if len(ids) == size:
            seen = set(ids)
            # (its last job, if still queued; else the head again, whose ids read are dropped)
            low = self._score_text(ids[-1]) or b"-inf"
            while True:
                page = self._queue_page(low)
                fresh = [jid for jid in page[::2] if jid not in seen]
                ids += fresh
                if len(page) < 2 * size:
                    break
                seen.update(fresh)
                # A full page of ids read already: more than a page of jobs share one score (the
                # submit sequence wrapped around 2**32), or moved back past it; go on above it.
                low = page[-1] if fresh else b"(" + page[-1]
        # (a job that left the queue since its id was read comes back in its new status)
        return [job for job in self._fetch(ids) if job.meta.get("status") == _SUBMITTED]

    def _score_text(self, jid: bytes) -> bytes | None:
        """A queued job's score, as Redis reads a bound; None if it is not queued."""
        lane = self._lane
        score = (
            lane.execute("ZSCORE", self.keys.queue, jid)
            if lane is not None
            else self.client.zscore(self.keys.queue, jid)
        )
        return None if score is None else _bound(score)

    def _queue_page(self, low: bytes) -> list[bytes]:
        """A page of the queue from score ``low`` (as Redis reads a bound: a number, or ``(`` and a
        number for an exclusive one), in order: id, score, id, score, ..."""
        lane, queue, size = self._lane, self.keys.queue, self.batch_size
        if lane is None:
            pairs = self.client.zrangebyscore(queue, low, "+inf", start=0, num=size, withscores=True)
        else:
            pairs = lane.execute("ZRANGEBYSCORE", queue, low, "+inf", "WITHSCORES", "LIMIT", 0, size)
            if lane.resp2:
                return pairs  # type: ignore[no-any-return]
        # ((id, score) pairs from redis-py's own command, [id, score] over a RESP3 lane)
        return [x for jid, score in pairs for x in (jid, _bound(score))]

    @_guarded
    def get_jobs_by_status(
        self, run_status: str | RunStatus | Sequence[str | RunStatus], fl_ctx: FlCtx = None
    ) -> list[Job]:
        """Jobs in one status or any of a list of statuses, in submit order."""
        if isinstance(run_status, str):
            wanted: list[Any] = [run_status]
        else:
            try:
                wanted = list(run_status)
            except TypeError:
                raise InvalidStatus(None, run_status) from None
        statuses = {check_status(None, status) for status in wanted}
        ids: set[str] = set()
        for status in statuses:
            key = self.keys.status(status)
            ids.update(m.decode() for m in self.client.sscan_iter(key, count=self.batch_size))
        ordered = sorted(ids)
        seqs = self.client.zmscore(self.keys.jobs, ordered) if ordered else []
        by_seq = sorted(zip(seqs, ordered, strict=True), key=lambda p: (p[0] is None, p[0] or 0.0))
        # (a job that changed status since its id was read comes back in its new status: left out)
        jobs = self._fetch([jid for _seq, jid in by_seq])
        return [job for job in jobs if job.meta.get("status") in statuses]

    @_guarded
    def get_jobs_waiting_for_review(self, reviewer_name: str, fl_ctx: FlCtx = None) -> list[Job]:
        """Jobs (of any status, as NVFlare) that ``reviewer_name`` has not approved or rejected."""
        field = approval_field(None, reviewer_name)
        out: list[Job] = []
        for batch in self._ids_in_batches(self.iter_job_ids()):
            pipe = self.client.pipeline(transaction=False)
            for jid in batch:
                pipe.hexists(self.keys.job(jid), field)
            reviewed = pipe.execute()
            out += self._fetch([jid for jid, done in zip(batch, reviewed, strict=True) if not done])
        return out

    # -- changing jobs ---------------------------------------------------------------------------

    @_guarded
    def set_status(
        self,
        jid: str,
        status: str | RunStatus,
        fl_ctx: FlCtx = None,
        *,
        expected: str | RunStatus | None = None,
        owner: str | None = None,
    ) -> bool:
        """Move a job to ``status``, checked against the transition table, atomically.

        RUNNING writes ``start_time`` (UTC ISO); COMPLETED, ABORTED, EXECUTION_EXCEPTION, ABNORMAL
        and CAN_NOT_SCHEDULE write ``duration`` when the job has a start time. The same status again
        is a no-op. Returns True if the status changed.

        Args:
            expected: compare-and-set: only act if the job is in this status now.
            owner: the caller's owner name. A claimed job (see ``claim``) starts (RUNNING) or goes
                back to the queue only by its owner; given for any change, it must be the holder.

        Raises:
            InvalidJobId, InvalidStatus: before any Redis call.
            JobNotFound, InvalidTransition, StatusConflict, NotOwner: nothing is written.
        """
        check_job_id(jid)
        return self._update(jid, {}, check_status(jid, status), expected, owner)

    @_guarded
    def update_meta(
        self, jid: str, meta: dict[str, Any], fl_ctx: FlCtx = None, *, expected: str | RunStatus | None = None
    ) -> bool:
        """Merge ``meta`` into the job's (top-level keys replaced whole), writing only those fields.

        A ``status`` key goes through the same checks as ``set_status``; ``approvals`` are merged per
        reviewer; a ``priority`` change moves a queued job to its new place. Concurrent updates of
        different keys never lose each other. Returns True if the status changed.
        """
        check_job_id(jid)
        if not isinstance(meta, dict):
            raise InvalidMeta(jid, f"meta must be a dict, got {type(meta).__name__}")
        fields = {getattr(k, "value", k): v for k, v in meta.items()}
        status = check_status(jid, fields.pop("status")) if "status" in fields else ""
        if fields.get("job_id", jid) != jid:
            raise InvalidMeta(jid, f"job_id cannot change (got {fields['job_id']!r})")
        fields.pop("job_id", None)
        return self._update(jid, fields, status, expected)

    def _update(
        self, jid: str, fields: dict[str, Any], status: str, expected: Any, owner: str | None = None
    ) -> bool:
        expected_value = check_status(jid, expected) if expected is not None else ""
        priority = str(self._queue_priority(jid, fields["priority"])) if "priority" in fields else ""
        approvals = _split_approvals(jid, fields, self.max_meta_bytes)
        encoded = encode_fields(jid, fields, max_bytes=self.max_meta_bytes)
        if not (status or expected_value or owner or priority or approvals):  # fields only: a lighter script
            code, *rest = self._s.set_fields(keys=[self.keys.job(jid)], args=[*approvals, *encoded])
            raise_for_code(code, jid, rest)
            return False
        now = _now()
        # Only a status change uses times: start_time on RUNNING, the local offset for durations.
        start_time = dumps(_utc_iso(now)) if status == _RUNNING else b'""'
        offset = _local_offset_seconds(now) if status else 0
        k = self.keys
        # A call that moves the status keeps a request record: repeated after it ran, a
        # compare-and-set or an owner's call would be refused, and any would report "no change".
        # Plain meta updates are idempotent without one.
        recorded = bool(status or expected_value or owner)
        keys = [
            k.job(jid),
            k.jobs,
            k.queue,
            k.events,
            k.leases,
            k.owners,
            k.request(_request_id()) if recorded else k.request("-"),
            *(k.move_sets[status] if status else ()),
        ]
        head = [jid, status, expected_value, int(now * 1_000_000), start_time, offset, self.actor,
                self.event_maxlen, priority, owner or ""]  # fmt: skip
        pairs = [*approvals, *encoded]
        if recorded:  # the record: "1" a first send need not look for it, "2" a maybe-repeat must
            code, *rest = run_marked(self._s.update, keys, [*head, "1", *pairs], [*head, "2", *pairs])
        else:
            code, *rest = self._s.update(keys=keys, args=[*head, "", *pairs])
        raise_for_code(code, jid, rest, new_status=status, expected=expected_value, owner=owner or "")
        return bool(code == 1)

    @_guarded
    def refresh_meta(self, job: Job, meta_keys: list[str] | None, fl_ctx: FlCtx = None) -> None:
        """Write the listed keys of ``job.meta`` that it has (an empty list: all of ``job.meta``)."""
        meta = {k: job.meta[k] for k in meta_keys if k in job.meta} if meta_keys else dict(job.meta)
        if meta:
            self.update_meta(job.job_id, meta)

    @_guarded
    def set_results_uri(self, jid: str, result_uri: str, fl_ctx: FlCtx = None) -> Job | None:
        """Record ``result_location`` and return the job."""
        self.update_meta(jid, {"result_location": result_uri})
        return self.get_job(jid)

    @_guarded
    def set_approval(
        self, jid: str, reviewer_name: str, approved: bool, note: str, fl_ctx: FlCtx = None
    ) -> dict[str, Any]:
        """Record a reviewer's verdict (``approvals[reviewer] = [approved, note]``); return the meta.

        Each reviewer is a separate field: concurrent approvals all land. Raises ``JobNotFound``.
        """
        check_job_id(jid)
        if not isinstance(reviewer_name, str) or not reviewer_name:
            raise InvalidMeta(jid, f"reviewer_name must be a non-empty str, got {reviewer_name!r}")
        k = self.keys
        field, value = approval_pairs(jid, {reviewer_name: [approved, note]}, max_bytes=self.max_meta_bytes)
        code, *rest = self._s.approve(
            keys=[k.job(jid), k.events],
            args=[
                jid,
                field,
                value,
                self.actor,
                _now(),
                self.event_maxlen,
                "1" if approved else "0",
                reviewer_name,
            ],
        )
        raise_for_code(code, jid, rest)
        return decode_flat_meta(rest[0])

    # -- several server processes: claims, leases, reaping, events --------------------------------

    @_guarded
    def claim(self, owner: str, *, lease: float = 30.0, limit: int = 1) -> list[Job]:
        """Take the best queued job(s) (highest priority, then first submitted) into DISPATCHED for
        ``owner``, with a lease of ``lease`` seconds, in one atomic script: across every process
        sharing the store, each job is claimed once. Returns the claimed jobs (possibly none).

        The owner then starts it (``set_status(jid, RUNNING, owner=owner)``), keeps the lease alive
        with ``renew``, or gives it back with ``release``; ``reap`` settles jobs whose lease ran out.

        An owner names one server process at a time (``recover(owner)`` settles all it holds);
        threads sharing the manager may claim for it, one claim at a time. A claimed job's meta
        may be read by a command sent right after the script, in the same round trip (see
        ``_claim_once``): a job deleted in between is not returned, having nothing left to run.
        """
        _check_owner(owner)
        lease_ms = _lease_ms(lease)
        if not 1 <= limit <= 1000:
            raise ValueError(f"limit must be between 1 and 1000, got {limit!r}")
        with self._owner_lock(owner):
            return self._claim(owner, lease_ms, limit)

    def _owner_lock(self, owner: str) -> threading.Lock:
        """The lock that one owner's claims from this manager take, one at a time. The claim script
        keeps one record per owner, of its last claim; a claim sent again by redis-py's retry (its
        reply was lost) finds its own run there, and returns that run's jobs, only if no other
        claim of the same owner ran in between. Owners share ``_OWNER_LOCKS`` locks by hash; a
        forked child makes its own (a parent's thread may have held one at the fork)."""
        locks = self._owner_locks.get(_connection._forks)
        if locks is None:  # (setdefault: threads that get here at once all take the same list)
            fresh = [threading.Lock() for _ in range(_OWNER_LOCKS)]
            locks = self._owner_locks.setdefault(_connection._forks, fresh)
        return locks[hash(owner) % _OWNER_LOCKS]

    def _claim(self, owner: str, lease_ms: int, limit: int) -> list[Job]:
        candidates = self._queue_head
        claimed: list[Job] = []
        for _attempt in range(4):
            # Candidates beyond the jobs to take cover the claims of other processes since this
            # one last looked: as many as it saw taken before, twice over, and a few more.
            window = min(1000, limit + 2 * self._claim_gap + 2)
            take = limit - len(claimed)
            got, head, stale = self._claim_once(owner, lease_ms, take, take + window - 1, candidates)
            seen = _seen(candidates, got, stale)
            if got and candidates:
                hit = 1.0 if seen == min(self._claim_seen, len(candidates) - 1) else 0.0
                self._claim_hits += (hit - self._claim_hits) / 8
                self._claim_seen = seen
            self._claim_gap = min(500, max(seen, self._claim_gap - 1))
            candidates = self._queue_head = head
            for _jid, fields in got:
                job = self._job_from_meta(decode_flat_meta(fields))
                job.dispatcher_id = owner
                claimed.append(job)
            if len(claimed) >= limit or not stale:
                break
        return claimed

    def _claim_once(
        self, owner: str, lease_ms: int, take: int, last: int, candidates: list[bytes]
    ) -> tuple[list[Any], list[bytes], int]:
        """One run of the claim script: (claimed, the queue's head after it, stale)."""
        k = self.keys
        prefix = k.job_prefix
        script = self._s.claim
        if isinstance(script, LaneScript):  # the hot path, packed here (see ``bulks``)
            # The script reads the queue's top only as far as it claims (a last rank of take - 1,
            # so its reply holds no head), and a ZRANGE sent in the same write reads the head:
            # straight from the sorted set, not through Lua.
            bulk = self._claim_bulks
            body = b"%b%b%b%b%b" % (
                self._claim_keys_packed,
                bulks_prefixed(prefix, candidates),
                bulk.of(owner, lease_ms, take, take - 1),
                bulks([_seconds_text(), _request_id().encode()]),
                bulk.tail(self.actor, self.event_maxlen),
            )
            numkeys = len(k.claim_keys) + len(candidates)
            then = bulk.head(last + 1 - take)
            if take == 1 and candidates and self._claim_hits >= _EXPECT_HITS:
                # The job this claim expects (where the last one found its own) is read by an
                # HGETALL sent right after the script, straight from Redis; the script leaves
                # out the hash of that job if it is the one claimed (see the script's ARGV[11]).
                rank = min(self._claim_seen, len(candidates) - 1)
                first, repeat = bulk.flags(rank + 1)
                replies = script.run_packed(
                    numkeys,
                    numkeys + 10,
                    body,
                    first,
                    repeat,
                    then + bulk.hgetall(prefix, candidates[rank]),
                    2,
                )
            else:
                first, repeat = bulk.flags(0)
                replies = script.run_packed(numkeys, numkeys + 10, body, first, repeat, then, 1)
            reply, head = replies[0], replies[1]
        else:  # (without a lane, every send may be a repeat: see run_marked; the reply has the head)
            reply = script(
                keys=[*k.claim_keys, *[prefix + jid for jid in candidates]],
                args=[owner, lease_ms, take, last, _seconds_text(), _request_id(), self.actor,
                      self.event_maxlen, prefix, "1", "0"],
            )  # fmt: skip
            head = None
        n = reply[3]  # (the reply: OK, expiry, stale, n, then n (id, hash) pairs, then any head)
        end = 4 + 2 * n
        got = [(reply[4], reply[5])] if n == 1 else list(zip(reply[4:end:2], reply[5:end:2], strict=True))
        if n == 1 and reply[5] == 0:  # the hash the HGETALL after the script read
            fields = _flat(replies[2])
            # (Another client's command can run between the two only if the write reached the
            # server in pieces; the HGETALL then reads the job as that left it. A job deleted in
            # between has nothing left to run, and is not returned.)
            got = [(reply[4], fields)] if fields else []
        return got, reply[end:] if head is None else head, reply[2]

    @_guarded
    def renew(self, jid: str, owner: str, *, lease: float = 30.0) -> float:
        """Extend ``owner``'s lease on a claimed job to ``lease`` seconds from now; return the new
        expiry (epoch seconds, the server's clock). Raises ``NotOwner`` if ``owner`` does not hold it."""
        check_job_id(jid)
        _check_owner(owner)
        lease_ms = _lease_ms(lease)
        k = self.keys
        code, *rest = self._s.renew(keys=[k.job(jid), k.leases, k.owners], args=[jid, owner, lease_ms])
        raise_for_code(code, jid, rest, owner=owner)
        return int(rest[0]) / 1000

    @_guarded
    def release(self, jid: str, owner: str) -> None:
        """Give a claimed, not yet running job back to the queue, at its place by priority and submit
        order. Raises ``NotOwner`` (not the holder) or ``StatusConflict`` (not DISPATCHED)."""
        check_job_id(jid)
        _check_owner(owner)
        self._update(jid, {}, RunStatus.SUBMITTED.value, RunStatus.DISPATCHED.value, owner)

    @_guarded
    def lease_of(self, jid: str) -> tuple[str, float] | None:
        """``(owner, expiry in epoch seconds)`` of a claimed job, or None."""
        check_job_id(jid)
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(self.keys.owners, jid)
        pipe.zscore(self.keys.leases, jid)
        owner, expiry = pipe.execute()
        return (owner.decode(), float(expiry) / 1000) if owner is not None and expiry is not None else None

    @_guarded
    def reap(self) -> list[Settled]:
        """Settle every claimed job whose lease has expired (the server's clock): DISPATCHED goes
        back to the queue, RUNNING to FINISHED:ABANDONED. Returns what was done."""
        done: list[Settled] = []
        while True:
            due = self._s.due_leases(keys=[self.keys.leases], args=[self.batch_size])
            ids = [m.decode() for m in due]
            if not ids:
                return done
            settled = self._settle("reap", "", ids, RunStatus.SUBMITTED.value, RunStatus.ABANDONED.value)
            done += settled
            if len(ids) < self.batch_size:
                return done

    @_guarded
    def recover(
        self,
        owner: str,
        *,
        dispatched: str | RunStatus = RunStatus.SUBMITTED,
        running: str | RunStatus = RunStatus.ABANDONED,
    ) -> list[Settled]:
        """What a restarted server calls first: settle every job ``owner`` still holds, whatever its
        lease. DISPATCHED jobs go to ``dispatched`` (default: back to the queue), RUNNING ones to
        ``running`` (default FINISHED:ABANDONED; any FINISHED status may be chosen), and the
        record of the owner's last claim is dropped."""
        _check_owner(owner)
        to_d, to_r = check_status(None, dispatched), check_status(None, running)
        # Settling lets go of the job: it must leave the held statuses (back to the queue, or done).
        if to_d != RunStatus.SUBMITTED.value and to_d not in FINISHED:
            raise InvalidTransition(None, RunStatus.DISPATCHED.value, to_d)
        if to_r not in FINISHED:
            raise InvalidTransition(None, RunStatus.RUNNING.value, to_r)
        held = [
            j.decode() for j, o in self.client.hscan_iter(self.keys.owners, count=1000) if o.decode() == owner
        ]
        done: list[Settled] = []
        for start in range(0, len(held), self.batch_size):
            done += self._settle("recover", owner, held[start : start + self.batch_size], to_d, to_r)
        # The record of the owner's last claim goes too (a restarted owner repeats no earlier call),
        # so owner names used once do not leave a field each behind.
        self.client.hdel(self.keys.claim_requests, owner)
        return done

    def _settle(self, mode: str, owner: str, ids: list[str], to_d: str, to_r: str) -> list[Settled]:
        k = self.keys
        now = _now()
        _ok, rows = self._s.settle(
            keys=[k.leases, k.owners, k.queue, k.events, k.jobs, *k.status_sets, *(k.job(j) for j in ids)],
            args=[mode, owner, to_d, to_r, self.actor, self.event_maxlen, int(now * 1_000_000),
                  dumps(_utc_iso(now)), _local_offset_seconds(now), *ids],
        )  # fmt: skip
        return [Settled(*(v.decode() for v in row)) for row in rows]

    @_guarded
    def events(self, since: str = "-", *, count: int = 100) -> list[Event]:
        """Up to ``count`` events after ``since`` (an event id; "-" for the oldest kept)."""
        start = since if since == "-" else f"({since}"
        return [
            Event.from_entry(i, f) for i, f in self.client.xrange(self.keys.events, start, "+", count=count)
        ]

    @_guarded
    def watch(
        self, since: str = "$", *, block: float = 1.0, idle_timeout: float | None = None
    ) -> Iterator[Event]:
        """Follow the event stream: yield each event after ``since`` ("$": only new ones; "0": from
        the oldest kept; or the id of the last event seen, to resume), waiting ``block`` seconds at a
        time. Stops after ``idle_timeout`` seconds without an event (never, when None)."""
        last = since
        if last == "$":
            newest = self.client.xrevrange(self.keys.events, "+", "-", count=1)
            last = newest[0][0].decode() if newest else "0-0"
        idle_since = time.monotonic()
        while True:
            reply = self.client.xread({self.keys.events: last}, count=100, block=max(1, int(block * 1000)))
            if not reply:
                if idle_timeout is not None and time.monotonic() - idle_since >= idle_timeout:
                    return
                continue
            idle_since = time.monotonic()
            for entry_id, fields in reply[0][1]:
                event = Event.from_entry(entry_id, fields)
                last = event.id
                yield event

    # -- content and components ------------------------------------------------------------------

    @_guarded
    def get_content(self, meta: dict[str, Any], fl_ctx: FlCtx = None) -> bytes | None:
        """The job's uploaded content, or None if the job or its content is missing."""
        jid = meta.get("job_id") if isinstance(meta, dict) else None
        if not jid:
            raise RuntimeError("no Job ID in meta")
        check_job_id(jid)
        try:
            return self.blobs.read(jid, "data")
        except BlobNotFound:
            return None

    @_guarded
    def get_app(self, job: Job, app_name: str, fl_ctx: FlCtx = None) -> bytes:
        """One app folder of the job's content, zipped with paths relative to the app folder.

        The content is unpacked into a private temporary folder after checking every entry
        (no absolute paths, ``..``, symlinks, or more than ``max_unzipped`` bytes).

        Raises:
            InvalidJobId, InvalidComponent: a bad id or app name, before any Redis call.
            ValueError: the archive, ``job_folder_name`` or app escapes the job folder.
            FileNotFoundError: the job has no such app.
        """
        jid = check_job_id(job.job_id)
        check_app_name(jid, app_name)
        folder_name = job.meta.get("job_folder_name", "")
        if not isinstance(folder_name, str):
            raise ValueError(f"job {jid!r}: job_folder_name must be a str")
        with tempfile.TemporaryDirectory(prefix="redisjobs-app-") as tmp:
            root = os.path.join(tmp, "job")
            os.mkdir(root)
            archive = os.path.join(tmp, "content.zip")
            if not self.blobs.download(jid, "data", archive):
                raise BlobNotFound(jid, "data")
            try:
                with open_zip(archive) as zf:
                    safe_extract(zf, root, self.max_unzipped, max_ratio=self.max_unzip_ratio)
            except UnsafeArchive as e:
                raise ValueError(f"job {jid!r}: unsafe content: {e}") from None
            except zipfile.BadZipFile as e:
                raise ValueError(f"job {jid!r}: content is not a zip file: {e}") from None
            real_root = os.path.realpath(root)
            job_folder = os.path.realpath(os.path.join(real_root, folder_name))
            if os.path.commonpath([real_root, job_folder]) != real_root:
                raise ValueError(f"job {jid!r}: job folder for app {app_name!r} escapes the job data folder")
            app_dir = os.path.realpath(os.path.join(job_folder, app_name))
            if os.path.commonpath([job_folder, app_dir]) != job_folder or app_dir == job_folder:
                raise ValueError(f"job {jid!r}: app {app_name!r} escapes the job folder")
            if not os.path.isdir(app_dir):
                raise FileNotFoundError(
                    f"job {jid!r} has no app {app_name!r} in {folder_name or 'its content'}"
                )
            out = os.path.join(tmp, "app.zip")
            with open(out, "wb") as f:
                zip_folder(app_dir, f)
            with open(out, "rb") as f:
                return f.read()

    def _upload(
        self, script: Any, jid: str, component: str, content: BlobSource
    ) -> tuple[dict[str, Any] | None, Upload]:
        """The upload of ``content`` for ``script`` to commit, with its manifest: content of a few
        chunks given as bytes travels with the script, in one round trip (the chunks sent first,
        hashed while the server reads them: no manifest yet); any other is staged now."""
        if isinstance(script, LaneScript) and script.cross_slot:
            piped = self.blobs.piped(jid, component, content)
            if piped is not None:
                return None, piped
        return self.blobs.stage(jid, component, content)

    def _put_component(self, jid: str, component: str, data: BlobSource, *, consume: bool = True) -> str:
        manifest, writer = self._upload(self._s.commit_blob, jid, component, data)
        self._put_commit(jid, component, manifest, writer)
        if consume and _is_path(data):
            _consume(data)
        return f"redisjobs://{self.namespace}/{jid}/{component}"

    def _put_commit(self, jid: str, component: str, manifest: dict[str, Any] | None, writer: Upload) -> None:
        """Commit an upload: one staged already (with its manifest), or a ``PipedUpload`` (no
        manifest yet), sent with the commit."""
        k = self.keys
        keys = [k.job(jid), k.blobs(jid), k.uploads, k.inline(jid), k.request(_request_id())]
        commit = self._s.commit_blob
        refused = None  # (see _store_new)
        try:
            if isinstance(writer, PipedUpload):
                keys += writer.chunk_keys()  # (KEYS[6..]: the script checks they are all there)
                (code, *rest), refused = commit.run_after(
                    *writer.head(),
                    lambda: (keys, [component, dumps(writer.manifest()), *writer.commit_args()]),
                    writer.chunks,
                )
            else:
                code, *rest = commit(keys=keys, args=[component, dumps(manifest), *writer.commit_args()])
        except redis.exceptions.ResponseError:
            # Refused by the server: this send of the commit did not run. If an earlier one of this
            # call did (a retry), the manifest names this upload: committed (the chunks of the
            # version it replaced, unknown here, are left to gc).
            if self.blobs.abort(writer):
                return
            raise
        # (Other failures leave the commit's fate unknown: see _store_new.)
        if code < 0:
            self.blobs.abort(writer)
            if refused is not None:
                raise refused
        raise_for_code(code, jid, [])
        self.blobs.unlink_manifest(jid, component, rest[0] or None)

    @_guarded
    def save_workspace(self, jid: str, data: BlobSource, fl_ctx: FlCtx = None) -> str:
        """Store the job's ``workspace``: bytes, a file path (consumed), or a list of paths (zipped
        uncompressed: a file by its base name, a folder's contents at the root; sources kept).
        Safe to retry: each call commits a whole new version. Returns the component's location."""
        check_job_id(jid)
        return self._put_component(jid, "workspace", data)

    @_guarded
    def set_client_data(
        self, jid: str, data: BlobSource, client_name: str, data_type: str, fl_ctx: FlCtx = None
    ) -> str:
        """Store a client's data (``data_type`` is ERRORLOG or ``LOG_<file>``) as ``<data_type>_<client>``."""
        check_job_id(jid)
        if not isinstance(client_name, str) or not isinstance(data_type, str):
            raise InvalidComponent(jid, (data_type, client_name), "client_name and data_type must be str")
        component = check_component(jid, f"{data_type}_{client_name}")
        return self._put_component(jid, component, data)

    @_guarded
    def get_client_data(
        self, jid: str, client_name: str, data_type: str, fl_ctx: FlCtx = None
    ) -> bytes | None:
        """A client's data, or None when the job, the component or a valid name is missing."""
        check_job_id(jid)
        if not isinstance(client_name, str) or not isinstance(data_type, str):
            return None
        component = f"{data_type}_{client_name}"
        if not is_valid_component(component):
            return None
        try:
            return self.blobs.read(jid, component)
        except BlobNotFound:
            return None

    @_guarded
    def list_components(self, jid: str, fl_ctx: FlCtx = None) -> list[str]:
        """Names of the job's stored components (``meta``, ``data``, ...); [] if there is no job."""
        check_job_id(jid)
        pipe = self.client.pipeline(transaction=False)
        pipe.exists(self.keys.job(jid))
        pipe.hkeys(self.keys.blobs(jid))
        exists, names = pipe.execute()
        if not exists:
            return []
        stored = sorted(n.decode() for n in names)
        return ["meta", *(["data"] if "data" in stored else []), *(n for n in stored if n != "data")]

    @_guarded
    def get_storage_component(self, jid: str, component: str, fl_ctx: FlCtx = None) -> bytes:
        """A component's bytes (``meta`` as JSON).

        Raises ``InvalidComponent``, ``JobNotFound`` or ``BlobNotFound`` (no such component yet).
        """
        check_job_id(jid)
        check_component(jid, component)
        if component == "meta":
            return orjson.dumps(self.get_meta(jid))
        try:
            return self.blobs.read(jid, component)
        except BlobNotFound:
            if not self.client.exists(self.keys.job(jid)):
                raise JobNotFound(jid) from None
            raise

    @_guarded
    def get_storage_for_download(
        self, jid: str, download_dir: str, component: str, download_file: str, fl_ctx: FlCtx = None
    ) -> None:
        """Write a component to ``download_dir/jid/download_file``, streamed through a temporary file
        renamed into place. A missing component leaves no file; a missing job raises ``JobNotFound``."""
        check_job_id(jid)
        check_component(jid, component)
        if (
            not isinstance(download_file, str)
            or os.path.basename(download_file) != download_file
            or download_file in ("", ".", "..")
            or "\x00" in download_file
            or not _encodable_path(download_file)
        ):
            raise InvalidComponent(jid, download_file, "download_file must be a plain file name")
        if not self.client.exists(self.keys.job(jid)):
            raise JobNotFound(jid)
        folder = os.path.join(download_dir, jid)
        os.makedirs(folder, exist_ok=True)
        dest = os.path.join(folder, download_file)
        if os.path.lexists(dest):
            os.remove(dest)
        if component == "meta":
            _write_atomically(dest, orjson.dumps(self.get_meta(jid), option=orjson.OPT_INDENT_2))
        else:
            self.blobs.download(jid, component, dest)

    @_guarded
    def iter_chunks(self, jid: str, component: str = "data") -> Iterator[bytes]:
        """Stream a component's bytes chunk by chunk (memory: one chunk at a time).

        Raises ``BlobNotFound`` when there is no such component; ``BlobCorrupt`` if the value is
        replaced after streaming began (a mix of versions is never returned).
        """
        check_job_id(jid)
        check_component(jid, component)
        return self.blobs.iter_chunks(jid, component)

    @_guarded
    def open_blob(self, jid: str, component: str = "data") -> io.BufferedReader:
        """A component as a read-only binary file object, fetched chunk by chunk."""
        first = self.iter_chunks(jid, component)
        return io.BufferedReader(BlobReader(first), buffer_size=self.chunk_size)

    @_guarded
    def gc(
        self,
        grace: float = DEFAULT_GC_GRACE,
        *,
        retention: Retention | None = None,
        old_functions: bool = False,
    ) -> GcReport:
        """Apply the retention policy (``retention``, else the manager's: see ``keep_finished``,
        ``keep_finished_days``, ``event_max_age_days``), then free blob chunks nothing references:
        uploads abandoned for more than ``grace`` seconds (a writer that crashed), chunks of
        deleted jobs and of replaced versions, and any other orphan. Works in bounded batches; safe
        to run while other processes write. Returns what it did.

        With ``old_functions``, also delete the function libraries that other versions of
        redisjobs loaded on the server (see ``drop_old_libraries``: it needs a user who may run
        ``FUNCTION LIST`` and ``FUNCTION DELETE``)."""
        policy = retention or self.retention
        expired = self._expire_finished(policy)
        trimmed = self._trim_events(policy)
        report = collect_garbage(self.client, self.keys, grace, self.batch_size)
        report.jobs_expired, report.events_trimmed = expired, trimmed
        if old_functions:
            report.functions_dropped = drop_old_libraries(self.client)
        return report

    def _expire_finished(self, policy: Retention) -> int:
        """Delete the finished jobs the policy no longer keeps. Finished jobs never change status
        again, so the only race is with another deleter (whose delete wins quietly)."""
        if policy.keep_finished is None and policy.keep_finished_days is None:
            return 0
        k = self.keys
        finished: list[tuple[float, str, float]] = []  # (submit order, id, when it finished)
        for status in sorted(FINISHED):
            for batch in self._ids_in_batches(m.decode() for m in self.client.sscan_iter(k.status(status))):
                pipe = self.client.pipeline(transaction=False)
                for jid in batch:
                    pipe.zscore(k.jobs, jid)
                    pipe.hmget(k.job(jid), "submit_time", "start_time", "duration")
                replies = pipe.execute()
                for jid, seq, times in zip(batch, replies[::2], replies[1::2], strict=True):
                    if seq is not None and times[0] is not None:
                        finished.append((float(seq), jid, _finished_at(*(_loads_or_none(t) for t in times))))
        finished.sort(reverse=True)  # newest first
        doomed: set[str] = set()
        if policy.keep_finished is not None:
            doomed.update(jid for _, jid, _ in finished[policy.keep_finished :])
        if policy.keep_finished_days is not None:
            cutoff = time.time() - policy.keep_finished_days * 86_400
            doomed.update(jid for _, jid, ended in finished if ended < cutoff)
        expired = 0
        for jid in doomed:
            with contextlib.suppress(JobNotFound):
                self.delete(jid)
                expired += 1
        return expired

    def _trim_events(self, policy: Retention) -> int:
        if policy.event_max_age_days is None:
            return 0
        cutoff_ms = int((time.time() - policy.event_max_age_days * 86_400) * 1000)
        return int(self.client.xtrim(self.keys.events, minid=f"{max(cutoff_ms, 0)}-0", approximate=False))

    # -- submit-token records --------------------------------------------------------------------

    new_submit_record = staticmethod(_records.new_submit_record)

    @_guarded
    def get_job_content_hash(self, uploaded_content: str | bytes) -> str:
        return _records.job_content_hash(uploaded_content)

    def _save_record(self, record: dict[str, Any], mode: str) -> int:
        if not isinstance(record, dict):
            raise InvalidMeta(None, f"a submit record must be a dict, got {type(record).__name__}")
        suffix = _records.suffix_of_record(record)
        job_id = str(record.get("job_id") or "")
        code, *_ = self._s.save_record(
            keys=[self.keys.record(suffix), self.keys.record_index(_records.canonical_json_hash(job_id))],
            args=[mode, suffix, *encode_fields(job_id, record, max_bytes=self.max_meta_bytes)],
        )
        return int(code)

    @_guarded
    def create_submit_record(self, record: dict[str, Any], fl_ctx: FlCtx = None) -> bool:
        """Store a record unless one with its scope exists (atomic across processes): True if stored."""
        return self._save_record(record, "create") != E_EXISTS

    @_guarded
    def update_submit_record(self, record: dict[str, Any], fl_ctx: FlCtx = None) -> dict[str, Any]:
        """Replace an existing record; raises ``RecordNotFound`` if there is none."""
        if self._save_record(record, "replace") == E_NOT_FOUND:
            raise RecordNotFound(_records.suffix_of_record(record))
        return record

    @_guarded
    def get_submit_record(
        self, study: str, submitter: Any, submit_token: str, fl_ctx: FlCtx = None
    ) -> dict[str, Any] | None:
        fields = self.client.hgetall(self.keys.record(_records.scope_suffix(study, submitter, submit_token)))
        return {k.decode(): orjson.loads(v) for k, v in fields.items()} if fields else None

    @_guarded
    def get_job_by_submit_token(
        self, study: str, submitter: Any, submit_token: str, fl_ctx: FlCtx = None
    ) -> Job | None:
        record = self.get_submit_record(study, submitter, submit_token)
        jid = record.get("job_id") if record else None
        return self.get_job(jid) if jid else None

    @_guarded
    def mark_submit_records_job_deleted(
        self, job_id: str, deleted_by: Any, fl_ctx: FlCtx = None
    ) -> list[dict[str, Any]]:
        """Mark the job's records ``job_deleted`` (with UTC ``deleted_time`` and ``deleted_by``);
        return the records marked now."""
        index = self.keys.record_index(_records.canonical_json_hash(job_id or ""))
        args = [
            dumps(job_id),
            dumps(SubmitRecordState.JOB_DELETED.value),
            dumps(datetime.datetime.now(datetime.timezone.utc).isoformat()),
            dumps(_records.submitter_to_dict(deleted_by)),
        ]
        marked = []
        for suffix in sorted(m.decode() for m in self.client.smembers(index)):
            code, *rest = self._s.mark_record_deleted(keys=[self.keys.record(suffix)], args=args)
            if code == 1:
                marked.append({k.decode(): orjson.loads(v) for k, v in pairs_to_dict(rest[0]).items()})
        return marked

    # -- checks ----------------------------------------------------------------------------------

    @_guarded
    def check_invariants(self) -> list[str]:
        """Check the indexes against the jobs; return the violations found (empty when sound).

        Each job is in exactly one status set, the one its hash says; the queue holds exactly the
        SUBMITTED jobs; no index names a job that does not exist. Reads everything: for tests and
        operators, not for hot paths.
        """
        k = self.keys
        problems: list[str] = []
        members: dict[str, set[str]] = {}
        for status, key in zip(STATUSES, k.status_sets, strict=True):
            members[status] = {m.decode() for m in self.client.sscan_iter(key, count=1000)}
        queue = {m.decode() for m in self.client.zrange(k.queue, 0, -1)}
        all_ids = {m.decode() for m in self.client.zrange(k.jobs, 0, -1)}
        indexed = set().union(*members.values()) | queue | all_ids
        ids = sorted(indexed)
        pipe = self.client.pipeline(transaction=False)
        for jid in ids:
            pipe.hget(k.job(jid), "status")
        stored = dict(zip(ids, pipe.execute(), strict=True))
        for jid in ids:
            raw = stored[jid]
            if raw is None:
                problems.append(f"job {jid!r} is indexed but does not exist")
                continue
            status = orjson.loads(raw)
            if jid not in all_ids:
                problems.append(f"job {jid!r} is missing from the jobs index")
            sets = [s for s, m in members.items() if jid in m]
            if sets != [status]:
                problems.append(f"job {jid!r} has status {status} but is in status sets {sets}")
            if (jid in queue) != (status == RunStatus.SUBMITTED.value):
                problems.append(f"job {jid!r} with status {status} is {'' if jid in queue else 'not '}queued")
        for key in self.client.scan_iter(match=k.job_pattern(), count=1000):
            jid = key.decode()[len(k.prefix) + 4 :]
            if jid not in all_ids:
                problems.append(f"job {jid!r} exists but is in no index")
        leased = {
            m.decode(): float(score) for m, score in self.client.zrange(k.leases, 0, -1, withscores=True)
        }
        owned = {j.decode() for j in self.client.hkeys(k.owners)}
        for jid in sorted(set(leased) | owned):
            if (jid in leased) != (jid in owned):
                problems.append(
                    f"job {jid!r} has {'a lease but no owner' if jid in leased else 'an owner but no lease'}"
                )
            raw = stored.get(jid) or self.client.hget(k.job(jid), "status")
            held = orjson.loads(raw) if raw else None
            if held not in (RunStatus.DISPATCHED.value, RunStatus.RUNNING.value):
                problems.append(f"job {jid!r} is claimed but its status is {held}")
        problems += self._orphan_chunks()
        return problems

    def _orphan_chunks(self) -> list[str]:
        """Chunk keys that no manifest references (quiescent stores only: an upload in progress
        has chunks without a manifest until it commits)."""
        referenced: dict[str, set[str]] = {}
        found = []
        for key in self.client.scan_iter(match=self.keys.chunk_pattern(), count=1000):
            name = key.decode()
            parsed = self.keys.parse_chunk(name)
            if parsed is None:  # another namespace's ("team/prod" for "team")
                continue
            jid = parsed[0]
            if jid not in referenced:
                manifests = self.client.hgetall(self.keys.blobs(jid))
                referenced[jid] = {
                    ck
                    for comp, raw in manifests.items()
                    for ck in chunk_keys(self.keys, jid, comp.decode(), orjson.loads(raw))
                }
            if name not in referenced[jid]:
                found.append(f"chunk {name!r} is referenced by no manifest")
        return found


def _with_manifest(keys: list[Any], args: list[Any], piped: PipedUpload) -> tuple[list[Any], list[Any]]:
    """The create script's keys and arguments, with the manifest of ``piped`` (hashed now)."""
    args[12] = dumps(piped.manifest())
    return keys, args


def _registration_then(writer: Upload, status: str, op: str) -> list[bytes | str]:
    """The create script's ARGV[7..11]: registration, status, op, inline flag, inline bytes."""
    registration, flag, inline = writer.commit_args()
    return [registration, status, op, flag, inline]


def _encodable_path(name: str) -> bool:
    try:
        os.fsencode(name)
    except UnicodeEncodeError:
        return False
    return True


def _split_approvals(jid: str, fields: dict[str, Any], max_bytes: int) -> list[bytes | str]:
    """Take ``approvals`` out of meta fields as one field per reviewer (merged, never replaced
    whole), leaving an empty-dict marker so that a job given ``approvals: {}`` reads back with it."""
    if "approvals" not in fields:
        return []
    approvals = fields["approvals"]
    if not isinstance(approvals, dict):
        raise InvalidMeta(jid, f"approvals must be a dict of reviewer -> [approved, note], got {approvals!r}")
    fields["approvals"] = {}
    return approval_pairs(jid, approvals, max_bytes=max_bytes)


def _is_path(source: BlobSource) -> TypeGuard[str | os.PathLike[str]]:
    """Whether content was given as a file path (bytes, the usual case, skip the ABC check)."""
    return type(source) is not bytes and isinstance(source, str | os.PathLike)


def _consume(path: str | os.PathLike[str]) -> None:
    """NVFlare moves an uploaded file into its store: once stored here, the file is removed."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def _write_atomically(dest: str, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".redisjobs-", dir=os.path.dirname(os.path.abspath(dest)))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


__all__ = ["RedisJobDefManager"]
