"""The client redisjobs builds: its packer, its retry policy, and the lane of connections that
single-command calls use."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from typing import Any

import pytest
import redis
from _threads import run_threads
from redis._parsers.encoders import Encoder
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import DataError

import redisjobs._scripts
from redisjobs import RedisJobDefManager, RunStatus
from redisjobs._connection import LARGE_ARGUMENT, Lane, Packer, bulks, bulks_prefixed, lane_for, make_retry
from redisjobs._scripts import LaneScript, library
from redisjobs.server import RedisServer, _cluster_port, find_redis_server


def test_a_large_value_is_handed_to_the_socket_without_a_copy() -> None:
    value = os.urandom(LARGE_ARGUMENT + 1)
    pieces = Packer().pack("SET", "k", value)
    assert any(piece is value for piece in pieces)
    assert b"".join(bytes(p) for p in pieces).endswith(value + b"\r\n")


def test_small_commands_pack_to_the_same_bytes_either_way() -> None:
    args = ("EVALSHA", "a" * 40, 2, "k1", "k2", b"\x00\xff", 1.5, 7)
    small = b"".join(bytes(p) for p in Packer().pack(*args))
    assert small.startswith(b"*8\r\n$7\r\nEVALSHA\r\n")
    assert b"$2\r\n\x00\xff\r\n$3\r\n1.5\r\n$1\r\n7\r\n" in small


@pytest.mark.real
def test_large_values_round_trip_through_the_managers_client(redis_url: str, namespace: str) -> None:
    m = RedisJobDefManager(redis_url, namespace=namespace)
    value = os.urandom(3 * LARGE_ARGUMENT)
    key = m.keys.prefix + "packer-check"
    m.client.set(key, memoryview(value))
    assert m.client.get(key) == value
    m.client.delete(key)
    m.close()


def test_the_retry_policy_is_redis_pys_exponential_backoff_with_jitter() -> None:
    retry = make_retry(4, 0.01, 0.2)
    assert retry.get_retries() == 4
    backoff = retry._backoff
    assert isinstance(backoff, ExponentialWithJitterBackoff)
    waits = [backoff.compute(n) for n in range(1, 12) for _ in range(20)]
    assert all(0 <= w <= 0.2 for w in waits) and len(set(waits)) > 1
    with pytest.raises(ValueError, match="retries"):
        make_retry(-1, 0.01, 0.2)


@pytest.mark.real
def test_a_url_managers_client_has_its_retry_policy_and_timeouts(redis_url: str, namespace: str) -> None:
    m = RedisJobDefManager(
        redis_url, namespace=namespace, retries=2, socket_timeout=0.5, socket_connect_timeout=0.25
    )
    kwargs = m.client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 0.5 and kwargs["socket_connect_timeout"] == 0.25
    assert kwargs["retry"].get_retries() == 2
    assert isinstance(kwargs["command_packer"], Packer)
    m.close()


def test_multi_host_urls_are_parsed() -> None:
    from redisjobs._connection import _Parsed

    p = _Parsed(
        "rediss+sentinel://u%40x:p%3Aw@h1:26380,[::1]:26381,h3/mymaster/2?ssl_ca_certs=/ca.pem", 26379
    )
    assert (p.username, p.password) == ("u@x", "p:w")
    assert p.nodes == [("h1", 26380), ("::1", 26381), ("h3", 26379)]
    assert p.path == ["mymaster", "2"]
    assert p.tls_options() == {"ssl": True, "ssl_ca_certs": "/ca.pem"}
    q = _Parsed("redis+cluster://h:7000", 6379)
    assert (q.username, q.password, q.nodes, q.tls_options()) == (None, None, [("h", 7000)], {})
    with pytest.raises(ValueError, match="no host"):
        _Parsed("redis+cluster://", 6379)
    with pytest.raises(ValueError, match="bad port"):
        _Parsed("redis+cluster://h:x", 6379)


def test_a_sentinel_url_must_name_its_master() -> None:
    m = RedisJobDefManager("redis+sentinel://:secret@127.0.0.1:1")
    with pytest.raises(ValueError, match="names its master") as e:
        m.client  # noqa: B018 - building the client parses the URL
    assert "secret" not in str(e.value)


@pytest.mark.parametrize(
    "args",
    [
        ("EVALSHA", "a" * 40, 3, b"k1", "k2", b"k3", "owner", 600_000, 1, 1764366000.123, -7, 0.1),
        ("HSET", "k", "f", b"\x00" * (LARGE_ARGUMENT - 1)),
        ("SET", "k", bytearray(b"ab")),  # not bytes: the general path
        ("SET", "k", memoryview(b"abc")),
        ("SCRIPT LOAD", "return 1"),  # a two-word command name is split
        ("CONFIG", "GET", "maxmemory-policy"),
        ("SET", "k", "é✓"),
        ("ZADD", "z", 1e20, "m", float("inf"), "n", 2**62, "o"),
    ],
)
def test_the_fast_path_packs_what_redis_pys_own_packer_packs(args: tuple[object, ...]) -> None:
    from redis.connection import PythonRespSerializer

    reference = PythonRespSerializer(LARGE_ARGUMENT, Encoder("utf-8", "strict", False).encode)
    assert b"".join(map(bytes, Packer().pack(*args))) == b"".join(map(bytes, reference.pack(*args)))


def test_a_bool_is_refused_as_redis_py_refuses_it() -> None:
    with pytest.raises(DataError):
        Packer().pack("SET", "k", True)


def test_a_lane_is_made_for_plain_clients_only(redis_url: str) -> None:
    assert isinstance(lane_for(redis.Redis.from_url(redis_url)), Lane)
    assert lane_for(redis.Redis.from_url(redis_url, single_connection_client=True)) is None
    assert lane_for(object()) is None


def test_threads_share_a_managers_lane(make_store) -> None:  # type: ignore[no-untyped-def]
    """Eight threads on one manager: every answer is its own call's, and the lane holds no more
    connections than there were threads."""
    m: RedisJobDefManager = make_store()
    jobs = [m.create({"name": f"j{i}"}, f"content {i}".encode())["job_id"] for i in range(8)]

    def work(n: int) -> None:
        jid = jobs[n]
        for i in range(150):
            m.update_meta(jid, {"counter": i, "thread": n})
            meta = m.get_job(jid).meta
            assert (meta["counter"], meta["thread"]) == (i, n)
            assert m.get_content(meta) == f"content {n}".encode()

    assert run_threads(work, 8, timeout=120) == []
    lane = m._lane
    if lane is not None:  # a cluster client has none
        assert 1 <= len(lane._idle) <= 8
    assert m.check_invariants() == []


def test_scripts_flushed_from_the_server_are_loaded_again(make_store) -> None:  # type: ignore[no-untyped-def]
    m: RedisJobDefManager = make_store()

    def flush() -> None:
        m.client.script_flush()
        if isinstance(m._s.update, LaneScript) and m._s.update.function:
            m.client.function_flush()  # (what a restart without persistence does to the library)

    jid = m.create({"name": "a"}, b"x")["job_id"]
    flush()
    m.set_status(jid, RunStatus.FINISHED_ABORTED)
    assert m.get_job(jid).meta["status"] == "FINISHED:ABORTED"
    queued = m.create({"name": "b"}, b"y")["job_id"]
    assert queued != jid
    assert [j.job_id for j in m.claim("o")] == [queued]
    # Chunked content sent in one write with the create: its chunks are stored before the
    # script is found missing; loaded again, the script alone commits them.
    flush()
    big = os.urandom(m.inline_max + 1)
    piped = m.create({"name": "c"}, big)["job_id"]
    assert m.get_content({"job_id": piped}) == big
    assert m.check_invariants() == []


@pytest.mark.real
@pytest.mark.parametrize("functions", [True, False])
def test_the_scripts_run_as_a_function_library_where_the_server_loads_it(
    redis_url: str, namespace: str, functions: bool
) -> None:
    name, _, names = library()
    admin = redis.Redis.from_url(redis_url)
    m = RedisJobDefManager(redis_url, namespace=namespace, functions=functions)
    try:
        jid = m.create({"name": "a"}, b"x")["job_id"]
        loaded = {lib[b"library_name"].decode(): lib for lib in map(_pairs, admin.function_list())}
        if functions:
            assert {f[b"name"].decode() for f in map(_pairs, loaded[name][b"functions"])} == set(
                names.values()
            )
            assert names["update"] == f"rj_{name.removeprefix('redisjobs_')}_update"
        before = _calls(admin)
        m.set_status(jid, RunStatus.FINISHED_ABORTED)
        m.get_job(jid)
        after = _calls(admin)
        assert (after["fcall"] - before["fcall"], after["evalsha"] - before["evalsha"]) == (
            (1, 0) if functions else (0, 1)
        )
        assert m.get_job(jid).meta["status"] == "FINISHED:ABORTED"
    finally:
        m.close()
        admin.close()


def _libraries(admin: redis.Redis) -> set[str]:
    return {lib[b"library_name"].decode() for lib in map(_pairs, admin.function_list())}


def _other_version() -> tuple[str, str, dict[str, str]]:
    """``library()`` as another version of redisjobs makes it: the same scripts under another digest."""
    name, code, names = library()
    digest = name.removeprefix("redisjobs_")
    return (
        "redisjobs_0123456789ab",
        code.replace(digest, "0123456789ab"),
        {script: function.replace(digest, "0123456789ab") for script, function in names.items()},
    )


@pytest.mark.real
def test_gc_drops_the_function_libraries_of_other_versions_only_when_asked(
    redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = redis.Redis.from_url(redis_url)
    with monkeypatch.context() as patched:  # a server of the older version, which keeps running
        patched.setattr(redisjobs._scripts, "library", _other_version)
        old = RedisJobDefManager(redis_url, namespace=namespace)
        jid = old.create({"name": "a"}, b"x")["job_id"]
    new = RedisJobDefManager(redis_url, namespace=namespace)
    foreign = "#!lua name=redisjobs_notours\nredis.register_function('notours_f', function() return 1 end)"
    admin.function_load(foreign)  # (a name that no version of redisjobs makes)
    try:
        current = library()[0]
        assert {current, "redisjobs_0123456789ab", "redisjobs_notours"} <= _libraries(admin)
        assert new.gc(grace=0).functions_dropped == []  # not asked
        assert "redisjobs_0123456789ab" in _libraries(admin)

        # (containment: a server shared with other tests may hold other versions' libraries too)
        dropped = new.gc(grace=0, old_functions=True).functions_dropped
        assert "redisjobs_0123456789ab" in dropped and current not in dropped
        assert {current, "redisjobs_notours"} <= _libraries(admin)
        assert "redisjobs_0123456789ab" not in _libraries(admin)
        assert "redisjobs_0123456789ab" not in new.gc(grace=0, old_functions=True).functions_dropped

        # The older server's next call loads its library again, and runs.
        before = _calls(admin)
        with monkeypatch.context() as patched:
            patched.setattr(redisjobs._scripts, "library", _other_version)
            assert old.set_status(jid, RunStatus.FINISHED_ABORTED) is True
        assert _calls(admin)["fcall"] - before["fcall"] == 2  # refused once, then run
        assert "redisjobs_0123456789ab" in _libraries(admin)
        assert new.get_job(jid).meta["status"] == "FINISHED:ABORTED"
        assert new.check_invariants() == []
    finally:
        old.close()
        new.close()
        for name in ("redisjobs_0123456789ab", "redisjobs_notours"):
            with contextlib.suppress(redis.exceptions.ResponseError):
                admin.function_delete(name)
        admin.close()


def test_gc_leaves_this_versions_function_library(store: RedisJobDefManager) -> None:
    jid = store.create({"name": "a"}, b"x")["job_id"]
    assert library()[0] not in store.gc(grace=0, old_functions=True).functions_dropped
    assert store.set_status(jid, RunStatus.FINISHED_ABORTED) is True


def _pairs(flat: list[Any]) -> dict[bytes, Any]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _calls(admin: redis.Redis) -> dict[str, int]:
    stats = admin.info("commandstats")
    return {c: int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("fcall", "evalsha")}


@pytest.mark.real
def test_close_disconnects_the_lane(redis_url: str, namespace: str) -> None:
    m = RedisJobDefManager(redis_url, namespace=namespace)
    m.get_job("absent")
    assert m._lane is not None and len(m._lane._idle) == 1
    conn = m._lane._idle[0]
    assert conn._sock is not None
    m.close()
    assert conn._sock is None and m._lane._idle == []


@pytest.mark.real
def test_a_lane_sends_several_commands_in_one_write(redis_url: str, namespace: str) -> None:
    m = RedisJobDefManager(redis_url, namespace=namespace)
    m.client.ping()
    lane = m._lane
    assert lane is not None
    key = m.keys.prefix + "lane-check"
    assert lane.execute_many(("SET", key, "1"), ("INCR", key), ("GET", key)) in (
        [b"OK", 2, b"2"],
        [True, 2, b"2"],
    )
    # An error reply is raised after every reply is read: the connection stays in step.
    with pytest.raises(redis.exceptions.ResponseError):
        lane.execute_many(("HSET", key, "f", "v"), ("GET", key))
    assert lane.execute("GET", key) == b"2"
    m.client.delete(key)
    m.close()


def _per_key(lane: Lane, keys: list[bytes]) -> list[object]:
    """The HGETALL replies of ``keys``, streamed as one chunk."""
    got: list[object] = []
    lane.stream_per_key("HGETALL", [keys], lambda _k, replies: got.extend(replies))
    return got


@pytest.mark.real
@pytest.mark.parametrize("parser", ["hiredis", "python"])
def test_one_key_commands_packed_in_one_pass_answer_as_a_batch_does(
    redis_url: str, namespace: str, parser: str
) -> None:
    """``stream_per_key`` (a listing's HGETALLs), a chunk at a time, sends the bytes a batch of the
    same commands would, gets the same replies, and raises an error reply only once every reply is
    read."""
    from redis._parsers import _HiredisParser, _RESP2Parser

    cls = _HiredisParser if parser == "hiredis" else _RESP2Parser
    lane = Lane(redis.ConnectionPool.from_url(redis_url, parser_class=cls, protocol=2))
    keys = [f"rj:{{{namespace}}}:per-key-{i}".encode() for i in range(3)] + ["rj:{x}:ünï ✓".encode()]
    for i, key in enumerate(keys[:2]):
        lane.execute("HSET", key, "n", str(i), "big", "x" * 70_000)
    lane.execute("SET", keys[2], "a string")
    assert _per_key(lane, keys[:2] + keys[3:]) == lane.execute_many(
        ("HGETALL", keys[0]), ("HGETALL", keys[1]), ("HGETALL", keys[3])
    )
    assert _per_key(lane, [keys[3]]) == [[]]
    with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
        _per_key(lane, keys)  # the third is a string
    assert lane.execute("HGET", keys[0], "n") == b"0"  # still in step after the error reply
    lane.execute("DEL", *keys)
    lane.close()


@pytest.mark.real
@pytest.mark.parametrize("parser", ["hiredis", "python"])
def test_streamed_chunks_answer_as_one_batch_with_the_next_chunk_sent_before_each_is_handed_over(
    redis_url: str, namespace: str, parser: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``stream_per_key`` hands over each chunk's replies, the same as one batch gives, once the
    next chunk is sent (two in flight, never more); with a health check due, no PING goes out
    while replies are owed."""
    from redis._parsers import _HiredisParser, _RESP2Parser

    from redisjobs import _connection

    cls = _HiredisParser if parser == "hiredis" else _RESP2Parser
    lane = Lane(
        redis.ConnectionPool.from_url(redis_url, parser_class=cls, protocol=2, health_check_interval=30)
    )
    keys = [f"rj:{{{namespace}}}:stream-{i}".encode() for i in range(7)]
    for i, key in enumerate(keys[:6]):
        lane.execute("HSET", key, "n", str(i), "big", "x" * (40_000 if i == 2 else 10))
    chunks = [keys[0:3], keys[3:6], keys[6:7]]
    sends: list[int] = []
    real_send = _connection._send

    def send(conn, *args, **kwargs):  # type: ignore[no-untyped-def]
        sends.append(len(sends))
        conn.next_health_check = 0.0  # due at every send: the first may PING, the later must not
        real_send(conn, *args, **kwargs)

    monkeypatch.setattr(_connection, "_send", send)
    handed: list[tuple[int, int, list[object]]] = []
    lane.stream_per_key("HGETALL", chunks, lambda k, replies: handed.append((k, len(sends), replies)))
    assert [(k, n) for k, n, _ in handed] == [(0, 2), (1, 3), (2, 3)]
    assert [r for _, _, replies in handed for r in replies] == lane.execute_many(
        *[("HGETALL", k) for k in keys]
    )
    assert handed[2][2] == [[]]  # the missing key
    lane.execute("DEL", *keys)
    lane.close()


@pytest.mark.real
def test_an_error_reply_in_a_stream_is_raised_once_every_chunk_sent_is_read(
    redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chunk with the error reply and those after it are not handed over, no chunk is sent
    after it, and the connection stays in step."""
    from redisjobs import _connection

    lane = Lane(redis.ConnectionPool.from_url(redis_url, protocol=2))
    keys = [f"rj:{{{namespace}}}:stream-err-{i}".encode() for i in range(8)]
    for key in keys:
        lane.execute("HSET", key, "n", "1")
    lane.execute("DEL", keys[3])
    lane.execute("SET", keys[3], "a string")
    sends: list[int] = []
    real_send = _connection._send
    monkeypatch.setattr(
        _connection, "_send", lambda *a, **k: (sends.append(len(sends)), real_send(*a, **k))[1]
    )
    handed: list[int] = []
    with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
        lane.stream_per_key(
            "HGETALL", [keys[i : i + 2] for i in range(0, 8, 2)], lambda k, _r: handed.append(k)
        )
    assert handed == [0] and len(sends) == 3
    assert lane.execute("HGET", keys[0], "n") == b"1"  # still in step
    lane.execute("DEL", *keys)
    lane.close()


@pytest.mark.real
@pytest.mark.parametrize("error", [ValueError, redis.exceptions.ResponseError])
def test_a_caller_failing_on_a_chunk_leaves_no_reply_owed_on_the_lane(
    redis_url: str, namespace: str, error: type[Exception]
) -> None:
    """When ``each`` raises while the next chunk is in flight, its error reaches the caller as it
    is (not retried), and the connection, which still owed replies, is not reused as it was: the
    next call reads its own reply. Even for a ResponseError, which from the server would mean a
    reply read whole."""
    lane = Lane(redis.ConnectionPool.from_url(redis_url, protocol=2, retry=make_retry(2, 0.001, 0.01)))
    keys = [f"rj:{{{namespace}}}:stream-fail-{i}".encode() for i in range(6)]
    for i, key in enumerate(keys):
        lane.execute("HSET", key, "n", str(i))
    calls: list[int] = []

    def each(k: int, _replies: list[object]) -> None:
        calls.append(k)
        raise error("the caller cannot use this chunk")

    with pytest.raises(error, match="cannot use"):
        lane.stream_per_key("HGETALL", [keys[i : i + 2] for i in range(0, 6, 2)], each)
    assert calls == [0]
    assert lane.execute("HGET", keys[5], "n") == b"5"
    assert _per_key(lane, keys[:1]) == [[b"n", b"0"]]
    lane.execute("DEL", *keys)
    lane.close()


@pytest.mark.real
def test_a_stream_whose_connection_is_killed_midway_starts_again_at_chunk_0(
    redis_url: str, namespace: str
) -> None:
    """redis-py's retry repeats the whole stream on a new connection; the caller, told chunk 0
    again, starts afresh and ends with every reply once."""
    lane = Lane(redis.ConnectionPool.from_url(redis_url, protocol=2, retry=make_retry(2, 0.001, 0.01)))
    keys = [f"rj:{{{namespace}}}:stream-kill-{i}".encode() for i in range(12)]
    for i, key in enumerate(keys):
        lane.execute("HSET", key, "n", str(i))
    admin = redis.Redis.from_url(redis_url)
    streaming = lane.execute("CLIENT", "ID")  # the lane's one connection, which streams next
    got: list[object] = []
    starts: list[int] = []

    def each(k: int, replies: list[object]) -> None:
        if k == 0:
            starts.append(len(got))
            got.clear()
        if k == 1 and len(starts) == 1:
            assert admin.client_kill_filter(_id=streaming) == 1
        got.extend(replies)

    lane.stream_per_key("HGETALL", [keys[i : i + 2] for i in range(0, 12, 2)], each)
    assert len(starts) == 2 and starts[0] == 0 and starts[1] >= 4  # chunks read before the loss
    assert got == [[b"n", str(i).encode()] for i in range(12)]
    admin.close()
    lane.execute("DEL", *keys)
    lane.close()


@pytest.mark.real
@pytest.mark.parametrize("parser", ["hiredis", "python"])
def test_many_replies_read_the_same_with_either_parser(redis_url: str, namespace: str, parser: str) -> None:
    from redis._parsers import _HiredisParser, _RESP2Parser

    cls = _HiredisParser if parser == "hiredis" else _RESP2Parser
    lane = Lane(redis.ConnectionPool.from_url(redis_url, parser_class=cls, protocol=2))
    key = f"rj:{{{namespace}}}:parser-check"
    lane.execute("HSET", key, "a", "1", "b", "x" * 100_000)  # a reply longer than one socket read
    *hashes, last = lane.execute_many(*[("HGETALL", key)] * 50, ("HGET", key, "a"))
    assert last == b"1" and len(hashes) == 50
    for flat in hashes:  # (a hash holding a long value keeps no field order)
        assert dict(zip(flat[0::2], flat[1::2], strict=True)) == {b"a": b"1", b"b": b"x" * 100_000}
    with pytest.raises(redis.exceptions.ResponseError):
        lane.execute_many(("GET", key), ("HGET", key, "a"))
    assert lane.execute("HGET", key, "a") == b"1"  # still in step after the error reply
    lane.execute("DEL", key)
    lane.close()


@pytest.mark.real
@pytest.mark.parametrize("parser", ["hiredis", "python"])
def test_commands_packed_ahead_answer_in_order_and_an_error_comes_after_every_reply(
    redis_url: str, namespace: str, parser: str
) -> None:
    from redis._parsers import _HiredisParser, _RESP2Parser

    cls = _HiredisParser if parser == "hiredis" else _RESP2Parser
    lane = Lane(redis.ConnectionPool.from_url(redis_url, parser_class=cls, protocol=2))
    key = f"rj:{{{namespace}}}:packed-check".encode()
    rpush = b"*4\r\n" + bulks([b"RPUSH", key, b"a", b"b"])
    lrange = b"*4\r\n" + bulks([b"LRANGE", key, b"0", b"-1"])
    assert lane.execute_packed(rpush + lrange, 2) == [2, [b"a", b"b"]]
    with pytest.raises(redis.exceptions.ResponseError):  # (HGET of a list: WRONGTYPE)
        lane.execute_packed(b"*3\r\n" + bulks([b"HGET", key, b"f"]) + rpush, 2)
    assert lane.execute("LLEN", key) == 4  # the command after the error ran, and its reply was read
    lane.execute("DEL", key)
    lane.close()


@pytest.mark.parametrize(
    "items", [[], [b"a"], [b"ab", b"cd", b"ef"], [b"ab", b"c"], [b"c", b"ab"], [b"abc", b"d", b"efg"]]
)
def test_keys_packed_with_a_prefix_in_one_join_are_the_keys_packed_one_by_one(items: list[bytes]) -> None:
    prefix = b"rj:{x}:job:"
    assert bulks_prefixed(prefix, items) == bulks([prefix + item for item in items])


@pytest.mark.real
def test_a_lane_speaking_resp3_gives_the_same_answers(redis_url: str, namespace: str) -> None:
    """Where RESP3 is required (maintenance notifications switched on), a lane keeps it: hashes
    come back as maps, and reads answer the same."""
    m = RedisJobDefManager(redis_url, namespace=namespace, batch_size=2)  # (the queue read in pages)
    jobs = [m.create({"name": f"j{i}", "priority": i % 3}, b"x")["job_id"] for i in range(5)]
    expected = ([m.get_job(j).meta for j in jobs], [j.job_id for j in m.get_jobs_to_schedule()])
    assert len(expected[1]) == 5
    assert m._lane is not None
    m._lane.close()
    m._lane._kwargs["protocol"], m._lane.resp2 = 3, False
    assert isinstance(m._lane.execute("HGETALL", m.keys.job(jobs[0])), dict)
    assert ([m.get_job(j).meta for j in jobs], [j.job_id for j in m.get_jobs_to_schedule()]) == expected
    m.close()


@pytest.mark.real
def test_without_hiredis_the_lane_keeps_the_clients_protocol(redis_url: str, namespace: str) -> None:
    """redis-py 8 without hiredis refuses a RESP2 connection while maintenance notifications are on
    "auto" (the README's demo, in a fresh environment, found it): the lane then keeps RESP3."""
    from redis._parsers import _RESP2Parser

    client = redis.Redis.from_url(redis_url, parser_class=_RESP2Parser)  # as without hiredis
    m = RedisJobDefManager(client=client, namespace=namespace, batch_size=2)  # (the queue read in pages)
    jobs = [m.create({"name": f"j{i}"}, b"x" * 300_000)["job_id"] for i in range(3)]
    assert m._lane is not None
    assert [j.job_id for j in m.get_jobs_to_schedule()] == jobs
    assert m.get_job(jobs[0]).meta["name"] == "j0"
    assert m.get_content({"job_id": jobs[1]}) == b"x" * 300_000
    m.claim("w")
    m.close()


@pytest.mark.real
def test_a_lane_whose_connection_was_killed_reconnects_and_answers(redis_url: str, namespace: str) -> None:
    """The first attempt of a call goes straight to the socket; a connection the server dropped
    fails it, and redis-py's retry reconnects and sends again."""
    m = RedisJobDefManager(redis_url, namespace=namespace)
    jid = m.create({"name": "k"}, b"x")["job_id"]
    assert m._lane is not None and m._lane._idle
    admin = redis.Redis.from_url(redis_url)
    assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
    assert m.get_job(jid).meta["name"] == "k"  # a read, after the kill
    m.set_status(jid, RunStatus.DISPATCHED)  # a script, after another kill
    admin.client_kill_filter(_type="normal", skipme=True)
    assert m.get_job(jid).status == RunStatus.DISPATCHED.value
    admin.close()
    m.close()


class _Attempts(redis.Connection):
    made = 0

    def connect(self) -> None:
        type(self).made += 1
        super().connect()


def test_a_lane_makes_as_many_attempts_as_its_retry_allows() -> None:
    """The first attempt, made outside redis-py's Retry, counts as one of its attempts."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pool = redis.ConnectionPool(
        host="127.0.0.1", port=port, connection_class=_Attempts, retry=Retry(NoBackoff(), 2)
    )
    lane = Lane(pool)
    _Attempts.made = 0
    with pytest.raises(redis.exceptions.ConnectionError):
        lane.execute("PING")
    assert _Attempts.made == 3
    _Attempts.made = 0
    with pytest.raises(redis.exceptions.ConnectionError):
        lane.execute_many(("PING",), ("PING",))
    assert _Attempts.made == 3


@pytest.mark.real
def test_a_lane_connection_idle_past_its_health_check_is_checked_first(redis_url: str) -> None:
    """Past ``health_check_interval`` a call goes through redis-py's path, which PINGs first (and
    reconnects if the PING fails); a busy connection sends no PING."""
    lane = Lane(redis.ConnectionPool.from_url(redis_url, health_check_interval=30))
    assert lane.execute("ECHO", "a") == b"a"
    conn = lane._idle[0]
    pings = []
    real = conn._send_ping
    conn._send_ping = lambda: (pings.append(1), real())[1]
    assert lane.execute("ECHO", "b") == b"b" and pings == []
    conn.next_health_check = 0.0  # as if idle for longer than the interval
    assert lane.execute("ECHO", "c") == b"c" and pings == [1]
    assert lane.execute("ECHO", "d") == b"d" and pings == [1]  # the read pushed the next check back
    lane.close()


def test_several_commands_pack_to_the_bytes_of_one_pack_each() -> None:
    packer = Packer()
    commands = [("HGETALL", b"rj:{n}:job:a"), ("GETRANGE", "k", 0, 262_143), ("HGET", "h", "é✓")]
    packed = packer.pack_many(commands)
    assert packed is not None and len(packed) == 1
    assert packed[0] == b"".join(bytes(p) for c in commands for p in packer.pack(*c))
    assert packer.pack_many([("SET", "k", memoryview(b"v"))]) is None  # the general path
    assert packer.pack_many([("SET", "k", b"v" * LARGE_ARGUMENT)]) is None


@pytest.mark.real
@pytest.mark.parametrize("how", ["execute", "execute_many", "stream_per_key"])
def test_a_health_check_that_reconnects_does_not_leave_a_call_reading_the_old_connection(
    redis_url: str, namespace: str, how: str
) -> None:
    # A connection idle past its health check interval is PINGed before its next call. When the
    # server dropped it meanwhile, the PING reconnects, with a new parser: the call must read its
    # reply there (it used to wait on the old one for the socket timeout, then send the call again).
    import time

    retry = make_retry(3, 0.05, 1)
    client = redis.Redis.from_url(
        redis_url, health_check_interval=1, socket_timeout=3, command_packer=Packer(), retry=retry
    )
    admin = redis.Redis.from_url(redis_url)
    key = f"{namespace}:counter"
    lane = Lane(client.connection_pool)
    try:
        assert lane.execute("INCR", key) == 1
        admin.client_kill_filter(_id=lane.execute("CLIENT", "ID"))  # the lane's one connection
        time.sleep(1.1)  # its health check is due
        start = time.monotonic()
        if how == "execute":
            assert lane.execute("INCR", key) == 2
        elif how == "execute_many":
            assert lane.execute_many(("INCR", key), ("GET", key)) == [2, b"2"]
        else:
            got: list[Any] = []
            lane.stream_per_key("INCR", [[key.encode()]], lambda _k, replies: got.extend(replies))
            assert got == [2]
        assert time.monotonic() - start < 1.5  # no socket timeout
        assert admin.get(key) == b"2"  # sent once
    finally:
        lane.close()
        admin.delete(key)
        admin.close()
        client.close()


@pytest.mark.real
def test_a_server_that_refuses_scripts_on_two_slots_gets_blob_commits_without_the_chunk_keys() -> None:
    """One endpoint in front of several shards (a sharding proxy; here a one-node Redis Cluster
    reached as a plain server) refuses a script whose keys lie in two hash slots (CROSSSLOT). A
    blob sent with its commit names its chunk keys for the script to check: the commit is sent
    again without them, its chunks being known stored, and later blobs are staged first."""
    binary = find_redis_server()
    assert binary is not None
    server = RedisServer(binary, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                         port=_cluster_port())  # fmt: skip
    admin = redis.Redis(port=server.port)
    m = RedisJobDefManager(server.url, namespace="two-slots", chunk_size=1024, inline_max=0)
    try:
        admin.execute_command("CLUSTER", "ADDSLOTSRANGE", "0", "16383")
        deadline = time.monotonic() + 10
        while b"cluster_state:ok" not in admin.execute_command("CLUSTER", "INFO"):
            assert time.monotonic() < deadline, "the one-node cluster did not come up"
            time.sleep(0.05)
        content, workspace, later = os.urandom(3000), os.urandom(2500), os.urandom(3500)
        jid = m.create({"name": "a"}, content)["job_id"]
        assert m._s.create.cross_slot is False
        m.save_workspace(jid, workspace)
        assert m._s.commit_blob.cross_slot is False
        second = m.create({"name": "b"}, later)["job_id"]
        assert m.get_content({"job_id": jid}) == content
        assert m.get_storage_component(jid, "workspace") == workspace
        assert m.get_content({"job_id": second}) == later
        assert m.client.zcard(m.keys.uploads) == 0
        assert m.check_invariants() == []
    finally:
        m.close()
        admin.close()
        server.stop()
