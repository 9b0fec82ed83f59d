"""Many server processes, one store: real processes against a real redis-server.

Each test bounds its processes in time and stops every one of them by its PID.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest

from redisjobs import RedisJobDefManager, RunStatus

pytestmark = [pytest.mark.real, pytest.mark.slow]

WORKERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workers.py")


@pytest.fixture
def shared(redis_url: str) -> Iterator[RedisJobDefManager]:
    ns = "mp-" + uuid.uuid4().hex[:8]
    m = RedisJobDefManager(redis_url, namespace=ns, event_maxlen=1_000_000)
    yield m
    for key in [
        *m.client.scan_iter(match=f"rj:{{{ns}*", count=1000),
        *m.client.scan_iter(match=f"test:{ns}:*"),
    ]:
        m.client.unlink(key)
    m.close()


def spawn(role: str, m: RedisJobDefManager, url: str, *args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, WORKERS, role, url, m.namespace, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def collect(procs: list[subprocess.Popen[str]], timeout: float = 240) -> list[dict]:  # type: ignore[type-arg]
    results = []
    deadline = time.monotonic() + timeout
    try:
        for p in procs:
            out, err = p.communicate(timeout=max(1, deadline - time.monotonic()))
            assert p.returncode == 0, err[-3000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return results


def test_eight_claimers_two_submitters_every_job_claimed_exactly_once(
    shared: RedisJobDefManager, redis_url: str
) -> None:
    m = shared
    initial = [m.create({"name": f"init-{i}", "priority": i % 4}, b"job")["job_id"] for i in range(5000)]
    claimers = [spawn("claimer", m, redis_url, f"server-{i}", 180) for i in range(8)]
    submitters = [spawn("submitter", m, redis_url, f"sub-{i}", 500) for i in range(2)]
    results = collect(claimers + submitters)
    claimed = [jid for r in results[:8] for jid in r["claimed"]]
    created = initial + [jid for r in results[8:] for jid in r["created"]]
    counts = Counter(claimed)
    assert [jid for jid, n in counts.items() if n > 1] == [], "a job was claimed twice"
    assert set(claimed) == set(created), "a job was lost or invented"
    assert len(created) == 6000
    per_process = [len(r["claimed"]) for r in results[:8]]
    assert sum(per_process) == 6000 and min(per_process) > 0, per_process
    assert m.get_jobs_to_schedule() == []
    assert len(m.get_jobs_by_status(RunStatus.DISPATCHED)) == 6000
    claim_events = [e for e in _all_events(m) if e.op == "claim"]
    assert len(claim_events) == 6000
    assert m.check_invariants() == []


def _all_events(m: RedisJobDefManager) -> list:  # type: ignore[type-arg]
    out, since = [], "-"
    while True:
        batch = m.events(since, count=5000)
        if not batch:
            return out
        out += batch
        since = batch[-1].id


def test_random_operations_from_eight_processes_keep_the_invariants(
    shared: RedisJobDefManager, redis_url: str
) -> None:
    m = shared
    ids = [m.create({"name": f"j{i}", "priority": i % 3}, b"job")["job_id"] for i in range(150)]
    procs = [spawn("chaos", m, redis_url, f"p{n}", json.dumps(ids), 400, n) for n in range(8)]
    results = collect(procs)

    assert m.check_invariants() == []
    deleted = {jid for r in results for jid in r["deleted"]}
    for jid in deleted:
        assert m.get_job(jid) is None
    existing = {j.job_id: j for j in m.get_all_jobs()}
    assert set(existing) == set(ids) - deleted
    # No approval lost: every acknowledged approval of a job that still exists is there.
    for r in results:
        for jid, reviewer in r["approvals"]:
            if jid in existing:
                assert reviewer in existing[jid].meta.get("approvals", {}), (jid, reviewer)
    # No lost update: each process's own meta key holds its last acknowledged value.
    for n, r in enumerate(results):
        for jid, value in r["last_written"].items():
            if jid in existing:
                assert existing[jid].meta[f"writer_p{n}"] == value
    # No double claim: between two claims of one job, something put it back in the queue.
    state: dict[str, str] = {}
    for e in _all_events(m):
        if e.op == "approval":
            continue
        if e.op == "claim":
            assert state.get(e.jid) == "SUBMITTED", f"{e.jid} claimed while {state.get(e.jid)}"
        state[e.jid] = e.new if e.op != "delete" else "deleted"
    for jid, job in existing.items():
        assert state[jid] == job.meta["status"]
    ops = Counter()
    for r in results:
        ops.update(r["counts"])
    assert all(ops[op] > 50 for op in ("status", "claim", "approve", "release", "delete")), ops


def test_an_abort_between_check_and_dispatch_leaves_the_job_aborted(
    shared: RedisJobDefManager, redis_url: str
) -> None:
    m = shared
    ids = [m.create({"name": f"r{i}"}, b"job")["job_id"] for i in range(300)]
    scheduler = spawn("scheduler", m, redis_url, json.dumps(ids), 1)
    aborter = spawn("aborter", m, redis_url, json.dumps(ids), 2)
    sched, _ = collect([scheduler, aborter])
    statuses = Counter(j.meta["status"] for j in m.get_all_jobs())
    assert statuses == {RunStatus.FINISHED_ABORTED.value: 300}
    assert sched["conflicts"] > 0, "the race window was never hit: the test proved nothing"
    assert m.check_invariants() == []


def test_a_killed_process_jobs_are_reaped_and_run_elsewhere(
    shared: RedisJobDefManager, redis_url: str
) -> None:
    m = shared
    ids = [m.create({"name": f"k{i}"}, b"job")["job_id"] for i in range(6)]
    proc = spawn("holder", m, redis_url, "doomed", 6, 3.0)
    try:
        assert proc.stdout is not None
        held = json.loads(proc.stdout.readline())
        assert sorted(held["claimed"]) == sorted(ids)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.communicate()
    assert m.reap() == []  # the lease has not run out yet
    deadline = time.monotonic() + 10
    settled = []
    while time.monotonic() < deadline and len(settled) < 6:
        time.sleep(0.2)
        settled += m.reap()
    assert {s.jid for s in settled} == set(ids)
    running = set(held["running"])
    for s in settled:
        assert s.owner == "doomed"
        expected = RunStatus.ABANDONED.value if s.jid in running else RunStatus.SUBMITTED.value
        assert s.new == expected
    again = m.claim("survivor", limit=10)
    assert {j.job_id for j in again} == set(ids) - running
    for job in again:
        m.set_status(job.job_id, RunStatus.RUNNING, owner="survivor")
        m.set_status(job.job_id, RunStatus.FINISHED_COMPLETED, owner="survivor")
    assert m.check_invariants() == []
