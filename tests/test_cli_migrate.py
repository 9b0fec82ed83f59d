"""``redisjobs migrate`` and ``redisjobs nvflare configure`` through click's runner, on a store laid
out as NVFlare's filesystem store lays it out (built by hand here; tests/test_nvflare.py builds one
with NVFlare itself)."""

from __future__ import annotations

import json
import stat
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from redisjobs import RedisJobDefManager
from redisjobs.cli import main
from redisjobs.kit import ADAPTER, BACKUP_SUFFIX

pytestmark = pytest.mark.real


@pytest.fixture
def ns(namespace: str) -> str:
    return namespace


def nvflare_store(root: Path) -> tuple[Path, dict[str, dict]]:  # type: ignore[type-arg]
    """Three jobs in NVFlare's layout: <uri_root>/<jid>/{meta,data,workspace,...}."""
    jobs = root / "jobs"
    metas = {}
    for i, status in enumerate(["SUBMITTED", "FINISHED:COMPLETED", "FINISHED:ABORTED"]):
        jid = str(uuid.uuid4())
        folder = jobs / jid
        folder.mkdir(parents=True)
        meta = {"job_id": jid, "name": f"job-{i}", "status": status, "submit_time": time.time() + i,
                "start_time": "", "duration": "N/A", "data_storage_format": 2}  # fmt: skip
        (folder / "meta").write_text(json.dumps(meta))
        (folder / "data").write_bytes(f"zip-{i}".encode() * 100)
        (folder / "scheduled").write_text("")  # NVFlare's tag file: not a component
        if i == 1:
            (folder / "workspace").write_bytes(b"workspace" * 10_000)
            (folder / "ERRORLOG_site-1").write_bytes(b"boom")
        metas[jid] = meta
    return jobs, metas


def invoke(url: str, ns: str, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, [*args, "--url", url, "--namespace", ns])


def test_migrate_imports_verifies_and_is_idempotent(redis_url: str, ns: str, tmp_path: Path) -> None:
    jobs, metas = nvflare_store(tmp_path)
    dry = invoke(redis_url, ns, "migrate", str(jobs), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would import" in dry.output
    m = RedisJobDefManager(redis_url, namespace=ns)
    assert m.get_all_jobs() == []

    first = invoke(redis_url, ns, "migrate", str(jobs), "--json")
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert report["jobs_found"] == 3 and report["jobs_imported"] == 3
    assert report["components_imported"] == 2 and report["blobs_verified"] == 5
    for jid, meta in metas.items():
        assert m.get_job(jid).meta == meta  # type: ignore[union-attr]
    assert [j.job_id for j in m.get_jobs_to_schedule()] == [
        j for j, mt in metas.items() if mt["status"] == "SUBMITTED"
    ]
    busy = next(j for j, mt in metas.items() if mt["name"] == "job-1")
    assert m.get_storage_component(busy, "workspace") == b"workspace" * 10_000
    assert m.list_components(busy) == ["meta", "data", "ERRORLOG_site-1", "workspace"]

    second = invoke(redis_url, ns, "migrate", str(jobs), "--json")
    assert second.exit_code == 0
    again = json.loads(second.stdout)
    assert again["jobs_imported"] == 0 and again["jobs_unchanged"] == 3 and again["components_imported"] == 0
    assert m.check_invariants() == []
    m.close()


def test_migrate_keeps_a_priority_nvflare_kept_and_queues_the_job_at_zero(
    redis_url: str, ns: str, tmp_path: Path
) -> None:
    # NVFlare has no priority of its own, and its store keeps whatever a job's meta.json said.
    jobs, metas = nvflare_store(tmp_path)
    queued = next(j for j, mt in metas.items() if mt["status"] == "SUBMITTED")
    metas[queued]["priority"] = "high"
    (jobs / queued / "meta").write_text(json.dumps(metas[queued]))
    m = RedisJobDefManager(redis_url, namespace=ns)
    urgent = m.create({"name": "urgent", "priority": 1}, b"x")["job_id"]
    result = invoke(redis_url, ns, "migrate", str(jobs), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["jobs_imported"] == 3
    assert m.get_job(queued).meta == metas[queued]  # type: ignore[union-attr]
    assert [j.job_id for j in m.get_jobs_to_schedule()] == [urgent, queued]
    assert m.check_invariants() == []
    m.close()


def test_migrate_imports_jobs_whose_submit_time_is_not_a_number(
    redis_url: str, ns: str, tmp_path: Path
) -> None:
    # The import follows submit order; a submit_time NVFlare did not write (ISO text, garbage, an
    # int beyond any float) orders the job as well as it can, and never stops the import of the
    # others (one Redis cannot store, JSON-wise, is that job's error alone).
    jobs, metas = nvflare_store(tmp_path)
    odd = list(metas)
    for jid, value in zip(odd, ["2020-01-01T00:00:00", "soon", 10**400], strict=True):
        metas[jid]["submit_time"] = value
        (jobs / jid / "meta").write_text(json.dumps(metas[jid]))
    result = invoke(redis_url, ns, "migrate", str(jobs), "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["jobs_imported"] == 2
    [error] = report["errors"]
    assert odd[2] in error and "submit_time" in error
    m = RedisJobDefManager(redis_url, namespace=ns)
    for jid in odd[:2]:
        assert m.get_job(jid).meta == metas[jid]  # type: ignore[union-attr]
    assert m.get_job(odd[2]) is None
    m.close()


def test_migrate_reports_a_conflict_and_exits_1(redis_url: str, ns: str, tmp_path: Path) -> None:
    jobs, metas = nvflare_store(tmp_path)
    jid = next(iter(metas))
    m = RedisJobDefManager(redis_url, namespace=ns)
    m.create({"job_id": jid, "name": "already here"}, b"other")
    result = invoke(redis_url, ns, "migrate", str(jobs))
    assert result.exit_code == 1
    assert f"conflict: job {jid!r}" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: 1 conflicts")
    assert m.get_job(jid).meta["name"] == "already here"  # type: ignore[union-attr]
    m.close()


def test_migrate_of_a_missing_folder_is_one_clear_line(redis_url: str, ns: str, tmp_path: Path) -> None:
    result = invoke(redis_url, ns, "migrate", str(tmp_path / "nope"))
    assert result.exit_code == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.output


def kit(tmp_path: Path) -> Path:
    local = tmp_path / "server" / "local"
    local.mkdir(parents=True)
    config = {
        "format_version": 2,
        "components": [
            {
                "id": "job_scheduler",
                "path": "nvflare.app_common.job_schedulers.job_scheduler.DefaultJobScheduler",
            },
            {
                "id": "job_manager",
                "path": "nvflare.apis.impl.job_def_manager.SimpleJobDefManager",
                "args": {"uri_root": "/tmp/jobs-storage", "job_store_id": "job_store"},
            },
        ],
    }
    (local / "resources.json.default").write_text(json.dumps(config, indent=2))
    return tmp_path / "server"


def test_nvflare_configure_and_revert(tmp_path: Path) -> None:
    server = kit(tmp_path)
    path = server / "local" / "resources.json.default"
    original = path.read_bytes()
    result = CliRunner().invoke(main, ["nvflare", "configure", str(server), "--url", "redis://10.0.0.5:6379/0",
                                       "--namespace", "fl"])  # fmt: skip
    assert result.exit_code == 0, result.output
    entry = next(c for c in json.loads(path.read_text())["components"] if c["id"] == "job_manager")
    assert entry["path"] == ADAPTER
    assert entry["args"] == {"uri_root": "/tmp/jobs-storage", "job_store_id": "job_store",
                             "url": "redis://10.0.0.5:6379/0", "namespace": "fl"}  # fmt: skip
    assert (server / "local" / ("resources.json.default" + BACKUP_SUFFIX)).read_bytes() == original
    back = CliRunner().invoke(main, ["nvflare", "configure", "--revert", str(server)])
    assert back.exit_code == 0, back.output
    assert path.read_bytes() == original


def test_nvflare_configure_keeps_the_files_permissions(tmp_path: Path) -> None:
    # The URL may carry a password: a resources file readable by its owner only stays so.
    server = kit(tmp_path)
    path = server / "local" / "resources.json.default"
    path.chmod(0o600)
    result = CliRunner().invoke(
        main, ["nvflare", "configure", str(server), "--url", "redis://:s3cret@h:6379/0"]
    )
    assert result.exit_code == 0, result.output
    assert "s3cret" in path.read_text() and stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)  # and a readable one stays readable
    assert (
        CliRunner().invoke(main, ["nvflare", "configure", str(server), "--url", "redis://h:1/0"]).exit_code
        == 0
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


@pytest.mark.parametrize(
    "config",
    [[1, 2], {"components": {"id": "job_manager"}}, {"components": [{"id": "job_manager", "args": [1]}]}],
    ids=["a-list", "components-not-a-list", "args-not-an-object"],
)
def test_nvflare_configure_refuses_a_malformed_file_before_writing(tmp_path: Path, config: Any) -> None:
    server = kit(tmp_path)
    path = server / "local" / "resources.json.default"
    path.write_text(json.dumps(config))
    result = CliRunner().invoke(main, ["nvflare", "configure", str(server), "--url", "redis://h:1/0"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.startswith("error: ") and "unexpected" not in result.stderr
    assert json.loads(path.read_text()) == config
    assert not (server / "local" / ("resources.json.default" + BACKUP_SUFFIX)).exists()


def test_nvflare_configure_errors_are_one_line(tmp_path: Path) -> None:
    server = kit(tmp_path)
    no_url = CliRunner(env={"REDISJOBS_URL": ""}).invoke(main, ["nvflare", "configure", str(server)])
    assert no_url.exit_code == 1 and no_url.stderr.startswith("error: no Redis URL")
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = CliRunner().invoke(main, ["nvflare", "configure", str(empty), "--url", "redis://h:1/0"])
    assert bad.exit_code == 1
    assert bad.stderr.startswith("error: no local/resources.json") and "Traceback" not in bad.output
