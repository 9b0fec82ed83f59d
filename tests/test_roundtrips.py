"""Round trips per operation, counted on the wire to a real server.

Scheduling reads must not grow with the number of finished jobs: with 10,000 finished and 10
queued, get_jobs_to_schedule costs at most 3 round trips.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from redisjobs import RedisJobDefManager, RunStatus

pytestmark = pytest.mark.real


class Counter:
    sent = 0  # round trips: sends that follow a reply read (several writes before a read are one)
    read = True


class CountingConnection(redis.Connection):
    """Counts round trips: a send after a reply was read starts one."""

    def send_packed_command(self, command, check_health=True):  # type: ignore[no-untyped-def]
        Counter.sent += Counter.read
        Counter.read = False
        super().send_packed_command(command, check_health)

    def read_response(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        Counter.read = True
        return super().read_response(*args, **kwargs)


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
    # A chunked blob of a few chunks, given as bytes: its chunks travel with the script, in one
    # round trip. Reads: the manifest, then the chunks.
    big = b"x" * (m.inline_max + 1)
    n_create, meta = trips(m.create, {"name": "three"}, big)
    assert n_create == 1
    assert m.get_content(meta) == big
    assert m.client.zcard(m.keys.uploads) == 0  # the registration went with the commit
    assert trips(m.get_content, meta)[0] == 2
    assert trips(m.delete, meta["job_id"])[0] == 2  # the script, then unlinking the chunks


def test_content_beyond_a_few_chunks_is_staged_before_the_create(redis_url: str) -> None:
    pool = redis.ConnectionPool.from_url(redis_url, connection_class=CountingConnection)
    m = RedisJobDefManager(
        client=redis.Redis(connection_pool=pool), namespace="rt-staged", chunk_size=1024, inline_max=0
    )
    try:
        m.client.ping()
        piped, staged = os.urandom(4 * 1024), os.urandom(4 * 1024 + 1)  # 4 chunks, 5 chunks
        n_piped, first = trips(m.create, {"name": "piped"}, piped)
        n_staged, second = trips(m.create, {"name": "staged"}, staged)
        # Staged: the first 4 chunks with the registration, then the 5th, then the script.
        assert (n_piped, n_staged) == (1, 3)
        assert m.get_content(first) == piped and m.get_content(second) == staged
        assert m.client.zcard(m.keys.uploads) == 0
        assert m.check_invariants() == []
    finally:
        for key in list(m.client.scan_iter(match="rj:{rt-staged*", count=5000)):
            m.client.unlink(key)
        m.close()
