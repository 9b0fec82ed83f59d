"""Which public methods of the manager a test called: for tests that must cover the whole API."""

from __future__ import annotations

import inspect
import io
import os
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redisjobs import RedisJobDefManager, Retention, RunStatus

#: Not store operations: connection plumbing and context-manager support.
NOT_OPERATIONS = {"close"}


def public_methods() -> set[str]:
    return {
        name
        for name, value in inspect.getmembers(RedisJobDefManager)
        if not name.startswith("_") and callable(value) and name not in NOT_OPERATIONS
    }


class Recorder:
    """Forwards to a manager and records which of its methods were called."""

    def __init__(self, m: RedisJobDefManager) -> None:
        self.m, self.called = m, set[str]()

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.m, name)
        if callable(value):
            self.called.add(name)
        return value


def app_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("meta.json", "{}")
        z.writestr("app/config/config_fed_server.json", '{"format_version": 2}')
    return out.getvalue()


def drive_whole_api(
    m: RedisJobDefManager, tmp_path: Path, before_gc: Callable[[], None] | None = None
) -> None:
    """Call every public method of ``m`` on a fresh namespace, checking each answer, and check that
    none was left out. ``before_gc`` runs when two jobs remain, before gc expires them."""
    r: Any = Recorder(m)
    content = app_zip()
    meta = r.create({"name": "a", "deploy_map": {"app": ["@ALL"]}}, content)
    jid = meta["job_id"]
    big_content = os.urandom(2_500_000)
    big = r.create({"name": "big"}, big_content)["job_id"]  # three chunks
    assert r.get_job(jid).job_id == jid and r.get_meta(jid)["name"] == "a"
    assert r.get_content(meta) == content
    assert r.get_storage_component(big, "data") == big_content
    assert zipfile.ZipFile(io.BytesIO(r.get_app(r.get_job(jid), "app"))).namelist()
    assert list(r.iter_job_ids()) == [jid, big]
    assert [j.job_id for j in r.page_jobs(limit=1)[0]] == [jid]
    assert {j.job_id for j in r.page_jobs(RunStatus.SUBMITTED)[0]} == {jid, big}
    assert {j.job_id for j in r.get_all_jobs()} == {jid, big}
    assert {j.job_id for j in r.get_jobs_by_status(RunStatus.SUBMITTED)} == {jid, big}
    assert {j.job_id for j in r.get_jobs_waiting_for_review("alice")} == {jid, big}
    r.set_approval(jid, "alice", True, "ok")
    r.update_meta(jid, {"schedule_count": 1})
    r.refresh_meta(r.get_job(jid), ["schedule_count"])
    assert r.set_results_uri(jid, "results/x").meta["result_location"] == "results/x"
    assert [j.job_id for j in r.get_jobs_to_schedule()] == [jid, big]
    r.save_workspace(jid, os.urandom(2_200_000))
    r.save_workspace(jid, os.urandom(2_300_000))  # a new version: the old chunks are unlinked
    r.set_client_data(jid, b"log", "site-1", "LOG_log.txt")
    assert r.get_client_data(jid, "site-1", "LOG_log.txt") == b"log"
    assert set(r.list_components(jid)) >= {"data", "meta", "workspace", "LOG_log.txt_site-1"}
    r.get_storage_for_download(jid, str(tmp_path), "workspace", "ws.zip")
    assert (tmp_path / jid / "ws.zip").stat().st_size == 2_300_000
    assert b"".join(r.iter_chunks(big)) == r.open_blob(big).read() == big_content
    copy = r.clone(jid, {"name": "copy"})["job_id"]
    assert [j.job_id for j in r.claim("server-1", lease=30)] == [jid]
    assert r.lease_of(jid)[0] == "server-1" and r.renew(jid, "server-1") > 0
    r.release(jid, "server-1")
    assert [j.job_id for j in r.claim("server-2", lease=0.001)] == [jid]
    time.sleep(0.01)  # the 1 ms lease runs out
    assert [s.jid for s in r.reap()] == [jid]
    r.claim("server-3")
    r.set_status(jid, RunStatus.RUNNING, owner="server-3")
    assert [s.jid for s in r.recover("server-3")] == [jid]
    r.set_status(big, RunStatus.FINISHED_COMPLETED)
    assert {"create", "claim", "approval", "reap", "recover"} <= {e.op for e in r.events(count=1000)}
    assert next(r.watch(since="0", idle_timeout=2.0)).op == "create"
    assert list(r.watch(block=0.1, idle_timeout=0.2)) == []  # "$": only new events; none come
    who = {"name": "a", "org": "o", "role": "r"}
    record = r.new_submit_record("study", who, "tok", "h", job_id=copy)
    assert r.create_submit_record(record) is True
    assert r.update_submit_record(dict(record, state="created"))["state"] == "created"
    assert r.get_submit_record("study", who, "tok")["state"] == "created"
    assert r.get_job_by_submit_token("study", who, "tok").job_id == copy
    assert r.get_job_content_hash(content).startswith("sha256:")
    r.delete(copy)
    assert len(r.mark_submit_records_job_deleted(copy, who)) == 1
    if before_gc is not None:
        before_gc()
    # gc: an abandoned upload (a writer that died before committing), then the retention policy.
    m.blobs.stage(big, "workspace", os.urandom(1_500_000))
    report = r.gc(grace=0)
    assert (report.abandoned_uploads, report.chunks_freed) == (1, 2)
    report = r.gc(grace=0, retention=Retention(keep_finished=0))
    assert report.jobs_expired == 2  # big (COMPLETED) and jid (ABANDONED by recover)
    kept = len(r.events(count=1000))
    time.sleep(0.005)  # every event is now older than "0 days"
    # (XTRIM MINID ~ drops whole stream nodes: here one node, holding every event)
    assert r.gc(retention=Retention(event_max_age_days=0)).events_trimmed == kept > 10
    assert r.events() == []
    assert r.check_invariants() == []
    assert r.get_all_jobs() == []
    assert public_methods() - r.called == set()
