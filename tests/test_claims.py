"""Claims, leases, reaping, recovery and the event stream (several server processes on one store).

Most tests run on fakeredis and on a real redis-server (the ``store`` / ``make_store`` fixtures,
which check the index invariants after each test); the fork and spawn tests use the real server.
Leases are short (tens of milliseconds) so that expiry can be waited for; every sleep is at most
0.3 s and every loop is bounded.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import re
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from _threads import run_threads

from redisjobs import (
    Event,
    InvalidTransition,
    JobNotFound,
    LeaseExpired,
    NotOwner,
    RedisJobDefManager,
    RunStatus,
    Settled,
    StatusConflict,
)
from redisjobs.manager import _lease_ms

pytestmark = pytest.mark.cluster

DISPATCHED = RunStatus.DISPATCHED.value
SUBMITTED = RunStatus.SUBMITTED.value
RUNNING = RunStatus.RUNNING.value
ABANDONED = RunStatus.ABANDONED.value
ABORTED = RunStatus.FINISHED_ABORTED.value

#: str(datetime.timedelta), as NVFlare writes durations
DURATION = re.compile(r"^(-?\d+ days?, )?\d+:\d\d:\d\d(\.\d{6})?$")


def submit(m: RedisJobDefManager, priority: int | None = None, name: str = "job") -> str:
    meta: dict[str, Any] = {"name": name}
    if priority is not None:
        meta["priority"] = priority
    return str(m.create(meta, b"content")["job_id"])


def ids(jobs: list[Any]) -> list[str]:
    return [j.job_id for j in jobs]


def status(m: RedisJobDefManager, jid: str) -> str | None:
    job = m.get_job(jid)
    assert job is not None
    return job.status


def queued(m: RedisJobDefManager) -> list[str]:
    return ids(m.get_jobs_to_schedule())


# -- claim: order, state, validation -------------------------------------------------------------


def test_claim_takes_highest_priority_first_then_submit_order(store: RedisJobDefManager) -> None:
    a = submit(store)
    b = submit(store, 5)
    c = submit(store, 0)
    d = submit(store, 5)
    e = submit(store, -1)
    f = submit(store, 10)
    assert queued(store) == [f, b, d, a, c, e]

    first = store.claim("srv-1", limit=3)
    assert ids(first) == [f, b, d]
    assert queued(store) == [a, c, e]
    rest = store.claim("srv-1", limit=10)
    assert ids(rest) == [a, c, e]
    assert store.claim("srv-1") == []
    assert queued(store) == []
    assert {j.job_id for j in store.get_jobs_by_status(DISPATCHED)} == {a, b, c, d, e, f}


def test_claimed_jobs_are_dispatched_with_owner_and_lease(store: RedisJobDefManager) -> None:
    jids = [submit(store) for _ in range(3)]
    before = time.time()
    got = store.claim("srv-1", lease=30, limit=2)
    after = time.time()
    assert ids(got) == jids[:2]
    for job in got:
        assert job.dispatcher_id == "srv-1"
        assert job.meta["status"] == DISPATCHED
        assert status(store, job.job_id) == DISPATCHED
        lease = store.lease_of(job.job_id)
        assert lease is not None
        owner, expiry = lease
        assert owner == "srv-1"
        assert before + 30 - 1 <= expiry <= after + 30 + 1
    # The job left behind is untouched.
    assert store.lease_of(jids[2]) is None
    assert status(store, jids[2]) == SUBMITTED


def test_claim_lease_is_a_float_number_of_seconds(store: RedisJobDefManager) -> None:
    jid = submit(store)
    before = time.time()
    store.claim("srv-1", lease=0.25)
    lease = store.lease_of(jid)
    assert lease is not None
    assert before + 0.25 - 0.5 <= lease[1] <= time.time() + 0.25 + 0.5
    assert lease[1] < before + 5  # not rounded up to whole seconds or minutes


def test_claim_of_an_empty_queue_returns_nothing(store: RedisJobDefManager) -> None:
    assert store.claim("srv-1") == []
    assert store.claim("srv-1", limit=5) == []
    jid = submit(store)
    store.set_status(jid, ABORTED)
    assert store.claim("srv-1", limit=5) == []
    assert store.lease_of(jid) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"owner": "srv-1", "limit": 0},
        {"owner": "srv-1", "limit": -1},
        {"owner": "srv-1", "limit": 1001},
        {"owner": "srv-1", "lease": 0},
        {"owner": "srv-1", "lease": -1.0},
        {"owner": "srv-1", "lease": float("nan")},
        {"owner": "srv-1", "lease": float("inf")},
        {"owner": "srv-1", "lease": "30"},
        {"owner": ""},
        {"owner": None},
    ],
    ids=["limit0", "limit-1", "limit1001", "lease0", "lease-1", "lease-nan", "lease-inf", "lease-str",
         "owner-empty", "owner-none"],
)  # fmt: skip
def test_claim_validates_its_arguments(store: RedisJobDefManager, kwargs: dict[str, Any]) -> None:
    jid = submit(store)
    args = dict(kwargs)  # the parametrized dict is shared by both backends' runs
    owner = args.pop("owner")
    with pytest.raises(ValueError):
        store.claim(owner, **args)
    assert status(store, jid) == SUBMITTED
    assert store.lease_of(jid) is None
    assert queued(store) == [jid]


# -- several managers ----------------------------------------------------------------------------


def test_two_managers_claiming_alternately_never_share_a_job(make_store: Any) -> None:
    m1, m2 = make_store(), make_store()
    jids = [submit(m1 if i % 2 else m2) for i in range(12)]
    taken: list[tuple[str, str]] = []
    for i in range(14):
        m, owner = (m1, "one") if i % 2 == 0 else (m2, "two")
        for job in m.claim(owner):
            taken.append((job.job_id, owner))
    assert [jid for jid, _ in taken] == jids  # each once, in submit order
    for jid, owner in taken:
        lease = m1.lease_of(jid)
        assert lease is not None and lease[0] == owner
    assert queued(m2) == []


def test_a_job_submitted_after_the_head_was_cached_is_claimed_first(make_store: Any) -> None:
    m1, m2 = make_store(), make_store()
    low = [submit(m1) for _ in range(4)]
    assert ids(m1.claim("one")) == low[:1]  # m1 now caches the queue's head: low[1:]
    urgent = submit(m2, priority=10)
    assert ids(m1.claim("one")) == [urgent]
    # Another manager took the jobs m1 saw at the head: m1 still claims the right one.
    assert ids(m2.claim("two", limit=2)) == low[1:3]
    assert ids(m1.claim("one")) == [low[3]]
    assert m1.claim("one") == []


def _watch_claims(m: RedisJobDefManager, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bool]]:
    """Record, for each run of m's claim script over its lane: how many commands followed it, and
    whether the script left out the claimed job's hash (0 in its place: the HGETALL after it reads
    that job)."""
    from redisjobs._scripts import LaneScript

    script = m._s.claim
    assert isinstance(script, LaneScript)
    runs: list[tuple[int, bool]] = []
    real = script.run_packed

    def run_packed(*args: Any) -> list[Any]:
        replies = real(*args)
        runs.append((args[-1], replies[0][3] == 1 and replies[0][5] == 0))
        return replies

    monkeypatch.setattr(script, "run_packed", run_packed)
    return runs


@pytest.mark.lane
def test_a_claimed_job_reads_whole_whether_or_not_the_claim_expected_it(
    make_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A claim expects the job where its previous claim found its own, and reads that job's hash
    # itself; when another manager took that job in between, the script sends the hash instead.
    m1, m2 = make_store(), make_store()
    jids = [m1.create({"name": f"job-{i}", "n": i}, b"content")["job_id"] for i in range(8)]
    runs = _watch_claims(m1, monkeypatch)
    got = [*m1.claim("one"), *m1.claim("one"), *m1.claim("one")]
    assert ids(m2.claim("two")) == [jids[3]]  # m1 expects jids[3] next
    got += m1.claim("one")
    assert ids(got) == [jids[0], jids[1], jids[2], jids[4]]
    # The first claim had no head yet: its first run claimed nothing (stale), its second read the
    # job it expected, as did the next two claims; the last expected jids[3], which m2 had taken,
    # and got the next one's hash from the script.
    assert runs == [(1, False), (2, True), (2, True), (2, True), (2, False)]
    for i, job in zip([0, 1, 2, 4], got, strict=True):
        assert job.meta == m1.get_job(job.job_id).meta  # type: ignore[union-attr]
        assert job.meta["status"] == DISPATCHED and job.meta["n"] == i
        assert job.dispatcher_id == "one"


@pytest.mark.lane
def test_a_claim_expects_its_job_only_while_such_guesses_have_been_right(
    store: RedisJobDefManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(20):
        submit(store)
    runs = _watch_claims(store, monkeypatch)
    store.claim("one")
    store._claim_hits = 0.0  # as after many claims whose jobs were elsewhere (many processes)
    for _ in range(12):
        assert len(store.claim("one")) == 1
    # (The first claim: a run without a head, then one that expected its job.) Each right guess
    # moves the average an eighth of the way up: after six of them, it expects again.
    assert [more for more, _ in runs] == [1, 2, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2]
    assert all(left_out for more, left_out in runs if more == 2)
    assert store.claim("one", limit=2) and runs[-1][0] == 1  # (never with a limit above 1)


@pytest.mark.lane
def test_a_claimed_job_deleted_before_its_hash_is_read_is_not_returned(
    store: RedisJobDefManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The HGETALL after the script can see another client's change only if the write reached the
    # server in pieces; a job deleted in between is not returned (there is nothing left to run).
    from redisjobs._scripts import LaneScript

    jids = [submit(store) for _ in range(3)]
    assert ids(store.claim("one")) == jids[:1]
    script = store._s.claim
    assert isinstance(script, LaneScript)
    real = script.run_packed

    def deleted_between(*args: Any) -> list[Any]:
        reply, head, fields = real(*args)
        store.delete(reply[4].decode())
        return [reply, head, [] if reply[5] == 0 else fields]

    monkeypatch.setattr(script, "run_packed", deleted_between)
    assert store.claim("one") == []
    monkeypatch.undo()
    assert store.get_job(jids[1]) is None
    assert ids(store.claim("one")) == jids[2:]


@pytest.mark.lane
def test_a_claim_sent_again_after_a_lost_reply_gets_its_first_runs_job_while_threads_share_the_owner(
    store: RedisJobDefManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The claim script keeps one record per owner, of its last claim. Thread 1's claim runs, its
    # reply is lost, and redis-py sends it again as a repeat; thread 2 claims for the same owner
    # in between. Were thread 2's claim to run first, it would overwrite the record, and thread 1's
    # repeat would claim another job, leaving its first one held by the owner with nobody to run it.
    from redisjobs._scripts import LaneScript

    jids = [submit(store) for _ in range(4)]
    script = store._s.claim
    assert isinstance(script, LaneScript)
    real = script.run_packed
    lost = threading.Event()
    one: list[Any] = []

    def first_reply_lost(
        numkeys: int, count: int, body: bytes, first: bytes, repeat: bytes, *then: Any
    ) -> Any:
        if threading.current_thread().name != "one" or lost.is_set():
            return real(numkeys, count, body, first, repeat, *then)
        real(numkeys, count, body, first, repeat, *then)  # it ran; its reply never arrives
        lost.set()
        time.sleep(0.3)  # (thread 2 would claim now)
        return real(numkeys, count, body, repeat, repeat, *then)  # redis-py's resend

    monkeypatch.setattr(script, "run_packed", first_reply_lost)

    def claim_one() -> None:
        one.extend(store.claim("srv"))

    t1 = threading.Thread(target=claim_one, name="one")
    t1.start()
    assert lost.wait(5)
    two = store.claim("srv")
    t1.join(5)
    assert not t1.is_alive()
    assert ids(one) == jids[:1] and ids(two) == jids[1:2]
    held = sorted(j.decode() for j, o in store.client.hgetall(store.keys.owners).items() if o == b"srv")
    assert held == sorted(jids[:2])  # none held without a caller knowing
    assert queued(store) == jids[2:]


def test_stale_head_with_limit_claims_in_queue_order(make_store: Any) -> None:
    m1, m2 = make_store(), make_store()
    low = [submit(m1) for _ in range(3)]
    assert ids(m1.claim("one")) == low[:1]
    high = [submit(m2, priority=3), submit(m2, priority=7)]
    assert ids(m1.claim("one", limit=3)) == [high[1], high[0], low[1]]
    assert queued(m2) == [low[2]]


@pytest.mark.parametrize("limit", [5, 60])
def test_claims_past_a_stale_head_keep_queue_order_with_few_or_many_candidates(
    make_store: Any, limit: int
) -> None:
    """The script finds a candidate's key by scanning a few, or by indexing many (over 32): either
    way, what is claimed is the queue's head in order, across managers that make it stale."""
    m1, m2 = make_store(), make_store()
    jobs = [submit(m1, priority=i % 3) for i in range(3 * limit)]
    expected = sorted(jobs, key=lambda j: -(jobs.index(j) % 3))  # by priority, then submit order
    got = ids(m1.claim("one", limit=limit))
    got += ids(m2.claim("two", limit=limit))  # m1's cached head is now stale
    urgent = submit(m2, priority=5)
    got += ids(m1.claim("one", limit=limit))
    assert got == [*expected[: 2 * limit], urgent, *expected[2 * limit : 3 * limit - 1]]
    assert ids(m1.claim("one", limit=limit)) == expected[3 * limit - 1 :]


# -- only the owner ------------------------------------------------------------------------------


def test_only_the_owner_starts_a_claimed_job(store: RedisJobDefManager) -> None:
    jid = submit(store)
    store.claim("srv-1")
    with pytest.raises(NotOwner) as err:
        store.set_status(jid, RUNNING, owner="other")
    assert isinstance(err.value, PermissionError)
    assert err.value.holder == "srv-1"
    with pytest.raises(NotOwner):
        store.set_status(jid, RUNNING)
    with pytest.raises(NotOwner):
        store.set_status(jid, SUBMITTED)  # requeue by the owner only, too
    assert status(store, jid) == DISPATCHED
    assert store.lease_of(jid) is not None

    assert store.set_status(jid, RUNNING, owner="srv-1") is True
    job = store.get_job(jid)
    assert job is not None and job.status == RUNNING
    assert job.meta["start_time"] not in ("", None)
    lease = store.lease_of(jid)
    assert lease is not None and lease[0] == "srv-1"  # a running job keeps its lease


def test_renew_and_release_by_another_owner_are_refused(store: RedisJobDefManager) -> None:
    jid = submit(store)
    store.claim("srv-1", lease=30)
    lease = store.lease_of(jid)
    with pytest.raises(NotOwner) as err:
        store.renew(jid, "other", lease=60)
    assert err.value.holder == "srv-1"
    with pytest.raises(NotOwner):
        store.release(jid, "other")
    assert store.lease_of(jid) == lease
    assert status(store, jid) == DISPATCHED


@pytest.mark.parametrize("lease", [0, -60, float("nan"), float("inf"), 86_400 * 31])
def test_renew_validates_the_lease_and_leaves_it_as_it_was(store: RedisJobDefManager, lease: float) -> None:
    # (A lease in the past would hand the job to the next reap while its owner still runs it.)
    jid = submit(store)
    store.claim("srv-1", lease=30)
    before = store.lease_of(jid)
    with pytest.raises(ValueError, match="lease must be"):
        store.renew(jid, "srv-1", lease=lease)
    assert store.lease_of(jid) == before
    assert store.reap() == []


def test_a_lease_is_whole_milliseconds_and_never_shorter_than_one(store: RedisJobDefManager) -> None:
    # (The server counts leases in milliseconds: 0.4 ms made 0, a job expired on arrival.)
    first, second = submit(store), submit(store)
    before = time.time()
    assert ids(store.claim("srv-1", lease=0.0004)) == [first]
    held = store.lease_of(first)
    assert held is not None and held[1] >= before + 0.001 - 0.0005  # (the server's ms: rounded down)
    assert store.renew(first, "srv-1", lease=0.0004) >= before + 0.001 - 0.0005
    assert ids(store.claim("srv-1", lease=0.3)) == [second]
    # (0.3 * 1000 is 300.00000000000006: 300 ms, not 301; 0.0015 s, 2 ms)
    assert [_lease_ms(x) for x in (0.0004, 0.001, 0.0015, 0.3, 30, 86_400 * 30)] == [
        1,
        1,
        2,
        300,
        30_000,
        2_592_000_000,
    ]


def test_an_owner_may_not_start_a_job_after_its_lease_ran_out(store: RedisJobDefManager) -> None:
    # Nobody has reaped it yet, but the next reap will: started, it would be abandoned while it ran.
    jid = submit(store)
    store.claim("srv-1", lease=0.05)
    time.sleep(0.15)
    with pytest.raises(LeaseExpired) as err:
        store.set_status(jid, RUNNING, owner="srv-1")
    assert isinstance(err.value, NotOwner) and err.value.holder == "srv-1"
    assert "ran out" in str(err.value) and jid in str(err.value)
    assert status(store, jid) == DISPATCHED
    assert [s.jid for s in store.reap()] == [jid]
    assert queued(store) == [jid]
    # A lease renewed in time lets it start.
    store.claim("srv-1", lease=0.05)
    store.renew(jid, "srv-1", lease=30)
    time.sleep(0.1)
    assert store.set_status(jid, RUNNING, owner="srv-1") is True


def test_an_owner_that_lost_a_job_is_told_so_even_when_its_status_is_the_one_asked_for(
    make_store: Any,
) -> None:
    # srv-1's lease ran out; the job went back to the queue, and srv-2 claimed and started it.
    # srv-1, late, asks to start it: "already RUNNING" must not read as its own to run.
    m1, m2 = make_store(), make_store()
    jid = submit(m1)
    m1.claim("srv-1", lease=0.05)
    time.sleep(0.15)
    m1.reap()
    assert ids(m2.claim("srv-2")) == [jid]
    assert m2.set_status(jid, RUNNING, owner="srv-2") is True
    with pytest.raises(NotOwner) as err:
        m1.set_status(jid, RUNNING, owner="srv-1")
    assert err.value.holder == "srv-2"
    assert m2.set_status(jid, RUNNING, owner="srv-2") is False  # the holder's own repeat: no change
    assert status(m1, jid) == RUNNING


def test_release_of_a_running_job_is_a_conflict(store: RedisJobDefManager) -> None:
    jid = submit(store)
    store.claim("srv-1")
    store.set_status(jid, RUNNING, owner="srv-1")
    with pytest.raises(StatusConflict) as err:
        store.release(jid, "srv-1")
    assert err.value.actual == RUNNING
    assert status(store, jid) == RUNNING
    lease = store.lease_of(jid)
    assert lease is not None and lease[0] == "srv-1"


def test_release_puts_the_job_back_at_its_place(store: RedisJobDefManager) -> None:
    a, b, c, d = (submit(store) for _ in range(4))
    assert ids(store.claim("srv-1", limit=2)) == [a, b]
    store.release(b, "srv-1")
    assert status(store, b) == SUBMITTED
    assert store.lease_of(b) is None
    assert queued(store) == [b, c, d]
    store.release(a, "srv-1")
    assert queued(store) == [a, b, c, d]
    assert ids(store.claim("srv-2")) == [a]
    assert ids(store.claim("srv-2", limit=2)) == [b, c]
    assert store.lease_of(a) is not None and store.lease_of(a)[0] == "srv-2"  # type: ignore[index]


def test_release_keeps_priority_order(store: RedisJobDefManager) -> None:
    low = submit(store, 1)
    high = submit(store, 9)
    assert ids(store.claim("srv-1")) == [high]
    later_high = submit(store, 9)
    store.release(high, "srv-1")
    assert queued(store) == [high, later_high, low]


def test_anyone_may_finish_a_claimed_job_which_clears_the_lease(make_store: Any) -> None:
    owner_store, other_store = make_store(), make_store()
    dispatched, running = submit(owner_store), submit(owner_store)
    owner_store.claim("srv-1", limit=2)
    owner_store.set_status(running, RUNNING, owner="srv-1")

    assert other_store.set_status(dispatched, ABORTED) is True
    assert other_store.set_status(running, ABORTED) is True
    for jid in (dispatched, running):
        assert status(owner_store, jid) == ABORTED
        assert owner_store.lease_of(jid) is None
        with pytest.raises(NotOwner) as err:
            owner_store.renew(jid, "srv-1")
        assert err.value.holder == ""
    duration = owner_store.get_meta(running)["duration"]
    assert DURATION.match(duration), duration


def test_a_change_naming_another_owner_is_refused(store: RedisJobDefManager) -> None:
    jid = submit(store)
    store.claim("srv-1")
    with pytest.raises(NotOwner):
        store.set_status(jid, ABORTED, owner="other")
    assert status(store, jid) == DISPATCHED
    assert store.set_status(jid, ABORTED, owner="srv-1") is True
    assert store.lease_of(jid) is None


def test_nvflare_style_dispatch_without_claim(store: RedisJobDefManager) -> None:
    jid = submit(store)
    assert store.set_status(jid, DISPATCHED) is True
    assert store.lease_of(jid) is None
    assert store.set_status(jid, RUNNING) is True
    job = store.get_job(jid)
    assert job is not None and job.status == RUNNING
    assert job.meta["start_time"] not in ("", None)
    assert store.lease_of(jid) is None
    assert store.reap() == []
    assert store.recover("srv-1") == []
    assert status(store, jid) == RUNNING


# -- renew and reap ------------------------------------------------------------------------------


def test_renew_extends_the_lease_and_keeps_the_job_from_being_reaped(store: RedisJobDefManager) -> None:
    jid = submit(store)
    store.claim("srv-1", lease=0.2)
    first = store.lease_of(jid)
    assert first is not None
    time.sleep(0.05)
    expiry = store.renew(jid, "srv-1", lease=1.0)
    assert expiry > first[1] + 0.5
    assert store.lease_of(jid) == ("srv-1", pytest.approx(expiry, abs=0.002))
    time.sleep(0.25)  # past the first lease
    assert store.reap() == []
    assert status(store, jid) == DISPATCHED
    assert store.lease_of(jid) == ("srv-1", pytest.approx(expiry, abs=0.002))
    # Renewing a running job works too.
    store.set_status(jid, RUNNING, owner="srv-1")
    assert store.renew(jid, "srv-1", lease=2.0) >= expiry


def test_reap_settles_expired_leases(store: RedisJobDefManager) -> None:
    dispatched, running, kept = submit(store), submit(store), submit(store)
    later = submit(store)
    assert ids(store.claim("srv-1", lease=0.05, limit=2)) == [dispatched, running]
    store.set_status(running, RUNNING, owner="srv-1")
    assert ids(store.claim("srv-2", lease=60)) == [kept]
    time.sleep(0.15)

    settled = store.reap()
    assert all(isinstance(s, Settled) for s in settled)
    assert sorted(settled, key=lambda s: s.jid) == sorted(
        [
            Settled(dispatched, DISPATCHED, SUBMITTED, "srv-1"),
            Settled(running, RUNNING, ABANDONED, "srv-1"),
        ],
        key=lambda s: s.jid,
    )
    assert status(store, dispatched) == SUBMITTED
    assert status(store, running) == ABANDONED
    assert store.lease_of(dispatched) is None
    assert store.lease_of(running) is None
    assert queued(store) == [dispatched, later]  # schedulable again, at its place
    lease = store.lease_of(kept)
    assert lease is not None and lease[0] == "srv-2"
    assert status(store, kept) == DISPATCHED

    with pytest.raises(NotOwner) as err:
        store.renew(dispatched, "srv-1")
    assert err.value.holder == ""
    with pytest.raises(NotOwner):
        store.renew(running, "srv-1")
    with pytest.raises(StatusConflict):  # back in the queue: no longer DISPATCHED
        store.release(dispatched, "srv-1")
    assert store.reap() == []


def test_reap_with_nothing_due_returns_nothing(store: RedisJobDefManager) -> None:
    assert store.reap() == []
    jid = submit(store)
    assert store.reap() == []
    store.claim("srv-1", lease=60)
    assert store.reap() == []
    assert status(store, jid) == DISPATCHED


def test_a_reaped_job_is_claimed_by_the_next_server(make_store: Any) -> None:
    m1, m2 = make_store(), make_store()
    jid = submit(m1)
    m1.claim("dead", lease=0.05)
    time.sleep(0.1)
    assert m2.claim("alive") == []  # claim does not reap: the lease is expired but still held
    assert [s.jid for s in m2.reap()] == [jid]
    assert ids(m2.claim("alive")) == [jid]
    with pytest.raises(NotOwner) as err:
        m1.set_status(jid, RUNNING, owner="dead")
    assert err.value.holder == "alive"


# -- recover -------------------------------------------------------------------------------------


def test_recover_settles_only_that_owners_jobs(make_store: Any) -> None:
    m = make_store()
    a1, a2, b1, b2 = (submit(m) for _ in range(4))
    assert ids(m.claim("A", limit=2)) == [a1, a2]
    assert ids(m.claim("B", limit=2)) == [b1, b2]
    m.set_status(a2, RUNNING, owner="A")
    m.set_status(b2, RUNNING, owner="B")
    b_leases = (m.lease_of(b1), m.lease_of(b2))

    settled = make_store().recover("A")
    assert sorted(settled, key=lambda s: s.jid) == sorted(
        [Settled(a1, DISPATCHED, SUBMITTED, "A"), Settled(a2, RUNNING, ABANDONED, "A")],
        key=lambda s: s.jid,
    )
    assert status(m, a1) == SUBMITTED
    assert status(m, a2) == ABANDONED
    assert m.lease_of(a1) is None and m.lease_of(a2) is None
    assert queued(m) == [a1]
    # B is untouched.
    assert (status(m, b1), status(m, b2)) == (DISPATCHED, RUNNING)
    assert (m.lease_of(b1), m.lease_of(b2)) == b_leases
    # A's record of its last claim is gone with its jobs; B's stays.
    assert set(m.client.hkeys(m.keys.claim_requests)) == {b"B"}
    assert m.recover("A") == []


def test_recover_running_to_aborted_writes_a_duration(store: RedisJobDefManager) -> None:
    dispatched, running = submit(store), submit(store)
    store.claim("srv-1", limit=2)
    store.set_status(running, RUNNING, owner="srv-1")
    time.sleep(0.02)
    settled = store.recover("srv-1", running="FINISHED:ABORTED", dispatched=ABORTED)
    assert {(s.jid, s.old, s.new) for s in settled} == {
        (dispatched, DISPATCHED, ABORTED),
        (running, RUNNING, ABORTED),
    }
    meta = store.get_meta(running)
    assert meta["status"] == ABORTED
    assert DURATION.match(meta["duration"]), meta["duration"]
    assert meta["duration"] != "0:00:00"
    assert store.get_meta(dispatched)["duration"] == "N/A"  # never started
    assert store.lease_of(running) is None and store.lease_of(dispatched) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"running": "SUBMITTED"},
        {"running": "RUNNING"},
        {"running": "DISPATCHED"},
        {"dispatched": "RUNNING"},
        {"dispatched": "DISPATCHED"},
        {"dispatched": "APPROVED"},
    ],
    ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()),
)
def test_recover_refuses_a_forbidden_target(store: RedisJobDefManager, kwargs: dict[str, str]) -> None:
    dispatched, running = submit(store), submit(store)
    store.claim("srv-1", limit=2)
    store.set_status(running, RUNNING, owner="srv-1")
    with pytest.raises(InvalidTransition):
        store.recover("srv-1", **kwargs)
    assert status(store, dispatched) == DISPATCHED
    assert status(store, running) == RUNNING
    for jid in (dispatched, running):
        lease = store.lease_of(jid)
        assert lease is not None and lease[0] == "srv-1"


def test_recover_validates_the_owner(store: RedisJobDefManager) -> None:
    with pytest.raises(ValueError):
        store.recover("")


# -- delete --------------------------------------------------------------------------------------


def test_delete_of_a_claimed_job_clears_its_lease(store: RedisJobDefManager) -> None:
    dispatched, running = submit(store), submit(store)
    store.claim("srv-1", limit=2, lease=0.05)
    store.set_status(running, RUNNING, owner="srv-1")
    store.delete(dispatched)
    store.delete(running)
    assert store.lease_of(dispatched) is None
    assert store.lease_of(running) is None
    with pytest.raises(JobNotFound):
        store.renew(dispatched, "srv-1")
    time.sleep(0.1)
    assert store.reap() == []
    assert store.recover("srv-1") == []


# -- events --------------------------------------------------------------------------------------


def test_events_record_every_change(make_store: Any) -> None:
    m = make_store(actor="tester")
    t0 = time.time()
    j1 = submit(m)
    m.set_approval(j1, "alice", True, "ok")
    j2 = submit(m)
    assert ids(m.claim("A", lease=0.05)) == [j1]
    m.set_status(j1, RUNNING, owner="A")
    assert ids(m.claim("B", lease=60)) == [j2]
    time.sleep(0.1)
    assert [s.jid for s in m.reap()] == [j1]
    assert [s.jid for s in m.recover("B")] == [j2]
    m.delete(j2)
    t1 = time.time()

    events = m.events()
    assert all(isinstance(e, Event) for e in events)
    got = [(e.jid, e.op, e.old, e.new) for e in events]
    assert got[1][:3] == (j1, "approval", "")
    assert "alice" in got[1][3]
    got[1] = (j1, "approval", "", "")
    assert got == [
        (j1, "create", "", SUBMITTED),
        (j1, "approval", "", ""),
        (j2, "create", "", SUBMITTED),
        (j1, "claim", SUBMITTED, DISPATCHED),
        (j1, "status", DISPATCHED, RUNNING),
        (j2, "claim", SUBMITTED, DISPATCHED),
        (j1, "reap", RUNNING, ABANDONED),
        (j2, "recover", DISPATCHED, SUBMITTED),
        (j2, "delete", SUBMITTED, ""),
    ]
    assert all(e.actor == "tester" for e in events)
    # Each event carries its call's time (the client's clock) to the microsecond.
    assert all(t0 - 1e-5 <= e.time <= t1 + 1e-5 for e in events), [e.time for e in events]
    assert [e.time for e in events] == sorted(e.time for e in events)
    assert len({e.id for e in events}) == len(events)

    assert m.events(since=events[3].id) == events[4:]
    assert m.events(since=events[-1].id) == []
    assert m.events(count=2) == events[:2]


def test_approvals_written_by_update_meta_are_events_too(store: RedisJobDefManager) -> None:
    jid = submit(store)
    store.set_approval(jid, "alice", True, "ok")
    mark = store.events()[-1].id
    # A new verdict (bob), the same one again (alice), and a changed one, with a plain field.
    store.update_meta(jid, {"approvals": {"bob": [False, "no"], "alice": [True, "ok"]}, "note": 1})
    store.update_meta(jid, {"approvals": {"bob": [True, "fine now"]}})
    store.update_meta(jid, {"approvals": {"bob": [True, "fine now"]}})  # (again: nothing new)
    got = [(e.jid, e.op, e.old, e.new, e.actor) for e in store.events(since=mark)]
    actor = store.actor
    assert got == [
        (jid, "approval", "", "rejected:bob", actor),
        (jid, "approval", "", "approved:bob", actor),
    ]
    meta = store.get_job(jid).meta  # type: ignore[union-attr]
    assert meta["approvals"] == {"alice": [True, "ok"], "bob": [True, "fine now"]} and meta["note"] == 1
    # A verdict update_meta was given as it is: its first element's truth, as Python reads it.
    verdicts = {"a": [1, ""], "b": [0, ""], "c": ["yes"], "d": [""], "e": [], "f": [None], "g": [[0]],
                "h": [{}], "i": [-0.0], "j": [2.5e-3], "k": True}  # fmt: skip
    mark = store.events()[-1].id
    store.update_meta(jid, {"approvals": verdicts})
    got = {e.new.split(":", 1)[1]: e.new.split(":", 1)[0] for e in store.events(since=mark)}
    assert got == {r: "approved" if (v[0] if isinstance(v, list) and v else v) else "rejected"
                   for r, v in verdicts.items()}  # fmt: skip
    # Thousands at once (the server reads them in batches).
    many = {f"r{i}": [True, ""] for i in range(9_000)}
    store.update_meta(jid, {"approvals": many})
    assert len(store.events(since=mark, count=20_000)) == len(verdicts) + len(many)


def test_events_of_another_manager_carry_its_actor(make_store: Any) -> None:
    m1, m2 = make_store(actor="one"), make_store(actor="two")
    jid = submit(m1)
    m2.claim("srv-2")
    assert [(e.op, e.actor) for e in m1.events()] == [("create", "one"), ("claim", "two")]
    assert all(e.jid == jid for e in m2.events())


# -- watch ---------------------------------------------------------------------------------------


def bounded(events: Iterator[Event], n: int = 200) -> list[Event]:
    return list(itertools.islice(events, n))


def test_watch_from_the_start_yields_everything_then_stops(store: RedisJobDefManager) -> None:
    for _ in range(3):
        submit(store)
    store.claim("srv-1")
    existing = store.events()
    assert len(existing) == 4
    start = time.monotonic()
    seen = bounded(store.watch(since="0", block=0.05, idle_timeout=0.2))
    elapsed = time.monotonic() - start
    assert seen == existing
    assert elapsed < 3


def test_watch_resumes_after_an_id(store: RedisJobDefManager) -> None:
    for _ in range(5):
        submit(store)
    existing = store.events()
    assert len(existing) == 5
    assert bounded(store.watch(since=existing[2].id, block=0.05, idle_timeout=0.2)) == existing[3:]
    assert bounded(store.watch(since=existing[-1].id, block=0.05, idle_timeout=0.2)) == []


def test_watch_new_sees_only_events_after_it_started(store: RedisJobDefManager) -> None:
    for _ in range(2):
        submit(store)
    old_ids = {e.id for e in store.events()}
    created: list[str] = []

    def later() -> None:
        time.sleep(0.1)
        created.append(submit(store))

    thread = threading.Thread(target=later)
    seen: list[Event] = []
    watcher = store.watch("$", block=0.1, idle_timeout=0.5)
    thread.start()
    try:
        for event in itertools.islice(watcher, 20):
            seen.append(event)
            if created and event.jid == created[0]:
                break
    finally:
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert created
    assert [(e.jid, e.op) for e in seen] == [(created[0], "create")]
    assert not {e.id for e in seen} & old_ids


# -- threads -------------------------------------------------------------------------------------


def test_threads_sharing_a_manager_claim_each_job_once(store: RedisJobDefManager) -> None:
    jids = [submit(store, priority=i % 3) for i in range(40)]
    results: dict[int, list[str]] = {i: [] for i in range(8)}
    barrier = threading.Barrier(8)

    def work(n: int) -> None:
        barrier.wait(timeout=10)
        for _ in range(60):
            got = store.claim(f"t{n}", limit=1 + n % 2)
            if not got:
                return
            results[n] += ids(got)

    assert run_threads(work, 8, timeout=30) == []
    claimed = [jid for got in results.values() for jid in got]
    assert len(claimed) == 40
    assert sorted(claimed) == sorted(jids)
    assert queued(store) == []
    for n, got in results.items():
        for jid in got:
            lease = store.lease_of(jid)
            assert lease is not None and lease[0] == f"t{n}"


# -- processes (real server) ---------------------------------------------------------------------


@pytest.fixture
def real_namespace(redis_url: str) -> Iterator[tuple[str, str]]:
    """``(url, namespace)`` on the real server; the namespace is checked and removed afterwards."""
    namespace = "t-" + uuid.uuid4().hex[:12]
    yield redis_url, namespace
    with RedisJobDefManager(redis_url, namespace=namespace) as m:
        assert m.check_invariants() == []
        for key in list(m.client.scan_iter(match=f"rj:{{{namespace}*", count=1000)):
            m.client.unlink(key)


def _wait_child(pid: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, code = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(code)
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise AssertionError(f"child {pid} did not finish within {timeout} s")


@pytest.mark.real
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_manager_used_after_fork(real_namespace: tuple[str, str]) -> None:
    url, namespace = real_namespace
    with RedisJobDefManager(url, namespace=namespace) as m:
        first, second = submit(m), submit(m)
        assert ids(m.claim("parent")) == [first]  # the parent's pool holds a connection now
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
            pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            ok = False
            try:
                got = m.claim("child", lease=60)
                ok = ids(got) == [second] and m.lease_of(second) is not None
            finally:
                os._exit(0 if ok else 1)
        assert _wait_child(pid, 30) == 0
        lease = m.lease_of(second)
        assert lease is not None and lease[0] == "child"
        assert status(m, second) == DISPATCHED
        # Events name the process that acted: the child its own pid, not the parent's.
        host = socket.gethostname()
        claims = {e.jid: e.actor for e in m.events(count=100) if e.op == "claim"}
        assert claims == {first: f"{host}:{os.getpid()}", second: f"{host}:{pid}"}
        # The parent's manager still works after the child used (and closed) its copy.
        assert m.claim("parent") == []
        m.set_status(first, RUNNING, owner="parent")
        assert status(m, first) == RUNNING


def _spawned_claim(url: str, namespace: str, owner: str, out: Any) -> None:
    with RedisJobDefManager(url, namespace=namespace) as m:
        out.put(ids(m.claim(owner, lease=60)))


@pytest.mark.real
def test_manager_built_in_a_spawned_process(real_namespace: tuple[str, str]) -> None:
    url, namespace = real_namespace
    with RedisJobDefManager(url, namespace=namespace) as m:
        first, second = submit(m, priority=1), submit(m, priority=2)
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        proc = ctx.Process(target=_spawned_claim, args=(url, namespace, "spawned", out))
        proc.start()
        try:
            got = out.get(timeout=60)
        finally:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=10)
        assert proc.exitcode == 0
        assert got == [second]
        lease = m.lease_of(second)
        assert lease is not None and lease[0] == "spawned"
        assert status(m, second) == DISPATCHED
        assert queued(m) == [first]


def test_claim_arguments_packed_once_follow_the_manager() -> None:
    # The claim's repeating arguments are packed once and reused: a new actor (a forked child's)
    # or event cap, and any new owner, lease or limit, are packed afresh.
    from redisjobs._connection import bulks
    from redisjobs.manager import _ClaimBulks

    packs = _ClaimBulks(b"rj:{x}:job:", b"rj:{x}:queue")
    assert packs.tail("host:1", 100) == bulks([b"host:1", b"100", b"rj:{x}:job:"])
    assert packs.tail("host:2", 100) == bulks([b"host:2", b"100", b"rj:{x}:job:"])
    assert packs.tail("host:2", 50) == bulks([b"host:2", b"50", b"rj:{x}:job:"])
    for n in range(600):  # more combinations than it keeps: it starts afresh, and stays right
        assert packs.of(f"owner-{n % 7}", 1000 + n, 1, n) == bulks(
            [f"owner-{n % 7}".encode(), b"%d" % (1000 + n), b"1", b"%d" % n]
        )
    assert len(packs._seen) <= 256
    for window in (3, 3, 11, 3):  # the head's ZRANGE follows the window
        zrange = [b"ZRANGE", b"rj:{x}:queue", b"0", b"%d" % (window - 1)]
        assert packs.head(window) == b"*4\r\n" + bulks(zrange)
