"""Faults the store must notice and survive, against a real redis-server (issue 8, item 2).

* an evicting ``maxmemory-policy`` is warned about;
* a server killed with SIGKILL and restarted on its AOF: acknowledged writes survive, and the same
  manager goes on by itself;
* connections cut at random, and replies lost after the server applied the command: each call
  is done once, or raises ``StoreUnavailable`` leaving the old value or the new one, whole;
* a paused server (SIGSTOP): every caller gets ``StoreUnavailable`` within a bound, none hangs;
* out of memory: ``StoreFull``, nothing half-written, the old value intact.

Servers of our own are started where a test kills, pauses or starves one; the cut tests put a
proxy (``tests/_proxy.py``) between the manager and the session's server. Every loop is bounded,
every thread joined with a timeout, every server stopped in a ``finally`` (a stopped one resumed
first).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import urllib.parse
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from _proxy import Proxy

import redisjobs
from redisjobs import BlobNotFound, RedisJobDefManager, RunStatus
from redisjobs.server import RedisServer, find_redis_server

pytestmark = pytest.mark.real

SUBMITTED = RunStatus.SUBMITTED.value
APPROVED = RunStatus.APPROVED.value
DISPATCHED = RunStatus.DISPATCHED.value
ABORTED = RunStatus.FINISHED_ABORTED.value
OWNER = "server-a"
#: Small chunks and no inline blobs: every blob travels as several chunk pipelines and a commit.
CHUNKED: dict[str, Any] = {"chunk_size": 1024, "inline_max": 0}

EventRow = tuple[str, str, str]


def _binary() -> str:
    binary = find_redis_server()
    assert binary is not None, "no redis-server: apt-get install redis-server"
    return binary


def _address(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


def _server_name(url: str) -> str:
    host, port = _address(url)
    return f"{host}:{port}"


def _check_unavailable(error: BaseException, op: str, server: str, jid: str | None = None) -> None:
    """``StoreUnavailable``, catchable as both roots, naming the operation, the job and the server."""
    assert isinstance(error, redisjobs.StoreUnavailable), f"{type(error).__name__}: {error}"
    assert isinstance(error, redisjobs.RedisJobsError)
    assert isinstance(error, redis.exceptions.ConnectionError)
    message = str(error)
    assert op in message, f"the operation {op!r} is not named: {message}"
    assert server in message, f"the server {server} is not named: {message}"
    assert jid is None or jid in message, f"the job {jid!r} is not named: {message}"


def _events_by_job(m: RedisJobDefManager) -> dict[str, list[EventRow]]:
    out: dict[str, list[EventRow]] = {}
    for e in m.events(count=1_000_000):
        out.setdefault(e.jid, []).append((e.op, e.old, e.new))
    return out


def _sound(m: RedisJobDefManager) -> None:
    """Indexes agree with the jobs, and once gc() ran, no chunk is left unreferenced (a failed upload
    may leave chunks behind for gc; nothing else may be off)."""
    assert [p for p in m.check_invariants() if not p.startswith("chunk ")] == []
    m.gc(grace=0)
    assert m.check_invariants() == []


def test_an_evicting_maxmemory_policy_is_warned_about_at_start_up() -> None:
    server = RedisServer(_binary(), "--maxmemory-policy", "allkeys-lru")
    try:
        m = RedisJobDefManager(server.url, namespace="evict")
        with pytest.warns(RuntimeWarning, match="allkeys-lru.*noeviction"):
            m.client.ping()  # connecting checks the policy
        m.close()
        m.client.config_set("maxmemory-policy", "noeviction")
        quiet = RedisJobDefManager(server.url, namespace="evict")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            quiet.client.ping()
        quiet.close()
    finally:
        server.stop()


# -- the proxy itself ----------------------------------------------------------------------------


def test_the_proxy_forwards_stalls_loses_replies_and_cuts(redis_url: str, namespace: str) -> None:
    """The harness: what the fault tests rely on the proxy for, seen by a bare redis-py client."""
    key = f"rj:{{{namespace}}}:proxy"
    big = os.urandom(3_000_000)  # several socket buffers each way
    host, port = _address(redis_url)
    direct = redis.Redis(host=host, port=port)
    with Proxy(port, host) as proxy:
        no_retry = redis.Redis.from_url(
            proxy.url, socket_timeout=0.3, retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0)
        )
        blocker = redis.Redis.from_url(
            proxy.url, socket_timeout=5.0, retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0)
        )
        waiter: threading.Thread | None = None
        try:
            assert no_retry.set(key, big)
            assert no_retry.get(key) == big
            # A reply lost: the server applied the command, the client sees the connection reset.
            proxy.lose_replies(b"INCR")
            with pytest.raises(redis.exceptions.ConnectionError):
                no_retry.incr(key + ":n")
            assert proxy.replies_lost == 1 and proxy.lose_pending == 0
            assert no_retry.get(key + ":n") == b"1"
            # A stall: no byte moves until resume().
            proxy.pause()
            started = time.monotonic()
            with pytest.raises(redis.exceptions.TimeoutError):
                no_retry.get(key)
            assert time.monotonic() - started < 2
            proxy.resume()
            assert no_retry.get(key) == big
            # A cut mid-command: a BLPOP waits at the server when every connection is reset.
            outcome: list[BaseException | None] = []

            def blpop() -> None:
                try:
                    blocker.blpop([key + ":list"], timeout=3)
                    outcome.append(None)
                except BaseException as e:
                    outcome.append(e)

            waiter = threading.Thread(target=blpop, daemon=True)
            waiter.start()
            for _ in range(200):  # until the server has it (at most 2 s)
                if any(c.get("cmd") == "blpop" for c in direct.client_list()):
                    break
                time.sleep(0.01)
            assert proxy.cut() >= 1
            waiter.join(timeout=5)
            assert len(outcome) == 1 and isinstance(outcome[0], redis.exceptions.ConnectionError), outcome
            assert proxy.cut_in_flight >= 1
            assert no_retry.get(key) == big  # a new connection works
        finally:
            proxy.resume()
            if waiter is not None:
                waiter.join(timeout=5)
            no_retry.close()
            blocker.close()
            direct.unlink(key, key + ":n")
            direct.close()
    assert not proxy.running


# -- the manager under faults: one job's life as a list of steps ----------------------------------


@dataclass
class Step:
    """One public call, the events it appends for its job, and a check of what it returned."""

    op: str
    call: Callable[[], object]
    events: list[EventRow]
    check: Callable[[Any], bool] | None = None


@dataclass
class Run:
    """A job's steps as far as they went: ``done`` acknowledged; if ``unknown``, ``steps[done]``
    raised ``StoreUnavailable`` (applied or not) and the run stopped there."""

    jid: str
    steps: list[Step]
    content: bytes
    workspace: bytes
    #: the ``step`` meta value that update_meta writes
    step: int
    done: int = 0
    unknown: bool = False

    @property
    def finished(self) -> bool:
        return self.done == len(self.steps)

    def possible_events(self) -> list[list[EventRow]]:
        acked = [row for step in self.steps[: self.done] for row in step.events]
        if self.unknown:
            return [acked, acked + self.steps[self.done].events]
        return [acked]


def _life(m: RedisJobDefManager, jid: str, priority: int, delete: bool) -> Run:
    """Create, read, approve, update, claim, release, save a workspace, read it, abort, maybe delete.

    ``priority`` must exceed every queued job's, so that the claim takes this one.
    """
    content = f"content of {jid} ".encode() * 200
    workspace = os.urandom(3000)
    steps = [
        Step("create", lambda: m.create({"job_id": jid, "priority": priority}, content),
             [("create", "", SUBMITTED)]),
        Step("get_content", lambda: m.get_content({"job_id": jid}), [], lambda got: got == content),
        Step("set_approval", lambda: m.set_approval(jid, "alice", True, f"fine {jid}"),
             [("approval", "", "approved:alice")],
             lambda meta: meta["approvals"] == {"alice": [True, f"fine {jid}"]}),
        Step("update_meta", lambda: m.update_meta(jid, {"step": priority}), []),
        Step("claim", lambda: m.claim(OWNER, lease=120), [("claim", SUBMITTED, DISPATCHED)],
             lambda jobs: [j.job_id for j in jobs] == [jid]),
        Step("release", lambda: m.release(jid, OWNER), [("status", DISPATCHED, SUBMITTED)]),
        Step("save_workspace", lambda: m.save_workspace(jid, workspace), []),
        Step("get_storage_component", lambda: m.get_storage_component(jid, "workspace"), [],
             lambda got: got == workspace),
        Step("set_status", lambda: m.set_status(jid, ABORTED), [("status", SUBMITTED, ABORTED)]),
    ]  # fmt: skip
    if delete:
        steps.append(Step("delete", lambda: m.delete(jid), [("delete", ABORTED, "")]))
    return Run(jid, steps, content, workspace, priority)


def _drive(run: Run, server: str, must_succeed: Callable[[], bool] = lambda: False) -> None:
    """Take the run's steps in order until one raises ``StoreUnavailable`` (unless ``must_succeed()``
    said, before the call, that none may). Any other error fails the test."""
    for step in run.steps:
        strict = must_succeed()
        try:
            got = step.call()
        except redisjobs.StoreUnavailable as e:
            assert not strict, f"{step.op} of {run.jid} failed after the server was back: {e}"
            _check_unavailable(e, step.op, server, None if step.op == "claim" else run.jid)
            run.unknown = True
            return
        assert step.check is None or step.check(got), f"{step.op} of {run.jid} returned {got!r}"
        run.done += 1


def _verify(m: RedisJobDefManager, runs: list[Run]) -> None:
    """What each run acknowledged is there, exactly once; what it left unknown is there whole or
    not at all."""
    events = _events_by_job(m)
    for run in runs:
        seen = events.get(run.jid, [])
        assert seen in run.possible_events(), f"{run.jid}: events {seen}, expected {run.possible_events()}"
        acked = {step.op for step in run.steps[: run.done]}
        pending = run.steps[run.done].op if run.unknown else None
        job = m.get_job(run.jid)
        created = bool(seen) and seen[0][0] == "create"
        deleted = bool(seen) and seen[-1][0] == "delete"
        assert (job is not None) == (created and not deleted), f"{run.jid}: job {job}, events {seen}"
        if pending not in ("claim", "release"):
            assert m.lease_of(run.jid) is None, run.jid
        if job is None:
            continue
        assert m.get_content({"job_id": run.jid}) == run.content
        try:
            workspace: bytes | None = m.get_storage_component(run.jid, "workspace")
        except BlobNotFound:
            workspace = None
        assert workspace == run.workspace if "save_workspace" in acked else workspace in (None, run.workspace)
        if "set_approval" in acked:
            assert job.meta["approvals"] == {"alice": [True, f"fine {run.jid}"]}
        if "update_meta" in acked:
            assert job.meta["step"] == run.step
        if "set_status" in acked:
            assert job.meta["status"] == ABORTED


# -- SIGKILL, AOF, restart -----------------------------------------------------------------------


def test_acknowledged_writes_survive_a_sigkill_and_the_same_manager_reconnects(tmp_path: Path) -> None:
    binary = _binary()
    data = tmp_path / "data"
    data.mkdir()
    aof = ("--appendonly", "yes", "--appendfsync", "always", "--dir", str(data))
    redis_server = RedisServer(binary, *aof)
    server = _server_name(redis_server.url)
    # Enough retries to ride out a restart (~0.1-0.3 s); the backoff is capped well below the bound.
    m = RedisJobDefManager(
        redis_server.url, namespace="aof", retries=10, backoff_base=0.02, backoff_cap=0.3,
        socket_timeout=2.0, socket_connect_timeout=1.0, **CHUNKED,
    )  # fmt: skip
    rng = random.Random(8)
    going, restarted, cancelled = threading.Event(), threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def kill_and_restart() -> None:
        try:
            if not going.wait(timeout=10):
                raise TimeoutError("the operations never started")
            if cancelled.is_set():
                return
            time.sleep(rng.uniform(0.0, 0.05))  # lands in the middle of some job's steps
            redis_server.kill()
            redis_server.restart()
            restarted.set()
        except BaseException as e:
            errors.append(e)

    killer = threading.Thread(target=kill_and_restart, name="killer", daemon=True)
    runs: list[Run] = []
    after_restart = 0
    try:
        killer.start()
        deadline = time.monotonic() + 10
        for i in range(500):
            if after_restart >= 5 or time.monotonic() > deadline:
                break
            was_back = restarted.is_set()
            run = _life(m, f"aof-{i}", priority=i, delete=i % 3 == 0)
            runs.append(run)
            _drive(run, server, must_succeed=restarted.is_set)
            after_restart += was_back
            if i == 2:
                going.set()
        killer.join(timeout=15)
        assert not killer.is_alive() and not errors, errors
        assert restarted.is_set() and after_restart >= 5, "the server was not restarted mid-run"
        # Kill it once more, after the last acknowledgement: everything acknowledged is on disk.
        redis_server.kill()
        redis_server.restart()
        _verify(m, runs)  # the same manager, reconnecting by itself
        assert sum(r.finished for r in runs) >= 5
        _sound(m)
    finally:
        cancelled.set()
        going.set()
        killer.join(timeout=15)
        m.close()
        redis_server.stop()


# -- cut connections -----------------------------------------------------------------------------


@pytest.fixture
def proxy(redis_url: str) -> Iterator[Proxy]:
    host, port = _address(redis_url)
    p = Proxy(port, host)
    try:
        yield p
    finally:
        p.close()


def test_connections_cut_at_random_leave_each_call_done_once_or_clearly_failed(
    proxy: Proxy, redis_url: str, namespace: str
) -> None:
    m = RedisJobDefManager(
        proxy.url, namespace=namespace, retries=10, backoff_base=0.005, backoff_cap=0.05,
        socket_timeout=5.0, socket_connect_timeout=2.0, **CHUNKED,
    )  # fmt: skip
    direct = RedisJobDefManager(redis_url, namespace=namespace)
    server = _server_name(proxy.url)
    rng = random.Random(2)
    stop = threading.Event()

    def cut_repeatedly() -> None:
        deadline = time.monotonic() + 25
        while not stop.wait(rng.uniform(0.001, 0.008)) and time.monotonic() < deadline:
            proxy.cut()

    cutter = threading.Thread(target=cut_repeatedly, name="cutter", daemon=True)
    runs = [_life(m, f"cut-{i}", priority=i, delete=i % 2 == 0) for i in range(40)]
    try:
        cutter.start()
        for run in runs:
            _drive(run, server)
    finally:
        stop.set()
        cutter.join(timeout=10)
        m.close()
    assert not cutter.is_alive()
    # The faults did happen, mid-command too (else this test proves nothing).
    assert proxy.cut_connections >= 20 and proxy.cut_in_flight >= 5, proxy.counters()
    try:
        _verify(direct, runs)
        # Some lives must get through (how many depends on the machine's load: a loaded one loses
        # more calls to cuts), else the check above only ever saw failures.
        assert sum(r.finished for r in runs) >= len(runs) // 8
        _sound(direct)
    finally:
        direct.close()


def _through_proxy(
    proxy: Proxy, redis_url: str, namespace: str, functions: bool
) -> tuple[RedisJobDefManager, RedisJobDefManager]:
    """A manager that reaches the server through the proxy, retrying quickly, and one that
    reaches it directly, to look at what happened."""
    m = RedisJobDefManager(
        proxy.url, namespace=namespace, retries=3, backoff_base=0.005, backoff_cap=0.05,
        socket_timeout=5.0, functions=functions, **CHUNKED,
    )  # fmt: skip
    return m, RedisJobDefManager(redis_url, namespace=namespace, **CHUNKED)


# Each public call, with the reply to its first write lost after the server applied it: the
# retry must not apply it twice, nor report a failure that the first attempt's success caused.
LOST_REPLY_CASES = [
    "create",
    "set_status",
    "update_meta",
    "set_approval",
    "claim",
    "release",
    "delete",
    "save_workspace:commit",
    "save_workspace:chunks",
    "get_storage_component",
]


@pytest.mark.parametrize("functions", [True, False], ids=["fcall", "evalsha"])
@pytest.mark.parametrize("case", LOST_REPLY_CASES)
def test_a_lost_reply_is_retried_without_applying_the_call_twice(
    case: str, functions: bool, proxy: Proxy, redis_url: str, namespace: str
) -> None:
    m, direct = _through_proxy(proxy, redis_url, namespace, functions)
    jid = "lost-" + uuid.uuid4().hex[:8]
    content, old_ws, new_ws = os.urandom(2500), os.urandom(4500), os.urandom(9000)
    try:
        if case != "create":
            direct.create({"job_id": jid}, content)
            direct.save_workspace(jid, old_ws)
        if case == "release":
            assert [j.job_id for j in direct.claim(OWNER, lease=120)] == [jid]
        before = _events_by_job(direct).get(jid, [])
        m.client.ping()  # connected, scripts loaded: the lost reply is the call's own
        script = b"FCALL" if functions else b"EVALSHA"  # (how the manager runs its scripts)
        match = {"save_workspace:chunks": b"ZADD", "get_storage_component": b"MGET"}.get(case, script)
        proxy.lose_replies(match)

        op = case.split(":")[0]
        calls: dict[str, Callable[[], object]] = {
            "create": lambda: m.create({"job_id": jid, "name": "lost"}, content),
            "set_status": lambda: m.set_status(jid, APPROVED),
            "update_meta": lambda: m.update_meta(jid, {"status": APPROVED, "step": 1}),
            "set_approval": lambda: m.set_approval(jid, "alice", False, "no"),
            "claim": lambda: [j.job_id for j in m.claim(OWNER, lease=120)],
            "release": lambda: m.release(jid, OWNER),
            "delete": lambda: m.delete(jid),
            "save_workspace": lambda: m.save_workspace(jid, new_ws),
            "get_storage_component": lambda: m.get_storage_component(jid, "workspace"),
        }
        got = calls[op]()
        assert proxy.replies_lost == 1, "the fault did not hit the call"

        added = {
            "create": [("create", "", SUBMITTED)],
            "set_status": [("status", SUBMITTED, APPROVED)],
            "update_meta": [("status", SUBMITTED, APPROVED)],
            "set_approval": [("approval", "", "rejected:alice")],
            "claim": [("claim", SUBMITTED, DISPATCHED)],
            "release": [("status", DISPATCHED, SUBMITTED)],
            "delete": [("delete", SUBMITTED, "")],
        }.get(op, [])
        assert _events_by_job(direct).get(jid, []) == before + added
        job = direct.get_job(jid)
        assert (job is None) == (op == "delete")
        if job is not None:
            assert direct.get_content({"job_id": jid}) == content
            expected_ws = new_ws if op == "save_workspace" else old_ws if op != "create" else None
            if expected_ws is not None:
                assert direct.get_storage_component(jid, "workspace") == expected_ws
        # What the call returned is what the first attempt would have: the retry is invisible.
        if op == "create":
            assert isinstance(got, dict) and got["job_id"] == jid
        elif op in ("set_status", "update_meta"):
            assert got is True, "the status did change in this call"
        elif op == "claim":
            assert got == [jid]
            lease = direct.lease_of(jid)
            assert lease is not None and lease[0] == OWNER
        elif op == "release":
            assert direct.lease_of(jid) is None and job is not None and job.meta["status"] == SUBMITTED
        elif op == "update_meta":
            assert job is not None and job.meta["step"] == 1 and job.meta["status"] == APPROVED
        elif op == "set_approval":
            assert isinstance(got, dict) and got["approvals"] == {"alice": [False, "no"]}
            assert job is not None and job.meta["approvals"] == {"alice": [False, "no"]}
        elif op == "get_storage_component":
            assert got == old_ws
        _sound(direct)
    finally:
        m.close()
        direct.close()


@pytest.mark.parametrize("functions", [True, False], ids=["fcall", "evalsha"])
@pytest.mark.parametrize("op", ["create", "save_workspace"])
def test_a_blob_resent_with_its_commit_leaves_no_registration_for_gc(
    op: str, functions: bool, proxy: Proxy, redis_url: str, namespace: str
) -> None:
    """A blob of a few chunks travels in one write with the script that commits it. A reply lost
    after the server ran it sends the whole again, which registers the upload again: the
    script's repeat must drop that registration, else gc takes the chunks for an abandoned
    upload's and frees the job's blob."""
    m, direct = _through_proxy(proxy, redis_url, namespace, functions)
    jid = "resent-" + uuid.uuid4().hex[:8]
    content, old_ws, new_ws = os.urandom(3000), os.urandom(2000), os.urandom(3500)  # <= 4 chunks
    try:
        if op == "save_workspace":
            direct.create({"job_id": jid}, content)
            direct.save_workspace(jid, old_ws)
        m.client.ping()
        proxy.lose_replies(b"FCALL" if functions else b"EVALSHA")  # (in the same write as the chunks)
        if op == "create":
            assert m.create({"job_id": jid}, content)["job_id"] == jid
        else:
            m.save_workspace(jid, new_ws)
        assert proxy.replies_lost == 1, "the fault did not hit the call"
        assert direct.client.zcard(direct.keys.uploads) == 0
        direct.gc(grace=0)
        assert direct.get_content({"job_id": jid}) == content
        if op == "save_workspace":
            assert direct.get_storage_component(jid, "workspace") == new_ws
        assert [e.op for e in direct.events() if e.jid == jid] == ["create"]
        _sound(direct)
    finally:
        m.close()
        direct.close()


@pytest.mark.parametrize(
    ("op", "match"),
    [
        ("create", b"FCALL"),
        ("create", b"ZADD"),
        ("save_workspace", b"FCALL"),
        ("save_workspace", b"ZADD"),
    ],
    ids=["create:commit", "create:chunks", "save_workspace:commit", "save_workspace:chunks"],
)
def test_a_call_that_gives_up_leaves_its_blob_whole_or_absent(
    op: str, match: bytes, proxy: Proxy, redis_url: str, namespace: str
) -> None:
    """Every attempt loses its reply, so the call raises ``StoreUnavailable`` not knowing whether
    the server applied it: what is stored must then be the old value or the new one, whole."""
    retries = 2
    m = RedisJobDefManager(
        proxy.url, namespace=namespace, retries=retries, backoff_base=0.005, backoff_cap=0.02,
        socket_timeout=5.0, **CHUNKED,
    )  # fmt: skip
    direct = RedisJobDefManager(redis_url, namespace=namespace, **CHUNKED)
    jid = "gave-up-" + uuid.uuid4().hex[:8]
    content, old_ws, new_ws = os.urandom(5000), os.urandom(4500), os.urandom(9000)
    try:
        if op == "save_workspace":
            direct.create({"job_id": jid}, content)
            direct.save_workspace(jid, old_ws)
        m.client.ping()
        proxy.lose_replies(match, times=retries + 1)
        with pytest.raises(redisjobs.StoreUnavailable) as gave_up:
            if op == "create":
                m.create({"job_id": jid}, content)
            else:
                m.save_workspace(jid, new_ws)
        assert proxy.replies_lost == retries + 1

        job = direct.get_job(jid)
        if op == "create":
            assert job is None or direct.get_content({"job_id": jid}) == content
        else:
            assert job is not None and direct.get_content({"job_id": jid}) == content
            assert direct.get_storage_component(jid, "workspace") in (old_ws, new_ws)
        _sound(direct)
        _check_unavailable(gave_up.value, op, _server_name(proxy.url), jid)
    finally:
        m.close()
        direct.close()


@pytest.mark.parametrize("functions", [True, False], ids=["fcall", "evalsha"])
@pytest.mark.parametrize("op", ["create", "save_workspace"])
def test_a_retry_refused_for_memory_after_the_first_attempt_committed_keeps_the_blob(
    op: str, functions: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first attempt of a blob sent with its commit runs and its reply is lost; the server then
    runs out of memory, so the retry's chunks are refused, and a function's call too (EVALSHA's
    repeat, which writes nothing that needs memory, answers). The blob the first attempt committed
    stays whole, and the call succeeds: it finds its own upload committed."""
    server = RedisServer(_binary())
    m = RedisJobDefManager(
        server.url, namespace="retry-oom", chunk_size=256 * 1024, functions=functions,
        retries=2, backoff_base=0.001, backoff_cap=0.002,
    )  # fmt: skip
    admin = redis.Redis.from_url(server.url)
    real = redisjobs._connection._staged
    attempts: list[int] = []

    def first_reply_lost(*args: Any) -> Any:
        replies = real(*args)
        attempts.append(1)
        if len(attempts) == 1:
            used = int(admin.info("memory")["used_memory"])
            admin.config_set("maxmemory", str(used - 1))  # full now (noeviction)
            raise redis.exceptions.ConnectionError("reply lost")
        return replies

    try:
        jid = "retry-oom"
        if op == "save_workspace":
            m.create({"job_id": jid}, b"small")
        blob = os.urandom(3 * 256 * 1024)
        monkeypatch.setattr(redisjobs._connection, "_staged", first_reply_lost)
        if op == "create":
            assert m.create({"job_id": jid}, blob)["job_id"] == jid
        else:
            m.save_workspace(jid, blob)
        assert len(attempts) == 2
        admin.config_set("maxmemory", "0")
        stored = (
            m.get_content({"job_id": jid}) if op == "create" else m.get_storage_component(jid, "workspace")
        )
        assert stored == blob
        assert m.check_invariants() == []
    finally:
        admin.config_set("maxmemory", "0")
        admin.close()
        m.close()
        server.stop()


@pytest.mark.parametrize("op", ["create", "save_workspace"])
def test_memory_that_runs_out_mid_blob_refuses_the_commit_sent_with_it(op: str) -> None:
    """A blob of a few chunks is sent in one write with the script that commits it. Redis checks
    memory before each command: the registration and the first chunks fit, a later chunk is
    refused, and the script, which runs after them all (a script that has written goes on out of
    memory), must not commit a manifest with a chunk missing."""
    server = RedisServer(_binary())
    m = RedisJobDefManager(server.url, namespace="mid", chunk_size=256 * 1024)
    try:
        jid = "mid-blob"
        m.create({"job_id": jid}, b"small")
        used = int(m.client.info("memory")["used_memory"])
        m.client.config_set("maxmemory", str(used + 600 * 1024))  # two chunks fit, not four
        blob = os.urandom(4 * 256 * 1024)
        with pytest.raises(redisjobs.StoreFull, match="mid"):
            if op == "create":
                m.create({"job_id": "mid-new"}, blob)
            else:
                m.save_workspace(jid, blob)
        assert m.get_job("mid-new") is None
        assert m.list_components(jid) == ["meta", "data"]  # no workspace
        assert list(m.client.scan_iter(match=m.keys.chunk_pattern())) == []
        assert m.client.zcard(m.keys.uploads) == 0
        assert m.check_invariants() == []
        m.client.config_set("maxmemory", "0")
        if op == "create":
            m.create({"job_id": "mid-new"}, blob)
            assert m.get_content({"job_id": "mid-new"}) == blob
        else:
            m.save_workspace(jid, blob)
            assert m.get_storage_component(jid, "workspace") == blob
    finally:
        m.close()
        server.stop()


# -- a paused server -----------------------------------------------------------------------------


def test_a_stopped_server_gives_every_caller_a_clear_error_in_bounded_time() -> None:
    server = RedisServer(_binary())
    name = _server_name(server.url)
    m = RedisJobDefManager(
        server.url, namespace="stopped", socket_timeout=0.5, socket_connect_timeout=0.5,
        retries=1, backoff_base=0.01, backoff_cap=0.05, **CHUNKED,
    )  # fmt: skip
    calls: dict[str, tuple[str | None, Callable[[], object]]] = {
        "get_job": ("before", lambda: m.get_job("before")),
        "set_status": ("before", lambda: m.set_status("before", APPROVED)),
        "set_approval": ("before", lambda: m.set_approval("before", "bob", True, "")),
        "create": ("during", lambda: m.create({"job_id": "during"}, b"d" * 5000)),
        "save_workspace": ("before", lambda: m.save_workspace("before", b"w" * 5000)),
        "claim": (None, lambda: m.claim(OWNER)),
    }
    outcomes: dict[str, tuple[BaseException | None, float]] = {}

    def call(op: str, fn: Callable[[], object]) -> None:
        started = time.monotonic()
        try:
            fn()
        except BaseException as e:
            outcomes[op] = (e, time.monotonic() - started)
        else:
            outcomes[op] = (None, time.monotonic() - started)

    threads = [threading.Thread(target=call, args=(op, fn), name=op, daemon=True)
               for op, (_jid, fn) in calls.items()]  # fmt: skip
    try:
        m.create({"job_id": "before"}, b"b" * 3000)  # connected, scripts loaded
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            for t in threads:
                t.start()
            deadline = time.monotonic() + 15
            for t in threads:
                t.join(timeout=max(0.0, deadline - time.monotonic()))
            hung = [t.name for t in threads if t.is_alive()]
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        assert hung == [], f"calls still blocked 15 s into the stop: {hung}"
        for op, (jid, _fn) in calls.items():
            error, took = outcomes[op]
            assert error is not None, f"{op} returned while the server was stopped"
            _check_unavailable(error, op, name, jid)
            assert took < 10, f"{op} took {took:.1f} s to give up"

        # Resumed: the same manager works again. (What the stopped calls sent may have run on resume.)
        assert m.get_job("before") is not None
        m.create({"job_id": "after"}, b"a" * 5000)
        m.save_workspace("after", b"x" * 7000)
        assert m.get_storage_component("after", "workspace") == b"x" * 7000
        assert m.set_status("after", APPROVED)
        during = m.get_job("during")
        assert during is None or m.get_content({"job_id": "during"}) == b"d" * 5000
        _sound(m)
    finally:
        if server.proc.poll() is None:
            os.kill(server.proc.pid, signal.SIGCONT)  # never leave it stopped: stop() waits on it
        m.close()
        server.stop()


# -- out of memory -------------------------------------------------------------------------------


def _done_or_refused(call: Callable[[], object], jid: str) -> bool:
    """True if the call went through; False if it raised ``StoreFull`` naming the job."""
    try:
        call()
    except redisjobs.StoreFull as e:
        assert isinstance(e, redisjobs.RedisJobsError) and jid in str(e), e
        return False
    return True


def test_out_of_memory_is_a_clear_error_that_leaves_the_old_value_and_no_orphans() -> None:
    server = RedisServer(_binary(), "--maxmemory", "20mb")
    m = RedisJobDefManager(server.url, namespace="oom", chunk_size=256 * 1024)
    try:
        m.create({"job_id": "small"}, b"content")
        old = os.urandom(300_000)  # chunked
        m.save_workspace("small", old)
        ids_before = list(m.iter_job_ids())

        # A blob larger than the memory left: refused once the memory is full.
        big = b"\xab" * (40 << 20)
        with pytest.raises(redisjobs.StoreFull) as full:
            m.save_workspace("small", big)
        assert isinstance(full.value, redisjobs.RedisJobsError)
        assert "small" in str(full.value)
        assert m.get_storage_component("small", "workspace") == old
        with pytest.raises(redisjobs.StoreFull, match="huge"):
            m.create({"job_id": "huge"}, big)
        assert m.get_job("huge") is None
        assert list(m.iter_job_ids()) == ids_before
        _sound(m)

        # Memory already over the limit: a write that needs memory is refused whole. (Redis lets a
        # script that has already written go on, so a change may also be taken whole: either is fine.)
        m.client.set("filler", b"f" * (4 << 20))
        m.client.config_set("maxmemory", "3mb")  # below what is used now (noeviction: nothing goes)
        with pytest.raises(redisjobs.StoreFull, match="tiny"):
            m.create({"job_id": "tiny"}, b"t")
        assert m.get_job("tiny") is None
        # Content of a few chunks, sent in one write with its create: refused whole, with no chunk
        # and no registration left.
        with pytest.raises(redisjobs.StoreFull, match="piped"):
            m.create({"job_id": "piped"}, os.urandom(600_000))
        assert m.get_job("piped") is None
        assert list(m.client.scan_iter(match="rj:{oom/piped}:*")) == []
        assert not [r for r in m.client.zrange(m.keys.uploads, 0, -1) if b"piped" in r]
        approved = _done_or_refused(lambda: m.set_status("small", APPROVED), "small")
        assert m.get_meta("small")["status"] == (APPROVED if approved else SUBMITTED)
        replaced = _done_or_refused(lambda: m.save_workspace("small", b"tiny workspace"), "small")
        assert m.get_storage_component("small", "workspace") == (b"tiny workspace" if replaced else old)
        _sound(m)

        # Memory freed: the store takes writes again, and nothing of the refused ones shows.
        m.client.config_set("maxmemory", "20mb")
        m.client.unlink("filler")
        m.save_workspace("small", b"new workspace")
        assert m.get_storage_component("small", "workspace") == b"new workspace"
        m.set_status("small", APPROVED)
        assert m.get_meta("small")["status"] == APPROVED
        assert [e.op for e in m.events() if e.jid == "small"] == ["create", "status"]
        assert [e.jid for e in m.events() if e.op == "create"] == ["small"]
        _sound(m)
    finally:
        m.close()
        server.stop()
