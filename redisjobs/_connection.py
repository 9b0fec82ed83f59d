"""Building the redis-py client: URLs, timeouts, the retry policy, a packer for large values.

URLs:

- ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` (TLS; ``?ssl_ca_certs=PATH``,
  ``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs``), ``unix:///path/to/redis.sock``: one
  Redis, as redis-py reads them.
- ``redis+sentinel://[[user]:password@]host:port[,host:port...]/MASTER[/db]`` (and
  ``rediss+sentinel://``): the master that these Sentinels name, found again after a failover.
  ``?sentinel_password=...`` when the Sentinels themselves need one.
- ``redis+cluster://[[user]:password@]host:port[,host:port...]`` (and ``rediss+cluster://``): a
  Redis Cluster, from any of its nodes.

Retries: redis-py repeats a command (or a whole pipeline) that failed on a connection error or a
timeout, backing off exponentially with jitter. That is safe here because every operation is safe
to repeat (see the "Faults" section of the README): scripts recognise their own earlier success
(a job created with the same submit time, a transition already applied, a delete or claim with the
same request id) and answer as the first attempt would have, without a second event.

Packing: with hiredis installed, redis-py packs commands with ``hiredis.pack_command``, which is
fast for small arguments and copies (slowly) a large one: about 1.4 ms per MB here, half of a 1 MB
SET. Commands carrying a large value go through redis-py's pure-Python packer instead, which hands
the value to the socket as it is.
"""

from __future__ import annotations

import os
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis._parsers.encoders import Encoder
from redis.backoff import ExponentialWithJitterBackoff
from redis.connection import PythonRespSerializer
from redis.retry import Retry

try:
    from redis.connection import HiredisRespSerializer
    from redis.utils import HIREDIS_AVAILABLE
except ImportError:  # pragma: no cover - older redis-py
    HIREDIS_AVAILABLE = False
if HIREDIS_AVAILABLE:
    from hiredis import pack_command as _hiredis_pack
#: redis-py's own read_response and send_packed_command: where a connection class overrides
#: them (Sentinel's, fakeredis's, instrumented ones), they are called as they are.
_PLAIN_READ = redis.connection.Connection.read_response
_PLAIN_SEND = redis.connection.Connection.send_packed_command
try:  # what redis-py's hiredis parser's reader returns for an incomplete reply
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NOT_ENOUGH_DATA
except ImportError:  # pragma: no cover - another redis-py layout: the general path
    _NOT_ENOUGH_DATA = None

#: Arguments at least this long are sent without copying (pure-Python packer).
LARGE_ARGUMENT = 16 * 1024

DEFAULT_RETRIES = 3
DEFAULT_BACKOFF_BASE = 0.05
DEFAULT_BACKOFF_CAP = 1.0


class Packer:
    """hiredis's packer for ordinary commands, redis-py's zero-copy one for large values."""

    def __init__(self) -> None:
        encoder = Encoder("utf-8", "strict", False)  # type: ignore[no-untyped-call]
        self._plain = PythonRespSerializer(LARGE_ARGUMENT, encoder.encode)
        self._fast = HiredisRespSerializer() if HIREDIS_AVAILABLE else None

    def pack(self, *args: Any) -> list[bytes | memoryview]:
        if self._fast is not None:
            if _packs_as_is(args):  # the common case
                return [_hiredis_pack(args)]
            for arg in args:
                if isinstance(arg, bytes | bytearray | memoryview) and len(arg) >= LARGE_ARGUMENT:
                    break
            else:
                return self._fast.pack(*args)  # type: ignore[no-any-return]
        return self._plain.pack(*args)  # type: ignore[no-any-return,no-untyped-call]

    def pack_many(self, commands: Sequence[tuple[Any, ...]]) -> list[bytes] | None:
        """Several commands in one buffer, when hiredis packs each of them as it is (see
        ``pack``); else None (the caller packs them one by one)."""
        if self._fast is None or not all(map(_packs_as_is, commands)):
            return None
        return [b"".join(map(_hiredis_pack, commands))]


_PACKER = Packer()


def pack(*args: Any) -> list[bytes | memoryview]:
    """One command packed as ``Packer`` packs it (a large value not copied)."""
    return _PACKER.pack(*args)


def _packs_as_is(args: tuple[Any, ...]) -> bool:
    """Whether hiredis packs this command as it is, checked in one pass: a one-word command name,
    then small bytes, str, int and float arguments."""
    first = args[0]
    if type(first) is not str or " " in first:
        return False
    for arg in args:
        kind = type(arg)
        if kind is bytes:
            if len(arg) >= LARGE_ARGUMENT:
                return False
        elif kind is not str and kind is not int and kind is not float:
            return False
    return True


#: How many times this process is a fork's child, counted at each fork (cheaper to compare than
#: asking for the process id on every call).
_forks = 0


def _forked() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_forked)


class Lane:
    """Connections of the client's own kind (same class and settings: address, TLS, credentials,
    timeouts, retry policy, packer; RESP2), kept apart from its pool, for the hot calls.

    redis-py's pool costs about 15 us of client CPU per command here (a readiness poll of the
    socket, a lock, metrics) and its command path as much again; a bare EVALSHA spends about
    60 us of client CPU in all. A lane takes an idle connection from its own list (atomic under
    the GIL, so it is safe between threads: a thread that finds none makes one), sends, reads,
    and puts it back. Failures are handled as redis-py handles them: the connection's ``Retry``
    repeats a command that failed on a connection error or a timeout, reconnecting first, and a
    connection broken mid-reply disconnects itself. After ``fork`` the child starts afresh.
    """

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._idle: list[Any] = []
        self._forks = _forks
        # RESP2: a hash comes back as the flat array the decoders take, without a dict built
        # and taken apart again (RESP3, redis-py 8's default, answers HGETALL with a map). Not
        # when maintenance notifications were switched on outright (they need RESP3), nor where
        # the connection class refuses it (redis-py 8 without hiredis, maintenance notifications
        # on "auto": a connection is refused when it is made, before any I/O).
        self._kwargs = dict(pool.connection_kwargs)
        maint = self._kwargs.get("maint_notifications_config")
        self.resp2 = False
        if getattr(maint, "enabled", False) is not True:
            try:
                first = pool.connection_class(**{**self._kwargs, "protocol": 2})
            except redis.exceptions.RedisError:
                pass
            else:
                self._kwargs["protocol"], self.resp2 = 2, True
                self._idle.append(first)

    def execute(self, *args: Any) -> Any:
        """Send one command and return its raw reply (no response callbacks)."""
        return self._run(_one, args, None)

    def execute_or_repeat(self, args: tuple[Any, ...], repeat: tuple[Any, ...]) -> Any:
        """``execute(*args)``, but an attempt that redis-py's retry repeats sends ``repeat``
        instead (see ``execute_packed``)."""
        return self._run(_one, args, None, repeat)

    def execute_packed(self, packed: bytes, count: int = 1, repeat: bytes | None = None) -> list[Any]:
        """Send ``count`` commands packed already, one after the other (see ``bulks``), in one
        write, and return their raw replies in order; an error reply is raised once every reply is
        read (the connection stays in step). An attempt that redis-py's retry repeats (a
        connection lost before the replies were read) sends ``repeat`` instead, if given: a script
        can then tell a first run, whose request cannot have run before, from a repeat, which must
        look for the first run's work."""
        again = None if repeat is None else (repeat, count)
        return self._run(_packed, (packed, count), None, again)  # type: ignore[no-any-return]

    def execute_many(self, *commands: tuple[Any, ...], each: _Each | None = None) -> list[Any]:
        """Send several commands in one write and return their raw replies, in order (a pipeline
        without redis-py's pipeline object). An error reply is raised once every reply is read.

        ``each(index, reply)`` is called with every reply as soon as it is read (an error reply as
        its exception object), so that the caller can work on it while the rest arrive. An attempt
        that redis-py's retry repeats (a connection lost mid-way) starts again at index 0: the
        caller starts afresh there."""
        return self._run(_many, commands, each)  # type: ignore[no-any-return]

    def execute_staged(
        self,
        head: Sequence[bytes | memoryview],
        tail: Callable[[], Sequence[bytes | memoryview]],
        count: int,
    ) -> list[Any]:
        """Send ``head`` (packed commands), then what ``tail()`` returns, made while the server
        reads the head, and read ``count`` replies, in order (error replies as exception objects,
        not raised): one round trip. An attempt that redis-py's retry repeats sends the head and
        the same tail again (``tail`` is called once per attempt: it should cache)."""
        return self._run(_staged, (head, tail, count), None)  # type: ignore[no-any-return]

    def stream_per_key(self, name: str, chunks: Sequence[Sequence[bytes]], each: _Each) -> None:
        """One-key commands (a listing's HGETALLs) for each chunk of keys in turn on one connection,
        each chunk packed in one pass by bytes formatting (not one command at a time), the next chunk
        sent before the replies of this one are handed to ``each(k, replies)``: the caller's work
        on a chunk overlaps the server's on the next. At most two chunks are in flight.

        An error reply is raised once the replies of every chunk sent are read (the chunks after
        it are not sent, nor handed over). An attempt that redis-py's retry repeats starts again at
        chunk 0: the caller starts afresh there."""
        packed = [_pack_per_key(name, chunk) for chunk in chunks]
        self._run(_streamed, (packed, [len(chunk) for chunk in chunks]), each)

    def _run(self, exchange: _Exchange, args: Any, each: _Each | None, repeat: Any = None) -> Any:
        """``exchange(connection, args, each)`` on an idle connection (a new one if none is), with
        redis-py's retries (which send ``repeat`` instead of ``args``, if given); the connection
        goes back to the idle list whatever happens."""
        if self._forks != _forks:  # forked since: the parent's sockets are not ours
            self._idle, self._forks = [], _forks
        try:
            conn = self._idle.pop()
        except IndexError:
            conn = self._pool.connection_class(**self._kwargs)
        try:
            # The first attempt outside the retry wrapper (the usual case pays for no closures);
            # a failure is handed to redis-py's Retry as the first of its attempts, so the number
            # of attempts, the backoff and which errors are retried stay redis-py's.
            try:
                return _exchange(conn, exchange, args, each)
            except redis.exceptions.ResponseError:
                raise
            except Exception as error:
                failed: list[Exception] = [error]

            def attempt() -> Any:
                if failed:
                    raise failed.pop()
                return _exchange(conn, exchange, args if repeat is None else repeat, each)

            return conn.retry.call_with_retry(attempt, lambda _error: conn.disconnect())
        finally:
            self._idle.append(conn)

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.disconnect()


_Each = Callable[[int, Any], Any]
_Exchange = Callable[[Any, Any, "_Each | None"], Any]


def _exchange(conn: Any, exchange: _Exchange, args: Any, each: _Each | None) -> Any:
    # connect() first, as redis-py's pool does: a Sentinel-managed connection asks the Sentinels
    # for the master there (sending on an unconnected one would go to the default address).
    if getattr(conn, "_sock", None) is None:  # (connect() itself costs a retry wrapper per call)
        conn.connect()
    elif conn.health_check_interval and time.monotonic() > conn.next_health_check:
        # Before the exchange takes the connection's reader (see _fast_reader): a PING that fails
        # reconnects, with a new parser and reader, and a reply read from the old one never came.
        conn.check_health()
    try:
        return exchange(conn, args, each)
    except redis.exceptions.ResponseError:
        raise  # an error reply, read whole: the connection is fine
    except BaseException:
        conn.disconnect()  # anything else may leave half a reply unread
        raise


def _send(conn: Any, packed: Sequence[bytes | memoryview], reader: Any) -> None:
    """``send_packed_command`` for a connected connection; straight to the socket when ``reader``
    (see ``_fast_reader``) is given, with redis-py's errors. Never a health check: ``_exchange``
    runs the one due before the exchange begins (a PING in the middle would reconnect under the
    reader the exchange holds, or while replies are owed)."""
    sock = conn._sock if reader is not None and type(conn).send_packed_command is _PLAIN_SEND else None
    if sock is None:  # (check_health by keyword, as redis-py's own send_command passes it)
        conn.send_packed_command(packed, check_health=False)
        return
    try:
        for item in packed:
            sock.sendall(item)
    except TimeoutError as e:  # socket.timeout
        raise redis.exceptions.TimeoutError("Timeout writing to socket") from e
    except OSError as e:
        raise redis.exceptions.ConnectionError(f"Error while writing to socket: {e!r}") from e


def bulks(items: Sequence[bytes]) -> bytes:
    """``items`` as RESP bulk strings, one after the other (small bytes, one bytes formatting
    each). Per argument this costs about what hiredis's packer does; it pays where a hot call packs
    the arguments that repeat from call to call once and reuses them (the claim), and skips
    redis-py's check of every argument's type."""
    return b"".join([b"$%d\r\n%b\r\n" % (len(item), item) for item in items])


def bulks_prefixed(prefix: bytes, items: Sequence[bytes]) -> bytes:
    """``bulks([prefix + item for item in items])``; in one join when the items are all of one
    length (job ids of one kind, such as UUIDs), about twice as fast."""
    if not items:
        return b""
    size = len(items[0])
    if min(map(len, items)) != size or max(map(len, items)) != size:
        return bulks([prefix + item for item in items])
    between = b"\r\n$%d\r\n%b" % (len(prefix) + size, prefix)
    return b"%b%b\r\n" % (between[2:], between.join(items))


def _one(conn: Any, args: tuple[Any, ...], _each: Any) -> Any:
    reader = _fast_reader(conn)
    _send(conn, conn.pack_command(*args), reader)
    if reader is None:
        return conn.read_response()
    reply = _read_fast(conn, reader)
    if isinstance(reply, redis.exceptions.ResponseError):
        raise reply
    return reply


def _packed(conn: Any, args: tuple[bytes, int], _each: Any) -> list[Any]:
    packed, count = args
    return _send_and_read(conn, [packed], count, None)


def _many(conn: Any, commands: tuple[tuple[Any, ...], ...], each: _Each | None) -> list[Any]:
    packer = getattr(conn, "_command_packer", None)
    packed = packer.pack_many(commands) if isinstance(packer, Packer) else None
    return _send_and_read(
        conn, packed if packed is not None else conn.pack_commands(commands), len(commands), each
    )


def _staged(conn: Any, args: tuple[Any, Callable[[], Any], int], _each: Any) -> list[Any]:
    head, tail, count = args
    reader = _fast_reader(conn)
    _send(conn, head, reader)
    _send(conn, tail(), reader)
    return _read_many(conn, count, None, reader)


def _send_and_read(
    conn: Any, packed: Sequence[bytes | memoryview], count: int, each: _Each | None
) -> list[Any]:
    """Send ``count`` commands packed already and read their replies; the first error reply is
    raised once every reply is read."""
    reader = _fast_reader(conn)
    _send(conn, packed, reader)
    replies = _read_many(conn, count, each, reader)
    error = _first_error(replies)
    if error is not None:
        raise error
    return replies


def _first_error(replies: list[Any]) -> redis.exceptions.ResponseError | None:
    """The first error reply (read as an exception object) among ``replies``, if any."""
    return next((r for r in replies if isinstance(r, redis.exceptions.ResponseError)), None)


def _pack_per_key(name: str, keys: Sequence[bytes]) -> bytes:
    word = name.encode()
    head = b"*2\r\n$%d\r\n%b\r\n" % (len(word), word)
    return b"".join([b"%b$%d\r\n%b\r\n" % (head, len(key), key) for key in keys])


def _streamed(conn: Any, args: tuple[list[bytes], list[int]], each: _Each | None) -> None:
    """Send packed chunks (``(chunks, how many commands in each)``) one ahead of the replies read,
    handing each chunk's replies to ``each``; the first error reply is raised once every chunk
    sent is read."""
    packed, counts = args
    reader = _fast_reader(conn)
    _send(conn, packed[:1], reader)
    sent, error = 1, None
    for k, n in enumerate(counts):
        if k >= sent:
            break
        if error is None and sent < len(packed):
            _send(conn, packed[sent : sent + 1], reader)
            sent += 1
        replies = _read_many(conn, n, None, reader)
        if error is None:
            error = _first_error(replies)
            if error is None and each is not None:
                _hand_over(conn, each, k, replies)
    if error is not None:
        raise error


def _fast_reader(conn: Any) -> Any:
    """The hiredis reader of a plain RESP2 connection, whose replies can be taken straight from it
    (one call per reply instead of four); None where redis-py's ``read_response`` must do it: a
    connection class that overrides it (Sentinel's, fakeredis's), the Python parser, or RESP3
    (whose push messages redis-py's parser sorts out from the replies)."""
    if _NOT_ENOUGH_DATA is None or type(conn).read_response is not _PLAIN_READ:
        return None
    if conn.protocol not in (2, "2"):
        return None
    parser = getattr(conn, "_parser", None)
    reader = getattr(parser, "_reader", None)
    return reader if reader is not None and hasattr(parser, "read_from_socket") else None


def _read_fast(conn: Any, reader: Any, reply: Any = _NOT_ENOUGH_DATA) -> Any:
    """One reply from ``reader`` (an error reply as an exception object), reading the socket as
    needed, with redis-py's errors for a closed socket or a timeout. ``reply``: what the caller's
    own ``reader.gets()`` just returned, if it called it."""
    if reply is _NOT_ENOUGH_DATA:
        reply = reader.gets()
    while reply is _NOT_ENOUGH_DATA:
        try:
            conn._parser.read_from_socket()  # raises redis-py's errors for a closed socket, a timeout ...
        except OSError as e:  # ... and lets others through, which read_response would wrap
            raise redis.exceptions.ConnectionError(f"Error while reading from the socket: {e!r}") from e
        reply = reader.gets()
    if isinstance(reply, redis.exceptions.ConnectionError):
        raise reply
    if conn.health_check_interval:  # as read_response does: a busy connection needs no PING
        conn.next_health_check = time.monotonic() + conn.health_check_interval
    return reply


def _read_many(conn: Any, n: int, each: _Each | None, reader: Any) -> list[Any]:
    """``n`` replies, error replies as exception objects: straight from ``reader`` (see
    ``_fast_reader``) when given, else one ``read_response`` each."""
    replies: list[Any] = []
    gets = reader.gets if reader is not None else None
    for _ in range(n):
        if gets is not None:
            reply = gets()  # a reply already received: the common case in a batch
            if reply is _NOT_ENOUGH_DATA or isinstance(reply, redis.exceptions.ConnectionError):
                reply = _read_fast(conn, reader, reply)
        else:
            try:
                reply = conn.read_response()
            except redis.exceptions.ResponseError as e:
                reply = e
        replies.append(reply)
        if each is not None:
            _hand_over(conn, each, len(replies) - 1, reply)
    return replies


def _hand_over(conn: Any, each: _Each, index: int, replies: Any) -> None:
    """``each(index, replies)``; whatever it raises drops the connection first, as replies may be
    owed on it (``_exchange`` keeps a connection on a ResponseError, taken for the server's)."""
    try:
        each(index, replies)
    except BaseException:
        conn.disconnect()
        raise


def lane_for(client: Any) -> Lane | None:
    """A lane for a plain client (one Redis, or a Sentinel-managed master), else None: a
    cluster routes by key, and a single-connection client asked for exactly one connection."""
    pool = getattr(client, "connection_pool", None)
    if is_cluster(client) or getattr(client, "connection", None) is not None or pool is None:
        return None
    if not isinstance(pool, redis.ConnectionPool) or getattr(pool, "cache", None) is not None:
        return None  # (a client-side cache wraps the pool's connections in its own proxy)
    return Lane(pool)


def make_retry(retries: int, base: float, cap: float) -> Retry:
    """redis-py's Retry: ``retries`` more attempts after the first, on connection errors and
    timeouts, sleeping a random time up to ``min(cap, base * 2**failures)`` between them."""
    if retries < 0:
        raise ValueError(f"retries must be at least 0, got {retries}")
    return Retry(ExponentialWithJitterBackoff(cap=cap, base=base), retries)


SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
#: Query options of the Sentinel and Cluster URLs passed on to the connections (TLS).
_TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname")


def make_client(url: str, *, socket_timeout: float, socket_connect_timeout: float, retry: Retry) -> Any:
    """A client for ``url`` (see the module's docstring) with explicit timeouts and the given
    retry policy."""
    scheme = url.partition("://")[0].lower()
    common: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_connect_timeout,
        "retry": retry,
    }
    if scheme in SENTINEL_SCHEMES:
        return _sentinel_client(url, common)
    if scheme in CLUSTER_SCHEMES:
        return _cluster_client(url, common)
    return redis.Redis.from_url(url, health_check_interval=30, command_packer=Packer(), **common)


class _Parsed:
    """A multi-host URL: ``scheme://[[user]:password@]host:port[,host:port...][/path][?query]``."""

    def __init__(self, url: str, default_port: int) -> None:
        scheme, _, rest = url.partition("://")
        self.tls = scheme.lower().startswith("rediss")
        rest, _, query = rest.partition("?")
        netloc, _, path = rest.partition("/")
        userinfo, at, hosts = netloc.rpartition("@")
        self.username: str | None = None
        self.password: str | None = None
        if at:
            user, colon, password = userinfo.partition(":")
            self.username = urllib.parse.unquote(user) or None
            self.password = urllib.parse.unquote(password) if colon else None
        self.nodes = [_host_port(h, default_port, url) for h in hosts.split(",") if h]
        if not self.nodes:
            raise ValueError(f"no host in {_redact(url)}")
        self.path = [urllib.parse.unquote(p) for p in path.split("/") if p]
        self.query = {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}

    def tls_options(self) -> dict[str, Any]:
        if not self.tls:
            return {}
        options: dict[str, Any] = {"ssl": True}
        for name in _TLS_OPTIONS:
            if name in self.query:
                value: Any = self.query[name]
                if name == "ssl_check_hostname":
                    value = value.lower() in ("1", "true", "yes")
                options[name] = value
        return options


def _host_port(text: str, default_port: int, url: str) -> tuple[str, int]:
    if text.startswith("["):  # [IPv6]:port
        host, _, port = text[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not port.isdigit() if port else False:
        raise ValueError(f"bad port {port!r} in {_redact(url)}")
    return host, int(port) if port else default_port


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    _userinfo, at, hosts = rest.partition("@")
    return f"{scheme}{sep}***@{hosts}" if at else url


def _sentinel_client(url: str, common: dict[str, Any]) -> Any:
    from redis.sentinel import Sentinel

    parsed = _Parsed(url, 26379)
    if not parsed.path:
        raise ValueError(f"a Sentinel URL names its master: scheme://host:port/MASTER ({_redact(url)})")
    master, db = parsed.path[0], int(parsed.path[1]) if len(parsed.path) > 1 else 0
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": common["socket_timeout"],
        "socket_connect_timeout": common["socket_connect_timeout"],
    }
    if "sentinel_password" in parsed.query:
        sentinel_kwargs["password"] = parsed.query["sentinel_password"]
    sentinel = Sentinel(parsed.nodes, sentinel_kwargs=sentinel_kwargs, **parsed.tls_options())  # type: ignore[no-untyped-call]
    return sentinel.master_for(  # type: ignore[no-untyped-call]
        master,
        db=db,
        username=parsed.username,
        password=parsed.password,
        health_check_interval=30,
        command_packer=Packer(),
        **common,
    )


def _cluster_client(url: str, common: dict[str, Any]) -> Any:
    from redis.cluster import ClusterNode, RedisCluster

    parsed = _Parsed(url, 6379)
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in parsed.nodes],  # type: ignore[no-untyped-call]
        username=parsed.username,
        password=parsed.password,
        **parsed.tls_options(),
        **common,
    )


def is_cluster(client: Any) -> bool:
    """Whether ``client`` is a Redis Cluster client."""
    from redis.cluster import RedisCluster

    return isinstance(client, RedisCluster)
