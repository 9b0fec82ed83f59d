"""The NVFlare adapter driven by NVFlare's own classes (NVFlare 2.9).

``redisjobs.nvflare.RedisJobDefManager`` is exercised the way an NVFlare server uses its
``job_manager`` component: by the ``JobMetaValidator`` and the admin ``JobCommandModule`` (submit,
list, meta, clone, delete, download, logs, submit tokens), by the ``DefaultJobScheduler`` and the
job runner's status checks, and by NVFlare's server-startup configurator reading a startup kit that
``redisjobs.kit.configure`` edited. ``redisjobs.migrate`` is checked against a store written by
NVFlare's own ``SimpleJobDefManager`` on ``FilesystemStorage``, read back through both managers.

Each test runs against a real redis-server (``redis_url``) and fakeredis, in a namespace of its own
that is checked with ``check_invariants()`` and removed afterwards.

NVFlare must be installed (``pip install 'redisjobs[nvflare]'``). Without it the module is skipped,
except under CI (``$CI`` set), where a missing NVFlare is an error rather than a silent skip.
"""

from __future__ import annotations

import datetime
import io
import json
import logging
import os
import signal
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest.mock import MagicMock

import fakeredis
import pytest
import redis

try:
    import nvflare  # noqa: F401  (the guard: everything below needs it)
    from nvflare.apis.client import Client
    from nvflare.apis.fl_context import FLContext, FLContextManager
    from nvflare.apis.impl.job_def_manager import SimpleJobDefManager
    from nvflare.apis.job_def import Job, JobDataKey, RunStatus
    from nvflare.apis.job_def_manager_spec import JobDefManagerSpec
    from nvflare.apis.storage import StorageException
    from nvflare.apis.utils.job_submit_token import canonical_job_content_hash
    from nvflare.apis.workspace import Workspace
    from nvflare.app_common.job_schedulers.job_scheduler import DefaultJobScheduler
    from nvflare.app_common.storages.filesystem_storage import FilesystemStorage
    from nvflare.fuel.hci.conn import Connection
    from nvflare.fuel.hci.proto import MetaStatusValue
    from nvflare.fuel.hci.server.authz import PreAuthzReturnCode
    from nvflare.fuel.hci.server.constants import ConnProps
    from nvflare.fuel.utils import fobs
    from nvflare.fuel.utils.zip_utils import zip_directory_to_bytes, zip_directory_to_file
    from nvflare.private.fed.app.fl_conf import FLServerStarterConfiger
    from nvflare.private.fed.server.job_cmds import JobCommandModule
    from nvflare.private.fed.server.job_meta_validator import JobMetaValidator
    from nvflare.private.fed.server.job_runner import JobRunner
    from nvflare.private.fed.server.server_engine import ServerEngine

    from redisjobs import InvalidMeta, kit
    from redisjobs import RedisJobDefManager as RedisJobDefManagerCore
    from redisjobs.migrate import migrate
    from redisjobs.nvflare import RedisJobDefManager
    from redisjobs.server import RedisServer, find_redis_server, free_port
except ModuleNotFoundError as e:
    if (e.name or "").split(".")[0] != "nvflare":
        raise
    if os.environ.get("CI"):
        pytest.fail(
            f"NVFlare is not installed ({e}) but CI is set: these tests must run in CI. "
            "Install the extra: pip install -e '.[nvflare,test]'",
            pytrace=False,
        )
    pytest.skip(
        f"NVFlare is not installed ({e}): pip install 'redisjobs[nvflare]' to run the adapter tests",
        allow_module_level=True,
    )

pytestmark = pytest.mark.nvflare

SUBMITTER = {"name": "admin@x.org", "org": "x", "role": "project_admin"}
REVIEWER = "reviewer@x.org"


# -- fixtures --------------------------------------------------------------------------------------


def _namespace() -> str:
    return "t-nv-" + uuid.uuid4().hex[:12]


def _drop_namespace(client: Any, namespace: str) -> None:
    for key in list(client.scan_iter(match=f"rj:{{{namespace}*", count=1000)):
        client.unlink(key)


def _keys_of(client: Any, namespace: str) -> list[bytes]:
    return list(client.scan_iter(match=f"rj:{{{namespace}*", count=1000))


@pytest.fixture(params=[pytest.param("real", marks=pytest.mark.real), "fake"])
def make_adapter(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., RedisJobDefManager]]:
    """A factory of adapters on one backend: same namespace by default, or the one asked for.

    After the test every namespace used must pass ``check_invariants()``; all are then removed.
    """
    backend = str(request.param)
    url = request.getfixturevalue("redis_url") if backend == "real" else None
    server = fakeredis.FakeServer()
    default = _namespace()
    made: list[RedisJobDefManager] = []

    def make(namespace: str | None = None, **options: Any) -> RedisJobDefManager:
        if backend == "fake":
            options.setdefault("client", fakeredis.FakeRedis(server=server))
        m = RedisJobDefManager(
            uri_root=str(tmp_path / "jobs"),
            job_store_id="job_store",
            url=url,
            namespace=namespace or default,
            **options,
        )
        made.append(m)
        return m

    yield make
    checked: dict[str, RedisJobDefManager] = {}
    for m in made:
        checked.setdefault(m.namespace, m)
    try:
        problems = {ns: m.check_invariants() for ns, m in checked.items()}
        assert problems == {ns: [] for ns in checked}
    finally:
        for ns, m in checked.items():
            _drop_namespace(m.client, ns)
        for m in made:
            m.close()


@pytest.fixture
def adapter(make_adapter: Callable[..., RedisJobDefManager]) -> RedisJobDefManager:
    return make_adapter()


def _standalone(tmp_path: Path, url: str, **options: Any) -> tuple[RedisJobDefManager, Any]:
    """An adapter on its own URL (for outage tests: short timeouts unless given) and a context."""
    options = {"socket_connect_timeout": 0.2, "socket_timeout": 0.2, **options}
    m = RedisJobDefManager(uri_root=str(tmp_path / "jobs"), url=url, namespace=_namespace(), **options)
    return m, FLContextManager(engine=_make_engine(m, tmp_path)).new_context()


def _make_engine(job_manager: Any, tmp_path: Path, clients: tuple[str, ...] = ()) -> MagicMock:
    """A server engine as NVFlare's components see it: components by id, new contexts, clients."""
    engine = MagicMock(spec=ServerEngine)
    components = {"job_manager": job_manager, "job_store": FilesystemStorage()}
    engine.get_component.side_effect = components.get
    engine.job_def_manager = job_manager
    engine.job_runner = MagicMock()
    engine.new_context.side_effect = lambda: FLContextManager(engine=engine).new_context()
    engine.get_clients.return_value = [Client(name, f"token-{name}") for name in clients]
    # No live run: the log commands fall back to the job store.
    engine.get_workspace.return_value.get_log_root.return_value = str(tmp_path / "no-live-run")
    return engine


@pytest.fixture
def engine(adapter: RedisJobDefManager, tmp_path: Path) -> MagicMock:
    return _make_engine(adapter, tmp_path)


@pytest.fixture
def fl_ctx(engine: MagicMock) -> FLContext:
    return FLContextManager(engine=engine).new_context()


# -- helpers ---------------------------------------------------------------------------------------


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2))


def _job_folder(
    root: Path,
    name: str = "hello-job",
    deploy_map: dict[str, Any] | None = None,
    min_clients: int | None = 2,
    marker: str = "",
) -> Path:
    """A job folder as a user writes it: meta.json and one app with server and client configs."""
    folder = root / name
    meta: dict[str, Any] = {
        "name": name,
        "resource_spec": {},
        "deploy_map": deploy_map or {"app": ["@ALL"]},
    }
    if min_clients is not None:
        meta["min_clients"] = min_clients
    _write_json(folder / "meta.json", meta)
    for app in meta["deploy_map"]:
        _write_json(
            folder / app / "config" / "config_fed_server.json",
            {"format_version": 2, "workflows": [], "components": [], "marker": marker},
        )
        _write_json(
            folder / app / "config" / "config_fed_client.json",
            {"format_version": 2, "executors": [], "components": []},
        )
    return folder


def _files(zip_bytes: bytes) -> dict[str, bytes]:
    """The files (not folder entries) of a zip, by name."""
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist() if not i.is_dir()}


def _simple_zip(folder: str, files: dict[str, str]) -> bytes:
    """The same bytes for the same files, whenever it is built (fixed entry times), so tests can
    compare a stored zip with a freshly built one."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(zipfile.ZipInfo(f"{folder}/{name}", date_time=(2020, 1, 1, 0, 0, 0)), text)
    return buf.getvalue()


def _app_zip(tag: str) -> bytes:
    return _simple_zip("j", {"app/config/config_fed_server.json": json.dumps({"tag": tag}), "app/x.txt": tag})


def _conn(engine: MagicMock, **props: Any) -> Connection:
    """An admin connection of SUBMITTER, as the admin server builds it."""
    base = {
        ConnProps.USER_NAME: SUBMITTER["name"],
        ConnProps.USER_ORG: SUBMITTER["org"],
        ConnProps.USER_ROLE: SUBMITTER["role"],
    }
    base.update(props)
    return Connection(app_ctx=engine, props=base)


def _errors(conn: Connection) -> list[str]:
    return [d["data"] for d in conn.buffer.output["data"] if d["type"] == "error"]


def _authorized(cmd: JobCommandModule, engine: MagicMock, command: str, jid: str) -> Connection:
    """A connection that passed NVFlare's job authorization for ``jid`` (which reads the job)."""
    conn = _conn(engine)
    assert cmd.authorize_job_id(conn, [command, jid]) == PreAuthzReturnCode.REQUIRE_AUTHZ, _errors(conn)
    return conn


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# -- 1. the component: type, laziness, errors NVFlare catches --------------------------------------


def test_adapter_is_a_job_def_manager_spec_and_returns_nvflare_jobs(
    adapter: RedisJobDefManager, fl_ctx: FLContext
) -> None:
    assert isinstance(adapter, JobDefManagerSpec)
    meta = adapter.create({"name": "a", "deploy_map": {"app": ["@ALL"]}}, _app_zip("a"), fl_ctx)
    jid = meta["job_id"]
    assert meta["status"] == RunStatus.SUBMITTED.value
    assert meta["data_storage_format"] == 2

    job = adapter.get_job(jid, fl_ctx)
    assert isinstance(job, Job)
    assert (job.job_id, job.min_sites, job.required_sites) == (jid, 1, [])
    assert job.deploy_map == {"app": ["@ALL"]}
    for listing in (
        adapter.get_all_jobs(fl_ctx),
        adapter.get_jobs_to_schedule(fl_ctx),
        adapter.get_jobs_by_status(RunStatus.SUBMITTED, fl_ctx),
        adapter.get_jobs_by_status([RunStatus.SUBMITTED, RunStatus.RUNNING], fl_ctx),
        adapter.get_jobs_waiting_for_review(REVIEWER, fl_ctx),
    ):
        assert [type(j) for j in listing] == [Job]
        assert listing[0].job_id == jid

    # NVFlare's callers mutate job.meta: each read must hand out a fresh dict.
    job.meta["status"] = "scribbled"
    assert adapter.get_job(jid, fl_ctx).meta["status"] == RunStatus.SUBMITTED.value


def test_construction_is_lazy_and_the_scheduling_path_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The job process builds the component from resources.json too: no connection may be made then.
    m, ctx = _standalone(tmp_path, "redis://127.0.0.1:1/0", job_store_id="job_store", scheduling_patience=0.3)
    try:
        assert m.uri_root == str(tmp_path / "jobs")
        assert m.job_store_id == "job_store"
        with pytest.raises(redis.exceptions.ConnectionError):
            m.get_all_jobs(ctx)

        # NVFlare's scheduling loop has no try block around these two: they log and answer.
        with caplog.at_level(logging.ERROR, logger="redisjobs.nvflare"):
            assert m.get_jobs_to_schedule(ctx) == []
            assert m.get_job(str(uuid.uuid4()), ctx) is None
        logged = [r for r in caplog.records if r.name == "redisjobs.nvflare" and r.levelno >= logging.ERROR]
        assert len(logged) == 2

        # The scheduler copes with the empty candidate list.
        scheduler = DefaultJobScheduler()
        result = scheduler.schedule_job(job_manager=m, job_candidates=m.get_jobs_to_schedule(ctx), fl_ctx=ctx)
        assert result == (None, None)
    finally:
        m.close()


def test_scheduling_path_recovers_when_redis_comes_back(tmp_path: Path) -> None:
    binary = find_redis_server()
    if binary is None:
        pytest.fail("no redis-server: install it (apt-get install redis-server)", pytrace=False)
    port = free_port()
    m, ctx = _standalone(
        tmp_path,
        f"redis://127.0.0.1:{port}/0",
        socket_connect_timeout=0.5,
        socket_timeout=2.0,
        scheduling_patience=0.3,
    )
    server = None
    try:
        assert m.get_jobs_to_schedule(ctx) == []  # the server starts before Redis does
        server = RedisServer(binary, port=port)
        jid = m.create({"name": "late"}, _app_zip("late"), ctx)["job_id"]
        assert [j.job_id for j in m.get_jobs_to_schedule(ctx)] == [jid]
        server.stop()
        assert m.get_jobs_to_schedule(ctx) == []
        assert m.get_job(jid, ctx) is None
        server = RedisServer(binary, port=port)  # empty again: no persistence in tests
        jid2 = m.create({"name": "again"}, _app_zip("again"), ctx)["job_id"]
        assert [j.job_id for j in m.get_jobs_to_schedule(ctx)] == [jid2]
        assert m.check_invariants() == []
    finally:
        m.close()
        if server is not None:
            server.stop()


def test_storage_exceptions_where_nvflare_raises_them(
    adapter: RedisJobDefManager, fl_ctx: FLContext, tmp_path: Path
) -> None:
    nv = SimpleJobDefManager(uri_root=str(tmp_path / "nvjobs"))
    ids = {}
    for name, m in (("redis", adapter), ("nvflare", nv)):
        ids[name] = m.create({"name": "kept", "job_folder_name": "j"}, _app_zip("kept"), fl_ctx)["job_id"]
    missing = str(uuid.uuid4())

    def dl(m: Any) -> str:
        return str(tmp_path / f"download-{type(m).__name__}")

    ops: dict[str, Callable[[Any, str], Any]] = {
        "get_storage_component of a missing job": lambda m, jid: m.get_storage_component(
            missing, "data", fl_ctx
        ),
        "get_storage_component, no workspace yet": lambda m, jid: m.get_storage_component(
            jid, "workspace", fl_ctx
        ),
        "get_storage_component, invalid component": lambda m, jid: m.get_storage_component(
            jid, "bogus", fl_ctx
        ),
        "get_storage_for_download of a missing job": lambda m, jid: m.get_storage_for_download(
            missing, dl(m), "data", "job.zip", fl_ctx
        ),
        "delete of a missing job": lambda m, jid: m.delete(missing, fl_ctx),
        "update_meta of a missing job": lambda m, jid: m.update_meta(missing, {"x": 1}, fl_ctx),
        "set_status of a missing job": lambda m, jid: m.set_status(missing, RunStatus.RUNNING, fl_ctx),
        "create with a taken id": lambda m, jid: m.create({"job_id": jid, "name": "thief"}, b"PK", fl_ctx),
        "clone of a missing job": lambda m, jid: m.clone(missing, {}, fl_ctx),
        "save_workspace to a missing job": lambda m, jid: m.save_workspace(missing, b"ws", fl_ctx),
        "set_client_data to a missing job": lambda m, jid: m.set_client_data(
            missing, b"x", "site-1", "ERRORLOG", fl_ctx
        ),
    }
    wrong = []
    for what, op in ops.items():
        for name, m in (("redis", adapter), ("nvflare", nv)):
            try:
                op(m, ids[name])
            except StorageException:
                continue
            except Exception as e:
                wrong.append(f"{name}: {what}: raised {type(e).__name__}: {e}")
            else:
                wrong.append(f"{name}: {what}: did not raise")
    assert wrong == []

    # Nothing was overwritten by the refused create.
    kept = adapter.get_job(ids["redis"], fl_ctx)
    assert kept.meta["name"] == "kept"
    assert adapter.get_content(kept.meta, fl_ctx) == _app_zip("kept")
    assert adapter.get_client_data(missing, "site-1", "ERRORLOG", fl_ctx) is None
    assert adapter.list_components(missing, fl_ctx) == []  # "no such job" to the admin commands
    assert not os.path.exists(os.path.join(dl(adapter), missing))  # nothing left behind


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda m, ctx, bad: m.get_job(bad, ctx), id="get_job"),
        pytest.param(lambda m, ctx, bad: m.delete(bad, ctx), id="delete"),
        pytest.param(lambda m, ctx, bad: m.set_status(bad, RunStatus.RUNNING, ctx), id="set_status"),
        pytest.param(lambda m, ctx, bad: m.update_meta(bad, {"x": 1}, ctx), id="update_meta"),
        pytest.param(
            lambda m, ctx, bad: m.get_storage_component(bad, "data", ctx), id="get_storage_component"
        ),
        pytest.param(lambda m, ctx, bad: m.save_workspace(bad, b"ws", ctx), id="save_workspace"),
        pytest.param(lambda m, ctx, bad: m.create({"job_id": bad}, b"PK", ctx), id="create"),
        pytest.param(lambda m, ctx, bad: m.clone(bad, {}, ctx), id="clone"),
        pytest.param(
            lambda m, ctx, bad: m.set_client_data(bad, b"x", "site-1", "ERRORLOG", ctx), id="set_client_data"
        ),
        pytest.param(
            lambda m, ctx, bad: m.get_storage_for_download(bad, "/nonexistent", "data", "job.zip", ctx),
            id="get_storage_for_download",
        ),
    ],
)
def test_invalid_job_id_is_a_value_error_not_a_storage_exception(
    adapter: RedisJobDefManager, fl_ctx: FLContext, tmp_path: Path, call: Callable[..., Any]
) -> None:
    nv = SimpleJobDefManager(uri_root=str(tmp_path / "nvjobs"))
    for m in (adapter, nv):
        with pytest.raises(ValueError) as info:
            call(m, fl_ctx, "../escape")
        assert not isinstance(info.value, StorageException)
    assert adapter.get_all_jobs(fl_ctx) == []


def test_dispatch_after_abort_is_logged_and_refused(
    adapter: RedisJobDefManager, fl_ctx: FLContext, caplog: pytest.LogCaptureFixture
) -> None:
    jid = adapter.create({"name": "aborted"}, _app_zip("a"), fl_ctx)["job_id"]
    # The admin's abort of a SUBMITTED job, racing the scheduler that already picked it.
    assert adapter.set_status(jid, RunStatus.FINISHED_ABORTED, fl_ctx) is True
    with caplog.at_level(logging.WARNING, logger="redisjobs.nvflare"):
        assert adapter.set_status(jid, RunStatus.DISPATCHED, fl_ctx) is False
    assert any(r.name == "redisjobs.nvflare" and r.levelno == logging.WARNING for r in caplog.records)
    meta = adapter.get_job(jid, fl_ctx).meta
    assert meta["status"] == RunStatus.FINISHED_ABORTED.value
    assert meta["duration"] == "N/A"  # never started
    # The job runner's follow-up check sees the truth and does not start the run.
    assert JobRunner._check_job_status(adapter, jid, RunStatus.DISPATCHED, fl_ctx) is True
    assert adapter.get_jobs_to_schedule(fl_ctx) == []


FINISHED_WITH_DURATION = {
    RunStatus.FINISHED_COMPLETED,
    RunStatus.FINISHED_ABORTED,
    RunStatus.FINISHED_EXECUTION_EXCEPTION,
    RunStatus.FINISHED_ABNORMAL,
    RunStatus.FINISHED_CANT_SCHEDULE,
}


@pytest.mark.parametrize(
    "path",
    [
        pytest.param([RunStatus.DISPATCHED, RunStatus.RUNNING, final], id=f"run-{final.name}")
        for final in (
            RunStatus.FINISHED_COMPLETED,
            RunStatus.FINISHED_ABORTED,
            RunStatus.FINISHED_EXECUTION_EXCEPTION,
            RunStatus.FINISHED_ABNORMAL,
            RunStatus.ABANDONED,
        )
    ]
    + [
        pytest.param([RunStatus.FINISHED_ABORTED], id="abort-submitted"),
        pytest.param([RunStatus.DISPATCHED, RunStatus.FINISHED_ABORTED], id="abort-dispatched"),
        pytest.param([RunStatus.FAILED_TO_RUN], id="deploy-failed"),
        pytest.param([RunStatus.DISPATCHED, RunStatus.FAILED_TO_RUN], id="start-failed"),
        pytest.param([RunStatus.FINISHED_CANT_SCHEDULE], id="cant-schedule"),
        pytest.param([RunStatus.DISPATCHED, RunStatus.FINISHED_ABNORMAL], id="restart-dispatched"),
        pytest.param([RunStatus.DISPATCHED, RunStatus.ABANDONED], id="abandoned-dispatched"),
    ],
)
def test_status_paths_of_the_server_are_accepted_like_nvflare(
    adapter: RedisJobDefManager, fl_ctx: FLContext, tmp_path: Path, path: list[RunStatus]
) -> None:
    """Every status change NVFlare's server makes (runner, scheduler, abort, restart) is accepted and
    writes the fields NVFlare's own manager writes."""
    nv = SimpleJobDefManager(uri_root=str(tmp_path / "nvjobs"))
    metas = {}
    for name, m in (("redis", adapter), ("nvflare", nv)):
        jid = m.create({"name": "p", "job_folder_name": "j"}, _app_zip("p"), fl_ctx)["job_id"]
        for status in path:
            result = m.set_status(jid, status, fl_ctx)
            if m is adapter:
                assert result is True, status
        metas[name] = m.get_job(jid, fl_ctx).meta
    ours, theirs = metas["redis"], metas["nvflare"]
    assert ours["status"] == theirs["status"] == path[-1].value
    assert bool(ours["start_time"]) == bool(theirs["start_time"]) == (RunStatus.RUNNING in path)
    assert (ours["duration"] == "N/A") == (theirs["duration"] == "N/A")
    assert (ours["duration"] != "N/A") == (RunStatus.RUNNING in path and path[-1] in FINISHED_WITH_DURATION)


def test_abort_command_of_a_submitted_job(
    adapter: RedisJobDefManager, engine: MagicMock, fl_ctx: FLContext
) -> None:
    jid = adapter.create({"name": "a", "job_folder_name": "j"}, _app_zip("a"), fl_ctx)["job_id"]
    cmd = JobCommandModule()
    conn = _authorized(cmd, engine, "abort_job", jid)
    cmd.abort_job(conn, ["abort_job", jid])
    assert _errors(conn) == []
    assert adapter.get_job(jid, fl_ctx).meta["status"] == RunStatus.FINISHED_ABORTED.value
    assert adapter.get_jobs_to_schedule(fl_ctx) == []
    engine.job_runner.stop_run.assert_not_called()
    # A finished job cannot be deleted while running; this one can.
    conn = _authorized(cmd, engine, "delete_job", jid)
    cmd.delete_job(conn, ["delete_job", jid])
    assert _errors(conn) == []
    assert adapter.get_job(jid, fl_ctx) is None


def test_first_use_from_many_server_threads(adapter: RedisJobDefManager, fl_ctx: FLContext) -> None:
    """The server calls its job manager from several threads; the lazy connection is made once."""
    jobs_per_thread = 5
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def admin(n: int) -> None:
        try:
            barrier.wait(timeout=5)
            for i in range(jobs_per_thread):
                jid = adapter.create({"name": f"t{n}-{i}"}, _app_zip(f"{n}-{i}"), fl_ctx)["job_id"]
                assert adapter.get_job(jid, fl_ctx).meta["name"] == f"t{n}-{i}"
        except BaseException as e:
            errors.append(e)

    def scheduler() -> None:
        try:
            barrier.wait(timeout=5)
            for _ in range(10):
                for job in adapter.get_jobs_to_schedule(fl_ctx):
                    assert job.meta["status"] == RunStatus.SUBMITTED.value
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=admin, args=(n,)) for n in range(5)]
    threads.append(threading.Thread(target=scheduler))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert len(adapter.get_jobs_to_schedule(fl_ctx)) == 5 * jobs_per_thread


# -- 2. submit: JobMetaValidator, the submit command, get_app --------------------------------------


def test_validated_job_is_stored_and_its_app_served_like_nvflare(
    adapter: RedisJobDefManager, fl_ctx: FLContext, tmp_path: Path
) -> None:
    upload = tmp_path / "upload"
    folder = _job_folder(upload, "hello-job", min_clients=2)
    zip_bytes = zip_directory_to_bytes(str(upload), "hello-job")

    valid, error, meta = JobMetaValidator().validate("hello-job", zip_bytes)
    assert (valid, error) == (True, "")
    assert meta["deploy_map"] == {"app": ["@ALL"]}

    # What submit_job adds before create.
    meta.update({"study": "default", "job_folder_name": "hello-job"})
    meta.update({f"submitter_{k}": v for k, v in SUBMITTER.items()})
    created = adapter.create(meta, zip_bytes, fl_ctx)
    assert created is meta
    job = adapter.get_job(meta["job_id"], fl_ctx)
    assert job.min_sites == 2
    assert adapter.get_content(job.meta, fl_ctx) == zip_bytes

    app = _files(adapter.get_app(job, "app", fl_ctx))
    assert app == {
        "config/config_fed_server.json": (folder / "app/config/config_fed_server.json").read_bytes(),
        "config/config_fed_client.json": (folder / "app/config/config_fed_client.json").read_bytes(),
    }
    # NVFlare's own manager serves the same files for the same content.
    nv = SimpleJobDefManager(uri_root=str(tmp_path / "nvjobs"))
    nv_meta = nv.create({"job_folder_name": "hello-job", "deploy_map": meta["deploy_map"]}, zip_bytes, fl_ctx)
    assert _files(nv.get_app(nv.get_job(nv_meta["job_id"], fl_ctx), "app", fl_ctx)) == app
    with pytest.raises(FileNotFoundError):
        adapter.get_app(job, "no-such-app", fl_ctx)

    # The server validates and stores the uploaded file by path; the file is consumed.
    zip_path = tmp_path / "uploaded.zip"
    zip_directory_to_file(str(upload), "hello-job", str(zip_path))
    valid, error, meta2 = JobMetaValidator().validate("hello-job", str(zip_path))
    assert (valid, error) == (True, "")
    meta2["job_folder_name"] = "hello-job"
    jid2 = adapter.create(meta2, str(zip_path), fl_ctx)["job_id"]
    assert not zip_path.exists()
    assert _files(adapter.get_app(adapter.get_job(jid2, fl_ctx), "app", fl_ctx)) == app


def test_submit_command_stores_the_uploaded_job(
    adapter: RedisJobDefManager, engine: MagicMock, fl_ctx: FLContext, tmp_path: Path
) -> None:
    upload = tmp_path / "upload"
    _job_folder(upload, "hello-job")
    zip_path = tmp_path / "hello-job.zip"
    zip_directory_to_file(str(upload), "hello-job", str(zip_path))
    cmd = JobCommandModule()

    conn = _conn(engine, **{ConnProps.FILE_LOCATION: str(zip_path)})
    cmd.submit_job(conn, ["submit_job", "hello-job"])
    assert _errors(conn) == []
    jid = conn.buffer.output["meta"]["job_id"]
    assert not zip_path.exists()

    meta = adapter.get_job(jid, fl_ctx).meta
    assert meta["status"] == RunStatus.SUBMITTED.value
    assert meta["job_folder_name"] == "hello-job"
    assert meta["submitter_name"] == SUBMITTER["name"]
    assert meta["study"] == "default"

    conn = _conn(engine)
    cmd.list_jobs(conn, ["list_jobs", "-d"])
    assert [j["job_id"] for j in conn.buffer.output["meta"]["jobs"]] == [jid]

    conn = _authorized(cmd, engine, "get_job_meta", jid)
    cmd.get_job_meta(conn, ["get_job_meta", jid])
    assert conn.buffer.output["meta"]["job_meta"]["job_id"] == jid

    # An invalid job is refused by the validator and never reaches the store.
    bad = tmp_path / "bad"
    _job_folder(bad, "bad-job", deploy_map={"app": ["server", "site-1"]}, min_clients=3)
    bad_zip = tmp_path / "bad-job.zip"
    zip_directory_to_file(str(bad), "bad-job", str(bad_zip))
    conn = _conn(engine, **{ConnProps.FILE_LOCATION: str(bad_zip)})
    cmd.submit_job(conn, ["submit_job", "bad-job"])
    assert conn.buffer.output["meta"]["status"] == MetaStatusValue.INVALID_JOB_DEFINITION
    assert [j.job_id for j in adapter.get_all_jobs(fl_ctx)] == [jid]


@pytest.mark.parametrize("priority", ["high", 2.5, True, 10**12])
def test_a_priority_nvflare_would_store_as_is_is_kept_and_queued_at_zero(
    adapter: RedisJobDefManager,
    engine: MagicMock,
    fl_ctx: FLContext,
    tmp_path: Path,
    priority: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # NVFlare has no priority: a job's meta.json may hold any value under that name, and its store
    # keeps it. The core manager refuses such a priority (InvalidMeta); the adapter queues the job
    # at 0 and keeps the value.
    first = adapter.create({"name": "first", "job_folder_name": "j"}, _app_zip("f"), fl_ctx)["job_id"]
    urgent = adapter.create({"name": "urgent", "priority": 1, "job_folder_name": "j"}, _app_zip("u"), fl_ctx)
    upload = tmp_path / "upload"
    meta_path = _job_folder(upload, "hello-job") / "meta.json"
    _write_json(meta_path, {**json.loads(meta_path.read_text()), "priority": priority})
    zip_path = tmp_path / "hello-job.zip"
    zip_directory_to_file(str(upload), "hello-job", str(zip_path))
    conn = _conn(engine, **{ConnProps.FILE_LOCATION: str(zip_path)})
    with caplog.at_level(logging.WARNING, logger="redisjobs.nvflare"):
        JobCommandModule().submit_job(conn, ["submit_job", "hello-job"])
    assert _errors(conn) == []
    jid = conn.buffer.output["meta"]["job_id"]
    assert adapter.get_job(jid, fl_ctx).meta["priority"] == priority
    assert any("queued at priority 0" in r.getMessage() and jid in r.getMessage() for r in caplog.records)
    assert [j.job_id for j in adapter.get_jobs_to_schedule(fl_ctx)] == [urgent["job_id"], first, jid]
    # Back to the queue (dispatched, then put back): at 0 again, not at the value as written.
    assert adapter.set_status(jid, RunStatus.DISPATCHED, fl_ctx)
    assert adapter.set_status(jid, RunStatus.SUBMITTED, fl_ctx)
    assert [j.job_id for j in adapter.get_jobs_to_schedule(fl_ctx)] == [urgent["job_id"], first, jid]
    # The same for a priority written later (the queue takes the job at 0 again).
    adapter.update_meta(first, {"priority": "low"}, fl_ctx)
    assert [j.job_id for j in adapter.get_jobs_to_schedule(fl_ctx)] == [urgent["job_id"], first, jid]
    adapter.update_meta(jid, {"priority": 2}, fl_ctx)
    assert [j.job_id for j in adapter.get_jobs_to_schedule(fl_ctx)] == [jid, urgent["job_id"], first]
    # The core manager keeps refusing it, before anything is written.
    core = RedisJobDefManagerCore(client=adapter.client, namespace=adapter.keys.namespace)
    with pytest.raises(InvalidMeta, match="priority"):
        core.create({"name": "x", "priority": priority}, b"x")
    assert len(adapter.get_all_jobs(fl_ctx)) == 3


def test_clone_command_copies_the_data_only(
    adapter: RedisJobDefManager, engine: MagicMock, fl_ctx: FLContext
) -> None:
    src = adapter.create(
        {"name": "src", "job_folder_name": "j", "deploy_map": {"app": ["@ALL"]}}, _app_zip("s")
    )
    adapter.save_workspace(src["job_id"], b"workspace of the source", fl_ctx)
    cmd = JobCommandModule()
    conn = _authorized(cmd, engine, "clone_job", src["job_id"])
    cmd.clone_job(conn, ["clone_job", src["job_id"]])
    assert _errors(conn) == []
    new = conn.buffer.output["meta"]["job_id"]
    clone = adapter.get_job(new, fl_ctx)
    assert clone.meta["cloned_from"] == src["job_id"]
    assert clone.meta["data_storage_format"] == 2
    assert clone.meta["status"] == RunStatus.SUBMITTED.value
    assert adapter.get_content(clone.meta, fl_ctx) == _app_zip("s")
    assert adapter.list_components(new, fl_ctx) == ["meta", "data"]
    assert _files(adapter.get_app(clone, "app", fl_ctx)) == _files(
        adapter.get_app(adapter.get_job(src["job_id"], fl_ctx), "app", fl_ctx)
    )


# -- 3. the default scheduler and the job runner's calls -------------------------------------------


def _scheduling_engine(adapter: RedisJobDefManager, tmp_path: Path) -> MagicMock:
    engine = _make_engine(adapter, tmp_path, clients=("site-1", "site-2"))
    engine.check_client_resources.side_effect = lambda job, reqs, ctx: {
        site: (True, f"reservation-{site}") for site in reqs
    }
    return engine


def test_default_scheduler_records_tries_and_blocks_jobs(adapter: RedisJobDefManager, tmp_path: Path) -> None:
    engine = _scheduling_engine(adapter, tmp_path)
    ctx = FLContextManager(engine=engine).new_context()
    ok_map = {"app": ["@ALL"]}

    def submit(name: str, **meta: Any) -> str:
        return adapter.create({"name": name, "job_folder_name": "j", **meta}, _app_zip(name), ctx)["job_id"]

    no_deploy_map = submit("no-deploy-map")  # blocked: can never be scheduled
    tried_out = submit("tried-out", deploy_map=ok_map)
    adapter.update_meta(tried_out, {"schedule_count": 10}, ctx)  # max_schedule_count reached
    missing_site = submit(
        "missing-site", deploy_map={"app": ["server", "site-1", "site-9"]}, mandatory_clients=["site-9"]
    )
    ready = submit("ready", deploy_map=ok_map, min_clients=2)
    later = submit("later", deploy_map=ok_map)

    scheduler = DefaultJobScheduler(max_jobs=4)
    candidates = adapter.get_jobs_to_schedule(ctx)
    assert [j.job_id for j in candidates] == [no_deploy_map, tried_out, missing_site, ready, later]
    before = datetime.datetime.now().timestamp()
    job, sites = scheduler.schedule_job(job_manager=adapter, job_candidates=candidates, fl_ctx=ctx)
    assert job is not None and job.job_id == ready
    assert set(sites) == {"server", "site-1", "site-2"}
    assert sites["site-1"].token == "reservation-site-1"

    for blocked in (no_deploy_map, tried_out):
        meta = adapter.get_job(blocked, ctx).meta
        assert meta["status"] == RunStatus.FINISHED_CANT_SCHEDULE.value
        assert meta["duration"] == "N/A"
        assert meta["last_schedule_time"] >= before
    assert adapter.get_job(no_deploy_map, ctx).meta["schedule_count"] == 1
    assert "no deploy map" in adapter.get_job(no_deploy_map, ctx).meta["schedule_history"][0]
    assert adapter.get_job(tried_out, ctx).meta["schedule_count"] == 11
    assert "exceeded max schedule count" in adapter.get_job(tried_out, ctx).meta["schedule_history"][-1]

    failed = adapter.get_job(missing_site, ctx).meta
    assert failed["status"] == RunStatus.SUBMITTED.value
    assert failed["schedule_count"] == 1
    assert failed["last_schedule_time"] >= before
    assert "missing required site site-9" in failed["schedule_history"][0]
    assert "schedule_count" not in adapter.get_job(later, ctx).meta  # not tried this round

    # The job runner's dispatch of the scheduled job, call for call.
    assert JobRunner._check_job_status(adapter, ready, RunStatus.SUBMITTED, ctx) is False
    for app in job.deploy_map:  # _deploy_job sends each app
        assert _files(adapter.get_app(job, app, ctx)) == {
            "config/config_fed_server.json": json.dumps({"tag": "ready"}).encode(),
            "x.txt": b"ready",
        }
    assert adapter.set_status(ready, RunStatus.DISPATCHED, ctx) is True
    adapter.update_meta(
        ready,
        {
            "job_deploy_detail": ["server: OK", "site-1: OK", "site-2: OK"],
            "schedule_count": job.meta["schedule_count"],
            "last_schedule_time": job.meta["last_schedule_time"],
            "schedule_history": job.meta["schedule_history"],
        },
        ctx,
    )
    assert JobRunner._check_job_status(adapter, ready, RunStatus.DISPATCHED, ctx) is False
    assert adapter.set_status(ready, RunStatus.RUNNING, ctx) is True
    running = adapter.get_job(ready, ctx).meta
    assert running["schedule_count"] == 1 and running["schedule_history"][0].endswith("scheduled")
    assert datetime.datetime.fromisoformat(running["start_time"]).tzinfo is not None
    assert [j.job_id for j in adapter.get_jobs_by_status([RunStatus.RUNNING, RunStatus.DISPATCHED], ctx)] == [
        ready
    ]

    # Next round: the job missing a site backs off (10 s), the later one is scheduled.
    job2, _ = scheduler.schedule_job(
        job_manager=adapter, job_candidates=adapter.get_jobs_to_schedule(ctx), fl_ctx=ctx
    )
    assert job2 is not None and job2.job_id == later
    assert adapter.get_job(missing_site, ctx).meta["schedule_count"] == 1

    # Completion, as the runner does it: the workspace, then the final status.
    adapter.save_workspace(ready, b"workspace", ctx)
    assert adapter.set_status(ready, RunStatus.FINISHED_COMPLETED, ctx) is True
    done = adapter.get_job(ready, ctx).meta
    assert done["status"] == RunStatus.FINISHED_COMPLETED.value and done["duration"] != "N/A"


def test_scheduler_gives_up_after_max_schedule_count(adapter: RedisJobDefManager, tmp_path: Path) -> None:
    engine = _scheduling_engine(adapter, tmp_path)
    ctx = FLContextManager(engine=engine).new_context()
    jid = adapter.create(
        {"name": "never", "deploy_map": {"app": ["server", "site-9"]}, "mandatory_clients": ["site-9"]},
        _app_zip("never"),
        ctx,
    )["job_id"]
    scheduler = DefaultJobScheduler(max_schedule_count=3, min_schedule_interval=0.0)
    rounds = 0
    while candidates := adapter.get_jobs_to_schedule(ctx):
        assert rounds < 10, "the scheduler never gave up"
        result = scheduler.schedule_job(job_manager=adapter, job_candidates=candidates, fl_ctx=ctx)
        assert result == (None, None)
        rounds += 1
    meta = adapter.get_job(jid, ctx).meta
    assert rounds == 4  # three tries, then blocked
    assert meta["status"] == RunStatus.FINISHED_CANT_SCHEDULE.value
    assert meta["schedule_count"] == 4
    assert len(meta["schedule_history"]) == 4
    assert "exceeded max schedule count 3" in meta["schedule_history"][-1]
    engine.check_client_resources.assert_not_called()  # blocked before any reservation


# -- 4. admin flows: download, components, logs ----------------------------------------------------


def _finished_job(adapter: RedisJobDefManager, ctx: FLContext, tmp_path: Path) -> tuple[str, bytes]:
    """A completed job with a workspace (server and site-1 logs) and client data, as the server leaves it."""
    jid = adapter.create(
        {
            "name": "done",
            "job_folder_name": "j",
            "deploy_map": {"app": ["server", "site-1", "site-2", "site-3"]},
        },
        _app_zip("done"),
        ctx,
    )["job_id"]
    adapter.set_status(jid, RunStatus.DISPATCHED, ctx)
    adapter.set_status(jid, RunStatus.RUNNING, ctx)
    run = tmp_path / "run"
    (run / "site-1").mkdir(parents=True)
    (run / "log.txt").write_text("server log line\n")
    (run / "site-1" / "log.txt").write_text("site-1 log line\n")
    extra = tmp_path / "stats.json"
    extra.write_text("{}")
    adapter.save_workspace(jid, [str(run), str(extra)], ctx)
    adapter.save_workspace(jid, [str(run), str(extra)], ctx)  # retried by the runner: idempotent
    adapter.set_client_data(jid, b"site-1 traceback", "site-1", "ERRORLOG", ctx)
    adapter.set_client_data(jid, b"site-2 log line\n", "site-2", "LOG_log.txt", ctx)
    adapter.set_status(jid, RunStatus.FINISHED_COMPLETED, ctx)
    return jid, adapter.get_storage_component(jid, "workspace", ctx)


def test_save_workspace_zips_paths_like_nvflare(
    adapter: RedisJobDefManager, fl_ctx: FLContext, tmp_path: Path
) -> None:
    _, workspace = _finished_job(adapter, fl_ctx, tmp_path)
    nv = SimpleJobDefManager(uri_root=str(tmp_path / "nvjobs"))
    nv_jid = nv.create({"name": "done", "job_folder_name": "j"}, _app_zip("done"), fl_ctx)["job_id"]
    nv.save_workspace(nv_jid, [str(tmp_path / "run"), str(tmp_path / "stats.json")], fl_ctx)
    nv_workspace = nv.get_storage_component(nv_jid, "workspace", fl_ctx)
    with zipfile.ZipFile(io.BytesIO(workspace)) as a, zipfile.ZipFile(io.BytesIO(nv_workspace)) as b:
        assert sorted(a.namelist()) == sorted(b.namelist())
    assert _files(workspace) == _files(nv_workspace)
    assert _files(workspace) == {
        "log.txt": b"server log line\n",
        "site-1/log.txt": b"site-1 log line\n",
        "stats.json": b"{}",
    }


def test_download_commands_write_what_nvflare_expects(
    adapter: RedisJobDefManager, engine: MagicMock, fl_ctx: FLContext, tmp_path: Path
) -> None:
    jid, workspace = _finished_job(adapter, fl_ctx, tmp_path)
    download_dir = tmp_path / "transfer"
    cmd = JobCommandModule()
    cmd.download_folder = MagicMock()  # the binary transfer to the admin client

    def download(command: str, get: Callable[..., None]) -> Path:
        cmd.download_folder.reset_mock()
        conn = _authorized(cmd, engine, command, jid)
        conn.set_prop(ConnProps.DOWNLOAD_DIR, str(download_dir))
        get(conn, [command, jid])
        assert _errors(conn) == []
        cmd.download_folder.assert_called_once()
        return download_dir / cmd.download_folder.call_args.kwargs["tx_id"] / jid

    folder = download("download_job", cmd.download_job)
    assert sorted(os.listdir(folder)) == ["job.zip", "meta.json", "workspace.zip"]
    assert (folder / "job.zip").read_bytes() == _app_zip("done")
    assert (folder / "workspace.zip").read_bytes() == workspace
    assert json.loads((folder / "meta.json").read_text()) == adapter.get_job(jid, fl_ctx).meta

    folder = download("download_job_components", cmd.download_job_components)
    assert sorted(os.listdir(folder)) == ["ERRORLOG_site-1", "LOG_log.txt_site-2"]
    assert (folder / "ERRORLOG_site-1").read_bytes() == b"site-1 traceback"

    conn = _authorized(cmd, engine, "list_job_components", jid)
    cmd.list_job_components(conn, ["list_job_components", jid])
    assert sorted(conn.buffer.output["meta"]["job_components"]) == ["ERRORLOG_site-1", "LOG_log.txt_site-2"]
    components = adapter.list_components(jid=jid, fl_ctx=fl_ctx)
    assert {"data", "meta", "workspace", "ERRORLOG_site-1", "LOG_log.txt_site-2"} == set(components)

    # An unfinished job is not downloadable; a missing component writes nothing.
    running = adapter.create({"name": "r", "job_folder_name": "j"}, _app_zip("r"), fl_ctx)["job_id"]
    conn = _authorized(cmd, engine, "download_job", running)
    conn.set_prop(ConnProps.DOWNLOAD_DIR, str(download_dir))
    cmd.download_job(conn, ["download_job", running])
    assert conn.buffer.output["meta"]["status"] == MetaStatusValue.JOB_RUNNING
    adapter.get_storage_for_download(running, str(download_dir / "x"), "workspace", "workspace.zip", fl_ctx)
    assert os.listdir(download_dir / "x" / running) == []


def test_log_commands_read_the_workspace_and_client_data(
    adapter: RedisJobDefManager, engine: MagicMock, fl_ctx: FLContext, tmp_path: Path
) -> None:
    jid, _ = _finished_job(adapter, fl_ctx, tmp_path)
    # The calls the log commands make, with NVFlare's keywords.
    workspace = adapter.get_storage_component(jid=jid, component="workspace", fl_ctx=fl_ctx)
    assert _files(workspace)["site-1/log.txt"] == b"site-1 log line\n"
    log = adapter.get_client_data(jid=jid, client_name="site-2", data_type="LOG_log.txt", fl_ctx=fl_ctx)
    assert log == b"site-2 log line\n"
    assert (
        adapter.get_client_data(jid=jid, client_name="site-3", data_type="LOG_log.txt", fl_ctx=fl_ctx) is None
    )

    cmd = JobCommandModule()
    conn = _authorized(cmd, engine, "get_job_log", jid)
    cmd.get_job_log(conn, ["get_job_log", jid, "all"])
    assert _errors(conn) == []
    payload = conn.buffer.output["data"][0]["data"]
    assert payload["logs"] == {
        "server": "server log line\n",
        "site-1": "site-1 log line\n",
        "site-2": "site-2 log line\n",
    }
    assert list(payload["unavailable"]) == ["site-3"]

    for site, text in (("site-1", "site-1 log line\n"), ("site-2", "site-2 log line\n")):
        conn = _authorized(cmd, engine, "get_job_log", jid)
        cmd.get_job_log(conn, ["get_job_log", jid, site])
        assert conn.buffer.output["data"][0]["data"]["logs"] == {site: text}

    # A job without a workspace: the server log is "not available", not an error.
    fresh = adapter.create({"name": "f", "job_folder_name": "j"}, _app_zip("f"), fl_ctx)["job_id"]
    conn = _authorized(cmd, engine, "get_job_log", fresh)
    cmd.get_job_log(conn, ["get_job_log", fresh])
    assert conn.buffer.output["data"][0]["data"]["unavailable"] == {
        "server": "server log not available for this job"
    }


# -- 5. submit tokens ------------------------------------------------------------------------------


def test_submit_token_records(adapter: RedisJobDefManager, fl_ctx: FLContext, tmp_path: Path) -> None:
    content = _app_zip("tok")
    content_hash = adapter.get_job_content_hash(content)
    assert content_hash == canonical_job_content_hash(content)
    kwargs = {
        "study": "default",
        "submitter": SUBMITTER,
        "submit_token": "tok-1",
        "job_content_hash": content_hash,
        "job_name": "tok",
        "job_folder_name": "j",
        "state": "creating",
    }
    record = RedisJobDefManager.new_submit_record(**kwargs)  # static, as NVFlare calls it
    nv_record = SimpleJobDefManager.new_submit_record(**kwargs)
    assert set(record) == set(nv_record)
    assert {k: v for k, v in record.items() if k not in ("job_id", "submit_time")} == {
        k: v for k, v in nv_record.items() if k not in ("job_id", "submit_time")
    }
    uuid.UUID(record["job_id"], version=4)

    assert adapter.create_submit_record(record, fl_ctx) is True
    assert adapter.create_submit_record(dict(record, job_content_hash="sha256:other"), fl_ctx) is False
    assert adapter.get_submit_record("default", SUBMITTER, "tok-1", fl_ctx) == record
    assert adapter.get_job_by_submit_token("default", SUBMITTER, "tok-1", fl_ctx) is None  # no job yet

    jid = adapter.create(
        {"job_id": record["job_id"], "name": "tok", "submit_token": "tok-1"}, content, fl_ctx
    )["job_id"]
    assert "submit_token" not in adapter.get_job(jid, fl_ctx).meta
    record["state"] = "created"
    assert adapter.update_submit_record(record, fl_ctx) == record
    assert adapter.get_submit_record("default", SUBMITTER, "tok-1", fl_ctx)["state"] == "created"
    job = adapter.get_job_by_submit_token("default", SUBMITTER, "tok-1", fl_ctx)
    assert isinstance(job, Job) and job.job_id == jid
    # Scoped by study, submitter and token.
    assert adapter.get_submit_record("other-study", SUBMITTER, "tok-1", fl_ctx) is None
    assert adapter.get_submit_record("default", dict(SUBMITTER, role="lead"), "tok-1", fl_ctx) is None

    adapter.delete(jid, fl_ctx)
    deleter = {"name": "boss@x.org", "org": "x", "role": "project_admin"}
    marked = adapter.mark_submit_records_job_deleted(jid, deleter, fl_ctx)
    assert len(marked) == 1
    assert marked[0]["state"] == "job_deleted"
    assert marked[0]["deleted_by"] == deleter
    assert datetime.datetime.fromisoformat(marked[0]["deleted_time"]).utcoffset() == datetime.timedelta(0)
    assert adapter.get_submit_record("default", SUBMITTER, "tok-1", fl_ctx) == marked[0]
    assert adapter.get_job_by_submit_token("default", SUBMITTER, "tok-1", fl_ctx) is None
    assert adapter.mark_submit_records_job_deleted(jid, deleter, fl_ctx) == []


def test_submit_command_with_a_token_is_retry_safe(
    adapter: RedisJobDefManager, engine: MagicMock, fl_ctx: FLContext, tmp_path: Path
) -> None:
    upload = tmp_path / "upload"
    _job_folder(upload, "hello-job")
    cmd = JobCommandModule()

    def submit(marker: str = "") -> Connection:
        if marker:
            _job_folder(upload, "hello-job", marker=marker)
        zip_path = tmp_path / f"upload-{uuid.uuid4().hex}.zip"
        zip_directory_to_file(str(upload), "hello-job", str(zip_path))
        conn = _conn(engine, **{ConnProps.FILE_LOCATION: str(zip_path)})
        cmd.submit_job(conn, ["submit_job", "hello-job", "--submit-token", "tok-1"])
        return conn

    first = submit()
    assert _errors(first) == []
    jid = first.buffer.output["meta"]["job_id"]
    record = adapter.get_submit_record("default", SUBMITTER, "tok-1", fl_ctx)
    assert (record["job_id"], record["state"]) == (jid, "created")

    again = submit()  # the admin retried after a lost reply: same job, no second one
    assert again.buffer.output["meta"]["job_id"] == jid
    assert [j.job_id for j in adapter.get_all_jobs(fl_ctx)] == [jid]

    conflict = submit(marker="changed")
    assert any("SUBMIT_TOKEN_CONFLICT" in e for e in _errors(conflict))
    assert [j.job_id for j in adapter.get_all_jobs(fl_ctx)] == [jid]
    _job_folder(upload, "hello-job")

    conn = _conn(engine)
    cmd.list_jobs(conn, ["list_jobs", "--submit-token", "tok-1"])
    assert [j["job_id"] for j in conn.buffer.output["meta"]["jobs"]] == [jid]

    conn = _authorized(cmd, engine, "delete_job", jid)
    cmd.delete_job(conn, ["delete_job", jid])
    assert _errors(conn) == []
    assert conn.buffer.output["meta"]["submit_records_marked_deleted"] == 1
    assert adapter.get_all_jobs(fl_ctx) == []

    gone = submit()
    assert any("SUBMIT_TOKEN_JOB_DELETED" in e for e in _errors(gone))
    assert adapter.get_all_jobs(fl_ctx) == []
    conn = _conn(engine)
    cmd.list_jobs(conn, ["list_jobs", "--submit-token", "tok-1"])
    assert any("SUBMIT_TOKEN_JOB_DELETED" in e for e in _errors(conn))


# -- 6. migration from NVFlare's filesystem store --------------------------------------------------


def _nvflare_store(root: Path, ctx: FLContext, tmp_path: Path) -> tuple[SimpleJobDefManager, dict[str, str]]:
    """A store written by NVFlare's own manager: jobs in several statuses, a workspace, client data,
    an approval, a submit-token record and the "scheduled" tags of NVFlare's scheduling scan."""
    nv = SimpleJobDefManager(uri_root=str(root / "jobs"), job_store_id="job_store")
    ids: dict[str, str] = {}

    def new(name: str, **extra: Any) -> str:
        meta = {"name": name, "job_folder_name": "j", "deploy_map": {"app": ["@ALL"]}, **extra}
        return str(nv.create(meta, _app_zip(name), ctx)["job_id"])

    ids["done"] = new("done")
    nv.set_status(ids["done"], RunStatus.DISPATCHED, ctx)
    nv.update_meta(ids["done"], {"schedule_count": 1, "schedule_history": ["t: scheduled"]}, ctx)
    nv.set_status(ids["done"], RunStatus.RUNNING, ctx)
    run = tmp_path / "nv-run"
    (run / "site-1").mkdir(parents=True)
    (run / "log.txt").write_text("server log\n")
    (run / "site-1" / "log.txt").write_text("site-1 log\n")
    nv.save_workspace(ids["done"], [str(run)], ctx)
    nv.set_client_data(ids["done"], b"site-1 error", "site-1", "ERRORLOG", ctx)
    nv.set_client_data(ids["done"], b"site-1 log\n", "site-1", "LOG_log.txt", ctx)
    nv.set_status(ids["done"], RunStatus.FINISHED_COMPLETED, ctx)

    ids["approved"] = new("approved")
    nv.set_approval(ids["approved"], REVIEWER, True, "looks good", ctx)

    content = _app_zip("token")
    record = nv.new_submit_record(
        study="default",
        submitter=SUBMITTER,
        submit_token="tok-1",
        job_content_hash=nv.get_job_content_hash(content),
        job_name="token",
        job_folder_name="j",
        state="creating",
    )
    assert nv.create_submit_record(record, ctx) is True
    ids["token"] = str(
        nv.create({"job_id": record["job_id"], "name": "token", "job_folder_name": "j"}, content, ctx)[
            "job_id"
        ]
    )
    record["state"] = "created"
    nv.update_submit_record(record, ctx)

    ids["aborted"] = new("aborted")
    nv.set_status(ids["aborted"], RunStatus.FINISHED_ABORTED, ctx)
    ids["failed"] = new("failed", min_clients=2, resource_spec={"site-1": {"num_of_gpus": 1}})
    nv.set_status(ids["failed"], RunStatus.DISPATCHED, ctx)
    nv.set_status(ids["failed"], RunStatus.FAILED_TO_RUN, ctx)
    ids["waiting"] = new("waiting", priority=0)
    # The admin's clone passes data_storage_format along (CLONED_META_KEYS).
    ids["clone"] = str(
        nv.clone(
            ids["done"],
            {"name": "done", "job_folder_name": "j", "data_storage_format": 2, "cloned_from": ids["done"]},
            ctx,
        )["job_id"]
    )
    nv.get_jobs_to_schedule(ctx)  # tags every non-SUBMITTED job "scheduled"
    return nv, ids


def _assert_reads_back_the_same(
    nv: SimpleJobDefManager, adapter: RedisJobDefManager, jid: str, ctx: FLContext, tmp_path: Path
) -> None:
    a = nv.get_job(jid, ctx)
    b = adapter.get_job(jid, ctx)
    assert b.meta == a.meta, jid
    assert adapter.get_content(b.meta, ctx) == nv.get_content(a.meta, ctx)
    for app in a.deploy_map:
        assert _files(adapter.get_app(b, app, ctx)) == _files(nv.get_app(a, app, ctx))
    components = set(nv.list_components(jid, ctx)) - {"scheduled"}
    assert set(adapter.list_components(jid, ctx)) == components
    for component in components - {"meta"}:
        assert adapter.get_storage_component(jid, component, ctx) == nv.get_storage_component(
            jid, component, ctx
        )
    assert json.loads(adapter.get_storage_component(jid, "meta", ctx)) == json.loads(
        nv.get_storage_component(jid, "meta", ctx)
    )
    for data_type in ("ERRORLOG", "LOG_log.txt"):
        assert adapter.get_client_data(jid, "site-1", data_type, ctx) == nv.get_client_data(
            jid, "site-1", data_type, ctx
        )
    for name, m in (("redis", adapter), ("nvflare", nv)):
        for component, file_name in (
            ("data", "job.zip"),
            ("meta", "meta.json"),
            ("workspace", "workspace.zip"),
        ):
            m.get_storage_for_download(jid, str(tmp_path / f"dl-{name}"), component, file_name, ctx)
    ours, theirs = tmp_path / "dl-redis" / jid, tmp_path / "dl-nvflare" / jid
    assert sorted(os.listdir(ours)) == sorted(os.listdir(theirs))
    for file_name in os.listdir(theirs):
        if file_name == "meta.json":
            assert json.loads((ours / file_name).read_bytes()) == json.loads(
                (theirs / file_name).read_bytes()
            )
        else:
            assert (ours / file_name).read_bytes() == (theirs / file_name).read_bytes()


def test_migrate_imports_an_nvflare_store_identically(
    make_adapter: Callable[..., RedisJobDefManager], tmp_path: Path
) -> None:
    adapter = make_adapter()
    ctx = FLContextManager(engine=_make_engine(adapter, tmp_path)).new_context()
    root = tmp_path / "nvstore"
    nv, ids = _nvflare_store(root, ctx, tmp_path)
    before = _snapshot(root)
    seen: list[str] = []

    report = migrate(adapter, str(root / "jobs"), progress=seen.append)
    assert report.ok, report
    assert (report.jobs_found, report.jobs_imported, report.jobs_unchanged) == (7, 7, 0)
    assert report.components_imported == 3  # workspace, ERRORLOG_site-1, LOG_log.txt_site-1
    assert (report.records_found, report.records_imported) == (1, 1)
    assert report.blobs_verified == 7 + 3
    assert len(seen) == 8

    for jid in ids.values():
        _assert_reads_back_the_same(nv, adapter, jid, ctx, tmp_path)
    in_submit_order = [j.job_id for j in sorted(nv.get_all_jobs(ctx), key=lambda j: j.meta["submit_time"])]
    assert [j.job_id for j in adapter.get_all_jobs(ctx)] == in_submit_order
    for status in RunStatus:
        assert {j.job_id for j in adapter.get_jobs_by_status(status, ctx)} == {
            j.job_id for j in nv.get_jobs_by_status(status, ctx)
        }, status
    assert {j.job_id for j in adapter.get_jobs_waiting_for_review(REVIEWER, ctx)} == {
        j.job_id for j in nv.get_jobs_waiting_for_review(REVIEWER, ctx)
    }
    # NVFlare's own scan never offers them again ("scheduled" tags); Redis offers the SUBMITTED ones.
    assert [j.job_id for j in adapter.get_jobs_to_schedule(ctx)] == [
        jid for jid in in_submit_order if nv.get_job(jid, ctx).meta["status"] == RunStatus.SUBMITTED.value
    ]
    assert adapter.get_submit_record("default", SUBMITTER, "tok-1", ctx) == nv.get_submit_record(
        "default", SUBMITTER, "tok-1", ctx
    )
    assert adapter.get_job_by_submit_token("default", SUBMITTER, "tok-1", ctx).job_id == ids["token"]

    again = migrate(adapter, str(root / "jobs"))
    assert again.ok, again
    assert (again.jobs_found, again.jobs_imported, again.jobs_unchanged) == (7, 0, 7)
    assert (again.components_imported, again.records_imported, again.records_unchanged) == (0, 0, 1)
    assert again.blobs_verified == 10
    assert _snapshot(root) == before  # the source is never modified

    # The migrated record index works: deleting the job marks its record.
    adapter.delete(ids["token"], ctx)
    assert len(adapter.mark_submit_records_job_deleted(ids["token"], SUBMITTER, ctx)) == 1


def test_migrate_dry_run_writes_nothing(
    make_adapter: Callable[..., RedisJobDefManager], tmp_path: Path
) -> None:
    ns = _namespace()
    adapter = make_adapter(namespace=ns)
    ctx = FLContextManager(engine=_make_engine(adapter, tmp_path)).new_context()
    root = tmp_path / "nvstore"
    _nvflare_store(root, ctx, tmp_path)
    before = _snapshot(root)
    report = migrate(adapter, str(root / "jobs"), dry_run=True)
    assert report.dry_run and report.ok
    assert (report.jobs_found, report.jobs_imported, report.components_imported) == (7, 7, 3)
    assert (report.records_found, report.records_imported) == (1, 1)
    assert _keys_of(adapter.client, ns) == []
    assert _snapshot(root) == before


def test_migrate_reports_conflicts_and_overwrites_nothing(
    make_adapter: Callable[..., RedisJobDefManager], tmp_path: Path
) -> None:
    adapter = make_adapter()
    ctx = FLContextManager(engine=_make_engine(adapter, tmp_path)).new_context()
    root = tmp_path / "nvstore"
    nv, ids = _nvflare_store(root, ctx, tmp_path)
    taken = ids["approved"]
    adapter.create({"job_id": taken, "name": "someone else's"}, b"other content", ctx)
    record = nv.get_submit_record("default", SUBMITTER, "tok-1", ctx)
    other_record = dict(record, job_content_hash="sha256:different")
    assert adapter.create_submit_record(other_record, ctx) is True

    report = migrate(adapter, str(root / "jobs"))
    assert not report.ok
    assert len(report.conflicts) == 2
    assert any(taken in c for c in report.conflicts)
    assert any("submit record" in c for c in report.conflicts)
    assert (report.jobs_imported, report.records_imported) == (6, 0)
    kept = adapter.get_job(taken, ctx)
    assert kept.meta["name"] == "someone else's"
    assert adapter.get_content(kept.meta, ctx) == b"other content"
    assert adapter.get_submit_record("default", SUBMITTER, "tok-1", ctx) == other_record
    for name, jid in ids.items():
        if name != "approved":
            _assert_reads_back_the_same(nv, adapter, jid, ctx, tmp_path)


def test_migrate_legacy_format_job_reads_back_like_nvflare(
    make_adapter: Callable[..., RedisJobDefManager], tmp_path: Path
) -> None:
    """A job stored before data format 2 (no ``data_storage_format``; ``data`` is a fobs dict that
    holds the zip and the workspace). NVFlare 2.9 still reads it: get_content unwraps the zip."""
    adapter = make_adapter()
    ctx = FLContextManager(engine=_make_engine(adapter, tmp_path)).new_context()
    jobs = tmp_path / "nvstore" / "jobs"
    nv = SimpleJobDefManager(uri_root=str(jobs))
    content = _app_zip("legacy")
    jid = nv.create(
        {"name": "legacy", "job_folder_name": "j", "deploy_map": {"app": ["@ALL"]}}, content, ctx
    )["job_id"]
    legacy = {JobDataKey.JOB_DATA.value: content, JobDataKey.WORKSPACE_DATA.value: os.urandom(100_000)}
    (jobs / jid / "data").write_bytes(fobs.dumps(legacy))
    meta = json.loads((jobs / jid / "meta").read_text())
    del meta["data_storage_format"]
    (jobs / jid / "meta").write_text(json.dumps(meta))
    assert nv.get_content(nv.get_job(jid, ctx).meta, ctx) == content  # NVFlare reads it

    report = migrate(adapter, str(jobs))
    assert report.ok, report
    job = adapter.get_job(jid, ctx)
    assert adapter.get_content(job.meta, ctx) == content
    assert _files(adapter.get_app(job, "app", ctx)) == _files(nv.get_app(nv.get_job(jid, ctx), "app", ctx))


# -- 7. startup kits: configure / revert, and NVFlare building the component -----------------------


def _resources(uri_root: str = "/tmp/nvflare/jobs-storage") -> dict[str, Any]:
    """A server's local/resources.json.default as NVFlare 2.9's provisioning writes it (abridged)."""
    return {
        "format_version": 2,
        "servers": [{"admin_storage": "transfer", "max_num_clients": 100}],
        "snapshot_persistor": {
            "path": "nvflare.app_common.state_persistors.storage_state_persistor.StorageStatePersistor",
            "args": {
                "uri_root": "/",
                "storage": {
                    "path": "nvflare.app_common.storages.filesystem_storage.FilesystemStorage",
                    "args": {"root_dir": "/tmp/nvflare/snapshot-storage", "uri_root": "/"},
                },
            },
        },
        "components": [
            {
                "id": "job_scheduler",
                "path": "nvflare.app_common.job_schedulers.job_scheduler.DefaultJobScheduler",
                "args": {"max_jobs": 4},
            },
            {
                "id": "job_manager",
                "path": "nvflare.apis.impl.job_def_manager.SimpleJobDefManager",
                "args": {"uri_root": uri_root, "job_store_id": "job_store"},
            },
            {"id": "job_store", "path": "nvflare.app_common.storages.filesystem_storage.FilesystemStorage"},
        ],
    }


def _startup_kit(
    root: Path, resources: dict[str, Any] | None = None, name: str = "resources.json.default"
) -> Path:
    kit_dir = root / "server"
    _write_json(
        kit_dir / "startup" / "fed_server.json",
        {
            "format_version": 2,
            "servers": [{"name": "project", "service": {"target": "server:8002"}, "admin_port": 8003}],
        },
    )
    _write_json(kit_dir / "local" / name, resources or _resources())
    return kit_dir


class _ServerStartupConfig(FLServerStarterConfiger):
    """NVFlare's server-startup configurator, minus the deployment step (no server is started)."""

    def finalize_config(self, config_ctx: Any) -> None:
        pass


def _nvflare_components(kit_dir: Path) -> dict[str, Any]:
    conf = _ServerStartupConfig(
        workspace=Workspace(root_dir=str(kit_dir), site_name="server"),
        args=SimpleNamespace(workspace=str(kit_dir), job_id=None),
        kv_list=[],
    )
    conf.configure()
    return dict(conf.components)


def test_configure_edits_only_the_job_manager_and_revert_restores(tmp_path: Path) -> None:
    kit_dir = _startup_kit(tmp_path)
    path = kit_dir / "local" / "resources.json.default"
    original = path.read_bytes()

    assert kit.configure(str(kit_dir), "redis://10.0.0.5:6379/0", namespace="fl-prod") == str(path)
    edited = json.loads(path.read_text())
    expected = _resources()
    expected["components"][1] = {
        "id": "job_manager",
        "path": "redisjobs.nvflare.RedisJobDefManager",
        "args": {
            "uri_root": "/tmp/nvflare/jobs-storage",
            "job_store_id": "job_store",
            "url": "redis://10.0.0.5:6379/0",
            "namespace": "fl-prod",
        },
    }
    assert edited == expected
    backup = Path(str(path) + kit.BACKUP_SUFFIX)
    assert backup.read_bytes() == original

    kit.configure(str(kit_dir), "redis://10.0.0.6:6379/0", namespace="fl-prod")  # reconfigured
    assert json.loads(path.read_text())["components"][1]["args"]["url"] == "redis://10.0.0.6:6379/0"
    assert backup.read_bytes() == original  # the first backup is kept

    assert kit.revert(str(kit_dir)) == str(path)
    assert path.read_bytes() == original
    assert not backup.exists()
    with pytest.raises(kit.KitError):
        kit.revert(str(kit_dir))


def test_configure_edits_resources_json_when_present(tmp_path: Path) -> None:
    kit_dir = _startup_kit(tmp_path)
    default = kit_dir / "local" / "resources.json.default"
    _write_json(kit_dir / "local" / "resources.json", _resources(uri_root="/data/jobs"))
    default_bytes = default.read_bytes()
    path = kit.configure(str(kit_dir), "redis://r:6379/0")
    assert path == str(kit_dir / "local" / "resources.json")
    assert default.read_bytes() == default_bytes
    args = json.loads(Path(path).read_text())["components"][1]["args"]
    assert args == {
        "uri_root": "/data/jobs",
        "job_store_id": "job_store",
        "url": "redis://r:6379/0",
        "namespace": "redisjobs",
    }


def test_configure_refuses_kits_it_cannot_edit(tmp_path: Path) -> None:
    (tmp_path / "empty" / "local").mkdir(parents=True)
    with pytest.raises(kit.KitError) as info:
        kit.configure(str(tmp_path / "empty"), "redis://r:6379/0")
    assert isinstance(info.value, ValueError)

    for n in (0, 2):
        resources = _resources()
        others = [c for c in resources["components"] if c["id"] != "job_manager"]
        manager = next(c for c in resources["components"] if c["id"] == "job_manager")
        resources["components"] = others + [manager] * n
        kit_dir = _startup_kit(tmp_path / f"kit{n}", resources)
        path = kit_dir / "local" / "resources.json.default"
        original = path.read_bytes()
        with pytest.raises(kit.KitError, match=f"{n} job_manager"):
            kit.configure(str(kit_dir), "redis://r:6379/0")
        assert path.read_bytes() == original
        assert sorted(os.listdir(kit_dir / "local")) == ["resources.json.default"]


def test_nvflare_builds_the_configured_job_manager(tmp_path: Path) -> None:
    kit_dir = _startup_kit(tmp_path)
    before = _nvflare_components(kit_dir)
    assert type(before["job_manager"]) is SimpleJobDefManager

    ns = _namespace()
    kit.configure(str(kit_dir), "redis://127.0.0.1:1/0", namespace=ns)  # nothing listens there
    components = _nvflare_components(kit_dir)  # builds without connecting
    manager = components["job_manager"]
    try:
        assert isinstance(manager, RedisJobDefManager)
        assert isinstance(manager, JobDefManagerSpec)
        assert (manager.url, manager.namespace) == ("redis://127.0.0.1:1/0", ns)
        assert (manager.uri_root, manager.job_store_id) == ("/tmp/nvflare/jobs-storage", "job_store")
        assert set(components) == set(before)
        assert isinstance(components["job_scheduler"], DefaultJobScheduler)
    finally:
        manager.close()


def test_get_job_waits_out_a_short_outage(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """NVFlare's job runner reads get_job(...).meta unchecked: while Redis is away for less than
    scheduling_patience, get_job waits for it and answers, rather than return None. (The
    client's own retries are off here, so the adapter's patience is what is measured.)"""
    binary = find_redis_server()
    if binary is None:
        pytest.fail("no redis-server: install it (apt-get install redis-server)", pytrace=False)
    server = RedisServer(binary)
    m, ctx = _standalone(tmp_path, server.url, scheduling_patience=10.0, retries=0)
    try:
        jid = m.create({"name": "patient"}, _app_zip("patient"), ctx)["job_id"]
        os.kill(server.proc.pid, signal.SIGSTOP)  # calls now time out
        resume = threading.Timer(0.8, os.kill, (server.proc.pid, signal.SIGCONT))
        resume.start()
        with caplog.at_level(logging.WARNING, logger="redisjobs.nvflare"):
            started = time.monotonic()
            job = m.get_job(jid, ctx)
        resume.join()
        assert job is not None and job.job_id == jid
        assert time.monotonic() - started >= 0.5
        assert any("retrying" in r.getMessage() for r in caplog.records)
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
        m.close()
        server.stop()
