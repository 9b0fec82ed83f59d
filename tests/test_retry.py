"""Every operation is safe to repeat: redis-py sends a command again when its reply is lost (a cut
connection, a timeout), though the server may have run it. Here a connection class loses replies
on purpose (the server ran the command and answered; the client drops the answer and the
connection), so redis-py's own retry sends the very same command again, as it would in production.
A repeat must answer as the first run did, change nothing more, and emit no second event.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from redisjobs import JobNotFound, RedisJobDefManager, RunStatus
from redisjobs._connection import Packer, make_retry

pytestmark = pytest.mark.real


class LossyConnection(redis.Connection):
    """Drops the next ``lose`` replies it reads (after reading them: the command ran)."""

    lose = 0
    lost = 0
    #: Also flush the server's scripts and functions when a reply is lost, as a restart without
    #: persistence does (set to an admin client): the retry then meets NOSCRIPT, or "Function not
    #: found".
    flusher: redis.Redis | None = None

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        reply = super().read_response(*args, **kwargs)
        if LossyConnection.lose > 0:
            LossyConnection.lose -= 1
            LossyConnection.lost += 1
            self.disconnect()
            if LossyConnection.flusher is not None:
                LossyConnection.flusher.script_flush()
                LossyConnection.flusher.function_flush()
            raise redis.ConnectionError("reply lost on purpose (test)")
        return reply


@pytest.fixture(params=[True, False], ids=["fcall", "evalsha"])
def lossy(redis_url: str, namespace: str, request: pytest.FixtureRequest) -> Iterator[RedisJobDefManager]:
    client = redis.Redis.from_url(
        redis_url, connection_class=LossyConnection, retry=make_retry(3, 0.001, 0.01), command_packer=Packer()
    )
    m = RedisJobDefManager(client=client, namespace=namespace, functions=request.param)
    m.client.ping()  # connect (and load the scripts) before any reply is lost
    assert (m._s.update.function is not None) is request.param
    LossyConnection.lose = LossyConnection.lost = 0
    yield m
    LossyConnection.lose, LossyConnection.flusher = 0, None
    m.gc(grace=0)
    assert m.check_invariants() == []
    m.close()


def lose_next_reply() -> None:
    LossyConnection.lose, LossyConnection.lost = 1, 0


def ops(m: RedisJobDefManager, jid: str) -> Counter[str]:
    return Counter(e.op for e in m.events(count=10_000) if e.jid == jid)


def test_a_repeated_create_creates_once(lossy: RedisJobDefManager) -> None:
    meta: dict[str, Any] = {"name": "once", "job_id": "job-once"}
    lose_next_reply()
    lossy.create(meta, b"content")
    assert LossyConnection.lost == 1
    assert lossy.get_content(lossy.get_meta("job-once")) == b"content"
    assert [j.job_id for j in lossy.get_all_jobs()] == ["job-once"]
    assert ops(lossy, "job-once") == Counter(create=1)


def test_a_repeated_create_of_a_large_job_creates_once(lossy: RedisJobDefManager) -> None:
    content = bytes(range(256)) * 5000  # chunked, not inline
    lose_next_reply()  # the reply to the chunk upload is lost: the pipeline is sent again
    lossy.create({"name": "big", "job_id": "job-big"}, content)
    assert LossyConnection.lost == 1
    assert lossy.get_content(lossy.get_meta("job-big")) == content
    assert ops(lossy, "job-big") == Counter(create=1)


def test_a_repeated_compare_and_set_reports_its_success(lossy: RedisJobDefManager) -> None:
    jid = lossy.create({"name": "cas"}, b"x")["job_id"]
    lose_next_reply()
    changed = lossy.set_status(jid, RunStatus.DISPATCHED, expected=RunStatus.SUBMITTED)
    assert LossyConnection.lost == 1
    assert changed is True  # not StatusConflict: the repeat saw its own first run
    assert lossy.get_meta(jid)["status"] == "DISPATCHED"
    assert ops(lossy, jid) == Counter(create=1, status=1)


def test_a_repeated_plain_transition_emits_one_event(lossy: RedisJobDefManager) -> None:
    jid = lossy.create({"name": "plain"}, b"x")["job_id"]
    lose_next_reply()
    lossy.set_status(jid, RunStatus.FINISHED_ABORTED)
    assert LossyConnection.lost == 1
    assert lossy.get_meta(jid)["status"] == "FINISHED:ABORTED"
    assert ops(lossy, jid) == Counter(create=1, status=1)


def test_a_repeated_claim_claims_no_second_job(lossy: RedisJobDefManager) -> None:
    first = lossy.create({"name": "a"}, b"x")["job_id"]
    second = lossy.create({"name": "b"}, b"x")["job_id"]
    assert lossy.claim("warm-up", lease=60) and lossy.release(first, "warm-up") is None  # fill the head
    lose_next_reply()
    got = lossy.claim("server-1", lease=60)
    assert LossyConnection.lost == 1
    assert [j.job_id for j in got] == [first]
    assert lossy.get_meta(second)["status"] == "SUBMITTED"
    assert lossy.lease_of(first) is not None and lossy.lease_of(second) is None
    assert ops(lossy, first)["claim"] == 2 and ops(lossy, second)["claim"] == 0  # warm-up + one


def test_a_repeated_claim_returns_what_its_first_run_claimed(lossy: RedisJobDefManager) -> None:
    # The first run claims the head as the previous claim showed it (no stale retry here): the
    # repeat must find its record, though a first send of a claim does not look for one.
    ids = [lossy.create({"name": f"j{i}"}, b"x")["job_id"] for i in range(3)]
    assert [j.job_id for j in lossy.claim("warm-up", lease=60)] == ids[:1]
    lose_next_reply()
    got = lossy.claim("server-1", lease=60)
    assert LossyConnection.lost == 1
    assert [j.job_id for j in got] == ids[1:2]
    assert got[0].meta["status"] == "DISPATCHED"
    assert lossy.get_meta(ids[2])["status"] == "SUBMITTED"
    assert lossy.lease_of(ids[2]) is None
    assert [ops(lossy, jid)["claim"] for jid in ids] == [1, 1, 0]


@pytest.fixture
def restarting(lossy: RedisJobDefManager, redis_url: str) -> Iterator[RedisJobDefManager]:
    """``lossy``, whose lost replies also flush the server's scripts (as a restart does)."""
    admin = redis.Redis.from_url(redis_url)
    LossyConnection.flusher = admin
    yield lossy
    LossyConnection.flusher = None
    admin.close()


def test_a_repeat_that_meets_noscript_is_still_a_repeat(restarting: RedisJobDefManager) -> None:
    # The first send ran, its reply was lost, and the retry reached a server without the script
    # (restarted): NOSCRIPT, the script loaded, and sent once more. That send must still look for
    # the first run's record, not pass for a first send.
    m = restarting
    ids = [m.create({"name": f"j{i}"}, b"x")["job_id"] for i in range(3)]
    assert [j.job_id for j in m.claim("warm-up", lease=60)] == ids[:1]
    lose_next_reply()
    assert [j.job_id for j in m.claim("server-1", lease=60)] == ids[1:2]
    assert LossyConnection.lost == 1
    assert m.get_meta(ids[2])["status"] == "SUBMITTED"
    other = m.create({"name": "other"}, b"x")["job_id"]
    m.set_status(other, RunStatus.FINISHED_ABORTED)  # (the status script is loaded again)
    lose_next_reply()
    m.release(ids[1], "server-1")  # a first send's flag would be refused: no longer DISPATCHED
    assert LossyConnection.lost == 1
    assert m.get_meta(ids[1])["status"] == "SUBMITTED"
    assert [ops(m, jid)["claim"] for jid in ids] == [1, 1, 0]
    assert ops(m, ids[1])["status"] == 1


def test_a_repeated_release_and_owner_start_succeed(lossy: RedisJobDefManager) -> None:
    jid = lossy.create({"name": "r"}, b"x")["job_id"]
    assert [j.job_id for j in lossy.claim("server-1")] == [jid]
    lose_next_reply()
    lossy.release(jid, "server-1")  # a repeat would otherwise be refused: no longer DISPATCHED
    assert LossyConnection.lost == 1
    assert lossy.get_meta(jid)["status"] == "SUBMITTED"
    assert [j.job_id for j in lossy.claim("server-2")] == [jid]
    lose_next_reply()
    assert lossy.set_status(jid, RunStatus.RUNNING, owner="server-2") is True
    assert ops(lossy, jid) == Counter(create=1, claim=2, status=2)


def test_a_repeated_delete_succeeds_once_and_frees_the_chunks(lossy: RedisJobDefManager) -> None:
    jid = lossy.create({"name": "d"}, bytes(200_000))["job_id"]
    lossy.save_workspace(jid, bytes(300_000))
    lose_next_reply()
    lossy.delete(jid)  # not JobNotFound
    assert LossyConnection.lost == 1
    assert lossy.get_job(jid) is None
    assert ops(lossy, jid) == Counter(create=1, delete=1)
    assert lossy.check_invariants() == []  # the chunks went with it: no orphan before any gc
    with pytest.raises(JobNotFound):
        lossy.delete(jid)  # a new call (a new request) is told the truth


def test_a_repeated_approval_emits_one_event(lossy: RedisJobDefManager) -> None:
    jid = lossy.create({"name": "ap"}, b"x")["job_id"]
    lose_next_reply()
    meta = lossy.set_approval(jid, "alice", True, "ok")
    assert LossyConnection.lost == 1
    assert meta["approvals"] == {"alice": [True, "ok"]}
    assert ops(lossy, jid) == Counter(create=1, approval=1)


def test_a_repeated_workspace_upload_commits_one_version(lossy: RedisJobDefManager) -> None:
    jid = lossy.create({"name": "ws"}, b"x")["job_id"]
    for n in range(1, 4):  # lose the 1st, 2nd, 3rd reply: registration+chunks, commit, unlink
        data = bytes([n]) * 2_500_000
        LossyConnection.lose, LossyConnection.lost = 0, 0
        lossy.client.ping()
        LossyConnection.lose = n  # n replies in a row
        lossy.save_workspace(jid, data)
        assert LossyConnection.lost == n
        assert lossy.get_storage_component(jid, "workspace") == data


def test_a_repeated_submit_record_create_is_still_a_success(lossy: RedisJobDefManager) -> None:
    record = {"submit_token": "t", "study": "s", "submitter_name": "a", "submitter_org": "o",
              "submitter_role": "r", "job_id": "j", "state": "created", "job_content_hash": "h"}  # fmt: skip
    lose_next_reply()
    assert lossy.create_submit_record(record) is True
    assert LossyConnection.lost == 1
    assert lossy.create_submit_record(dict(record, job_id="other")) is False
