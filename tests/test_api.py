"""The job-manager API, method by method, against NVFlare 2.9.0's measured behaviour and the docstrings.

Every test runs on fakeredis and on a real redis-server (the ``store`` / ``make_store`` fixtures),
and the fixture checks the index invariants (and orphan chunks) after each one.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import os
import random
import re
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import redis

import redisjobs
from redisjobs import (
    BlobNotFound,
    InvalidComponent,
    InvalidJobId,
    InvalidMeta,
    InvalidStatus,
    InvalidTransition,
    Job,
    JobExists,
    JobMetaKey,
    JobNotFound,
    RedisJobDefManager,
    RedisJobsError,
    RunStatus,
    StatusConflict,
)
from redisjobs._lifecycle import STATUSES, TRANSITIONS

pytestmark = pytest.mark.cluster

DURATION_RE = re.compile(r"^\d+:\d\d:\d\d(\.\d{6})?$")
BAD_IDS: list[Any] = [None, "", 123, "../x", "a/b", "-x", ".x", "a b", "x\n", "é"]
TIMED = [
    RunStatus.FINISHED_COMPLETED,
    RunStatus.FINISHED_ABORTED,
    RunStatus.FINISHED_EXECUTION_EXCEPTION,
    RunStatus.FINISHED_ABNORMAL,
    RunStatus.FINISHED_CANT_SCHEDULE,
]
UNTIMED = [RunStatus.FAILED_TO_RUN, RunStatus.ABANDONED]
FINISHED = [s for s in STATUSES if s.startswith("FINISHED:")]
THREAD_TIMEOUT = 20.0


# -- helpers ---------------------------------------------------------------------------------------


def new_job(store: RedisJobDefManager, content: bytes = b"content", **meta: Any) -> str:
    return str(store.create(dict(meta), content)["job_id"])


def meta_of(store: RedisJobDefManager, jid: str) -> dict[str, Any]:
    job = store.get_job(jid)
    assert job is not None, jid
    return job.meta


def status_of(store: RedisJobDefManager, jid: str) -> str:
    return str(meta_of(store, jid)["status"])


def ids(jobs: list[Job]) -> list[str]:
    return [j.job_id for j in jobs]


def namespace_keys(store: RedisJobDefManager) -> list[bytes]:
    """Every key of the store's namespace (metadata, indexes, events and chunks)."""
    return sorted(store.client.scan_iter(match=f"rj:{{{store.namespace}*", count=1000))


@pytest.fixture
def chunked(make_store: Any) -> RedisJobDefManager:
    """A store that writes every non-empty blob as chunks (nothing inlined): for the tests that
    check what happens to chunk keys."""
    return make_store(inline_max=0)  # type: ignore[no-any-return]


def chunk_keys_of(store: RedisJobDefManager, jid: str) -> list[bytes]:
    """The job's blob chunks: keys under its own hash tag ``rj:{<namespace>/<jid>}`` (DESIGN.md)."""
    return sorted(store.client.scan_iter(match=f"rj:{{{store.namespace}/{jid}}}:*", count=1000))


def drive(store: RedisJobDefManager, jid: str, target: str) -> None:
    """Move a new (SUBMITTED) job to ``target`` through allowed transitions."""
    paths = {
        "SUBMITTED": [],
        "APPROVED": ["APPROVED"],
        "DISPATCHED": ["DISPATCHED"],
        "RUNNING": ["DISPATCHED", "RUNNING"],
    }
    for step in paths.get(target, [target]):
        store.set_status(jid, step)
    assert status_of(store, jid) == target


def duration_seconds(text: str) -> float:
    m = re.fullmatch(r"(?:(-?\d+) days?, )?(\d+):(\d\d):(\d\d)(?:\.(\d{6}))?", text)
    assert m, f"not a str(timedelta): {text!r}"
    days, hours, minutes, seconds, micros = m.groups()
    return (
        int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds) + int(micros or 0) / 1e6
    )


def run_threads(targets: list[Callable[[], None]]) -> None:
    """Run the callables in threads started together; re-raise the first failure."""
    barrier = threading.Barrier(len(targets), timeout=THREAD_TIMEOUT)
    errors: list[BaseException] = []

    def wrap(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                barrier.wait()
                fn()
            except BaseException as e:  # reported below, in the test's thread
                errors.append(e)

        return run

    threads = [threading.Thread(target=wrap(fn), daemon=True) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(THREAD_TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a thread did not finish"
    if errors:
        raise errors[0]


@contextlib.contextmanager
def local_zone(rule: str) -> Iterator[None]:
    """This process's local time zone set to ``rule`` (a POSIX TZ string: no tzdata needed), and
    restored afterwards."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = rule
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()


@pytest.fixture
def india_tz() -> Any:
    """Local time UTC+05:30, restored afterwards."""
    with local_zone("IST-5:30"):
        yield datetime.timezone(datetime.timedelta(hours=5, minutes=30))


# -- job ids: checked first, before any Redis call -------------------------------------------------


def _unreachable() -> RedisJobDefManager:
    """A manager whose every Redis call fails at once (nothing listens on port 1)."""
    return RedisJobDefManager("redis://127.0.0.1:1/0", socket_connect_timeout=0.05, socket_timeout=0.05)


def _calls(bad: Any, tmp: Path) -> dict[str, Callable[[RedisJobDefManager], Any]]:
    return {
        "create": lambda m: m.create({"job_id": bad}, b"x"),
        "clone_from": lambda m: m.clone(bad, {}),
        "clone_to": lambda m: m.clone("source", {"job_id": bad}),
        "delete": lambda m: m.delete(bad),
        "get_job": lambda m: m.get_job(bad),
        "get_meta": lambda m: m.get_meta(bad),
        "get_content": lambda m: m.get_content({"job_id": bad}),
        "get_app": lambda m: m.get_app(Job.from_meta({"job_id": bad}), "app_server"),
        "update_meta": lambda m: m.update_meta(bad, {"x": 1}),
        "refresh_meta": lambda m: m.refresh_meta(Job.from_meta({"job_id": bad, "x": 1}), ["x"]),
        "set_status": lambda m: m.set_status(bad, RunStatus.DISPATCHED),
        "set_results_uri": lambda m: m.set_results_uri(bad, "uri://r"),
        "set_approval": lambda m: m.set_approval(bad, "alice", True, "ok"),
        "save_workspace": lambda m: m.save_workspace(bad, b"ws"),
        "set_client_data": lambda m: m.set_client_data(bad, b"log", "site-1", "ERRORLOG"),
        "get_client_data": lambda m: m.get_client_data(bad, "site-1", "ERRORLOG"),
        "list_components": lambda m: m.list_components(bad),
        "get_storage_component": lambda m: m.get_storage_component(bad, "data"),
        "get_storage_for_download": lambda m: m.get_storage_for_download(bad, str(tmp), "data", "job.zip"),
    }


# In these, a missing id (None or "") means "not given" or "no id in meta", not an invalid one.
_ID_FROM_META = {"create", "clone_to", "get_content"}
METHODS = sorted(_calls(None, Path()).keys())


@pytest.mark.parametrize("method", METHODS)
def test_invalid_job_id_is_rejected_before_any_redis_call(method: str, tmp_path: Path) -> None:
    unreachable = _unreachable()
    for bad in BAD_IDS:
        if method in _ID_FROM_META and bad in (None, ""):
            continue
        client = mock.MagicMock()
        mocked = RedisJobDefManager(client=client, namespace="ids")
        with pytest.raises(InvalidJobId, match="invalid job id") as info:
            _calls(bad, tmp_path)[method](mocked)
        assert isinstance(info.value, ValueError)
        assert isinstance(info.value, RedisJobsError)
        assert client.mock_calls == [], f"{method}({bad!r}) talked to Redis first"
        # A manager whose every Redis call fails: the id error must come first.
        with pytest.raises(InvalidJobId):
            _calls(bad, tmp_path)[method](unreachable)
    assert list(tmp_path.iterdir()) == []  # get_storage_for_download made no folder


def test_unreachable_manager_does_fail_on_redis_calls() -> None:
    """The check above is meaningful: a valid id reaches Redis and fails there."""
    with pytest.raises(redis.ConnectionError):
        _unreachable().get_job("valid-id")


@pytest.mark.parametrize("empty", [None, ""])
def test_empty_ids_in_meta(empty: Any) -> None:
    """No job_id means 'make one' for create/clone and 'no id' (RuntimeError) for get_content."""
    client = mock.MagicMock()
    with pytest.raises(RuntimeError, match="Job ID"):
        RedisJobDefManager(client=client).get_content({"job_id": empty})
    assert client.mock_calls == []
    # create and clone make a uuid4, check it, and only then need Redis (unreachable here).
    meta: dict[str, Any] = {"job_id": empty}
    with pytest.raises(redis.ConnectionError):
        _unreachable().create(meta, b"x")
    assert uuid.UUID(meta["job_id"]).version == 4
    meta = {"job_id": empty}
    with pytest.raises(redis.ConnectionError):
        _unreachable().clone("source", meta)


def test_valid_odd_ids_work(store: RedisJobDefManager) -> None:
    for jid in ("A", "a.b_c-d", "9", "x" * 200, str(uuid.uuid4())):
        assert store.create({"job_id": jid}, b"c")["job_id"] == jid
        assert meta_of(store, jid)["job_id"] == jid
    assert len(store.get_all_jobs()) == 5


def test_invalid_id_in_create_does_not_consume_the_file(tmp_path: Path) -> None:
    upload = tmp_path / "upload.zip"
    upload.write_bytes(b"zip")
    m = RedisJobDefManager(client=mock.MagicMock(), namespace="ids")
    with pytest.raises(InvalidJobId):
        m.create({"job_id": "../x"}, str(upload))
    assert upload.read_bytes() == b"zip"


def test_exception_tree() -> None:
    assert issubclass(JobNotFound, LookupError)
    assert issubclass(redisjobs.BlobNotFound, LookupError)
    assert issubclass(redisjobs.RecordNotFound, LookupError)
    for cls in (JobExists, InvalidJobId, InvalidMeta, InvalidComponent, InvalidStatus, InvalidTransition):
        assert issubclass(cls, ValueError), cls
    for cls in (JobNotFound, JobExists, InvalidJobId, StatusConflict, redisjobs.BlobCorrupt):
        assert issubclass(cls, RedisJobsError), cls
    assert not issubclass(StatusConflict, ValueError)


# -- create ----------------------------------------------------------------------------------------


def test_create_sets_the_nvflare_fields(store: RedisJobDefManager) -> None:
    meta: dict[str, Any] = {"name": "hello", "submit_token": "secret", "deploy_map": {"app": ["@ALL"]}}
    before = time.time()
    out = store.create(meta, b"the content")
    after = time.time()
    assert out is meta  # mutated and returned, as NVFlare
    jid = meta["job_id"]
    assert uuid.UUID(jid).version == 4 and str(uuid.UUID(jid)) == jid
    assert "submit_token" not in meta
    assert isinstance(meta["submit_time"], float)
    assert before - 1 <= meta["submit_time"] <= after + 1
    iso = datetime.datetime.fromisoformat(meta["submit_time_iso"])
    assert iso.tzinfo is not None and iso.utcoffset() is not None
    assert abs(iso.timestamp() - meta["submit_time"]) < 1e-3
    assert meta["start_time"] == ""
    assert meta["duration"] == "N/A"
    assert meta["data_storage_format"] == 2
    assert meta["status"] == "SUBMITTED"
    assert meta["name"] == "hello"
    stored = meta_of(store, jid)
    assert stored == meta  # every field round-trips exactly (floats too)
    assert "submit_token" not in stored
    assert store.get_content({"job_id": jid}) == b"the content"


def test_create_round_trips_every_field(store: RedisJobDefManager) -> None:
    meta: dict[str, Any] = {
        "name": "名前 ✓",
        "float": 0.1 + 0.2,
        "big": 2**62,
        "neg": -5,
        "empty_list": [],
        "empty_dict": {},
        "none": None,
        "nested": {"a": [{"b": [1, 2.5, "x", True]}]},
        "approvals": {"alice": [True, "ok"]},
    }
    store.create(meta, b"c")
    assert meta_of(store, meta["job_id"]) == meta


def test_create_round_trips_an_empty_approvals_dict(store: RedisJobDefManager) -> None:
    """create returns meta with approvals == {}; reading the job back must agree."""
    meta = store.create({"approvals": {}}, b"c")
    assert meta["approvals"] == {}
    assert meta_of(store, meta["job_id"]) == meta


def test_create_keeps_a_given_id(store: RedisJobDefManager) -> None:
    meta = store.create({"job_id": "my-job.1"}, b"c")
    assert meta["job_id"] == "my-job.1"
    assert ids(store.get_all_jobs()) == ["my-job.1"]


def test_create_new_ids_are_unique(store: RedisJobDefManager) -> None:
    made = {new_job(store) for _ in range(5)}
    assert len(made) == 5
    assert set(ids(store.get_all_jobs())) == made


def test_submit_time_iso_carries_the_local_offset(store: RedisJobDefManager, india_tz: Any) -> None:
    meta = store.create({}, b"c")
    iso = datetime.datetime.fromisoformat(meta["submit_time_iso"])
    assert iso.utcoffset() == datetime.timedelta(hours=5, minutes=30)
    assert meta["submit_time_iso"].endswith("+05:30")
    assert abs(iso.timestamp() - meta["submit_time"]) < 1e-3


def test_create_duplicate_id_raises_and_keeps_the_original(make_store: Any) -> None:
    first, second = make_store(inline_max=0), make_store(inline_max=0)
    first.create({"job_id": "dup", "name": "original"}, b"original content")
    before = meta_of(first, "dup")
    meta = {"job_id": "dup", "name": "intruder"}
    with pytest.raises(JobExists, match="dup") as info:
        second.create(meta, b"other content")
    assert isinstance(info.value, ValueError)
    assert meta_of(first, "dup") == before
    assert first.get_content({"job_id": "dup"}) == b"original content"
    assert ids(first.get_all_jobs()) == ["dup"]
    assert len(chunk_keys_of(first, "dup")) == 1  # the intruder's chunks were removed


def test_create_from_a_file_path_consumes_it(store: RedisJobDefManager, tmp_path: Path) -> None:
    upload = tmp_path / "upload.zip"
    upload.write_bytes(b"from a file" * 1000)
    jid = store.create({}, str(upload))["job_id"]
    assert not upload.exists()
    assert store.get_content({"job_id": jid}) == b"from a file" * 1000
    upload2 = tmp_path / "upload2.zip"
    upload2.write_bytes(b"pathlib")
    jid2 = store.create({}, upload2)["job_id"]
    assert not upload2.exists()
    assert store.get_content({"job_id": jid2}) == b"pathlib"


def test_create_from_a_missing_file_stores_nothing(store: RedisJobDefManager, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        store.create({"job_id": "j1"}, str(tmp_path / "nope.zip"))
    assert store.get_job("j1") is None
    assert store.get_all_jobs() == []
    assert namespace_keys(store) == []


def test_create_large_content_spans_chunks(make_store: Any) -> None:
    store = make_store(chunk_size=1024)
    content = os.urandom(5000)
    jid = new_job(store, content)
    assert len([k for k in chunk_keys_of(store, jid) if b":chunk:" in k]) == 5
    assert store.get_content({"job_id": jid}) == content
    other = make_store()  # another process, with the default chunk size, reads and clones it
    assert other.get_content({"job_id": jid}) == content
    clone = other.clone(jid, {})["job_id"]
    assert store.get_content({"job_id": clone}) == content


@pytest.mark.parametrize(
    "bad_meta",
    [
        {1: "x"},
        {"": "empty key"},
        {"x": object()},
        {"nested": {"deep": {1, 2}}},
        {"priority": "high"},
        {"priority": 2**30},
        {"priority": -(2**21)},
        {"priority": 1.5},
        {"priority": True},
        {"approvals": "everyone"},
        {"approvals": {"alice": object()}},
    ],
    ids=lambda m: repr(m)[:40],
)
def test_create_invalid_meta_stores_nothing(store: RedisJobDefManager, bad_meta: dict[Any, Any]) -> None:
    with pytest.raises(InvalidMeta) as info:
        store.create(dict(bad_meta), b"content")
    assert isinstance(info.value, ValueError)
    assert store.get_all_jobs() == []
    assert store.get_jobs_to_schedule() == []
    assert namespace_keys(store) == []


@pytest.mark.parametrize("not_a_dict", [["job_id", "x"], "meta", None, 42])
def test_create_with_a_meta_that_is_not_a_dict(not_a_dict: Any) -> None:
    """``_new_id`` raises InvalidMeta for a non-dict meta; create must get there (it pops first)."""
    client = mock.MagicMock()
    m = RedisJobDefManager(client=client, namespace="meta")
    with pytest.raises(InvalidMeta, match="meta must be a dict"):
        m.create(not_a_dict, b"content")
    assert client.mock_calls == []


def test_priority_bounds(store: RedisJobDefManager) -> None:
    top = 2**21 - 1
    new_job(store, job_id="hi", priority=top)
    new_job(store, job_id="lo", priority=-top)
    new_job(store, job_id="mid")
    assert ids(store.get_jobs_to_schedule()) == ["hi", "mid", "lo"]
    with pytest.raises(InvalidMeta, match="priority"):
        store.create({"job_id": "over", "priority": top + 1}, b"c")
    assert store.get_job("over") is None


def test_create_with_approvals_and_enum_keys(store: RedisJobDefManager) -> None:
    meta = {JobMetaKey.JOB_NAME: "enum-keyed", "approvals": {"alice": [True, "fine"]}}
    jid = store.create(meta, b"c")["job_id"]
    stored = meta_of(store, jid)
    assert stored["name"] == "enum-keyed"
    assert stored["approvals"] == {"alice": [True, "fine"]}
    assert ids(store.get_jobs_waiting_for_review("alice")) == []
    assert ids(store.get_jobs_waiting_for_review("bob")) == [jid]


# -- clone -----------------------------------------------------------------------------------------


def test_clone_copies_data_only(store: RedisJobDefManager) -> None:
    src = new_job(store, b"source data", name="src", custom="only in source")
    store.save_workspace(src, b"workspace")
    store.set_client_data(src, b"error log", "site-1", "ERRORLOG")
    store.set_approval(src, "alice", True, "ok")
    store.update_meta(src, {"data_storage_format": 1})
    before = time.time()
    meta: dict[str, Any] = {"name": "clone"}
    out = store.clone(src, meta)
    assert out is meta
    jid = meta["job_id"]
    assert jid != src and uuid.UUID(jid).version == 4
    assert meta["status"] == "SUBMITTED"
    assert meta["start_time"] == "" and meta["duration"] == "N/A"
    assert before - 1 <= meta["submit_time"] <= time.time() + 1
    assert datetime.datetime.fromisoformat(meta["submit_time_iso"]).tzinfo is not None
    assert meta["data_storage_format"] == 1  # defaulted from the source
    stored = meta_of(store, jid)
    assert stored == meta
    assert "custom" not in stored and "approvals" not in stored
    assert store.get_content({"job_id": jid}) == b"source data"
    assert store.list_components(jid) == ["meta", "data"]
    assert store.get_client_data(jid, "site-1", "ERRORLOG") is None
    with pytest.raises(BlobNotFound):
        store.get_storage_component(jid, "workspace")
    assert ids(store.get_jobs_to_schedule()) == [src, jid]
    # The source is untouched.
    assert store.get_storage_component(src, "workspace") == b"workspace"


def test_clone_keeps_given_fields(store: RedisJobDefManager) -> None:
    src = new_job(store, b"d")
    meta = store.clone(src, {"job_id": "cloned", "data_storage_format": 7})
    assert meta["job_id"] == "cloned"
    assert meta_of(store, "cloned")["data_storage_format"] == 7


def test_clone_defaults_the_storage_format_to_two(store: RedisJobDefManager) -> None:
    src = new_job(store, b"d")
    assert store.clone(src, {})["data_storage_format"] == 2


def test_clone_missing_source_leaves_nothing(store: RedisJobDefManager) -> None:
    meta = {"job_id": "new-one"}
    with pytest.raises(JobNotFound, match="ghost") as info:
        store.clone("ghost", meta)
    assert isinstance(info.value, LookupError)
    assert store.get_job("new-one") is None
    assert store.get_all_jobs() == []
    assert namespace_keys(store) == []


def test_clone_to_a_taken_id_raises(chunked: RedisJobDefManager) -> None:
    src = new_job(chunked, b"source", job_id="src")
    new_job(chunked, b"taken content", job_id="taken", name="taken")
    before = meta_of(chunked, "taken")
    with pytest.raises(JobExists):
        chunked.clone(src, {"job_id": "taken"})
    assert meta_of(chunked, "taken") == before
    assert chunked.get_content({"job_id": "taken"}) == b"taken content"
    assert len(chunk_keys_of(chunked, "taken")) == 1
    with pytest.raises(JobExists):
        chunked.clone(src, {"job_id": src})
    assert chunked.get_content({"job_id": src}) == b"source"


# -- get_job / get_content -------------------------------------------------------------------------


def test_get_job_missing_is_none(store: RedisJobDefManager) -> None:
    assert store.get_job("nope") is None
    with pytest.raises(JobNotFound):
        store.get_meta("nope")


def test_get_job_meta_is_a_fresh_dict(make_store: Any) -> None:
    store = make_store()
    jid = new_job(store, name="n", nested={"a": [1, 2]})
    job1 = store.get_job(jid)
    job2 = store.get_job(jid)
    assert job1 is not None and job2 is not None
    assert job1.meta is not job2.meta
    assert job1.meta["nested"] is not job2.meta["nested"]
    job1.meta["name"] = "mutated"
    job1.meta["nested"]["a"].append(3)
    job1.meta["extra"] = True
    again = meta_of(store, jid)
    assert again["name"] == "n" and again["nested"] == {"a": [1, 2]} and "extra" not in again
    listed = store.get_all_jobs()[0]
    listed.meta["name"] = "mutated too"
    assert meta_of(store, jid)["name"] == "n"


def test_job_fields(store: RedisJobDefManager) -> None:
    jid = new_job(
        store,
        deploy_map={"app_server": ["server"], "app_client": ["site-1", "site-2"]},
        resource_spec={"site-1": {"gpu": 1}},
        min_clients=2,
        mandatory_clients=["site-1"],
    )
    job = store.get_job(jid)
    assert job is not None
    assert job.job_id == jid
    assert job.min_sites == 2
    assert job.required_sites == ["site-1"]
    assert job.deploy_map == {"app_server": ["server"], "app_client": ["site-1", "site-2"]}
    assert job.get_deployment() == job.deploy_map
    assert job.resource_spec == {"site-1": {"gpu": 1}}
    assert job.get_application_name("site-2") == "app_client"
    assert job.status == "SUBMITTED"

    plain = store.get_job(new_job(store))
    assert plain is not None
    assert plain.min_sites == 1
    assert plain.required_sites == []
    assert plain.deploy_map == {}
    assert plain.resource_spec == {}


def test_get_content(store: RedisJobDefManager) -> None:
    jid = new_job(store, b"\x00\x01binary\xff")
    assert store.get_content({"job_id": jid}) == b"\x00\x01binary\xff"
    assert store.get_content(meta_of(store, jid)) == b"\x00\x01binary\xff"
    assert store.get_content({"job_id": "missing"}) is None
    for no_id in ({}, {"job_id": ""}, {"job_id": None}, {"name": jid}):
        with pytest.raises(RuntimeError):
            store.get_content(no_id)


def test_empty_content(store: RedisJobDefManager) -> None:
    jid = new_job(store, b"")
    assert store.get_content({"job_id": jid}) == b""
    assert store.get_storage_component(jid, "data") == b""


# -- update_meta / refresh_meta --------------------------------------------------------------------


def test_update_meta_is_a_shallow_merge(store: RedisJobDefManager) -> None:
    jid = new_job(store, a={"x": 1, "y": 2}, b=1, keep="me")
    assert store.update_meta(jid, {"a": {"x": 9}, "c": [3], "b": None}) is False
    meta = meta_of(store, jid)
    assert meta["a"] == {"x": 9}  # nested values replaced whole
    assert meta["b"] is None
    assert meta["c"] == [3]
    assert meta["keep"] == "me"
    assert meta["status"] == "SUBMITTED"


def test_update_meta_writes_only_the_named_fields(make_store: Any) -> None:
    one, two = make_store(), make_store()
    jid = new_job(one, a=0, b=0)
    stale = one.get_job(jid)  # a reader that holds an old copy...
    two.update_meta(jid, {"b": 2})
    one.update_meta(jid, {"a": 1})  # ...and writes one field: b survives
    meta = meta_of(one, jid)
    assert (meta["a"], meta["b"]) == (1, 2)
    assert stale is not None and stale.meta["b"] == 0


def test_update_meta_missing_job(store: RedisJobDefManager) -> None:
    with pytest.raises(JobNotFound, match="ghost"):
        store.update_meta("ghost", {"x": 1})
    with pytest.raises(JobNotFound):
        store.update_meta("ghost", {})
    with pytest.raises(JobNotFound):
        store.update_meta("ghost", {"status": "DISPATCHED"})
    assert store.get_job("ghost") is None
    assert namespace_keys(store) == []


def test_update_meta_status_goes_through_the_transition_checks(store: RedisJobDefManager) -> None:
    jid = new_job(store)
    with pytest.raises(InvalidTransition):
        store.update_meta(jid, {"status": "RUNNING", "x": 1})
    meta = meta_of(store, jid)
    assert meta["status"] == "SUBMITTED" and "x" not in meta  # nothing written
    assert store.update_meta(jid, {"status": RunStatus.DISPATCHED, "x": 2}) is True
    meta = meta_of(store, jid)
    assert meta["status"] == "DISPATCHED" and meta["x"] == 2
    assert ids(store.get_jobs_by_status("DISPATCHED")) == [jid]
    assert store.get_jobs_to_schedule() == []
    with pytest.raises(InvalidStatus):
        store.update_meta(jid, {"status": "BOGUS", "y": 1})
    assert "y" not in meta_of(store, jid)
    assert store.update_meta(jid, {JobMetaKey.STATUS: "RUNNING"}) is True
    assert meta_of(store, jid)["start_time"] != ""


def test_update_meta_expected_status(store: RedisJobDefManager) -> None:
    jid = new_job(store)
    with pytest.raises(StatusConflict):
        store.update_meta(jid, {"x": 1}, expected=RunStatus.RUNNING)
    assert "x" not in meta_of(store, jid)
    store.update_meta(jid, {"x": 2}, expected="SUBMITTED")
    assert meta_of(store, jid)["x"] == 2


def test_update_meta_cannot_change_job_id(store: RedisJobDefManager) -> None:
    jid = new_job(store)
    with pytest.raises(InvalidMeta, match="job_id"):
        store.update_meta(jid, {"job_id": "other", "x": 1})
    assert "x" not in meta_of(store, jid)
    assert store.get_job("other") is None
    store.update_meta(jid, {"job_id": jid, "x": 1})  # the same id is fine
    assert meta_of(store, jid)["x"] == 1


@pytest.mark.parametrize(
    "bad",
    [{1: "x"}, {"x": object()}, {"priority": "high"}, {"priority": 2**30}, {"approvals": ["a"]}],
    ids=repr,
)
def test_update_meta_invalid_meta_writes_nothing(store: RedisJobDefManager, bad: dict[Any, Any]) -> None:
    jid = new_job(store)
    before = meta_of(store, jid)
    with pytest.raises(InvalidMeta):
        store.update_meta(jid, {"ok": 1, **bad})
    assert meta_of(store, jid) == before


def test_update_meta_not_a_dict(store: RedisJobDefManager) -> None:
    jid = new_job(store)
    with pytest.raises(InvalidMeta):
        store.update_meta(jid, [("x", 1)])  # type: ignore[arg-type]


def test_concurrent_update_meta_loses_nothing(make_store: Any) -> None:
    one, two = make_store(), make_store()
    jid = new_job(one)
    rounds = 25

    def writer(m: RedisJobDefManager, name: str) -> Callable[[], None]:
        def run() -> None:
            for i in range(rounds):
                m.update_meta(jid, {f"{name}_{i}": i, name: i})

        return run

    run_threads([writer(one, "left"), writer(two, "right")])
    meta = meta_of(one, jid)
    assert meta["left"] == rounds - 1 and meta["right"] == rounds - 1
    for name in ("left", "right"):
        assert [meta.get(f"{name}_{i}") for i in range(rounds)] == list(range(rounds))


def test_priority_change_reorders_the_queue(store: RedisJobDefManager) -> None:
    a, b, c = (new_job(store, job_id=x) for x in "abc")
    assert ids(store.get_jobs_to_schedule()) == [a, b, c]
    store.update_meta(c, {"priority": 10})
    assert ids(store.get_jobs_to_schedule()) == [c, a, b]
    store.update_meta(a, {"priority": -1})
    assert ids(store.get_jobs_to_schedule()) == [c, b, a]
    store.update_meta(c, {"priority": 0})
    assert ids(store.get_jobs_to_schedule()) == [b, c, a]  # back to submit order within priority 0


def test_priority_changed_while_dispatched_applies_on_requeue(store: RedisJobDefManager) -> None:
    a, b = new_job(store, job_id="a"), new_job(store, job_id="b")
    store.set_status(b, "DISPATCHED")
    store.update_meta(b, {"priority": 3})
    assert ids(store.get_jobs_to_schedule()) == [a]
    store.set_status(b, "SUBMITTED")
    assert ids(store.get_jobs_to_schedule()) == [b, a]


def test_refresh_meta_writes_only_listed_keys_present(store: RedisJobDefManager) -> None:
    jid = new_job(store, name="orig")
    job = store.get_job(jid)
    assert job is not None
    job.meta["schedule_count"] = 3
    job.meta["last_schedule_time"] = 12.5
    job.meta["name"] = "changed locally"
    job.meta["other"] = "not listed"
    assert store.refresh_meta(job, ["schedule_count", "last_schedule_time", "not_in_meta"]) is None
    meta = meta_of(store, jid)
    assert meta["schedule_count"] == 3 and meta["last_schedule_time"] == 12.5
    assert meta["name"] == "orig"
    assert "other" not in meta and "not_in_meta" not in meta


def test_refresh_meta_empty_list_writes_all(store: RedisJobDefManager) -> None:
    jid = new_job(store, name="orig")
    job = store.get_job(jid)
    assert job is not None
    job.meta["name"] = "changed"
    job.meta["other"] = {"k": [1]}
    store.refresh_meta(job, [])
    meta = meta_of(store, jid)
    assert meta == job.meta


def test_refresh_meta_missing_job(store: RedisJobDefManager) -> None:
    job = Job.from_meta({"job_id": "gone", "x": 1})
    with pytest.raises(JobNotFound):
        store.refresh_meta(job, ["x"])
    assert store.get_job("gone") is None


def test_set_results_uri(store: RedisJobDefManager) -> None:
    jid = new_job(store)
    job = store.set_results_uri(jid, "s3://bucket/result")
    assert isinstance(job, Job)
    assert job.job_id == jid
    assert job.meta["result_location"] == "s3://bucket/result"
    assert meta_of(store, jid)["result_location"] == "s3://bucket/result"
    with pytest.raises(JobNotFound):
        store.set_results_uri("ghost", "x")


# -- set_status ------------------------------------------------------------------------------------


def test_set_status_accepts_enum_and_string(store: RedisJobDefManager) -> None:
    jid = new_job(store)
    assert store.set_status(jid, RunStatus.DISPATCHED) is True
    assert status_of(store, jid) == "DISPATCHED"
    assert store.set_status(jid, "RUNNING") is True
    raw = store.client.hget(store.keys.job(jid), "status")
    assert json.loads(raw) == "RUNNING"  # the plain value string, not the enum's name


def test_running_writes_an_aware_utc_start_time(store: RedisJobDefManager) -> None:
    jid = new_job(store)
    store.set_status(jid, "DISPATCHED")
    assert meta_of(store, jid)["start_time"] == ""
    store.set_status(jid, RunStatus.RUNNING)
    start = datetime.datetime.fromisoformat(meta_of(store, jid)["start_time"])
    assert start.tzinfo is not None
    assert start.utcoffset() == datetime.timedelta(0)
    assert abs(start.timestamp() - time.time()) < 300
    # RUNNING again is a no-op: the start time stays.
    before = meta_of(store, jid)["start_time"]
    assert store.set_status(jid, "RUNNING") is False
    assert meta_of(store, jid)["start_time"] == before


@pytest.mark.parametrize("final", TIMED, ids=str)
def test_timed_finish_writes_a_duration(store: RedisJobDefManager, final: RunStatus) -> None:
    jid = new_job(store)
    drive(store, jid, "RUNNING")
    assert store.set_status(jid, final) is True
    meta = meta_of(store, jid)
    assert meta["status"] == final.value
    assert DURATION_RE.match(meta["duration"]), meta["duration"]  # never negative: no "-1 day, "


@pytest.mark.parametrize("final", TIMED, ids=str)
def test_timed_finish_without_start_time_keeps_na(store: RedisJobDefManager, final: RunStatus) -> None:
    jid = new_job(store)
    assert store.set_status(jid, final) is True
    meta = meta_of(store, jid)
    assert meta["status"] == final.value
    assert meta["duration"] == "N/A"
    assert meta["start_time"] == ""


@pytest.mark.parametrize("final", UNTIMED, ids=str)
def test_untimed_finish_writes_status_only(store: RedisJobDefManager, final: RunStatus) -> None:
    jid = new_job(store)
    drive(store, jid, "RUNNING")
    before = meta_of(store, jid)
    assert store.set_status(jid, final) is True
    after = meta_of(store, jid)
    assert after.pop("status") == final.value
    before.pop("status")
    assert after == before
    assert after["duration"] == "N/A"


def _finish_after(store: RedisJobDefManager, start_time: str) -> float:
    jid = new_job(store)
    drive(store, jid, "RUNNING")
    store.update_meta(jid, {"start_time": start_time})
    store.set_status(jid, RunStatus.FINISHED_COMPLETED)
    duration = meta_of(store, jid)["duration"]
    assert DURATION_RE.match(duration), duration
    return duration_seconds(duration)


def test_naive_old_start_time_gives_about_an_hour(store: RedisJobDefManager) -> None:
    naive = (datetime.datetime.now() - datetime.timedelta(hours=1)).isoformat()
    assert 3599 <= _finish_after(store, naive) < 3600 + 300


def test_naive_start_time_in_a_non_utc_zone(store: RedisJobDefManager, india_tz: Any) -> None:
    """NVFlare < 2.9 wrote local naive times: they are local to the server, here UTC+05:30."""
    naive = (datetime.datetime.now() - datetime.timedelta(hours=1)).isoformat()
    assert 3599 <= _finish_after(store, naive) < 3600 + 300
    spaced = (datetime.datetime.now() - datetime.timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S.%f")
    assert 7199 <= _finish_after(store, spaced) < 7200 + 300


def test_start_time_with_an_offset(store: RedisJobDefManager) -> None:
    west = datetime.timezone(datetime.timedelta(hours=-7))
    hour_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    assert 3599 <= _finish_after(store, hour_ago.astimezone(west).isoformat()) < 3600 + 300
    zulu = hour_ago.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert 3599 <= _finish_after(store, zulu) < 3600 + 300
    compact = hour_ago.astimezone(west).strftime("%Y-%m-%dT%H:%M:%S%z")  # -0700, whole seconds
    assert 3598 <= _finish_after(store, compact) < 3600 + 300


def test_start_time_in_the_future_gives_a_negative_timedelta(store: RedisJobDefManager) -> None:
    """As Python's str(timedelta): '-1 day, 23:00:00.xxxxxx' for about minus one hour."""
    start = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    jid = new_job(store)
    drive(store, jid, "RUNNING")
    store.update_meta(jid, {"start_time": start.isoformat()})
    store.set_status(jid, "FINISHED:COMPLETED")
    duration = meta_of(store, jid)["duration"]
    assert re.fullmatch(r"-1 day, \d+:\d\d:\d\d(\.\d{6})?", duration), duration
    assert -3600 <= duration_seconds(duration) < -3600 + 300


def test_duration_over_a_day(store: RedisJobDefManager) -> None:
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1, hours=2)
    jid = new_job(store)
    drive(store, jid, "RUNNING")
    store.update_meta(jid, {"start_time": start.isoformat()})
    store.set_status(jid, "FINISHED:ABORTED")
    assert re.fullmatch(r"1 day, 2:0\d:\d\d(\.\d{6})?", meta_of(store, jid)["duration"])


def test_unparsable_start_time_writes_no_duration(store: RedisJobDefManager) -> None:
    jid = new_job(store)
    drive(store, jid, "RUNNING")
    store.update_meta(jid, {"start_time": "yesterday"})
    store.set_status(jid, "FINISHED:COMPLETED")
    meta = meta_of(store, jid)
    assert meta["status"] == "FINISHED:COMPLETED" and meta["duration"] == "N/A"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("FINISHED:COMPLETED", "RUNNING"),
        ("FINISHED:ABORTED", "SUBMITTED"),
        ("SUBMITTED", "RUNNING"),
        ("RUNNING", "SUBMITTED"),
        ("RUNNING", "DISPATCHED"),
        ("APPROVED", "SUBMITTED"),
    ],
)
def test_forbidden_transition_changes_nothing(store: RedisJobDefManager, old: str, new: str) -> None:
    jid = new_job(store)
    drive(store, jid, old)
    before = meta_of(store, jid)
    queue = ids(store.get_jobs_to_schedule())
    with pytest.raises(InvalidTransition, match=re.escape(old)) as info:
        store.set_status(jid, new)
    assert isinstance(info.value, ValueError)
    assert (info.value.old, info.value.new) == (old, new)
    assert meta_of(store, jid) == before
    assert ids(store.get_jobs_to_schedule()) == queue
    assert ids(store.get_jobs_by_status(old)) == [jid]
    assert store.get_jobs_by_status(new) == []


@pytest.mark.parametrize("final", FINISHED)
def test_same_terminal_status_twice_is_a_noop(store: RedisJobDefManager, final: str) -> None:
    jid = new_job(store)
    drive(store, jid, "RUNNING")
    assert store.set_status(jid, final) is True
    before = meta_of(store, jid)
    assert store.set_status(jid, final) is False
    assert meta_of(store, jid) == before


def test_expected_status_compare_and_set(store: RedisJobDefManager) -> None:
    jid = new_job(store)
    with pytest.raises(StatusConflict) as info:
        store.set_status(jid, "DISPATCHED", expected="APPROVED")
    assert isinstance(info.value, RedisJobsError)
    assert (info.value.expected, info.value.actual) == ("APPROVED", "SUBMITTED")
    assert status_of(store, jid) == "SUBMITTED"
    assert store.set_status(jid, "DISPATCHED", expected=RunStatus.SUBMITTED) is True
    assert status_of(store, jid) == "DISPATCHED"
    with pytest.raises(InvalidStatus):
        store.set_status(jid, "RUNNING", expected="BOGUS")
    assert status_of(store, jid) == "DISPATCHED"


def test_abort_wins_over_dispatch(make_store: Any) -> None:
    scheduler, admin = make_store(), make_store()
    jid = new_job(admin)
    candidate = scheduler.get_jobs_to_schedule()[0]
    assert candidate.job_id == jid and candidate.status == "SUBMITTED"  # "still SUBMITTED?"
    admin.set_status(jid, RunStatus.FINISHED_ABORTED)  # the abort lands here
    with pytest.raises(StatusConflict):
        scheduler.set_status(jid, RunStatus.DISPATCHED, expected=RunStatus.SUBMITTED)
    assert status_of(admin, jid) == "FINISHED:ABORTED"
    with pytest.raises(InvalidTransition):  # without expected=, the table refuses too
        scheduler.set_status(jid, RunStatus.DISPATCHED)
    assert status_of(admin, jid) == "FINISHED:ABORTED"
    assert scheduler.get_jobs_to_schedule() == []


def test_compare_and_set_race_has_one_winner(make_store: Any) -> None:
    managers = [make_store() for _ in range(6)]
    jid = new_job(managers[0])
    wins: list[bool] = []
    conflicts: list[StatusConflict] = []

    def dispatch(m: RedisJobDefManager) -> Callable[[], None]:
        def run() -> None:
            try:
                wins.append(m.set_status(jid, RunStatus.DISPATCHED, expected=RunStatus.SUBMITTED))
            except StatusConflict as e:
                conflicts.append(e)

        return run

    run_threads([dispatch(m) for m in managers])
    assert wins == [True]
    assert len(conflicts) == 5 and all(c.actual == "DISPATCHED" for c in conflicts)
    assert status_of(managers[0], jid) == "DISPATCHED"


@pytest.mark.parametrize("bad", ["BOGUS", "", "finished:completed", "FINISHED", None, 1, "RunStatus.RUNNING"])
def test_invalid_status(store: RedisJobDefManager, bad: Any) -> None:
    jid = new_job(store)
    with pytest.raises(InvalidStatus) as info:
        store.set_status(jid, bad)
    assert isinstance(info.value, ValueError)
    assert status_of(store, jid) == "SUBMITTED"
    client = mock.MagicMock()
    with pytest.raises(InvalidStatus):
        RedisJobDefManager(client=client).set_status(jid, bad)
    assert client.mock_calls == []


def test_set_status_missing_job(store: RedisJobDefManager) -> None:
    with pytest.raises(JobNotFound, match="ghost"):
        store.set_status("ghost", RunStatus.DISPATCHED)
    with pytest.raises(JobNotFound):
        store.set_status("ghost", "DISPATCHED", expected="SUBMITTED")
    assert namespace_keys(store) == []


@pytest.mark.parametrize("old", STATUSES)
def test_transition_table_exhaustively(store: RedisJobDefManager, old: str) -> None:
    for new in STATUSES:
        jid = new_job(store)
        drive(store, jid, old)
        before = meta_of(store, jid)
        if new == old:
            assert store.set_status(jid, new) is False, (old, new)
            assert meta_of(store, jid) == before
        elif new in TRANSITIONS[old]:
            assert store.set_status(jid, new) is True, (old, new)
            assert status_of(store, jid) == new
            assert jid in ids(store.get_jobs_by_status(new))
            assert jid not in ids(store.get_jobs_by_status(old))
            assert (jid in ids(store.get_jobs_to_schedule())) == (new == "SUBMITTED"), (old, new)
        else:
            with pytest.raises(InvalidTransition):
                store.set_status(jid, new)
            assert meta_of(store, jid) == before, (old, new)
            assert jid in ids(store.get_jobs_by_status(old))
        store.delete(jid)
    assert store.get_all_jobs() == []


def test_transition_table_matches_the_design() -> None:
    finished = set(FINISHED)
    assert set(TRANSITIONS["SUBMITTED"]) == {"APPROVED", "DISPATCHED"} | finished
    assert set(TRANSITIONS["APPROVED"]) == {"DISPATCHED"} | finished
    assert set(TRANSITIONS["DISPATCHED"]) == {"RUNNING", "SUBMITTED"} | finished
    assert set(TRANSITIONS["RUNNING"]) == finished
    for status in finished:
        assert TRANSITIONS[status] == frozenset()
    assert set(TRANSITIONS) == set(STATUSES) == {s.value for s in RunStatus}


# -- listings --------------------------------------------------------------------------------------


def test_get_jobs_to_schedule_order(make_store: Any) -> None:
    store = make_store(batch_size=2)  # paging through the queue
    j1 = new_job(store, job_id="j1")
    j2 = new_job(store, job_id="j2", priority=5)
    j3 = new_job(store, job_id="j3")
    j4 = new_job(store, job_id="j4", priority=5)
    j5 = new_job(store, job_id="j5", priority=-1)
    assert ids(store.get_jobs_to_schedule()) == [j2, j4, j1, j3, j5]
    assert all(j.status == "SUBMITTED" for j in store.get_jobs_to_schedule())


def test_get_jobs_to_schedule_only_submitted(store: RedisJobDefManager) -> None:
    jobs = {s: new_job(store, job_id="job-" + s.replace(":", "-")) for s in STATUSES}
    for status, jid in jobs.items():
        drive(store, jid, status)
    assert ids(store.get_jobs_to_schedule()) == [jobs["SUBMITTED"]]


def test_a_job_that_leaves_the_queue_while_it_is_read_is_not_offered(
    store: RedisJobDefManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue's ids are read first, then the jobs: a job dispatched in between comes back
    DISPATCHED, and is left out, as NVFlare offers SUBMITTED jobs only."""
    a, b = new_job(store, job_id="a"), new_job(store, job_id="b")
    fetch = store._fetch

    def racing(ids: list[bytes]) -> list[Job]:
        store.set_status(a, "DISPATCHED")  # another server, between the two reads
        return fetch(ids)

    monkeypatch.setattr(store, "_fetch", racing)
    assert ids(store.get_jobs_to_schedule()) == [b]


@pytest.mark.parametrize("race", ["claim", "lower", "submit", "dispatch-last", "raise"])
def test_a_change_to_the_queue_between_two_pages_skips_and_repeats_no_job(
    make_store: Any, monkeypatch: pytest.MonkeyPatch, race: str
) -> None:
    """The queue is read a page at a time; another server changes it after the first page. A
    page read by rank would then skip a job that stayed queued (the head claimed: ranks shift
    down), or read one twice (a job moved back, or a new one ahead: ranks shift up). A job moved
    ahead of the place reached is offered at the next call."""
    store, other = make_store(batch_size=3), make_store()
    queued = [new_job(store, job_id=f"j{i}") for i in range(1, 7)]
    score_text = store._score_text
    raced: list[bytes] = []

    def racing(jid: bytes) -> bytes | None:  # asked right after the first page: where it ended
        raced.append(jid)
        if race == "claim":
            assert ids(other.claim("server-2")) == ["j1"]
        elif race == "lower":
            other.update_meta("j1", {"priority": -1})  # to the back of the queue
        elif race == "submit":
            new_job(other, job_id="j0", priority=5)  # ahead of every other
        elif race == "raise":
            other.update_meta("j5", {"priority": 5})  # ahead of the place reached: the next call's
        else:  # the page's last job leaves the queue: the next page starts at the head again
            other.set_status("j3", "DISPATCHED")
        return score_text(jid)

    monkeypatch.setattr(store, "_score_text", racing)
    left = {"claim": "j1", "dispatch-last": "j3", "raise": "j5"}.get(race)
    assert ids(store.get_jobs_to_schedule()) == [jid for jid in queued if jid != left]
    assert raced == [b"j3"]
    if race == "raise":
        monkeypatch.undo()
        assert ids(store.get_jobs_to_schedule()) == ["j5", "j1", "j2", "j3", "j4", "j6"]


def test_requeued_job_is_schedulable_again(store: RedisJobDefManager) -> None:
    a, b = new_job(store, job_id="a"), new_job(store, job_id="b")
    store.set_status(a, "DISPATCHED")
    assert ids(store.get_jobs_to_schedule()) == [b]
    store.set_status(a, "SUBMITTED")
    assert ids(store.get_jobs_to_schedule()) == [a, b]  # back at its submit-order place
    store.set_status(a, "DISPATCHED")
    store.set_status(a, "RUNNING")
    store.set_status(a, "FINISHED:COMPLETED")
    for _ in range(3):
        assert ids(store.get_jobs_to_schedule()) == [b]


def test_get_all_jobs_in_submit_order(make_store: Any) -> None:
    store = make_store(batch_size=2)
    made = [new_job(store, job_id=f"z{9 - i}") for i in range(7)]  # ids sort opposite to submit order
    store.set_status(made[1], "FINISHED:ABORTED")
    store.update_meta(made[2], {"priority": 9})
    assert ids(store.get_all_jobs()) == made
    assert list(store.iter_job_ids()) == made
    store.delete(made[3])
    assert ids(store.get_all_jobs()) == made[:3] + made[4:]


def test_get_jobs_by_status(make_store: Any) -> None:
    store = make_store(batch_size=2)
    a, b, c, d = (new_job(store, job_id=f"j{9 - i}") for i in range(4))
    store.set_status(b, "DISPATCHED")
    store.set_status(c, "FINISHED:ABORTED")
    store.set_status(d, "DISPATCHED")
    assert ids(store.get_jobs_by_status("SUBMITTED")) == [a]
    assert ids(store.get_jobs_by_status(RunStatus.DISPATCHED)) == [b, d]
    assert ids(store.get_jobs_by_status([RunStatus.FINISHED_ABORTED, "SUBMITTED"])) == [a, c]
    every = ("DISPATCHED", RunStatus.SUBMITTED, "FINISHED:ABORTED")
    assert ids(store.get_jobs_by_status(every)) == [a, b, c, d]
    assert store.get_jobs_by_status("RUNNING") == []
    assert store.get_jobs_by_status([]) == []
    with pytest.raises(InvalidStatus):
        store.get_jobs_by_status("BOGUS")
    with pytest.raises(InvalidStatus):
        store.get_jobs_by_status(["SUBMITTED", "BOGUS"])


def test_a_job_that_changes_status_while_it_is_listed_by_status_is_left_out(
    store: RedisJobDefManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ids of a status are read first, then the jobs: a job that moved in between comes back
    in its new status, and is not listed under the old one."""
    a, b = new_job(store, job_id="a"), new_job(store, job_id="b")
    store.set_status(a, "DISPATCHED")
    store.set_status(b, "DISPATCHED")
    fetch = store._fetch

    def racing(ids: list[str]) -> list[Job]:
        store.set_status(a, "FINISHED:ABORTED")  # another server, between the two reads
        return fetch(ids)

    monkeypatch.setattr(store, "_fetch", racing)
    assert ids(store.get_jobs_by_status("DISPATCHED")) == [b]
    assert ids(store.get_jobs_by_status(["DISPATCHED", "FINISHED:ABORTED"])) == [a, b]


def test_get_jobs_waiting_for_review(make_store: Any) -> None:
    store = make_store(batch_size=2)
    a, b, c = (new_job(store, job_id=x) for x in "abc")
    store.set_status(c, "FINISHED:ABORTED")
    assert ids(store.get_jobs_waiting_for_review("alice")) == [a, b, c]  # any status
    store.set_approval(a, "alice", True, "ok")
    store.set_approval(b, "bob", False, "no")
    assert ids(store.get_jobs_waiting_for_review("alice")) == [b, c]
    assert ids(store.get_jobs_waiting_for_review("bob")) == [a, c]  # a rejection is a review too
    assert ids(store.get_jobs_waiting_for_review("carol")) == [a, b, c]


def test_listings_of_an_empty_store(store: RedisJobDefManager) -> None:
    assert store.get_all_jobs() == []
    assert store.get_jobs_to_schedule() == []
    assert store.get_jobs_by_status("SUBMITTED") == []
    assert store.get_jobs_waiting_for_review("alice") == []


# -- set_approval ----------------------------------------------------------------------------------


def test_set_approval_returns_the_meta(store: RedisJobDefManager) -> None:
    jid = new_job(store, name="n")
    meta = store.set_approval(jid, "alice", True, "looks good")
    assert meta["job_id"] == jid and meta["name"] == "n" and meta["status"] == "SUBMITTED"
    assert meta["approvals"] == {"alice": [True, "looks good"]}
    meta = store.set_approval(jid, "bob", False, "no")
    assert meta["approvals"] == {"alice": [True, "looks good"], "bob": [False, "no"]}
    meta = store.set_approval(jid, "alice", False, "changed my mind")
    assert meta["approvals"]["alice"] == [False, "changed my mind"]
    assert meta_of(store, jid)["approvals"] == meta["approvals"]


def test_set_approval_missing_job(store: RedisJobDefManager) -> None:
    with pytest.raises(JobNotFound, match="ghost") as info:
        store.set_approval("ghost", "alice", True, "")
    assert isinstance(info.value, LookupError)
    assert store.get_job("ghost") is None
    assert namespace_keys(store) == []


def test_set_approval_invalid_reviewer(store: RedisJobDefManager) -> None:
    jid = new_job(store)
    for bad in ("", None, 3):
        with pytest.raises(InvalidMeta):
            store.set_approval(jid, bad, True, "")  # type: ignore[arg-type]
    assert "approvals" not in meta_of(store, jid)


def test_update_meta_merges_approvals_per_reviewer(store: RedisJobDefManager) -> None:
    jid = new_job(store)
    store.set_approval(jid, "alice", True, "a")
    store.update_meta(jid, {"approvals": {"bob": [False, "b"]}})
    assert meta_of(store, jid)["approvals"] == {"alice": [True, "a"], "bob": [False, "b"]}


@pytest.mark.parametrize("shared", [False, True], ids=["own-managers", "one-manager"])
def test_concurrent_approvals_all_land(make_store: Any, shared: bool) -> None:
    creator = make_store()
    jid = new_job(creator)
    one = make_store()  # not connected yet: the threads race to connect it
    managers = [one] * 8 if shared else [make_store() for _ in range(8)]
    reviewers = [f"reviewer-{i}" for i in range(8)]

    def approve(m: RedisJobDefManager, who: str) -> Callable[[], None]:
        return lambda: m.set_approval(jid, who, True, f"note from {who}")

    run_threads([approve(m, who) for m, who in zip(managers, reviewers, strict=True)])
    approvals = meta_of(creator, jid)["approvals"]
    assert approvals == {who: [True, f"note from {who}"] for who in reviewers}


# -- delete ----------------------------------------------------------------------------------------


def test_delete_removes_everything(chunked: RedisJobDefManager) -> None:
    keep = new_job(chunked, b"keep", job_id="keep")
    jid = new_job(chunked, b"data", job_id="doomed")
    chunked.save_workspace(jid, b"ws")
    chunked.set_client_data(jid, b"log", "site-1", "LOG_log.txt")
    chunked.set_approval(jid, "alice", True, "")
    assert chunk_keys_of(chunked, jid) != []
    assert chunked.delete(jid) is None
    assert chunked.get_job(jid) is None
    assert chunked.get_content({"job_id": jid}) is None
    assert chunk_keys_of(chunked, jid) == []
    for key in (chunked.keys.job(jid), chunked.keys.blobs(jid)):
        assert chunked.client.exists(key) == 0, key
    assert ids(chunked.get_all_jobs()) == [keep]
    assert ids(chunked.get_jobs_to_schedule()) == [keep]
    assert ids(chunked.get_jobs_by_status(list(STATUSES))) == [keep]
    assert ids(chunked.get_jobs_waiting_for_review("bob")) == [keep]
    assert chunked.list_components(jid) == []
    assert chunked.get_client_data(jid, "site-1", "LOG_log.txt") is None
    assert chunked.get_content({"job_id": keep}) == b"keep"
    with pytest.raises(JobNotFound):
        chunked.get_storage_component(jid, "data")
    with pytest.raises(JobNotFound):
        chunked.delete(jid)


@pytest.mark.parametrize("status", STATUSES)
def test_delete_in_any_status(store: RedisJobDefManager, status: str) -> None:
    jid = new_job(store)
    drive(store, jid, status)
    store.delete(jid)
    assert store.get_jobs_by_status(status) == []
    assert store.get_all_jobs() == []


def test_delete_missing_job(store: RedisJobDefManager) -> None:
    with pytest.raises(JobNotFound, match="ghost") as info:
        store.delete("ghost")
    assert isinstance(info.value, LookupError)


def test_deleted_id_can_be_reused(store: RedisJobDefManager) -> None:
    new_job(store, b"first", job_id="again")
    store.delete("again")
    new_job(store, b"second", job_id="again")
    assert store.get_content({"job_id": "again"}) == b"second"
    assert ids(store.get_jobs_to_schedule()) == ["again"]


# -- save_workspace --------------------------------------------------------------------------------


def test_save_workspace_bytes(store: RedisJobDefManager) -> None:
    jid = new_job(store)
    where = store.save_workspace(jid, b"workspace bytes")
    assert isinstance(where, str) and jid in where
    assert store.get_storage_component(jid, "workspace") == b"workspace bytes"
    assert store.list_components(jid) == ["meta", "data", "workspace"]


def test_save_workspace_file_path_is_consumed(store: RedisJobDefManager, tmp_path: Path) -> None:
    jid = new_job(store)
    ws = tmp_path / "ws.zip"
    ws.write_bytes(b"from file")
    store.save_workspace(jid, str(ws))
    assert not ws.exists()
    assert store.get_storage_component(jid, "workspace") == b"from file"


def test_save_workspace_list_of_paths(make_store: Any, tmp_path: Path) -> None:
    store = make_store(chunk_size=1024)  # the zip spans several chunks
    jid = new_job(store)
    single = tmp_path / "stats.json"
    single.write_text('{"a": 1}')
    run = tmp_path / "run_1"
    (run / "sub" / "deeper").mkdir(parents=True)
    (run / "log.txt").write_text("log line\n" * 300)
    (run / "sub" / "model.pt").write_bytes(os.urandom(3000))
    (run / "sub" / "deeper" / "x.txt").write_text("x")
    (run / "empty").mkdir()
    sources = {p: p.read_bytes() for p in (single, run / "log.txt", run / "sub" / "model.pt")}
    store.save_workspace(jid, [str(single), str(run)])
    with zipfile.ZipFile(io.BytesIO(store.get_storage_component(jid, "workspace"))) as z:
        names = set(z.namelist())
        assert names == {
            "stats.json",
            "log.txt",
            "sub/",
            "sub/model.pt",
            "sub/deeper/",
            "sub/deeper/x.txt",
            "empty/",
        }
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
        assert z.read("stats.json") == sources[single]
        assert z.read("sub/model.pt") == sources[run / "sub" / "model.pt"]
        assert z.read("log.txt") == sources[run / "log.txt"]
    for path, data in sources.items():  # sources untouched
        assert path.read_bytes() == data


def test_save_workspace_retry_last_wins(chunked: RedisJobDefManager, tmp_path: Path) -> None:
    jid = new_job(chunked)
    chunked.save_workspace(jid, b"first")
    chunked.save_workspace(jid, b"first")
    assert chunked.get_storage_component(jid, "workspace") == b"first"
    chunked.save_workspace(jid, b"second, longer")
    assert chunked.get_storage_component(jid, "workspace") == b"second, longer"
    run = tmp_path / "run"
    run.mkdir()
    (run / "f").write_text("f")
    chunked.save_workspace(jid, [str(run)])
    chunked.save_workspace(jid, [str(run)])
    with zipfile.ZipFile(io.BytesIO(chunked.get_storage_component(jid, "workspace"))) as z:
        assert z.namelist() == ["f"]
    assert len(chunk_keys_of(chunked, jid)) == 2  # data + one workspace version: old ones removed


def test_save_workspace_missing_job_leaves_no_chunk(store: RedisJobDefManager, tmp_path: Path) -> None:
    ws = tmp_path / "ws.zip"
    ws.write_bytes(b"ws")
    with pytest.raises(JobNotFound, match="ghost"):
        store.save_workspace("ghost", b"ws bytes")
    with pytest.raises(JobNotFound):
        store.save_workspace("ghost", str(ws))
    assert ws.read_bytes() == b"ws"  # kept for the server's retry
    with pytest.raises(JobNotFound):
        store.save_workspace("ghost", [str(ws)])
    assert chunk_keys_of(store, "ghost") == []
    assert namespace_keys(store) == []


def test_save_workspace_missing_path_keeps_the_old_value(chunked: RedisJobDefManager, tmp_path: Path) -> None:
    jid = new_job(chunked)
    chunked.save_workspace(jid, b"old")
    with pytest.raises(FileNotFoundError):
        chunked.save_workspace(jid, [str(tmp_path / "nope")])
    with pytest.raises(FileNotFoundError):
        chunked.save_workspace(jid, str(tmp_path / "nope.zip"))
    assert chunked.get_storage_component(jid, "workspace") == b"old"
    assert len(chunk_keys_of(chunked, jid)) == 2


# -- components ------------------------------------------------------------------------------------


def test_get_storage_component(store: RedisJobDefManager) -> None:
    jid = new_job(store, b"data bytes", name="n", deploy_map={"app": ["@ALL"]})
    assert store.get_storage_component(jid, "data") == b"data bytes"
    raw = store.get_storage_component(jid, "meta")
    assert isinstance(raw, bytes)
    assert json.loads(raw) == meta_of(store, jid)
    with pytest.raises(BlobNotFound, match="workspace") as info:
        store.get_storage_component(jid, "workspace")
    assert isinstance(info.value, LookupError)
    assert not isinstance(info.value, JobNotFound)
    store.save_workspace(jid, b"ws")
    assert store.get_storage_component(jid, "workspace") == b"ws"


def test_get_storage_component_missing_job(store: RedisJobDefManager) -> None:
    for component in ("data", "meta", "workspace", "ERRORLOG_site-1"):
        with pytest.raises(JobNotFound):
            store.get_storage_component("ghost", component)


@pytest.mark.parametrize(
    "bad", ["foo", "../data", "LOGX", "", "Data", "ERRORLOGsite", "LOG_a/b", "LOG_a\\b", None]
)
def test_get_storage_component_invalid_name(store: RedisJobDefManager, bad: Any) -> None:
    jid = new_job(store)
    with pytest.raises(InvalidComponent) as info:
        store.get_storage_component(jid, bad)
    assert isinstance(info.value, ValueError)
    with pytest.raises(InvalidComponent):  # the name is checked before the job
        store.get_storage_component("ghost", bad)


def test_client_data_components(store: RedisJobDefManager, tmp_path: Path) -> None:
    jid = new_job(store)
    assert store.get_client_data(jid, "site-1", "ERRORLOG") is None
    store.set_client_data(jid, b"error!", "site-1", "ERRORLOG")
    log = tmp_path / "log.txt"
    log.write_bytes(b"log from file")
    store.set_client_data(jid, str(log), "site-1", "LOG_log.txt")
    assert not log.exists()
    assert store.get_client_data(jid, "site-1", "ERRORLOG") == b"error!"
    assert store.get_client_data(jid, "site-1", "LOG_log.txt") == b"log from file"
    assert store.get_storage_component(jid, "ERRORLOG_site-1") == b"error!"
    assert store.get_storage_component(jid, "LOG_log.txt_site-1") == b"log from file"
    assert store.get_client_data(jid, "site-2", "ERRORLOG") is None
    assert store.get_client_data(jid, "site-1", "foo") is None
    assert store.get_client_data("ghost", "site-1", "ERRORLOG") is None
    comps = store.list_components(jid)
    assert comps[0] == "meta"
    assert sorted(comps) == sorted(["meta", "data", "ERRORLOG_site-1", "LOG_log.txt_site-1"])
    store.set_client_data(jid, b"error 2", "site-1", "ERRORLOG")  # replaced
    assert store.get_client_data(jid, "site-1", "ERRORLOG") == b"error 2"


def test_set_client_data_errors(store: RedisJobDefManager) -> None:
    jid = new_job(store)
    with pytest.raises(InvalidComponent):
        store.set_client_data(jid, b"x", "site-1", "foo")
    with pytest.raises(InvalidComponent):
        store.set_client_data(jid, b"x", "a/b", "LOG")
    with pytest.raises(JobNotFound):
        store.set_client_data("ghost", b"x", "site-1", "ERRORLOG")
    assert chunk_keys_of(store, "ghost") == []
    assert store.list_components(jid) == ["meta", "data"]


def test_list_components(store: RedisJobDefManager) -> None:
    jid = new_job(store)
    assert store.list_components(jid) == ["meta", "data"]
    store.save_workspace(jid, b"ws")
    assert store.list_components(jid) == ["meta", "data", "workspace"]
    assert store.list_components("ghost") == []


def test_list_components_puts_meta_and_data_first(store: RedisJobDefManager) -> None:
    """The docstring's order (``meta``, ``data``, ...), also when client data is present."""
    jid = new_job(store)
    store.save_workspace(jid, b"ws")
    store.set_client_data(jid, b"e", "site-1", "ERRORLOG")
    store.set_client_data(jid, b"l", "site-1", "LOG_log.txt")
    comps = store.list_components(jid)
    assert comps[:2] == ["meta", "data"], comps
    assert sorted(comps[2:]) == ["ERRORLOG_site-1", "LOG_log.txt_site-1", "workspace"]


# -- get_storage_for_download ----------------------------------------------------------------------


def test_download_components(store: RedisJobDefManager, tmp_path: Path) -> None:
    jid = new_job(store, b"job zip bytes", name="dl")
    store.save_workspace(jid, b"ws bytes")
    store.get_storage_for_download(jid, str(tmp_path), "data", "job.zip")
    store.get_storage_for_download(jid, str(tmp_path), "meta", "meta.json")
    store.get_storage_for_download(jid, str(tmp_path), "workspace", "workspace.zip")
    folder = tmp_path / jid
    assert (folder / "job.zip").read_bytes() == b"job zip bytes"
    assert (folder / "workspace.zip").read_bytes() == b"ws bytes"
    assert json.loads((folder / "meta.json").read_bytes()) == meta_of(store, jid)
    assert sorted(os.listdir(folder)) == ["job.zip", "meta.json", "workspace.zip"]  # no temp files
    store.save_workspace(jid, b"newer")
    store.get_storage_for_download(jid, str(tmp_path), "workspace", "workspace.zip")  # replaced
    assert (folder / "workspace.zip").read_bytes() == b"newer"
    assert sorted(os.listdir(folder)) == ["job.zip", "meta.json", "workspace.zip"]


def test_download_missing_component_writes_nothing(store: RedisJobDefManager, tmp_path: Path) -> None:
    jid = new_job(store)
    folder = tmp_path / jid
    folder.mkdir()
    (folder / "workspace.zip").write_bytes(b"stale")
    store.get_storage_for_download(jid, str(tmp_path), "workspace", "workspace.zip")
    assert not (folder / "workspace.zip").exists()
    store.get_storage_for_download(jid, str(tmp_path), "ERRORLOG_site-1", "err.txt")
    assert os.listdir(folder) == []


def test_download_missing_job(store: RedisJobDefManager, tmp_path: Path) -> None:
    for component in ("data", "meta", "workspace"):
        with pytest.raises(JobNotFound):
            store.get_storage_for_download("ghost", str(tmp_path), component, "f")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad_file", ["a/b", "../x", "/etc/passwd", "", ".", "..", f"a{os.sep}b"])
def test_download_file_must_be_a_plain_name(store: RedisJobDefManager, tmp_path: Path, bad_file: str) -> None:
    jid = new_job(store)
    with pytest.raises(InvalidComponent) as info:
        store.get_storage_for_download(jid, str(tmp_path / "dl"), "data", bad_file)
    assert isinstance(info.value, ValueError)
    assert list(tmp_path.iterdir()) == []


def test_download_invalid_component(store: RedisJobDefManager, tmp_path: Path) -> None:
    jid = new_job(store)
    with pytest.raises(InvalidComponent):
        store.get_storage_for_download(jid, str(tmp_path), "../data", "f")
    assert list(tmp_path.iterdir()) == []


def test_corrupt_blob_is_detected_and_download_leaves_nothing(
    chunked: RedisJobDefManager, tmp_path: Path
) -> None:
    jid = new_job(chunked, b"original bytes")
    (chunk,) = [k for k in chunk_keys_of(chunked, jid) if b":chunk:" in k]
    chunked.client.set(chunk, b"tampered bytes")
    with pytest.raises(redisjobs.BlobCorrupt, match="data"):
        chunked.get_content({"job_id": jid})
    folder = tmp_path / jid
    folder.mkdir()
    with pytest.raises(redisjobs.BlobCorrupt):
        chunked.get_storage_for_download(jid, str(tmp_path), "data", "job.zip")
    assert os.listdir(folder) == []  # no partial file, no temporary file


def test_download_large_blob_is_streamed_whole(make_store: Any, tmp_path: Path) -> None:
    store = make_store(chunk_size=1024)
    content = os.urandom(10_000)
    jid = new_job(store, content)
    store.get_storage_for_download(jid, str(tmp_path), "data", "job.zip")
    assert (tmp_path / jid / "job.zip").read_bytes() == content
    assert os.listdir(tmp_path / jid) == ["job.zip"]


# -- NVFlare's calling convention: fl_ctx passed positionally, last ---------------------------------


def test_fl_ctx_is_accepted_positionally(store: RedisJobDefManager, tmp_path: Path) -> None:
    ctx = object()
    meta = store.create({"name": "ctx"}, b"c", ctx)
    jid = meta["job_id"]
    job = store.get_job(jid, ctx)
    assert job is not None
    assert store.get_content(meta, ctx) == b"c"
    store.update_meta(jid, {"x": 1}, ctx)
    job.meta["y"] = 2
    store.refresh_meta(job, ["y"], ctx)
    assert store.set_status(jid, RunStatus.DISPATCHED, ctx) is True
    assert ids(store.get_jobs_by_status(RunStatus.DISPATCHED, ctx)) == [jid]
    assert store.get_jobs_to_schedule(ctx) == []
    assert ids(store.get_all_jobs(ctx)) == [jid]
    assert ids(store.get_jobs_waiting_for_review("alice", ctx)) == [jid]
    assert store.set_approval(jid, "alice", True, "ok", ctx)["approvals"] == {"alice": [True, "ok"]}
    store.save_workspace(jid, b"ws", ctx)
    store.set_client_data(jid, b"e", "site-1", "ERRORLOG", ctx)
    assert store.get_client_data(jid, "site-1", "ERRORLOG", ctx) == b"e"
    assert "workspace" in store.list_components(jid, ctx)
    assert store.get_storage_component(jid, "workspace", ctx) == b"ws"
    store.get_storage_for_download(jid, str(tmp_path), "data", "job.zip", ctx)
    assert (tmp_path / jid / "job.zip").read_bytes() == b"c"
    assert store.set_results_uri(jid, "uri", ctx) is not None
    clone = store.clone(jid, {}, ctx)
    assert meta_of(store, jid)["x"] == 1 and meta_of(store, jid)["y"] == 2
    store.delete(clone["job_id"], ctx)
    assert store.get_job(clone["job_id"]) is None


def test_many_jobs_decode_as_each_alone(store: RedisJobDefManager) -> None:
    """Listings decode a batch of jobs in one go: each comes out as a single read gives it."""
    from redisjobs._codec import decode_flat_meta, decode_metas

    ids = [store.create({"name": f"n{i}", "approvals": {}}, b"x")["job_id"]
           for i in range(4)]  # fmt: skip
    store.set_approval(ids[2], "alice", True, "ok")
    store.update_meta(ids[3], {"nested": {"a": [1, 2.5, None]}, "ünïcode key": "✓"})
    replies = store._s.get_jobs(keys=[store.keys.job(j) for j in [*ids, "missing"]], args=[0])
    assert decode_metas(replies) == [decode_flat_meta(r) for r in replies if r]
    assert [j.meta for j in store.get_all_jobs()] == [store.get_meta(j) for j in ids]
    assert store.get_meta(ids[1])["approvals"] == {} and store.get_meta(ids[2])["approvals"] == {
        "alice": [True, "ok"]
    }


#: A way to each status from SUBMITTED, for the exhaustive transition check below.
_PATH_TO = {
    "SUBMITTED": [],
    "APPROVED": ["APPROVED"],
    "DISPATCHED": ["DISPATCHED"],
    "RUNNING": ["DISPATCHED", "RUNNING"],
    **{s: ["DISPATCHED", "RUNNING", s] for s in STATUSES if s.startswith("FINISHED:")},
}


def test_every_status_pair_moves_exactly_as_the_python_table_says(store: RedisJobDefManager) -> None:
    """All 121 (old, new) pairs through the scripts' compiled rules: a move succeeds if and only if
    ``allowed`` says so, lands in the right status set, and a timed finish writes a duration."""
    from redisjobs._lifecycle import TIMED_FINISH, allowed

    for old in STATUSES:
        for new in STATUSES:
            jid = store.create({"name": f"{old}->{new}"}, b"x")["job_id"]
            for step in _PATH_TO[old]:
                store.set_status(jid, step)
            if allowed(old, new):
                store.set_status(jid, new)
                meta = store.get_job(jid).meta
                assert meta["status"] == new, (old, new)
                if new != old and new in TIMED_FINISH and old == "RUNNING":
                    assert DURATION_RE.match(meta["duration"]), (old, new, meta["duration"])
            else:
                with pytest.raises(InvalidTransition):
                    store.set_status(jid, new)
                assert store.get_job(jid).meta["status"] == old, (old, new)
            assert jid in {j.job_id for j in store.get_jobs_by_status(store.get_job(jid).meta["status"])}
    assert store.check_invariants() == []


def test_local_times_follow_daylight_saving_as_datetime_does() -> None:
    """``submit_time_iso`` is built from the offset at that instant (not the current one)."""
    from redisjobs.manager import _local_iso, _local_offset_seconds

    with local_zone("EST5EDT,M3.2.0,M11.1.0"):  # US Eastern
        winter, summer = 1767268800.25, 1782907200.5  # 2026-01-01 and 2026-07-01, 12:00 UTC
        assert _local_iso(winter).endswith("-05:00") and _local_iso(summer).endswith("-04:00")
        for epoch in (winter, summer, time.time()):
            assert _local_iso(epoch) == datetime.datetime.fromtimestamp(epoch).astimezone().isoformat()
        assert (_local_offset_seconds(winter), _local_offset_seconds(summer)) == (-5 * 3600, -4 * 3600)


@pytest.mark.parametrize(
    "rule", ["UTC0", "EST5EDT,M3.2.0,M11.1.0", "CET-1CEST,M3.5.0,M10.5.0/3", "IST-5:30", "LMT-0:17:30"]
)
def test_local_times_match_datetime_at_any_instant(rule: str) -> None:
    """``_local_iso`` reuses a second's date, time and offset while calls stay in that second: it
    still gives what datetime gives at every instant: across a daylight-saving change to the
    second, with microseconds rounded as datetime rounds them (half to even, up into the next
    second, none shown when zero), for offsets with seconds, and in a zone set within one second."""
    from redisjobs.manager import _local_iso

    def expected(epoch: float) -> str:
        return datetime.datetime.fromtimestamp(epoch).astimezone().isoformat()

    rng = random.Random(rule)
    changes = (1772953200, 1793512800, 1774746000, 1792890000)  # 2026: US and EU, in and out of DST
    epochs = [change + quarter / 4 for change in changes for quarter in range(-12, 12)]
    epochs += [rng.randrange(4 * 10**9) + part for part in (0.0, 0.5, 0.25, 4e-7, 5e-7, 0.9999994, 0.9999996)]
    epochs += [rng.uniform(0, 4e9) for _ in range(500)]
    with local_zone(rule):
        for epoch in epochs:
            assert _local_iso(epoch) == expected(epoch), epoch
            assert _local_iso(epoch) == expected(epoch), epoch  # the second's parts reused
    now = time.time()
    with local_zone("UTC0"):
        in_utc = _local_iso(now)
    with local_zone("IST-5:30"):  # within the same second: not UTC's parts
        assert _local_iso(now) == expected(now) != in_utc


def test_new_job_ids_are_random_version_4_uuids() -> None:
    from redisjobs.manager import _uuid4

    ids = [_uuid4() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122
    # Every one of the 122 random bits varies.
    varying = 0
    for bit in range(128):
        if len({(uuid.UUID(t).int >> bit) & 1 for t in ids}) == 2:
            varying += 1
    assert varying == 122


def test_one_job_decodes_as_a_plain_field_by_field_reading_whether_its_names_are_cached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A single job's read splices its fields into one JSON object (by C loops once its names are
    cached): it gives what decoding each field on its own gives, approvals gathered, for names
    that need escaping, approval fields anywhere and an ``approvals`` value that is not a dict."""
    import orjson

    from redisjobs import _codec
    from redisjobs._codec import APPROVAL_FIELD, decode_flat_meta

    def plain(flat: list[bytes]) -> dict[str, object]:
        meta: dict[str, object] = {}
        approvals: dict[str, object] = {}
        for name, value in zip(flat[::2], flat[1::2], strict=True):
            key = name.decode()
            if key.startswith(APPROVAL_FIELD):
                approvals[key[len(APPROVAL_FIELD) :]] = orjson.loads(value)
            else:
                meta[key] = orjson.loads(value)
        if approvals or "approvals" in meta:
            given = meta.get("approvals")
            meta["approvals"] = {**(given if isinstance(given, dict) else {}), **approvals}
        return meta

    approval = (APPROVAL_FIELD + "rev").encode()
    odd = ['q"uote', "back\\slash", "tab\t", "ünï ✓", "\u2028line", "x" * 300, "%b", "100%", "%%s"]
    hashes: list[list[bytes]] = [
        [b"name", b'"a"', b"priority", b"2", b"submit_time", b"1795920712.2968278"],
        [k.encode() for pair in ((n, '"v"') for n in odd) for k in pair],
        [approval, b'[true,"ok"]', b"name", b'"b"'],
        [b"name", b'"c"', approval, b'[false,"no"]', b"approvals", b"{}"],
        [b"approvals", b"[1]", b"name", b'"d"'],
        [b"approvals", b'{"old":[true,""]}', approval, b'[true,"x"]'],
        [b"only", b"null"],
        [],
    ]
    monkeypatch.setattr(_codec, "_FORMATS", {})
    for flat in hashes:
        expected = plain(flat)
        assert decode_flat_meta(flat) == expected  # names new to the cache
        assert decode_flat_meta(flat) == expected  # and cached
    formats = _codec._FORMATS  # a schema with approval fields is cached as None: never spliced
    assert formats[tuple(hashes[0][::2])] is not None and formats[tuple(hashes[2][::2])] is None
    assert plain(hashes[4])["approvals"] == {} and plain(hashes[5])["approvals"] == {
        "old": [True, ""],
        "rev": [True, "x"],
    }


def test_batch_decoding_splices_any_field_names_as_one_job_alone() -> None:
    """The batch decoder swaps cached names in by C loops and learns new ones on the way; names
    that need JSON escaping, approval fields anywhere, and one-field hashes all decode as a single
    job's read does, whether their names are new or already cached."""
    from redisjobs._codec import APPROVAL_FIELD, decode_flat_meta, decode_metas

    approval = (APPROVAL_FIELD + "rev").encode()
    odd = ['q"uote', "back\\slash", "tab\t", "ünï ✓", "/slash", "\u2028line", "x" * 300, "%b", "50%"]
    hashes: list[list[bytes]] = [
        [b"name", b'"a"', b"priority", b"2"],
        [k.encode() for pair in ((n, '"v"') for n in odd) for k in pair],
        [approval, b'[true,"ok"]', b"name", b'"b"'],
        [b"name", b'"c"', approval, b'[false,"no"]', b"status", b'"SUBMITTED"'],
        [b"only", b"1"],
        [],
        [b"name", b'"d"', b"new field", b"{}"],
        [b"approvals", b"{}", b"name", b'"e"'],
    ]
    expected = [decode_flat_meta(h) for h in hashes if h]
    assert decode_metas(hashes) == expected  # names new to the cache
    assert decode_metas(hashes) == expected  # and cached
    assert decode_metas(list(reversed(hashes))) == list(reversed(expected))
    assert expected[1] == {n: "v" for n in odd} and expected[2]["approvals"] == {"rev": [True, "ok"]}


def test_the_schema_cache_starts_afresh_when_full_and_decodes_every_job_alike(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Jobs with more distinct schemas (field names in hash order) than the cache holds, or with
    names too long to cache, still decode as a plain reading does; the cache never grows past its
    bounds."""
    import orjson

    from redisjobs import _codec
    from redisjobs._codec import decode_flat_meta, decode_metas

    monkeypatch.setattr(_codec, "_FORMATS", {})
    monkeypatch.setattr(_codec, "_MAX_FORMATS", 3)
    hashes = [[b"name", b'"j%d"' % i, b"f%d" % (i % 7), b"%d" % i] for i in range(40)]
    hashes += [h[2:] + h[:2] for h in hashes[:5]]  # the same names in another order
    plain = [{k.decode(): orjson.loads(v) for k, v in zip(h[::2], h[1::2], strict=True)} for h in hashes]
    long = [b"n" * 3000, b"1", b"m" * 3000, b"2"]  # names too long to cache
    hashes.append(long)
    plain.append({"n" * 3000: 1, "m" * 3000: 2})
    for _ in range(2):
        assert decode_metas(hashes) == plain
        assert [decode_flat_meta(h) for h in hashes] == plain
        assert 1 <= len(_codec._FORMATS) <= 3 and tuple(long[::2]) not in _codec._FORMATS
