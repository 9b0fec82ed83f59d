"""Round trips per operation, counted on the wire to a real server.

Scheduling reads must not grow with the number of finished jobs: with 10,000 finished and 10
queued, get_jobs_to_schedule costs at most 3 round trips.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from redisjobs import RedisJobDefManager, RunStatus

pytestmark = pytest.mark.real


class Counter:
    sent = 0


class CountingConnection(redis.Connection):
    """Counts every packet sent: one per command, one per pipeline."""

    def send_packed_command(self, command, check_health=True):  # type: ignore[no-untyped-def]
        Counter.sent += 1
        super().send_packed_command(command, check_health)


@pytest.fixture
def counted(redis_url: str) -> Iterator[RedisJobDefManager]:
    pool = redis.ConnectionPool.from_url(redis_url, connection_class=CountingConnection)
    m = RedisJobDefManager(client=redis.Redis(connection_pool=pool), namespace="rt-count")
    m.client.ping()
    yield m
    for key in list(m.client.scan_iter(match="rj:{rt-count*", count=5000)):
        m.client.unlink(key)
    m.close()


def trips(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    before = Counter.sent
    result = fn(*args, **kwargs)
    return Counter.sent - before, result


def test_get_jobs_to_schedule_is_flat_in_finished_jobs(counted: RedisJobDefManager) -> None:
    m = counted
    finished = []
    for i in range(10_000):
        finished.append(m.create({"name": f"done-{i}"}, b"x")["job_id"])
    pipe_size = 1000
    for start in range(0, len(finished), pipe_size):
        for jid in finished[start : start + pipe_size]:
            m.set_status(jid, RunStatus.FINISHED_COMPLETED)
    queued = [m.create({"name": f"q-{i}"}, b"y")["job_id"] for i in range(10)]

    n, jobs = trips(m.get_jobs_to_schedule)
    assert [j.job_id for j in jobs] == queued
    assert n <= 3, f"get_jobs_to_schedule took {n} round trips"


def test_single_job_operations_take_one_round_trip_each(counted: RedisJobDefManager) -> None:
    m = counted
    jid = m.create({"name": "one"}, b"payload")["job_id"]
    assert trips(m.get_job, jid)[0] == 1
    assert trips(m.set_status, jid, RunStatus.DISPATCHED)[0] == 1
    assert trips(m.update_meta, jid, {"schedule_count": 1})[0] == 1
    assert trips(m.set_approval, jid, "r", True, "ok")[0] == 1
    # Small blobs travel inline: one round trip each.
    assert trips(m.get_content, {"job_id": jid})[0] == 1
    n_create, meta = trips(m.create, {"name": "two"}, b"small")
    assert n_create == 1
    assert trips(m.save_workspace, meta["job_id"], b"ws")[0] == 1
    assert trips(m.delete, meta["job_id"])[0] == 1
    # A chunked blob: the chunk (with its registration), then the script; reads: manifest, chunks.
    big = b"x" * (m.inline_max + 1)
    n_create, meta = trips(m.create, {"name": "three"}, big)
    assert n_create == 2
    assert trips(m.get_content, meta)[0] == 2
    assert trips(m.delete, meta["job_id"])[0] == 2  # the script, then unlinking the chunks
