"""Limits and retention: a blob size bound, paged listings, and gc's retention policy."""

from __future__ import annotations

import datetime
import time
from typing import Any

import pytest

from redisjobs import BlobTooLarge, RedisJobDefManager, Retention, RunStatus

pytestmark = pytest.mark.cluster


def test_a_blob_above_max_blob_size_stores_nothing(make_store: Any) -> None:
    m = make_store(max_blob_size=100_000, chunk_size=16 * 1024)
    with pytest.raises(BlobTooLarge, match=r"component 'data' of job 'too-big'.*100000 bytes"):
        m.create({"name": "big", "job_id": "too-big"}, bytes(100_001))
    assert m.get_job("too-big") is None
    jid = m.create({"name": "fits"}, bytes(100_000))["job_id"]
    m.save_workspace(jid, b"old workspace")
    with pytest.raises(BlobTooLarge, match="workspace"):
        m.save_workspace(jid, iter([bytes(60_000), bytes(60_000)]))  # found out mid-stream
    assert m.get_storage_component(jid, "workspace") == b"old workspace"
    assert m.check_invariants() == []  # the chunks sent before the limit was hit are gone


def test_pages_cover_every_job_once_in_submit_order(store: RedisJobDefManager) -> None:
    ids = [store.create({"name": f"j{i}"}, b"x")["job_id"] for i in range(23)]
    seen: list[str] = []
    cursor = None
    for _ in range(10):  # bounded: 23 jobs in pages of 5 take 5 pages
        jobs, cursor = store.page_jobs(cursor=cursor, limit=5)
        assert len(jobs) <= 5
        seen += [j.job_id for j in jobs]
        if cursor is None:
            break
    assert seen == ids


def test_status_pages_cover_the_status(store: RedisJobDefManager) -> None:
    ids = [store.create({"name": f"j{i}"}, b"x")["job_id"] for i in range(12)]
    for jid in ids[:7]:
        store.set_status(jid, RunStatus.FINISHED_ABORTED)
    seen: set[str] = set()
    cursor = None
    for _ in range(50):
        jobs, cursor = store.page_jobs(RunStatus.FINISHED_ABORTED, cursor=cursor, limit=3)
        seen |= {j.job_id for j in jobs}
        assert all(j.meta["status"] == "FINISHED:ABORTED" for j in jobs)
        if cursor is None:
            break
    assert seen == set(ids[:7])


@pytest.mark.parametrize("limit", [0, 1001, -1, True, 2.5])
def test_page_size_is_bounded(store: RedisJobDefManager, limit: Any) -> None:
    with pytest.raises(ValueError, match="limit"):
        store.page_jobs(limit=limit)


def test_a_forged_cursor_is_refused(store: RedisJobDefManager) -> None:
    with pytest.raises(ValueError, match="cursor"):
        store.page_jobs(cursor="-inf")


def finished_jobs(m: RedisJobDefManager, n: int) -> list[str]:
    ids = []
    for i in range(n):
        jid = m.create({"name": f"f{i}"}, bytes(70_000))["job_id"]  # chunked: delete must free them
        m.set_status(jid, RunStatus.FINISHED_COMPLETED)
        ids.append(jid)
    return ids


def test_gc_keeps_the_newest_finished_jobs_and_every_unfinished_one(make_store: Any) -> None:
    m = make_store(keep_finished=3)
    old = finished_jobs(m, 5)
    waiting = m.create({"name": "queued"}, b"x")["job_id"]
    report = m.gc(grace=0)
    assert report.jobs_expired == 2
    assert report.chunks_freed == 0  # delete freed the chunks itself
    assert {j.job_id for j in m.get_all_jobs()} == {*old[2:], waiting}
    assert m.gc(grace=0).jobs_expired == 0  # applied again: nothing more to do


def test_gc_expires_finished_jobs_by_age(make_store: Any) -> None:
    m = make_store()
    ids = finished_jobs(m, 3)
    m.update_meta(ids[0], {"submit_time": time.time() - 10 * 86_400})  # submitted 10 days ago
    running = m.create({"name": "old but running"}, b"x")["job_id"]
    m.update_meta(running, {"submit_time": time.time() - 10 * 86_400})
    report = m.gc(grace=0, retention=Retention(keep_finished_days=7))
    assert report.jobs_expired == 1
    assert {j.job_id for j in m.get_all_jobs()} == {ids[1], ids[2], running}
    assert m.gc(grace=0).jobs_expired == 0  # the manager's own policy keeps everything


def test_gc_measures_a_finished_jobs_age_from_when_it_finished(make_store: Any) -> None:
    # Submitted 10 days ago, each: one ran 9.5 days and finished half a day ago (kept); one ran a
    # day and finished 8 days ago; one was aborted without running (by its submit time: expired);
    # one with a start time as NVFlare writes it (naive local time, str(datetime)).
    m = make_store()
    now = time.time()
    ago = {"submit_time": now - 10 * 86_400}
    started = datetime.datetime.fromtimestamp(now - 10 * 86_400, datetime.timezone.utc).isoformat()
    naive = str(datetime.datetime.fromtimestamp(now - 10 * 86_400))
    jobs = {}
    for name, extra in [
        ("long run", {"start_time": started, "duration": "9 days, 12:00:00.5"}),
        ("short run", {"start_time": started, "duration": "1 day, 23:59:59"}),
        ("never ran", {}),
        ("nvflare", {"start_time": naive, "duration": "9 days, 23:00:00"}),
        ("odd", {"start_time": "not a time", "duration": "N/A"}),
    ]:
        jid = m.create({"name": name}, b"x")["job_id"]
        m.set_status(jid, RunStatus.FINISHED_COMPLETED)
        m.update_meta(jid, {**ago, **extra})
        jobs[name] = jid
    report = m.gc(grace=0, retention=Retention(keep_finished_days=7))
    assert report.jobs_expired == 3
    assert {j.job_id for j in m.get_all_jobs()} == {jobs["long run"], jobs["nvflare"]}


def test_gc_trims_old_events(make_store: Any) -> None:
    m = make_store()
    m.create({"name": "e"}, b"x")
    assert m.gc(grace=0, retention=Retention(event_max_age_days=1)).events_trimmed == 0
    time.sleep(0.01)
    report = m.gc(grace=0, retention=Retention(event_max_age_days=0))
    assert report.events_trimmed == 1 and m.events() == []


@pytest.mark.parametrize(
    "bad", [{"keep_finished": -1}, {"keep_finished_days": float("nan")}, {"keep_finished": True}]
)
def test_a_nonsense_retention_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Retention(**bad)
