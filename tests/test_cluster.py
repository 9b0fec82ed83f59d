"""Redis Cluster: every public method on a real 3-master cluster the fixtures start on loopback,
one hash slot per namespace for everything scripts touch, and blob chunks spread by job.

(The store tests of test_api, test_blobs, test_claims, test_records, test_limits and test_get_app
also run against the cluster: they are marked ``cluster``.)
"""

from __future__ import annotations

import io
import os
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _recorder import Recorder, public_methods
from redis.cluster import RedisCluster

from redisjobs import RedisJobDefManager, Retention, RunStatus

pytestmark = pytest.mark.real


@pytest.fixture
def cluster_store(cluster_url: str) -> Iterator[RedisJobDefManager]:
    ns = "c-" + uuid.uuid4().hex[:10]
    m = RedisJobDefManager(cluster_url, namespace=ns)
    yield m
    assert m.check_invariants() == []
    for key in list(m.client.scan_iter(match=f"rj:{{{ns}*", count=1000)):
        m.client.unlink(key)
    m.close()


def app_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("meta.json", "{}")
        z.writestr("app/config/config_fed_server.json", '{"format_version": 2}')
    return out.getvalue()


def test_the_client_for_a_cluster_url_is_a_cluster_client(cluster_store: RedisJobDefManager) -> None:
    assert isinstance(cluster_store.client, RedisCluster)
    assert len(cluster_store.client.get_primaries()) == 3


def test_every_public_method_works_on_a_cluster(cluster_store: RedisJobDefManager, tmp_path: Path) -> None:
    r: Any = Recorder(cluster_store)
    content = app_zip()
    meta = r.create({"name": "c", "deploy_map": {"app": ["@ALL"]}}, content)
    jid = meta["job_id"]
    big = r.create({"name": "big"}, os.urandom(3_000_000))["job_id"]  # several chunks
    assert r.get_job(jid).job_id == jid and r.get_meta(jid)["name"] == "c"
    assert r.get_content(meta) == content
    assert r.get_storage_component(jid, "data") == content
    assert zipfile.ZipFile(io.BytesIO(r.get_app(r.get_job(jid), "app"))).namelist()
    assert list(r.iter_job_ids()) == [jid, big]
    assert [j.job_id for j in r.page_jobs(limit=1)[0]] == [jid]
    assert {j.job_id for j in r.get_all_jobs()} == {jid, big}
    assert {j.job_id for j in r.get_jobs_by_status(RunStatus.SUBMITTED)} == {jid, big}
    assert {j.job_id for j in r.get_jobs_waiting_for_review("alice")} == {jid, big}
    r.set_approval(jid, "alice", True, "ok")
    r.update_meta(jid, {"schedule_count": 1})
    r.refresh_meta(r.get_job(jid), ["schedule_count"])
    assert r.set_results_uri(jid, "results/x").meta["result_location"] == "results/x"
    assert [j.job_id for j in r.get_jobs_to_schedule()] == [jid, big]
    r.save_workspace(jid, os.urandom(2_500_000))
    r.set_client_data(jid, b"log", "site-1", "LOG_log.txt")
    assert r.get_client_data(jid, "site-1", "LOG_log.txt") == b"log"
    assert set(r.list_components(jid)) >= {"data", "meta", "workspace", "LOG_log.txt_site-1"}
    r.get_storage_for_download(jid, str(tmp_path), "workspace", "ws.zip")
    assert (tmp_path / jid / "ws.zip").stat().st_size == 2_500_000
    assert b"".join(r.iter_chunks(big)) == r.open_blob(big).read()
    copy = r.clone(jid, {"name": "copy"})["job_id"]
    claimed = r.claim("server-1", lease=30)
    assert [j.job_id for j in claimed] == [jid]
    assert r.lease_of(jid)[0] == "server-1" and r.renew(jid, "server-1") > 0
    r.release(jid, "server-1")
    assert [j.job_id for j in r.claim("server-2", lease=0.001)] == [jid]
    time.sleep(0.01)  # the 1 ms lease runs out
    assert [s.jid for s in r.reap()] == [jid]
    r.claim("server-3")
    r.set_status(jid, RunStatus.RUNNING, owner="server-3")
    assert [s.jid for s in r.recover("server-3")] == [jid]
    r.set_status(big, RunStatus.FINISHED_COMPLETED)
    events = r.events(count=1000)
    assert {"create", "claim", "approval", "delete"} - {e.op for e in events} == {"delete"}
    assert next(r.watch(since="0", idle_timeout=2.0)).op == "create"
    record = r.new_submit_record("study", {"name": "a", "org": "o", "role": "r"}, "tok", "h", job_id=copy)
    assert r.create_submit_record(record) is True
    assert r.update_submit_record(dict(record, state="created"))["state"] == "created"
    assert r.get_submit_record("study", {"name": "a", "org": "o", "role": "r"}, "tok")["state"] == "created"
    assert r.get_job_by_submit_token("study", {"name": "a", "org": "o", "role": "r"}, "tok").job_id == copy
    assert r.get_job_content_hash(content).startswith("sha256:")
    r.delete(copy)
    assert len(r.mark_submit_records_job_deleted(copy, {"name": "a", "org": "o", "role": "r"})) == 1
    report = r.gc(grace=0, retention=Retention(keep_finished=0))
    assert report.jobs_expired == 2  # big (COMPLETED) and jid (ABANDONED by recover)
    assert r.check_invariants() == []
    assert r.get_all_jobs() == []
    assert public_methods() - r.called == set()


def test_a_namespace_keeps_its_scripted_keys_in_one_slot_and_spreads_chunks(
    cluster_store: RedisJobDefManager,
) -> None:
    m = cluster_store
    ids = [m.create({"name": f"j{i}"}, os.urandom(200_000))["job_id"] for i in range(12)]
    client = m.client
    slot = client.keyslot(m.keys.jobs)
    k = m.keys
    scripted = [k.queue, k.events, k.uploads, k.leases, k.owners, k.seq, k.job(ids[0]), k.blobs(ids[0]),
                k.inline(ids[0]), k.request("x"), *k.status_sets]  # fmt: skip
    for name in scripted:
        assert client.keyslot(name) == slot, name
    chunk_nodes = {
        client.get_node_from_key(key.decode()).name
        for key in client.scan_iter(match=m.keys.chunk_pattern(), count=1000)
    }
    assert len(chunk_nodes) >= 2  # 12 jobs' chunks land on more than one primary
