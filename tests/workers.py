"""Worker processes for the multi-process tests: ``python tests/workers.py ROLE URL NAMESPACE ...``.

Each role runs a bounded loop against the store and prints one JSON line with what it did.
"""

from __future__ import annotations

import json
import random
import sys
import time

from redisjobs import (
    InvalidTransition,
    JobNotFound,
    NotOwner,
    RedisJobDefManager,
    RunStatus,
    StatusConflict,
)

EXPECTED_ERRORS = (JobNotFound, InvalidTransition, StatusConflict, NotOwner)


def claimer(m: RedisJobDefManager, name: str, deadline: float) -> dict[str, object]:
    """Claim until the queue is empty and the submitters are done (a flag key), or the deadline."""
    claimed: list[str] = []
    rng = random.Random(name)
    while time.monotonic() < deadline:
        got = m.claim(name, limit=rng.randint(1, 3), lease=300)
        claimed += [j.job_id for j in got]
        if not got:
            if m.client.get(f"test:{m.namespace}:submitters-done") == b"2" and not m.client.zcard(
                m.keys.queue
            ):
                break
            time.sleep(0.002)
    return {"claimed": claimed}


def submitter(m: RedisJobDefManager, name: str, count: int) -> dict[str, object]:
    rng = random.Random(name)
    created = []
    for i in range(count):
        created.append(m.create({"name": f"{name}-{i}", "priority": rng.randint(0, 3)}, b"job")["job_id"])
        if i % 50 == 0:
            time.sleep(0.005)
    m.client.incr(f"test:{m.namespace}:submitters-done")
    return {"created": created}


STATUSES = [s.value for s in RunStatus]


def chaos(m: RedisJobDefManager, name: str, ids: list[str], ops: int, seed: int) -> dict[str, object]:
    """Random mixes of set_status, update_meta, set_approval, claim, renew, release and delete."""
    rng = random.Random(seed)
    approvals: list[tuple[str, str]] = []
    deleted: list[str] = []
    last_written: dict[str, int] = {}
    held: list[str] = []
    counts: dict[str, int] = {}
    for i in range(ops):
        jid = rng.choice(ids)
        op = rng.choice(
            ["status", "status", "meta", "approve", "claim", "renew", "release", "start", "delete"]
        )
        counts[op] = counts.get(op, 0) + 1
        try:
            if op == "status":
                expected = rng.choice([None, rng.choice(STATUSES)])
                m.set_status(jid, rng.choice(STATUSES), expected=expected)
            elif op == "meta":
                m.update_meta(jid, {f"writer_{name}": i, "priority": rng.randint(-2, 2)})
                last_written[jid] = i
            elif op == "approve":
                reviewer = f"{name}-r{i}"
                m.set_approval(jid, reviewer, rng.random() < 0.5, "note")
                approvals.append((jid, reviewer))
            elif op == "claim":
                held += [j.job_id for j in m.claim(name, limit=rng.randint(1, 2), lease=300)]
            elif op == "renew" and held:
                m.renew(rng.choice(held), name, lease=300)
            elif op == "release" and held:
                m.release(held.pop(rng.randrange(len(held))), name)
            elif op == "start" and held:
                m.set_status(rng.choice(held), RunStatus.RUNNING, owner=name)
            elif op == "delete" and rng.random() < 0.2:
                m.delete(jid)
                deleted.append(jid)
        except EXPECTED_ERRORS:
            pass
    return {"approvals": approvals, "deleted": deleted, "last_written": last_written, "counts": counts}


def racer(m: RedisJobDefManager, role: str, ids: list[str], seed: int) -> dict[str, object]:
    """The abort-vs-dispatch race: a scheduler checks then dispatches; an admin aborts."""
    rng = random.Random(seed)
    conflicts = 0
    # Start together (both processes ready), or one would run far ahead and never meet the other.
    ready = f"test:{m.namespace}:racers-ready"
    m.client.incr(ready)
    deadline = time.monotonic() + 60
    while int(m.client.get(ready) or 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    for jid in ids:
        if role == "scheduler":
            job = m.get_job(jid)
            if job is None or job.meta["status"] != RunStatus.SUBMITTED.value:
                continue
            time.sleep(rng.uniform(0, 0.002))  # the window between the check and the dispatch
            try:
                m.set_status(jid, RunStatus.DISPATCHED, expected=RunStatus.SUBMITTED)
            except (StatusConflict, InvalidTransition):
                conflicts += 1
        else:
            time.sleep(rng.uniform(0, 0.002))
            m.set_status(jid, RunStatus.FINISHED_ABORTED)
    return {"conflicts": conflicts}


def holder(m: RedisJobDefManager, name: str, count: int, lease: float) -> None:
    """Claim jobs, start some, report, then hang until killed."""
    got = m.claim(name, limit=count, lease=lease)
    running = [j.job_id for j in got[: count // 2]]
    for jid in running:
        m.set_status(jid, RunStatus.RUNNING, owner=name)
    print(json.dumps({"claimed": [j.job_id for j in got], "running": running}), flush=True)
    time.sleep(120)


def main() -> None:
    role, url, namespace, *rest = sys.argv[1:]
    m = RedisJobDefManager(url, namespace=namespace)
    if role == "claimer":
        out = claimer(m, rest[0], time.monotonic() + float(rest[1]))
    elif role == "submitter":
        out = submitter(m, rest[0], int(rest[1]))
    elif role == "chaos":
        out = chaos(m, rest[0], json.loads(rest[1]), int(rest[2]), int(rest[3]))
    elif role in ("scheduler", "aborter"):
        out = racer(m, role, json.loads(rest[0]), int(rest[1]))
    elif role == "holder":
        holder(m, rest[0], int(rest[1]), float(rest[2]))
        return
    else:
        raise SystemExit(f"unknown role {role}")
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
