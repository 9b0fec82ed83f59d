"""Hostile input, property-based (issue 8, item 3).

Whatever a caller passes as a job id, reviewer name, component, app or file name, status or meta,
the public API either succeeds or raises one of its documented exceptions (the ``RedisJobsError``
tree; ``UnsafeArchive`` / ``zipfile.BadZipFile`` for zips; what get_app documents), never a raw
redis, orjson, Unicode or KeyError from deep inside; and a call that fails stores nothing: the
namespace's keys and values are exactly what they were. Job zips are extracted only inside the
target folder, whatever their entries say, and zip bombs are refused by size and by compression
ratio, from the declared sizes and again while streaming.

Each property runs a bounded number of examples (``BOUNDED``) with no deadline, on fakeredis and on
a real redis-server (the ``store`` fixture).
"""

from __future__ import annotations

import io
import math
import os
import random
import re
import stat
import struct
import tempfile
import uuid
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

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
    NotOwner,
    RedisJobDefManager,
    RunStatus,
    StatusConflict,
)
from redisjobs._archive import (
    DEFAULT_MAX_ENTRIES,
    DEFAULT_MAX_RATIO,
    DEFAULT_RATIO_MIN_SIZE,
    MAX_NAME_BYTES,
    UnsafeArchive,
    open_zip,
    safe_extract,
)
from redisjobs._codec import DEFAULT_MAX_META_BYTES, approval_pairs, encode_fields
from redisjobs._lifecycle import STATUSES, TRANSITIONS


def bounded(max_examples: int, *, shrink: bool = True) -> settings:
    """Few examples, no deadline (a real server's round trips vary), no example database in the
    tree; one fixture value (a store, a folder) serves every example of a test. Tests against a
    store do not shrink (``shrink=False``): a failure reports the example as generated, at once,
    instead of replaying a slow body for minutes (hypothesis would also swallow pytest-timeout's
    exception while shrinking)."""
    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if shrink else [])
    return settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        phases=phases,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


#: For properties run against a store (both backends).
BOUNDED = bounded(40, shrink=False)

# -- strategies ------------------------------------------------------------------------------------

#: Pieces that break naive checks: separators, dots, NUL, a drive, lone surrogates, bidi, braces.
FRAGMENTS = ["\x00", "/", "\\", ".", "..", "../", ":", "C:", "-", "_", " ", "\n", "{", "}", "*", "é",
             "\ud800", "\udfff", "\u202e", "a", "Z", "9"]  # fmt: skip
hostile_text = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.characters(), st.characters(categories=["Cs"])), max_size=8
).map("".join)
not_text = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.binary(max_size=8),
    st.tuples(st.text(max_size=2)),
    st.builds(object),
)
valid_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,30}", fullmatch=True)
VALID_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


# -- helpers ---------------------------------------------------------------------------------------


def snapshot(store: RedisJobDefManager) -> dict[bytes, Any]:
    """Every key of the store's namespace with its whole value: equal snapshots, nothing stored.
    Request records (``req:``, a repeated call's answer, kept a while after each recorded write)
    count by name only."""
    client = store.client
    out: dict[bytes, Any] = {}
    for key in sorted(client.scan_iter(match=f"rj:{{{store.namespace}*", count=1000)):
        if b":req:" in key:
            out[key] = "request record"
            continue
        kind = client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "hash":
            out[key] = client.hgetall(key)
        elif kind == "string":
            out[key] = client.get(key)
        elif kind == "set":
            out[key] = client.smembers(key)
        elif kind == "zset":
            out[key] = client.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            out[key] = client.xrange(key)
        else:
            out[key] = (kind, client.dump(key))
    return out


def without_history(snap: dict[bytes, Any]) -> dict[bytes, Any]:
    """A snapshot without what successful calls leave by design: the event stream, the submit
    counter and request records."""
    return {k: v for k, v in snap.items() if not k.endswith((b":events", b":seq")) and b":req:" not in k}


def outcome(call: Callable[[], object]) -> tuple[object, Exception | None]:
    try:
        return call(), None
    except Exception as e:  # the tests assert what it is
        return None, e


FIXED_TIME = (2020, 1, 1, 0, 0, 0)


def make_zip(entries: list[tuple[str | zipfile.ZipInfo, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # duplicate names are part of some tests
        with zipfile.ZipFile(buf, "w") as z:
            for entry, data in entries:
                info = entry if isinstance(entry, zipfile.ZipInfo) else zipfile.ZipInfo(entry, FIXED_TIME)
                z.writestr(info, data, compress_type=method)
    return buf.getvalue()


APP_ZIP = make_zip([("app/", b""), ("app/a.txt", b"a"), ("app/sub/b.txt", b"b")])


def central_records(data: bytes) -> tuple[int, int, list[int]]:
    """``(cd_offset, cd_size, [offset of each central directory record])`` of a zip without comment."""
    eocd = data.rindex(b"PK\x05\x06")
    _sig, _disk, _cd_disk, _n_disk, count, cd_size, cd_offset, _clen = struct.unpack(
        "<4s4H2LH", data[eocd : eocd + 22]
    )
    offsets, pos = [], cd_offset
    for _ in range(count):
        offsets.append(pos)
        nlen, xlen, clen = struct.unpack("<3H", data[pos + 28 : pos + 34])
        pos += 46 + nlen + xlen + clen
    return cd_offset, cd_size, offsets


def patch_central(data: bytes, field: str, value: int, index: int = 0) -> bytes:
    """Overwrite one field of one central directory record: what a forged zip declares."""
    where, fmt = {"version": (6, "<H"), "flags": (8, "<H"), "method": (10, "<H"), "file_size": (24, "<L")}[
        field
    ]
    pos = central_records(data)[2][index] + where
    return data[:pos] + struct.pack(fmt, value) + data[pos + struct.calcsize(fmt) :]


def tree(folder: Path) -> dict[str, bytes | str]:
    """Every path under ``folder`` (symlinks not followed) with its bytes, 'dir' or 'link'."""
    out: dict[str, bytes | str] = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root, name)
            rel = str(path.relative_to(folder))
            out[rel] = "link" if path.is_symlink() else "dir" if path.is_dir() else path.read_bytes()
    return out


@pytest.fixture
def jail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Temporary folders go to tmp_path/tmp and the working directory is tmp_path/cwd."""
    (tmp_path / "tmp").mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.chdir(tmp_path / "cwd")
    return tmp_path


@pytest.fixture
def job_id(store: RedisJobDefManager) -> str:
    return str(store.create({"job_folder_name": ""}, APP_ZIP)["job_id"])


# -- job ids -----------------------------------------------------------------------------------------


def id_calls(store: RedisJobDefManager, jid: Any, folder: str) -> dict[str, Callable[[], object]]:
    """Every public method that takes a job id, called with ``jid``."""
    return {
        "get_job": lambda: store.get_job(jid),
        "get_meta": lambda: store.get_meta(jid),
        "update_meta": lambda: store.update_meta(jid, {"touched": 1}),
        "set_status": lambda: store.set_status(jid, RunStatus.DISPATCHED),
        "set_approval": lambda: store.set_approval(jid, "alice", True, "ok"),
        "set_results_uri": lambda: store.set_results_uri(jid, "uri://r"),
        "get_content": lambda: store.get_content({"job_id": jid}),
        "get_app": lambda: store.get_app(Job.from_meta({"job_id": jid, "job_folder_name": ""}), "app"),
        "save_workspace": lambda: store.save_workspace(jid, b"ws"),
        "set_client_data": lambda: store.set_client_data(jid, b"log", "site-1", "ERRORLOG"),
        "get_client_data": lambda: store.get_client_data(jid, "site-1", "ERRORLOG"),
        "list_components": lambda: store.list_components(jid),
        "get_storage_component": lambda: store.get_storage_component(jid, "data"),
        "get_storage_for_download": lambda: store.get_storage_for_download(jid, folder, "data", "job.zip"),
        "iter_chunks": lambda: b"".join(store.iter_chunks(jid)),
        "lease_of": lambda: store.lease_of(jid),
        "renew": lambda: store.renew(jid, "owner"),
        "release": lambda: store.release(jid, "owner"),
        "clone_from": lambda: store.clone(jid, {}),
    }


#: What each call may raise for a valid id of a job that does not exist (the rest return None/[]).
MISSING = {
    "get_meta": JobNotFound,
    "update_meta": JobNotFound,
    "set_status": JobNotFound,
    "set_approval": JobNotFound,
    "set_results_uri": JobNotFound,
    "get_app": BlobNotFound,
    "save_workspace": JobNotFound,
    "set_client_data": JobNotFound,
    "get_storage_component": JobNotFound,
    "get_storage_for_download": JobNotFound,
    "iter_chunks": BlobNotFound,
    "renew": JobNotFound,
    "release": JobNotFound,
    "clone_from": JobNotFound,
}
#: What each call may raise once the job exists (set_status made it DISPATCHED; nobody claimed it).
EXISTING = {"renew": NotOwner, "release": NotOwner}


@BOUNDED
@given(jid=st.one_of(valid_ids, hostile_text, not_text))
@example(jid="lone\ud800").via("a surrogate")
@example(jid="a\n").via("a trailing newline")
@example(jid="job-1.0_A").via("a valid id")
def test_any_job_id_is_refused_or_works_and_a_refusal_stores_nothing(
    store: RedisJobDefManager, tmp_path: Path, jid: Any
) -> None:
    with tempfile.TemporaryDirectory(dir=tmp_path) as folder:
        before = snapshot(store)
        if not (isinstance(jid, str) and VALID_ID.fullmatch(jid)):
            for name, call in id_calls(store, jid, folder).items():
                _, err = outcome(call)
                if name == "get_content" and not jid:
                    assert isinstance(err, RuntimeError) and "Job ID" in str(err)  # NVFlare's behaviour
                else:
                    assert isinstance(err, InvalidJobId), (name, err)
            if jid:  # a missing id ("", None, 0) means "make one" to create and clone
                assert isinstance(outcome(lambda: store.create({"job_id": jid}, b"c"))[1], InvalidJobId)
                assert isinstance(outcome(lambda: store.clone("x", {"job_id": jid}))[1], InvalidJobId)
            assert snapshot(store) == before
            assert os.listdir(folder) == []
            return

        if store.get_job(jid) is not None:  # an id hypothesis produced before
            store.delete(jid)
            before = snapshot(store)
        for name, call in id_calls(store, jid, folder).items():  # no such job yet
            result, err = outcome(call)
            if name in MISSING:
                assert isinstance(err, MISSING[name]), (name, err)
            else:
                assert err is None and not result, (name, result, err)
        assert snapshot(store) == before

        others = {j.job_id for j in store.get_all_jobs()}
        store.create({"job_id": jid, "job_folder_name": ""}, APP_ZIP)
        for name, call in id_calls(store, jid, folder).items():
            result, err = outcome(call)
            if name in EXISTING:
                assert isinstance(err, EXISTING[name]), (name, err)
            else:
                assert err is None, (name, err)
        assert isinstance(outcome(lambda: store.create({"job_id": jid}, b"c"))[1], JobExists)
        meta = store.get_meta(jid)
        assert meta["job_id"] == jid and meta["touched"] == 1 and meta["status"] == "DISPATCHED"
        assert Path(folder, jid, "job.zip").read_bytes() == APP_ZIP
        for job in store.get_all_jobs():  # the job and its clone (clone_from)
            if job.job_id not in others:
                store.delete(job.job_id)
        assert store.get_job(jid) is None and len(store.get_all_jobs()) == len(others)
        assert without_history(snapshot(store)) == without_history(before)  # nothing left behind


# -- reviewer names --------------------------------------------------------------------------------


@BOUNDED
@given(
    reviewer=st.one_of(st.text(min_size=1, max_size=10), hostile_text, not_text),
    approved=st.booleans(),
    note=st.one_of(st.text(max_size=10), hostile_text),
    how=st.sampled_from(["set_approval", "update_meta", "create"]),
)
@example(reviewer="lone\ud800", approved=True, note="n", how="set_approval").via("a surrogate")
@example(reviewer="r", approved=True, note="\udfff", how="update_meta").via("a surrogate note")
@example(reviewer="a\x00b", approved=False, note="", how="create").via("NUL is fine")
def test_any_reviewer_name_is_refused_or_recorded(
    store: RedisJobDefManager, job_id: str, reviewer: Any, approved: bool, note: str, how: str
) -> None:
    valid = isinstance(reviewer, str) and reviewer != "" and utf8(reviewer) and utf8(note)
    before = snapshot(store)
    jid = job_id
    if how == "set_approval":
        result, err = outcome(lambda: store.set_approval(jid, reviewer, approved, note))
    elif how == "update_meta":
        result, err = outcome(lambda: store.update_meta(jid, {"approvals": {reviewer: [approved, note]}}))
    else:
        jid = f"r-{uuid.uuid4().hex}"
        meta = {"job_id": jid, "approvals": {reviewer: [approved, note]}}
        result, err = outcome(lambda: store.create(meta, b"c"))
    if not valid:
        assert isinstance(err, InvalidMeta), err
        assert snapshot(store) == before
        return
    assert err is None, err
    assert store.get_meta(jid)["approvals"][reviewer] == [approved, note]
    if how == "set_approval":
        assert isinstance(result, dict) and result["approvals"][reviewer] == [approved, note]
    assert jid not in [j.job_id for j in store.get_jobs_waiting_for_review(reviewer)]
    if how == "create":
        store.delete(jid)


# -- statuses --------------------------------------------------------------------------------------

status_values = st.one_of(
    st.sampled_from(list(RunStatus)),
    st.sampled_from(STATUSES),
    st.sampled_from(["", "FINISHED", "RunStatus.RUNNING", "running", "SUBMITTED\n", " RUNNING"]),
    st.sampled_from([s.encode() for s in STATUSES]),
    st.sampled_from([s.lower() for s in STATUSES]),
    hostile_text,
    not_text,
)


def status_of(value: Any) -> str | None:
    """The status a value names, per the docs: our enum, NVFlare's (a str enum) or the exact string."""
    value = getattr(value, "value", value)
    return value if isinstance(value, str) and value in STATUSES else None


@BOUNDED
@given(status=status_values)
def test_any_status_is_refused_or_applied_by_the_table(store: RedisJobDefManager, status: Any) -> None:
    wanted = status_of(status)
    submitted = RunStatus.SUBMITTED.value

    def attempt(call: Callable[[], object], allowed: bool) -> bool:
        """Run ``call``: True if it succeeded; a refusal must be the documented one, writing nothing."""
        before = snapshot(store)
        _, err = outcome(call)
        if wanted is None:
            assert isinstance(err, InvalidStatus), err
        elif not allowed:
            assert isinstance(err, InvalidTransition), err
        else:
            assert err is None, err
            return True
        assert snapshot(store) == before
        return False

    ids = [store.create({}, b"c")["job_id"] for _ in range(3)]
    allowed = wanted == submitted or wanted in TRANSITIONS[submitted]
    if attempt(lambda: store.set_status(ids[0], status), allowed):
        assert store.get_meta(ids[0])["status"] == wanted
    if attempt(lambda: store.update_meta(ids[1], {"status": status, "marker": 1}), allowed):
        assert store.get_meta(ids[1])["status"] == wanted and store.get_meta(ids[1])["marker"] == 1
    # compare-and-set: only a SUBMITTED expectation matches a fresh job
    before = snapshot(store)
    _, err = outcome(lambda: store.set_status(ids[2], RunStatus.DISPATCHED, expected=status))
    if status is None or wanted == submitted:  # None is the default: no expectation
        assert err is None and store.get_meta(ids[2])["status"] == "DISPATCHED"
    else:
        assert isinstance(err, InvalidStatus if wanted is None else StatusConflict), err
        assert snapshot(store) == before
    if isinstance(status, (str, bytes, RunStatus)):  # None and ints: see the xfail test below
        jobs, err = outcome(lambda: store.get_jobs_by_status(status))
        if wanted is not None:
            assert err is None and isinstance(jobs, list)
            assert all(j.meta["status"] == wanted for j in jobs)
            assert (ids[0] in [j.job_id for j in jobs]) == allowed
        elif status == b"":  # bytes are a sequence (of ints): an empty one names no status
            assert err is None and jobs == []
        else:
            assert isinstance(err, InvalidStatus), err
    _, err = outcome(lambda: store.recover("nobody", running=status))
    if wanted is None:
        assert isinstance(err, InvalidStatus), err
    else:
        assert (err is None) == wanted.startswith("FINISHED:"), err
        assert err is None or isinstance(err, InvalidTransition)
    for jid in ids:
        store.delete(jid)


# -- component, client and file names --------------------------------------------------------------

component_parts = st.one_of(
    st.sampled_from(["ERRORLOG", "LOG", "LOG_x", "data", "meta", "workspace", "site-1", ""]),
    st.text(max_size=8),
    hostile_text,
    not_text,
)


def component_ok(name: str) -> bool:
    """The documented rule: data, meta, workspace, ERRORLOG, LOG and names starting ERRORLOG_ or
    LOG_, without / \\ NUL, and valid UTF-8 (Redis keys are bytes)."""
    base = name in ("data", "meta", "workspace", "ERRORLOG", "LOG") or name.startswith(("ERRORLOG_", "LOG_"))
    return base and not any(c in name for c in "/\\\x00") and utf8(name)


@BOUNDED
@given(data_type=component_parts, client=component_parts, data=st.binary(max_size=64))
@example(data_type="LOG", client="\ud800", data=b"x").via("a surrogate")
@example(data_type="LOG", client="a/b", data=b"x").via("a slash")
@example(data_type="ERRORLOG", client="site-1", data=b"x").via("valid")
def test_any_client_data_name_is_refused_or_stored(
    store: RedisJobDefManager, job_id: str, data_type: Any, client: Any, data: bytes
) -> None:
    component = f"{data_type}_{client}"  # the manager's documented naming: <data_type>_<client>
    before = snapshot(store)
    _, err = outcome(lambda: store.set_client_data(job_id, data, client, data_type))
    named = isinstance(data_type, str) and isinstance(client, str)  # no str(None) names: "LOG_None"
    if not named or not component_ok(component):
        assert isinstance(err, InvalidComponent), err
        assert snapshot(store) == before
        got, err = outcome(lambda: store.get_client_data(job_id, client, data_type))
        assert err is None and got is None  # an invalid name was never stored
        return
    assert err is None, err
    assert store.get_client_data(job_id, client, data_type) == data
    assert store.get_storage_component(job_id, component) == data
    assert component in store.list_components(job_id)


@BOUNDED
@given(
    component=st.one_of(component_parts, st.sampled_from(["data", "meta", "LOG_none"])),
    download_file=st.one_of(
        st.sampled_from(["job.zip", "", ".", "..", "../x", "/etc/passwd", "a/b", "a\\b", "~"]),
        hostile_text.filter(lambda s: "\x00" not in s and utf8(s)),  # NUL, surrogates: see the xfail test
        not_text,
    ),
)
def test_any_component_or_download_name_is_refused_or_served(
    store: RedisJobDefManager, job_id: str, tmp_path: Path, component: Any, download_file: Any
) -> None:
    valid = isinstance(component, str) and component_ok(component)
    plain = isinstance(download_file, str) and download_file not in ("", ".", "..")
    plain = plain and os.path.basename(download_file) == download_file
    before = snapshot(store)
    got, err = outcome(lambda: store.get_storage_component(job_id, component))
    if not valid:
        assert isinstance(err, InvalidComponent), err
    elif component in ("data", "meta"):
        assert err is None and isinstance(got, bytes)
    else:
        assert isinstance(err, BlobNotFound), err
    with tempfile.TemporaryDirectory(dir=tmp_path) as folder:
        _, err = outcome(lambda: store.get_storage_for_download(job_id, folder, component, download_file))
        if not valid or not plain:
            assert isinstance(err, InvalidComponent), err
        else:
            assert err is None, err
        written = tree(Path(folder))
        if component in ("data", "meta") and valid and plain:
            assert set(written) == {job_id, f"{job_id}/{download_file}"}
        else:  # nothing, or only the job's (empty) folder
            assert set(written) <= {job_id} and all(v == "dir" for v in written.values())
    assert snapshot(store) == before


@BOUNDED
@given(app=st.one_of(st.sampled_from(["app", "sub", "app/sub", "app/", "../app"]), hostile_text, not_text))
def test_any_app_name_is_refused_or_zipped_and_nothing_escapes(
    store: RedisJobDefManager, job_id: str, jail: Path, app: Any
) -> None:
    job = store.get_job(job_id)
    assert job is not None
    got, err = outcome(lambda: store.get_app(job, app))
    if app == "app":
        assert err is None and isinstance(got, bytes)
        with zipfile.ZipFile(io.BytesIO(got)) as z:
            assert sorted(z.namelist()) == ["a.txt", "sub/", "sub/b.txt"]
    elif isinstance(app, str) and VALID_ID.fullmatch(app):
        assert isinstance(err, FileNotFoundError), err
    else:
        assert isinstance(err, InvalidComponent), err
    assert tree(jail) == {"tmp": "dir", "cwd": "dir"}  # the temporary folder is gone, nothing else came


# -- meta ------------------------------------------------------------------------------------------

#: Keys with a meaning of their own (checked, stamped or split out): left to test_api.
SPECIAL_KEYS = {"job_id", "priority", "approvals", "status", "submit_token", "submit_time", "submit_time_iso",
                "start_time", "duration", "data_storage_format"}  # fmt: skip

json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
hostile_leaves = st.one_of(
    json_leaves,
    st.floats(),  # NaN and infinities: stored as null
    st.integers(min_value=2**64 - 2).map(lambda n: n * 7),  # beyond 64 bits
    st.integers(max_value=-(2**63) + 1).map(lambda n: n * 3),
    hostile_text,
    st.binary(max_size=4),
    st.sets(st.integers(0, 3), max_size=2),
    st.frozensets(st.text(max_size=2), max_size=2),
    st.complex_numbers(max_magnitude=10),
    st.builds(object),
    st.datetimes(),  # orjson writes an ISO string
    st.uuids(),
)
hostile_values = st.recursive(
    hostile_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.tuples(children, children),
        st.dictionaries(
            st.one_of(st.text(max_size=4), st.integers(), st.none(), st.booleans()), children, max_size=3
        ),
    ),
    max_leaves=8,
)
meta_keys = st.one_of(
    st.text(min_size=1, max_size=8), hostile_text, not_text, st.sampled_from(list(JobMetaKey))
).filter(lambda k: getattr(k, "value", k) not in SPECIAL_KEYS)


def spec_accepts(meta: dict[Any, Any]) -> bool:
    """The documented rule: keys non-empty UTF-8 str without NUL (a JobMetaKey counts as its value),
    values anything orjson encodes."""
    for key, value in meta.items():
        name = getattr(key, "value", key)
        if not isinstance(name, str) or not name or "\x00" in name or not utf8(name):
            return False
        try:
            orjson.dumps(value)
        except TypeError:
            return False
    return True


def as_stored(meta: dict[Any, Any]) -> dict[str, Any]:
    """What reading meta back gives: its JSON form (NaN and infinities become None, tuples lists)."""
    return {str(getattr(k, "value", k)): orjson.loads(orjson.dumps(v)) for k, v in meta.items()}


@BOUNDED
@given(meta=st.dictionaries(meta_keys, hostile_values, max_size=4))
@example(meta={"\ud800": 1}).via("a surrogate key")
@example(meta={"x": {"y": {1: 2}}}).via("an int key inside")
@example(meta={"x": math.nan, "y": (1, [math.inf])}).via("NaN, inf and a tuple")
def test_any_meta_at_create_is_refused_or_round_trips(
    store: RedisJobDefManager, meta: dict[Any, Any]
) -> None:
    jid = f"m-{uuid.uuid4().hex}"
    before = snapshot(store)
    _, err = outcome(lambda: store.create({**meta, "job_id": jid}, b"content"))
    if not spec_accepts(meta):
        assert isinstance(err, InvalidMeta), err
        assert snapshot(store) == before
        assert store.get_job(jid) is None
        return
    assert err is None, err
    stored = store.get_meta(jid)
    assert {k: stored[k] for k in as_stored(meta)} == as_stored(meta)
    store.delete(jid)


@BOUNDED
@given(meta=st.dictionaries(meta_keys, hostile_values, max_size=4))
@example(meta={"\ud800": 1}).via("a surrogate key")
@example(meta={"x": 2**64}).via("beyond 64 bits")
def test_any_meta_update_is_refused_or_merged(
    store: RedisJobDefManager, job_id: str, meta: dict[Any, Any]
) -> None:
    before, old = snapshot(store), store.get_meta(job_id)
    _, err = outcome(lambda: store.update_meta(job_id, meta))
    if not spec_accepts(meta):
        assert isinstance(err, InvalidMeta), err
        assert snapshot(store) == before
        return
    assert err is None, err
    assert store.get_meta(job_id) == {**old, **as_stored(meta)}


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (nested(300), "nested too deeply"),
        ({"a": nested(300)}, "nested too deeply"),
        (2**64, "64-bit"),
        (-(2**63) - 1, "64-bit"),
        ({"inner": {1: "x"}}, "key must be str"),
        ({"inner": [{(1, 2): "x"}]}, "key must be str"),
        ({1, 2}, "not JSON-serializable"),
        (b"bytes", "not JSON-serializable"),
        (object(), "not JSON-serializable"),
        ("lone \ud800 surrogate", "not JSON-serializable"),
    ],
    ids=[
        "deep",
        "deep-in-dict",
        "2**64",
        "-2**63-1",
        "int-key",
        "tuple-key",
        "set",
        "bytes",
        "object",
        "surrogate",
    ],
)
def test_unencodable_meta_names_the_key_and_the_problem(
    store: RedisJobDefManager, job_id: str, value: Any, problem: str
) -> None:
    before = snapshot(store)
    for call in (
        lambda: store.create({"job_id": "new", "bad key": value}, b"c"),
        lambda: store.update_meta(job_id, {"fine": 1, "bad key": value}),
        lambda: store.set_approval(job_id, "alice", True, value),
    ):
        with pytest.raises(InvalidMeta, match=re.escape(problem)) as info:
            call()
        assert "bad key" in str(info.value) or "alice" in str(info.value)
    assert snapshot(store) == before


def test_deep_nesting_limit_is_orjsons() -> None:
    assert encode_fields("j", {"k": nested(254)}) == [b"k", orjson.dumps(nested(254))]
    with pytest.raises(InvalidMeta, match="'k' is nested too deeply"):
        encode_fields("j", {"k": nested(255)})


def test_64_bit_bounds_are_accepted(store: RedisJobDefManager, job_id: str) -> None:
    store.update_meta(job_id, {"big": 2**64 - 1, "small": -(2**63)})
    assert store.get_meta(job_id)["big"] == 2**64 - 1
    assert store.get_meta(job_id)["small"] == -(2**63)


def test_nan_and_infinities_are_stored_as_null(store: RedisJobDefManager) -> None:
    """Pinned (see encode_fields): JSON has no NaN or infinity; they are accepted and read back None."""
    meta = store.create({"nan": math.nan, "inf": [math.inf, -math.inf], "deep": {"x": math.nan}}, b"c")
    jid = meta["job_id"]
    stored = store.get_meta(jid)
    assert stored["nan"] is None and stored["inf"] == [None, None] and stored["deep"] == {"x": None}
    store.set_approval(jid, "alice", True, math.nan)  # type: ignore[arg-type]
    store.update_meta(jid, {"approvals": {"bob": [math.inf, "n"]}})
    assert store.get_meta(jid)["approvals"] == {"alice": [True, None], "bob": [None, "n"]}


def test_meta_size_limit(store: RedisJobDefManager, job_id: str) -> None:
    before = snapshot(store)
    huge = "x" * DEFAULT_MAX_META_BYTES
    for call in (
        lambda: store.create({"huge": huge}, b"c"),
        lambda: store.update_meta(job_id, {"huge": huge}),
        lambda: store.update_meta(job_id, {f"k{i}": "y" * 1000 for i in range(1100)}),  # many small ones
        lambda: store.set_approval(job_id, "alice", True, huge),
        lambda: store.update_meta(job_id, {"approvals": {"bob": [True, huge]}}),
    ):
        with pytest.raises(InvalidMeta, match=rf"is \d+ bytes, above the limit of {DEFAULT_MAX_META_BYTES}"):
            call()
    assert snapshot(store) == before
    big_but_fine = "x" * (DEFAULT_MAX_META_BYTES // 2)
    store.update_meta(job_id, {"big": big_but_fine})
    assert store.get_meta(job_id)["big"] == big_but_fine


def test_size_limit_is_on_the_encoded_total_and_configurable() -> None:
    fields = encode_fields("j", {"a": "x" * 10, "bc": 1})  # 1 + 12 + 2 + 1 bytes
    assert fields == [b"a", b'"' + b"x" * 10 + b'"', b"bc", b"1"]
    assert encode_fields("j", {"a": "x" * 10, "bc": 1}, max_bytes=16) == fields
    with pytest.raises(InvalidMeta, match="meta is 16 bytes, above the limit of 15"):
        encode_fields("j", {"a": "x" * 10, "bc": 1}, max_bytes=15)
    pairs = approval_pairs("j", {"r": [True, "n"]}, max_bytes=100)
    assert pairs == [b"\x00approval:r", b'[true,"n"]']
    with pytest.raises(InvalidMeta, match="approvals is 21 bytes, above the limit of 20"):
        approval_pairs("j", {"r": [True, "n"]}, max_bytes=20)


@pytest.mark.parametrize("key", ["lone \ud800", "\udfff"])
def test_meta_key_that_is_not_utf8_is_invalid_meta(store: RedisJobDefManager, job_id: str, key: str) -> None:
    before = snapshot(store)
    with pytest.raises(InvalidMeta, match="UTF-8"):
        store.create({key: 1}, b"c")
    with pytest.raises(InvalidMeta, match="UTF-8"):
        store.update_meta(job_id, {key: 1})
    with pytest.raises(InvalidMeta, match="UTF-8"):
        store.set_approval(job_id, key, True, "n")
    assert snapshot(store) == before


# -- zips: names -----------------------------------------------------------------------------------

#: Path pieces of entry names: traversal, absolute, Windows forms, dots, empties, plain folders.
NAME_PARTS = ["..", ".", "", "a", "app", "C:", "c:", "\\", "..\\..", "a\\b", "é", "~", "-"]


def symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, FIXED_TIME)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def must_refuse(name: str, is_link: bool) -> bool:
    """The documented refusals, one entry at a time."""
    parts = name.split("/")
    return (
        is_link
        or not name
        or name.startswith("/")
        or "\\" in name
        or (len(name) > 1 and name[1] == ":")
        or ".." in parts
    )


#: An entry: (lead, folder parts, kind); its name is lead + parts + a unique file name.
EntrySpec = tuple[str, list[str], str]
entry_specs = st.lists(
    st.tuples(
        st.sampled_from(["", "", "/", "//"]),
        st.lists(st.sampled_from(NAME_PARTS), max_size=4),
        st.sampled_from(["file", "file", "folder", "link"]),
    ),
    min_size=1,
    max_size=5,
)


def build_entries(specs: list[EntrySpec], token: str) -> list[tuple[zipfile.ZipInfo, bytes, bool]]:
    """Entries whose names all end in a unique ``token-i`` (so a leak can be looked for)."""
    out = []
    for i, (lead, parts, kind) in enumerate(specs):
        name = lead + "/".join([*parts, f"{token}-{i}"]) + ("/" if kind == "folder" else "")
        info = symlink(name) if kind == "link" else zipfile.ZipInfo(name, FIXED_TIME)
        out.append((info, b"/etc" if kind == "link" else f"evil {i}".encode(), kind == "link"))
    return out


@bounded(40)
@given(specs=entry_specs)
@example(specs=[("", ["app"], "file"), ("", ["a", "..", ".."], "file")]).via("'..' after a safe entry")
@example(specs=[("", ["a", ".."], "file")]).via("'..' that stays inside")
@example(specs=[("", ["app"], "file"), ("/", ["tmp"], "file")]).via("absolute after a safe entry")
@example(specs=[("//", [], "folder")]).via("an absolute folder")
@example(specs=[("", ["C:"], "file")]).via("a drive")
@example(specs=[("", ["..\\.."], "file")]).via("backslashes")
@example(specs=[("", ["app"], "file"), ("", ["app"], "link")]).via("a symlink after a safe entry")
@example(specs=[("", [".", "", "a"], "file"), ("", ["a"], "folder")]).via("harmless dots")
def test_hostile_entry_names_never_write_outside_the_target(tmp_path: Path, specs: list[EntrySpec]) -> None:
    token = f"evil-{uuid.uuid4().hex[:12]}"
    entries = build_entries(specs, token)
    content = make_zip([(info, body) for info, body, _ in entries])
    refuse = any(must_refuse(info.filename, link) for info, _, link in entries)
    with tempfile.TemporaryDirectory(dir=tmp_path) as box_name:
        box = Path(box_name)
        target = box / "d1" / "d2" / "target"
        target.mkdir(parents=True)
        (box / "d1" / "keep.txt").write_bytes(b"keep")
        outside_before = {k: v for k, v in tree(box).items() if not k.startswith("d1/d2/target")}
        with open_zip(io.BytesIO(content)) as zf:
            _, err = outcome(lambda: safe_extract(zf, str(target)))
        if refuse:
            assert isinstance(err, UnsafeArchive), err
            assert tree(target) == {}  # refused before anything was written
        else:
            assert err is None, err
            for info, body, _ in entries:
                if not info.is_dir():
                    assert (target / info.filename).read_bytes() == body
        assert {k: v for k, v in tree(box).items() if not k.startswith("d1/d2/target")} == outside_before
        for info, _, _ in entries:  # where each name would land if it were followed blindly
            landing = os.path.normpath(os.path.join(target, info.filename.rstrip("/")))
            if os.path.commonpath([str(target), landing]) != str(target):
                assert not os.path.lexists(landing), landing
        assert not any(token in p for p in os.listdir("/")) and not any(
            token in p for p in os.listdir(tmp_path)
        )
        for rel, value in tree(target).items():
            assert value != "link", rel
            assert Path(os.path.realpath(target / rel)).is_relative_to(target)


@pytest.mark.parametrize(
    ("entries", "match"),
    [
        ([("a", b"file"), ("a/b", b"under a file")], "needs it as a folder|other entries need it"),
        ([("a/", b""), ("a", b"a file where a folder is")], "other entries need it"),
        ([(".", b"the target itself")], "extraction folder itself"),
        ([("", b"no name")], "without a name"),
        ([("x" * 256, b"long part")], "too long"),
        ([("a/" * (MAX_NAME_BYTES // 2) + "f", b"long name")], "too long"),
        ([("C:", b"drive")], "non-portable"),
    ],
    ids=["file-then-child", "folder-then-file", "dot", "empty", "long-part", "long-name", "bare-drive"],
)
def test_unextractable_layouts_are_refused_up_front(
    tmp_path: Path, entries: list[tuple[str, bytes]], match: str
) -> None:
    target = tmp_path / "target"
    target.mkdir()
    with (
        zipfile.ZipFile(io.BytesIO(make_zip(list(entries)))) as zf,
        pytest.raises(UnsafeArchive, match=match),
    ):
        safe_extract(zf, str(target))
    assert tree(tmp_path) == {"target": "dir"}


def test_longest_allowed_names_extract(tmp_path: Path) -> None:
    part = "p" * 255
    name = "/".join([part] * 3)  # 767 bytes: under MAX_NAME_BYTES, every part at the limit
    with zipfile.ZipFile(io.BytesIO(make_zip([(name, b"deep")]))) as zf:
        safe_extract(zf, str(tmp_path))
    assert (tmp_path / name).read_bytes() == b"deep"


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [("flags", 0x1, "encrypted"), ("flags", 0x40, "encrypted"), ("method", 99, "compression method 99")],
)
def test_encrypted_and_unsupported_entries_are_refused(
    tmp_path: Path, field: str, value: int, match: str
) -> None:
    forged = patch_central(make_zip([("a.txt", b"secret" * 100)]), field, value)
    with open_zip(io.BytesIO(forged)) as zf, pytest.raises(UnsafeArchive, match=match):
        safe_extract(zf, str(tmp_path))
    assert tree(tmp_path) == {}


# -- zips: bombs -----------------------------------------------------------------------------------


def zeros_zip(*sizes: int) -> bytes:
    return make_zip([(f"z{i}.bin", bytes(n)) for i, n in enumerate(sizes)])


@bounded(25)
@given(
    sizes=st.lists(st.integers(0, 300_000), min_size=1, max_size=3),
    kind=st.sampled_from(["zeros", "text", "random"]),
    max_ratio=st.sampled_from([2, 10, 100, 200, 1000, math.inf]),
    min_size=st.sampled_from([0, 10_000, 200_000, DEFAULT_RATIO_MIN_SIZE]),
    max_total=st.sampled_from([100_000, 1_000_000, 10**9]),
)
def test_bombs_are_refused_by_size_and_by_ratio(
    tmp_path: Path, sizes: list[int], kind: str, max_ratio: float, min_size: int, max_total: int
) -> None:
    rng = random.Random(sum(sizes))
    make = {
        "zeros": bytes,
        "text": lambda n: bytes(rng.choices(b"abcdefgh \n", k=n)),
        "random": rng.randbytes,
    }[kind]
    bodies = [make(n) for n in sizes]
    content = make_zip([(f"f{i}.bin", b) for i, b in enumerate(bodies)])
    with zipfile.ZipFile(io.BytesIO(content)) as zf:
        infos = zf.infolist()
    total = sum(sizes)
    ratio_bomb = any(i.file_size > min_size and i.file_size > max_ratio * i.compress_size for i in infos)
    ratio_bomb = ratio_bomb or (total > min_size and total > max_ratio * len(content))
    expect = "bytes, above the limit of" if total > max_total else "compression ratio" if ratio_bomb else None
    with tempfile.TemporaryDirectory(dir=tmp_path) as target:
        with zipfile.ZipFile(io.BytesIO(content)) as zf:
            _, err = outcome(
                lambda: safe_extract(zf, target, max_total, max_ratio=max_ratio, ratio_min_size=min_size)
            )
        if expect is None:
            assert err is None, err
            assert [Path(target, f"f{i}.bin").read_bytes() for i in range(len(bodies))] == bodies
        else:
            assert isinstance(err, UnsafeArchive) and expect in str(err), err
            assert os.listdir(target) == []  # refused from the declared sizes: nothing written


def test_ratio_bound_names_the_entry(tmp_path: Path) -> None:
    content = make_zip([("ok.txt", b"fine"), ("bomb.bin", bytes(2 * DEFAULT_RATIO_MIN_SIZE))])
    with zipfile.ZipFile(io.BytesIO(content)) as zf, pytest.raises(UnsafeArchive) as info:
        safe_extract(zf, str(tmp_path))
    assert "'bomb.bin'" in str(info.value) and f"limit of {DEFAULT_MAX_RATIO}:1" in str(info.value)
    assert os.listdir(tmp_path) == []


def test_many_empty_entries_are_refused_by_count(tmp_path: Path) -> None:
    # Empty files and folders pass every byte bound, but each costs the disk an inode and a block.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(DEFAULT_MAX_ENTRIES + 1):
            z.writestr(f"d{i}/", b"")
    with zipfile.ZipFile(buf) as zf, pytest.raises(UnsafeArchive, match=f"limit of {DEFAULT_MAX_ENTRIES}"):
        safe_extract(zf, str(tmp_path))
    assert os.listdir(tmp_path) == []
    with zipfile.ZipFile(buf) as zf:  # a bound of one's own
        names = zf.namelist()[:10]
    small = make_zip([(name + "f", b"x") for name in names])
    with zipfile.ZipFile(io.BytesIO(small)) as zf:
        with pytest.raises(UnsafeArchive, match="10 entries, above the limit of 9"):
            safe_extract(zf, str(tmp_path), max_entries=9)
        safe_extract(zf, str(tmp_path), max_entries=10)
    assert len(os.listdir(tmp_path)) == 10


def test_small_compressible_files_pass_the_default_ratio(tmp_path: Path) -> None:
    """Below DEFAULT_RATIO_MIN_SIZE a file of zeros (ratio ~1000:1) is no bomb."""
    body = bytes(DEFAULT_RATIO_MIN_SIZE)
    with zipfile.ZipFile(io.BytesIO(zeros_zip(DEFAULT_RATIO_MIN_SIZE))) as zf:
        assert zf.infolist()[0].file_size > DEFAULT_MAX_RATIO * zf.infolist()[0].compress_size
        safe_extract(zf, str(tmp_path))
    assert (tmp_path / "z0.bin").read_bytes() == body


def test_overlapping_entries_are_caught_by_the_overall_ratio(tmp_path: Path) -> None:
    """A central directory listing one stored kernel many times (the overlapping-files bomb): each
    entry's ratio is modest, but the zip's own size bounds what it can honestly unpack to."""
    rng = random.Random(7)
    kernel = bytes(rng.choices(b"ab", k=200_000))  # about 7:1
    one = make_zip([("k.bin", kernel)])
    cd_offset, cd_size, _ = central_records(one)
    record = one[cd_offset : cd_offset + cd_size]
    n = 40
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, n, n, cd_size * n, cd_offset, 0)
    bomb = one[:cd_offset] + record * n + eocd
    with zipfile.ZipFile(io.BytesIO(bomb)) as zf:
        infos = zf.infolist()
        assert len(infos) == n and all(i.file_size < 20 * i.compress_size for i in infos)
        with pytest.raises(UnsafeArchive, match=r"zip of \d+ bytes unpacks to \d+: a compression ratio"):
            safe_extract(zf, str(tmp_path), max_ratio=20, ratio_min_size=0)
    assert os.listdir(tmp_path) == []


def test_a_forged_small_size_never_writes_more_than_it_declares(tmp_path: Path) -> None:
    """The central directory says 1000 bytes; the data holds 3 MiB. zipfile stops at the declared
    size and then fails the CRC: BadZipFile, and at most the declared bytes on disk."""
    forged = patch_central(zeros_zip(3 << 20), "file_size", 1000)
    with zipfile.ZipFile(io.BytesIO(forged)) as zf, pytest.raises(zipfile.BadZipFile):
        safe_extract(zf, str(tmp_path), 10_000)
    assert (tmp_path / "z0.bin").stat().st_size <= 1000


class LyingZip(zipfile.ZipFile):
    """A reader that reports forged sizes yet unpacks the real data (as a zip implementation that
    trusts the stream over the directory would): only the streaming checks can stop it."""

    forged: dict[str, int]

    def infolist(self) -> list[zipfile.ZipInfo]:
        out = []
        for real in super().infolist():
            fake = zipfile.ZipInfo(real.filename, real.date_time)
            fake.compress_type, fake.file_size = real.compress_type, 1000
            fake.compress_size = self.forged.get("compress_size", real.compress_size)
            out.append(fake)
        return out

    def open(self, name: Any, *args: Any, **kwargs: Any) -> Any:
        return super().open(name.filename if isinstance(name, zipfile.ZipInfo) else name, *args, **kwargs)


@pytest.mark.parametrize(
    ("forged", "kwargs", "match"),
    [
        ({}, {"max_total": 10_000}, "more than the limit of 10000 bytes"),
        ({}, {"max_ratio": 10, "ratio_min_size": 0}, "'z0.bin' unpacks .* above the compression ratio limit"),
        ({"compress_size": 10**9}, {"max_ratio": 10, "ratio_min_size": 0}, "zip of .* unpacks to more than"),
    ],
    ids=["size", "entry-ratio", "overall-ratio"],
)
def test_streaming_checks_catch_lying_sizes(
    tmp_path: Path, forged: dict[str, int], kwargs: dict[str, Any], match: str
) -> None:
    content = zeros_zip(3 << 20)
    with LyingZip(io.BytesIO(content)) as zf:
        zf.forged = forged
        assert zf.infolist()[0].file_size == 1000  # the pre-checks see a small, harmless entry
        with pytest.raises(UnsafeArchive, match=match):
            safe_extract(zf, str(tmp_path), **kwargs)
    assert (tmp_path / "z0.bin").stat().st_size == 0  # stopped before the first block was written


def test_safe_extract_keeps_its_old_signature(tmp_path: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(zeros_zip(500))) as zf:
        safe_extract(zf, str(tmp_path), 1000)  # positional max_total, as get_app calls it
    with (
        zipfile.ZipFile(io.BytesIO(zeros_zip(5000))) as zf,
        pytest.raises(UnsafeArchive, match="limit of 1000"),
    ):
        safe_extract(zf, str(tmp_path / "x"), 1000)
    with zipfile.ZipFile(io.BytesIO(zeros_zip(5))) as zf, pytest.raises(ValueError, match="max_ratio"):
        safe_extract(zf, str(tmp_path), max_ratio=0)


def test_get_app_refuses_a_ratio_bomb_by_default(store: RedisJobDefManager, jail: Path) -> None:
    bomb = make_zip([("app/a.txt", b"a"), ("app/zeros.bin", bytes(4 * DEFAULT_RATIO_MIN_SIZE))])
    job = store.get_job(store.create({"job_folder_name": ""}, bomb)["job_id"])
    assert job is not None
    with pytest.raises(ValueError, match=r"unsafe content: zip entry 'app/zeros.bin' .* compression ratio"):
        store.get_app(job, "app")
    assert tree(jail) == {"tmp": "dir", "cwd": "dir"}
    fine = make_zip([("app/a.txt", b"a"), ("app/zeros.bin", bytes(DEFAULT_RATIO_MIN_SIZE // 2))])
    job = store.get_job(store.create({"job_folder_name": ""}, fine)["job_id"])
    assert job is not None
    with zipfile.ZipFile(io.BytesIO(store.get_app(job, "app"))) as z:
        assert z.read("zeros.bin") == bytes(DEFAULT_RATIO_MIN_SIZE // 2)


# -- zips: corrupt bytes ---------------------------------------------------------------------------

CORRUPTIBLE = {
    method: make_zip(
        [
            ("myjob/meta.json", b'{"name": "x"}' * 10),
            ("myjob/app/config/c.json", b"config " * 60),
            ("myjob/app/custom/x.py", bytes(range(256)) * 3),
        ],
        method,
    )
    for method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
}


@bounded(150)
@given(
    method=st.sampled_from(sorted(CORRUPTIBLE)),
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=4),
    tail_bias=st.booleans(),
    cut=st.none() | st.floats(0, 1),
)
def test_corrupt_zips_raise_only_bad_zip_or_unsafe(
    tmp_path: Path, method: int, flips: list[tuple[float, int]], tail_bias: bool, cut: float | None
) -> None:
    data = bytearray(CORRUPTIBLE[method])
    for where, byte in flips:  # biased to the central directory, where the forgeries live
        span = min(len(data), 250) if tail_bias else len(data)
        data[len(data) - span + int(where * span)] = byte
    if cut is not None:
        data = data[: int(cut * len(data))]
    with tempfile.TemporaryDirectory(dir=tmp_path) as box_name:
        target = Path(box_name, "target")
        target.mkdir()
        try:
            with open_zip(io.BytesIO(bytes(data))) as zf:
                safe_extract(zf, str(target), 100_000, ratio_min_size=0)
        except (UnsafeArchive, zipfile.BadZipFile):
            pass
        assert set(os.listdir(box_name)) == {"target"}
        for rel in tree(target):
            assert Path(os.path.realpath(target / rel)).is_relative_to(target)


@pytest.mark.parametrize(
    "forge",
    [
        lambda z: patch_central(z, "version", 99 * 10),  # "zip file version 99.0": NotImplementedError
        lambda z: z.replace(b"app/a.txt", b"app/\xff.txt"),  # flagged UTF-8 below, invalid
    ],
    ids=["version", "bad-utf8-name"],
)
def test_open_zip_reports_unparsable_zips_as_bad_zip(forge: Callable[[bytes], bytes]) -> None:
    forged = forge(utf8_flagged(APP_ZIP))
    with pytest.raises(zipfile.BadZipFile):
        open_zip(io.BytesIO(forged))
    with pytest.raises((NotImplementedError, UnicodeDecodeError)):  # what zipfile itself raises
        zipfile.ZipFile(io.BytesIO(forged))


def utf8_flagged(data: bytes) -> bytes:
    """Set the UTF-8 name flag (bit 11) on every central directory record."""
    for i in range(len(central_records(data)[2])):
        pos = central_records(data)[2][i] + 8
        flags = struct.unpack("<H", data[pos : pos + 2])[0]
        data = patch_central(data, "flags", flags | 0x800, i)
    return data


# -- the manager's part (redisjobs/manager.py) -----------------------------------------------------
# Each test states the documented behaviour where the manager once raised a raw error.


@pytest.mark.parametrize("status", [None, 5, 1.5], ids=repr)
def test_get_jobs_by_status_refuses_a_non_iterable(store: RedisJobDefManager, status: Any) -> None:
    with pytest.raises(InvalidStatus):
        store.get_jobs_by_status(status)


@pytest.mark.parametrize("reviewer", [None, 5, "lone \ud800"], ids=repr)
def test_get_jobs_waiting_for_review_refuses_a_bad_reviewer(
    store: RedisJobDefManager, job_id: str, reviewer: Any
) -> None:
    with pytest.raises(InvalidMeta):
        store.get_jobs_waiting_for_review(reviewer)


@pytest.mark.parametrize("download_file", ["a\x00b", "lone \ud800"], ids=repr)
def test_get_storage_for_download_refuses_unusable_file_names(
    store: RedisJobDefManager, job_id: str, tmp_path: Path, download_file: str
) -> None:
    with pytest.raises(InvalidComponent):
        store.get_storage_for_download(job_id, str(tmp_path), "data", download_file)


@pytest.mark.parametrize(
    "forge",
    [lambda z: patch_central(z, "version", 99 * 10), lambda z: z.replace(b"app/a.txt", b"app/\xff.txt")],
    ids=["version", "bad-utf8-name"],
)
def test_get_app_reports_unparsable_content_as_not_a_zip(
    store: RedisJobDefManager, jail: Path, forge: Callable[[bytes], bytes]
) -> None:
    job = store.get_job(store.create({"job_folder_name": ""}, forge(utf8_flagged(APP_ZIP)))["job_id"])
    assert job is not None
    with pytest.raises(ValueError, match="not a zip file"):
        store.get_app(job, "app")
