"""Sentinel: a master, a replica and three Sentinels on loopback; the master is killed during a run
of operations, the replica is promoted, and the same manager carries on against it by itself.
With durability on (``wait_replicas=1``: every write waits until a replica holds it), no write that
was acknowledged is lost in the failover.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from redisjobs import NotReplicated, RedisJobDefManager, RunStatus, StoreUnavailable
from redisjobs.server import LocalSentinel, find_redis_server

pytestmark = pytest.mark.real

#: How long operations may fail around the failover before they must work again: Sentinel's
#: down-after (1 s) and election, plus the killed node's return as a replica and its resync.
RESUME_WITHIN = 20.0


@pytest.fixture
def sentinel() -> Iterator[LocalSentinel]:
    binary = find_redis_server()
    if binary is None:
        pytest.fail("no redis-server: install it (apt-get install redis-server)", pytrace=False)
    group = LocalSentinel(binary, replicas=1, sentinels=3, down_after_ms=1000)
    try:
        yield group
    finally:
        group.stop()


def durable_manager(url: str, namespace: str) -> RedisJobDefManager:
    return RedisJobDefManager(
        url, namespace=namespace, wait_replicas=1, wait_timeout=0.5, socket_timeout=2.0,
        socket_connect_timeout=0.5, retries=40, backoff_base=0.05, backoff_cap=0.25,
    )  # fmt: skip


def test_a_failover_loses_no_acknowledged_write_and_work_resumes(sentinel: LocalSentinel) -> None:
    m = durable_manager(sentinel.url, "failover")
    acked: dict[str, str] = {}  # job id -> the status its last acknowledged write set
    tried: dict[str, str] = {}  # job id -> a status asked for later, whose call may have failed
    refused: list[BaseException] = []
    acked_at: list[float] = []
    stop = threading.Event()

    def work() -> None:
        deadline = time.monotonic() + 60
        i = 0
        while not stop.is_set() and time.monotonic() < deadline:
            jid = f"job-{i}"
            i += 1
            try:
                m.create({"name": jid, "job_id": jid}, b"x" * 100)
                acked[jid] = "SUBMITTED"
                acked_at.append(time.monotonic())
                if i % 2:
                    tried[jid] = "FINISHED:ABORTED"  # may take effect unacknowledged: allowed
                    m.set_status(jid, RunStatus.FINISHED_ABORTED)
                    acked[jid] = "FINISHED:ABORTED"
                    acked_at.append(time.monotonic())
            except (StoreUnavailable, NotReplicated) as e:  # not acknowledged: allowed, and counted
                refused.append(e)

    worker = threading.Thread(target=work, name="writer", daemon=True)
    worker.start()
    try:
        wait_for(lambda: len(acked) >= 20, 20, "writes before the failover")
        old_port = sentinel.master_port()
        killed_at = time.monotonic()
        node = sentinel.kill_master()
        new_port = sentinel.wait_failover(old_port, timeout=RESUME_WITHIN)
        sentinel.restart(node)  # back as a replica of the new master: WAIT can be satisfied again
        wait_for(lambda: bool(acked_at) and acked_at[-1] > killed_at + 0.1 and len(acked) >= 60,
                 RESUME_WITHIN, "writes after the failover")  # fmt: skip
    finally:
        stop.set()
        worker.join(timeout=30)
    assert not worker.is_alive()
    assert new_port != old_port and sentinel.master_port() == new_port
    assert all(isinstance(e, StoreUnavailable) and "job-" in str(e) for e in refused)

    check = RedisJobDefManager(sentinel.url, namespace="failover")
    stored = {j.job_id: j.meta["status"] for j in check.get_all_jobs()}
    # Lost: a job whose acknowledged create is gone, or whose status is neither the one last
    # acknowledged nor one asked for afterwards (a failed call may still have taken effect).
    lost = {jid: status for jid, status in acked.items() if stored.get(jid) not in (status, tried.get(jid))}
    assert lost == {}, f"acknowledged writes lost in the failover: {lost}"
    assert check.check_invariants() == []
    check.close()
    m.close()


def test_a_write_no_replica_confirms_is_reported_as_not_replicated(sentinel: LocalSentinel) -> None:
    m = durable_manager(sentinel.url, "lonely")
    jid = m.create({"name": "a"}, b"x")["job_id"]
    for replica in sentinel.replicas:
        replica.kill()
    with pytest.raises(NotReplicated, match=rf"set_status of job '{jid}'.*0 of 1 replicas") as e:
        m.set_status(jid, RunStatus.FINISHED_ABORTED)
    assert isinstance(e.value, StoreUnavailable)
    assert m.get_meta(jid)["status"] == "FINISHED:ABORTED"  # the master has it: repeating is safe
    m.close()


def test_wait_timeout_must_be_below_the_socket_timeout() -> None:
    with pytest.raises(ValueError, match="below socket_timeout"):
        RedisJobDefManager("redis://127.0.0.1:1", wait_replicas=1, wait_timeout=2.0, socket_timeout=1.0)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
