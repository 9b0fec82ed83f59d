"""Submit-token records (NVFlare 2.8+) and the job content hash."""

from __future__ import annotations

import datetime
import hashlib
import io
import shutil
import threading
import uuid
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from redisjobs import Job, RecordNotFound, RedisJobDefManager, RedisJobsError

pytestmark = pytest.mark.cluster

ALICE = {"name": "alice", "org": "nvidia", "role": "lead"}
BOB = {"name": "bob", "org": "nvidia", "role": "member"}
HASH = "sha256:" + "0" * 64


def record(
    study: str = "study-1", submitter: Any = None, token: str = "tok-1", job_id: str | None = None, **kw: Any
) -> dict[str, Any]:
    return RedisJobDefManager.new_submit_record(
        study, ALICE if submitter is None else submitter, token, HASH, job_id=job_id, **kw
    )


# -- new_submit_record -----------------------------------------------------------------------------


def test_new_submit_record_fields() -> None:
    rec = RedisJobDefManager.new_submit_record(
        "study-1", ALICE, "tok-1", HASH, job_name="hello", job_folder_name="hello-folder"
    )
    assert rec["schema_version"] == 1
    assert rec["state"] == "creating"
    assert uuid.UUID(rec["job_id"]).version == 4
    assert rec["submit_token"] == "tok-1"
    assert rec["study"] == "study-1"
    assert (rec["submitter_name"], rec["submitter_org"], rec["submitter_role"]) == ("alice", "nvidia", "lead")
    assert rec["job_name"] == "hello" and rec["job_folder_name"] == "hello-folder"
    assert rec["job_content_hash"] == HASH
    assert datetime.datetime.fromisoformat(rec["submit_time"]).tzinfo is not None
    other = RedisJobDefManager.new_submit_record("study-1", ALICE, "tok-1", HASH)
    assert other["job_id"] != rec["job_id"]


def test_new_submit_record_given_job_id_and_state() -> None:
    rec = RedisJobDefManager.new_submit_record("s", ALICE, "t", HASH, job_id="my-job", state="created")
    assert rec["job_id"] == "my-job"
    assert rec["state"] == "created"


@pytest.mark.parametrize(
    "submitter",
    [
        ALICE,
        {"submitter_name": "alice", "submitter_org": "nvidia", "submitter_role": "lead"},
        SimpleNamespace(name="alice", org="nvidia", role="lead"),
        SimpleNamespace(submitter_name="alice", submitter_org="nvidia", submitter_role="lead"),
    ],
    ids=["dict", "dict-prefixed", "object", "object-prefixed"],
)
def test_new_submit_record_submitter_forms(submitter: Any) -> None:
    rec = RedisJobDefManager.new_submit_record("s", submitter, "t", HASH)
    assert (rec["submitter_name"], rec["submitter_org"], rec["submitter_role"]) == ("alice", "nvidia", "lead")


def test_new_submit_record_plain_name_submitter() -> None:
    rec = RedisJobDefManager.new_submit_record("s", "carol", "t", HASH)
    assert (rec["submitter_name"], rec["submitter_org"], rec["submitter_role"]) == ("carol", "", "")


# -- create / update / get -------------------------------------------------------------------------


def test_create_submit_record_once_per_scope(make_store: Any) -> None:
    one, two = make_store(), make_store()
    rec = record()
    assert one.create_submit_record(rec) is True
    # The very same record again is a repeat of that call (a retry after a lost reply): it succeeds
    # as the first did. Any other record for the scope is refused.
    assert one.create_submit_record(dict(rec)) is True
    assert one.create_submit_record(dict(rec, job_id="other-job")) is False
    intruder = dict(rec, state="created", job_id="someone-else")
    assert two.create_submit_record(intruder) is False  # another "server process"
    assert one.get_submit_record("study-1", ALICE, "tok-1") == rec  # not overwritten


def test_create_submit_record_is_atomic_across_managers(make_store: Any) -> None:
    managers = [make_store() for _ in range(6)]
    results: list[bool] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(managers), timeout=20)

    def attempt(m: RedisJobDefManager, i: int) -> None:
        try:
            barrier.wait()
            results.append(m.create_submit_record(record(job_id=f"job-{i}")))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=attempt, args=(m, i), daemon=True) for i, m in enumerate(managers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert sorted(results) == [False] * 5 + [True]
    stored = managers[0].get_submit_record("study-1", ALICE, "tok-1")
    assert stored is not None and stored["job_id"] in {f"job-{i}" for i in range(6)}


def test_different_scopes_are_separate_records(store: RedisJobDefManager) -> None:
    variants = [
        record(),
        record(token="tok-2"),
        record(study="study-2"),
        record(submitter=BOB),
        record(submitter=dict(ALICE, role="member")),
    ]
    for rec in variants:
        assert store.create_submit_record(rec) is True
    for rec in variants:
        submitter = {
            "name": rec["submitter_name"],
            "org": rec["submitter_org"],
            "role": rec["submitter_role"],
        }
        assert store.get_submit_record(rec["study"], submitter, rec["submit_token"]) == rec


def test_get_submit_record(store: RedisJobDefManager) -> None:
    assert store.get_submit_record("study-1", ALICE, "tok-1") is None
    rec = record()
    store.create_submit_record(rec)
    got = store.get_submit_record("study-1", ALICE, "tok-1")
    assert isinstance(got, dict) and got == rec
    got["state"] = "mutated"  # a fresh dict
    assert store.get_submit_record("study-1", ALICE, "tok-1") == rec
    as_object = SimpleNamespace(name="alice", org="nvidia", role="lead")
    assert store.get_submit_record("study-1", as_object, "tok-1") == rec
    assert store.get_submit_record("study-1", BOB, "tok-1") is None
    assert store.get_submit_record("study-2", ALICE, "tok-1") is None
    assert store.get_submit_record("study-1", ALICE, "tok-2") is None


def test_update_submit_record_replaces(store: RedisJobDefManager) -> None:
    rec = record()
    store.create_submit_record(rec)
    new = dict(rec, state="created")
    del new["job_name"]
    assert store.update_submit_record(new) == new
    assert store.get_submit_record("study-1", ALICE, "tok-1") == new  # replaced, not merged


def test_update_missing_submit_record(store: RedisJobDefManager) -> None:
    with pytest.raises(RecordNotFound) as info:
        store.update_submit_record(record())
    assert isinstance(info.value, LookupError) and isinstance(info.value, RedisJobsError)
    assert store.get_submit_record("study-1", ALICE, "tok-1") is None


def test_get_job_by_submit_token(store: RedisJobDefManager) -> None:
    rec = record()
    store.create_submit_record(rec)
    assert store.get_job_by_submit_token("study-1", ALICE, "tok-1") is None  # no job yet
    assert store.get_job_by_submit_token("study-1", ALICE, "other") is None  # no record
    meta = store.create({"job_id": rec["job_id"], "submit_token": "tok-1"}, b"content")
    job = store.get_job_by_submit_token("study-1", ALICE, "tok-1")
    assert isinstance(job, Job)
    assert job.job_id == rec["job_id"] == meta["job_id"]
    assert "submit_token" not in job.meta
    store.delete(rec["job_id"])
    assert store.get_job_by_submit_token("study-1", ALICE, "tok-1") is None


# -- job deletion ----------------------------------------------------------------------------------


def test_mark_submit_records_job_deleted(store: RedisJobDefManager) -> None:
    jid = store.create({}, b"content")["job_id"]
    mine = [record(job_id=jid), record(job_id=jid, token="tok-2")]
    other = record(job_id="other-job", token="tok-3")
    for rec in [*mine, other]:
        assert store.create_submit_record(rec)
    store.delete(jid)
    for rec in mine:  # records survive the job's deletion
        assert store.get_submit_record("study-1", ALICE, rec["submit_token"]) == rec
    before = datetime.datetime.now(datetime.timezone.utc)
    marked = store.mark_submit_records_job_deleted(
        jid, {"name": "admin", "org": "nvidia", "role": "project_admin"}
    )
    assert sorted(r["submit_token"] for r in marked) == ["tok-1", "tok-2"]
    for rec in marked:
        assert rec["state"] == "job_deleted"
        assert rec["job_id"] == jid
        deleted = datetime.datetime.fromisoformat(rec["deleted_time"])
        assert deleted.tzinfo is not None and deleted.utcoffset() == datetime.timedelta(0)
        assert abs((deleted - before).total_seconds()) < 300
        assert rec["deleted_by"] == {"name": "admin", "org": "nvidia", "role": "project_admin"}
        stored = store.get_submit_record("study-1", ALICE, rec["submit_token"])
        assert stored == rec
        assert stored["job_content_hash"] == HASH  # the rest of the record is kept
    assert store.get_submit_record("study-1", ALICE, "tok-3") == other  # another job's: untouched
    assert store.mark_submit_records_job_deleted(jid, {"name": "admin"}) == []


def test_a_repeated_mark_deleted_answers_as_its_first_run(
    store: RedisJobDefManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    # redis-py sends a call again when its reply was lost: the repeat finds the records marked by
    # its own first run (the same deleted_time and deleted_by), and returns them as marked.
    for token in ("tok-1", "tok-2"):
        assert store.create_submit_record(record(job_id="j1", token=token))
    real = store._s.mark_record_deleted
    sent: list[Any] = []

    def twice(keys: list[Any], args: list[Any]) -> Any:
        real(keys=keys, args=args)  # the first run, whose reply is lost
        sent.append(args)
        return real(keys=keys, args=args)

    monkeypatch.setattr(store._s, "mark_record_deleted", twice)
    marked = store.mark_submit_records_job_deleted("j1", {"name": "admin"})
    assert sorted(r["submit_token"] for r in marked) == ["tok-1", "tok-2"]
    assert all(r["state"] == "job_deleted" and r["deleted_by"]["name"] == "admin" for r in marked)
    # Another call (another time) finds them marked already.
    monkeypatch.undo()
    assert store.mark_submit_records_job_deleted("j1", {"name": "admin"}) == []
    assert len(sent) == 2


def test_mark_deleted_with_an_object_and_no_records(store: RedisJobDefManager) -> None:
    assert store.mark_submit_records_job_deleted("no-records", {"name": "x"}) == []
    rec = record(job_id="j1")
    store.create_submit_record(rec)
    marked = store.mark_submit_records_job_deleted("j1", SimpleNamespace(name="root", org="o", role="r"))
    assert [r["deleted_by"] for r in marked] == [{"name": "root", "org": "o", "role": "r"}]


def test_records_follow_an_updated_job_id(store: RedisJobDefManager) -> None:
    rec = record(job_id="first")
    store.create_submit_record(rec)
    store.update_submit_record(dict(rec, job_id="second"))
    assert store.mark_submit_records_job_deleted("first", {"name": "a"}) == []
    assert [r["job_id"] for r in store.mark_submit_records_job_deleted("second", {"name": "a"})] == ["second"]


# -- job content hash ------------------------------------------------------------------------------


def make_job_folder(root: Path) -> Path:
    job = root / "myjob"
    (job / "app" / "config").mkdir(parents=True)
    (job / "app" / "custom").mkdir()
    (job / "meta.json").write_text('{"name": "myjob"}')
    (job / "app" / "config" / "config_fed_server.json").write_text("{}")
    (job / "app" / "custom" / "x.py").write_bytes(b"print(1)\n")
    return job


def zip_folder(folder: Path, top: str | None = "myjob", extra: dict[str, bytes] | None = None) -> bytes:
    """``zip -r job.zip myjob/``: every member under one top folder, with folder entries."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder).as_posix()
            name = f"{top}/{rel}" if top else rel
            if path.is_dir():
                z.writestr(name + "/", b"")
            else:
                z.write(path, name)
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return buf.getvalue()


def reference_hash(folder: Path) -> str:
    """NVFlare's canonical hash, spelled out: sorted (path, bytes), each length-prefixed."""
    digest = hashlib.sha256()
    files = sorted(
        (p.relative_to(folder).as_posix(), p.read_bytes()) for p in folder.rglob("*") if p.is_file()
    )
    for rel, data in files:
        if rel.rsplit("/", 1)[-1] in (".__nvfl_sig.json", ".__nvfl_submitter.crt"):
            continue
        digest.update(len(rel.encode()).to_bytes(8, "big") + rel.encode())
        digest.update(len(data).to_bytes(8, "big") + data)
    return "sha256:" + digest.hexdigest()


def test_content_hash_folder_and_zip_agree(store: RedisJobDefManager, tmp_path: Path) -> None:
    job = make_job_folder(tmp_path)
    of_folder = store.get_job_content_hash(str(job))
    assert of_folder.startswith("sha256:") and len(of_folder) == 7 + 64
    assert of_folder == reference_hash(job)
    data = zip_folder(job)
    assert store.get_job_content_hash(data) == of_folder
    path = tmp_path / "job.zip"
    path.write_bytes(data)
    assert store.get_job_content_hash(str(path)) == of_folder
    assert path.exists()  # hashing does not consume the file
    # The wrapper's name does not matter.
    assert store.get_job_content_hash(zip_folder(job, top="renamed")) == of_folder
    # Stripping the wrapper is what makes them agree.
    assert store.get_job_content_hash(str(tmp_path)) != of_folder


def test_content_hash_changes_with_content(store: RedisJobDefManager, tmp_path: Path) -> None:
    job = make_job_folder(tmp_path)
    original = store.get_job_content_hash(str(job))
    (job / "app" / "custom" / "x.py").write_bytes(b"print(2)\n")
    changed = store.get_job_content_hash(str(job))
    assert changed != original
    assert store.get_job_content_hash(zip_folder(job)) == changed
    (job / "app" / "custom" / "x.py").rename(job / "app" / "custom" / "y.py")
    assert store.get_job_content_hash(str(job)) not in (original, changed)
    (job / "app" / "custom" / "y.py").rename(job / "app" / "custom" / "x.py")
    (job / "app" / "custom" / "x.py").write_bytes(b"print(1)\n")
    assert store.get_job_content_hash(str(job)) == original
    (job / "extra.txt").write_text("")
    assert store.get_job_content_hash(str(job)) != original  # an empty file counts too


def test_content_hash_ignores_signature_files(store: RedisJobDefManager, tmp_path: Path) -> None:
    job = make_job_folder(tmp_path)
    original = store.get_job_content_hash(str(job))
    (job / ".__nvfl_sig.json").write_text('{"sig": "abc"}')
    (job / "app" / ".__nvfl_sig.json").write_text('{"sig": "def"}')
    (job / ".__nvfl_submitter.crt").write_text("CERT")
    assert store.get_job_content_hash(str(job)) == original
    assert store.get_job_content_hash(zip_folder(job)) == original
    signed_at_root = zip_folder(job, extra={".__nvfl_sig.json": b"{}"})
    assert store.get_job_content_hash(signed_at_root) == original


def test_content_hash_ignores_folder_entries(store: RedisJobDefManager, tmp_path: Path) -> None:
    job = make_job_folder(tmp_path)
    (job / "empty").mkdir()
    original = store.get_job_content_hash(str(job))
    shutil.rmtree(job / "empty")
    assert store.get_job_content_hash(str(job)) == original


def test_content_hash_refuses_unsafe_zips(store: RedisJobDefManager) -> None:
    for name in ("../evil.txt", "/abs.txt", "a/../../evil.txt"):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("job/ok.txt", b"ok")
            z.writestr(name, b"evil")
        with pytest.raises(ValueError, match="unsafe"):
            store.get_job_content_hash(buf.getvalue())


def test_content_hash_rejects_other_types(store: RedisJobDefManager) -> None:
    with pytest.raises(TypeError):
        store.get_job_content_hash(123)  # type: ignore[arg-type]
