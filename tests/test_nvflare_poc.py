"""End to end: a real NVFlare POC (one server, two clients, on loopback) whose job manager is redisjobs.

What it does, as an operator would:

1. ``nvflare poc prepare -n 2`` into a workspace under ``tmp_path`` (``NVFLARE_POC_WORKSPACE``), with
   ``HOME`` pointed into ``tmp_path`` too, because ``poc prepare`` writes ``~/.nvflare/config.conf``.
   The POC's one server port (``fed_learn_port``; the admin port defaults to it) is fixed at 8002 in
   the generated ``project.yml``; it is changed to a free loopback port and the workspace provisioned
   again from that file (``nvflare poc prepare -i project.yml --force``). The internal listeners of
   the server and the clients (for their job processes) are picked free by NVFlare itself.
2. ``redisjobs.kit.configure(<server kit>, url, namespace)`` points the server's ``job_manager`` at
   the session's redis-server, under a namespace of its own.
3. The server and both clients are started by their own ``startup/sub_start.sh --once`` (which
   ``exec``s ``python3 -m nvflare.private.fed.app...``: the PID we hold is the participant's),
   each in a new session, with this interpreter's ``bin`` first on ``PATH`` so that ``python3`` is
   the one that has redisjobs. (``start.sh`` would background ``sub_start.sh``'s restart loop.)
4. A two-round numpy job (ScatterAndGather, NPModelPersistor, NPTrainer; a JobLogStreamer that
   sends each client's log.txt to the server's JobLogReceiver) is built with ``FedJob``, exported
   under ``tmp_path``, submitted through the admin API (``admin@nvidia.com``'s POC kit) and waited
   for until FINISHED:COMPLETED.
5. The job is read back from Redis with a plain ``redisjobs.RedisJobDefManager``: meta, data,
   workspace, the client logs, the admin API's view of them, and the event stream (create, then
   SUBMITTED -> DISPATCHED -> RUNNING -> FINISHED:COMPLETED, all by the server's parent process).
6. Everything started is stopped by PID (admin ``shutdown all``, then the process groups), and the
   test asserts that none of those processes, nor the job processes they spawned, is left.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
import warnings
import zipfile
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

try:
    import nvflare  # noqa: F401
except ImportError as e:
    # In CI a missing NVFlare is an error, never a silent skip.
    if os.environ.get("CI"):
        pytest.fail(
            f"NVFlare is not installed ({e}) but CI is set: pip install -e '.[nvflare,test]'", pytrace=False
        )
    pytest.skip("needs NVFlare: pip install 'redisjobs[nvflare]'", allow_module_level=True)

import psutil
import yaml

from redisjobs import RedisJobDefManager
from redisjobs.kit import ADAPTER, configure
from redisjobs.server import free_port

pytestmark = [
    pytest.mark.nvflare,
    pytest.mark.slow,
    pytest.mark.timeout(900),
    # NVFlare's admin client (in this process) passes aiohttp a deprecated argument; with the
    # project's filterwarnings=error the warning would kill its connector thread.
    pytest.mark.filterwarnings("ignore:ssl_context is deprecated:DeprecationWarning"),
]

CLIENTS = ["site-1", "site-2"]
ADMIN = "admin@nvidia.com"
JOB_NAME = "hello-numpy"
ROUNDS = 2

START_TIMEOUT = 90.0  # server listening, admin login, both clients registered
JOB_TIMEOUT = 240.0
LOGS_TIMEOUT = 60.0  # the clients' logs reach the server after the job has finished
STOP_TIMEOUT = 60.0


# -- helpers ---------------------------------------------------------------------------------------


def _wait(
    what: str,
    check: Callable[[], Any],
    timeout: float,
    interval: float = 0.5,
    diagnostics: Callable[[], str] = lambda: "",
) -> Any:
    """Call ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{diagnostics()}", pytrace=False)
        time.sleep(interval)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"--- {path}: missing"
    return f"--- {path} (last {lines} lines)\n" + "\n".join(text[-lines:])


def _nvflare_env(tmp_path: Path, workspace: Path) -> dict[str, str]:
    """The environment of every NVFlare command and participant this test starts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NVFLARE_")}
    home = tmp_path / "home"
    home.mkdir()
    env["HOME"] = str(home)  # poc prepare writes ~/.nvflare/config.conf
    env["NVFLARE_POC_WORKSPACE"] = str(workspace)
    # The start scripts run `python3` from PATH; it must be this interpreter (it has redisjobs).
    bindir = os.path.dirname(sys.executable)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    python3 = shutil.which("python3", path=env["PATH"])
    assert python3 and os.path.dirname(python3) == bindir, f"no python3 beside {sys.executable}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _nvflare(env: dict[str, str], *args: str) -> None:
    cmd = [sys.executable, "-m", "nvflare.cli", *args]
    done = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"


def _prepare_poc(env: dict[str, str], workspace: Path, tmp_path: Path) -> tuple[Path, int]:
    """Provision a 2-client POC on a free port; return (prod folder, server port)."""
    _nvflare(env, "poc", "prepare", "-n", str(len(CLIENTS)))
    project = yaml.safe_load((workspace / "project.yml").read_text())
    port = free_port()
    servers = [p for p in project["participants"] if p.get("type") == "server"]
    assert len(servers) == 1, project
    servers[0]["fed_learn_port"] = port
    servers[0]["admin_port"] = port
    assert sorted(p["name"] for p in project["participants"] if p.get("type") == "client") == CLIENTS
    # -i refuses a project file inside the workspace it is about to delete.
    project_file = tmp_path / "project.yml"
    project_file.write_text(yaml.safe_dump(project))
    _nvflare(env, "poc", "prepare", "-i", str(project_file), "--force")
    prod = workspace / project["name"] / "prod_00"
    fed_server = json.loads((prod / "server" / "startup" / "fed_server.json").read_text())
    assert fed_server["servers"][0]["admin_port"] == port, fed_server
    admin = json.loads((prod / ADMIN / "startup" / "fed_admin.json").read_text())
    assert admin["admin"]["port"] == port, admin
    return prod, port


def _build_job(job_root: Path) -> Path:
    """A 2-round numpy FedAvg job made with NVFlare's job API, exported under ``job_root``."""
    from nvflare.app_common.aggregators.intime_accumulate_model_aggregator import (
        InTimeAccumulateWeightedAggregator,
    )
    from nvflare.app_common.logging.job_log_streamer import JobLogStreamer
    from nvflare.app_common.np.np_model_persistor import NPModelPersistor
    from nvflare.app_common.np.np_trainer import NPTrainer
    from nvflare.app_common.shareablegenerators.full_model_shareable_generator import (
        FullModelShareableGenerator,
    )
    from nvflare.app_common.workflows.scatter_and_gather import ScatterAndGather
    from nvflare.job_config.api import FedJob

    job = FedJob(name=JOB_NAME, min_clients=len(CLIENTS))
    job.to_server(NPModelPersistor(), id="persistor")
    job.to_server(InTimeAccumulateWeightedAggregator(expected_data_kind="WEIGHTS"), id="aggregator")
    job.to_server(FullModelShareableGenerator(), id="shareable_generator")
    controller = ScatterAndGather(
        min_clients=len(CLIENTS), num_rounds=ROUNDS, persistor_id="persistor", wait_time_after_min_received=0
    )
    job.to_server(controller, id="controller")
    # NPTrainer warns that it is deprecated (with its own "always" filter): keep that out of pytest.
    with warnings.catch_warnings(record=True):
        job.to_clients(NPTrainer(), id="trainer")
    # Stream each client's log.txt to the server parent's JobLogReceiver, which stores it with
    # job_manager.set_client_data(..., "LOG_log.txt"). (A job-level streamer replaces the one the
    # sites' SiteLogStreamer would inject for error_log.txt; target_parent_server as that one has.)
    job.to_clients(JobLogStreamer(target_parent_server=True), id="log_streamer")
    job.export_job(str(job_root))
    folder = job_root / JOB_NAME
    assert (folder / "meta.json").is_file(), sorted(p.name for p in job_root.iterdir())
    return folder


class _Participants:
    """The server and clients we start, each its own session leader, plus what they spawn."""

    def __init__(self, prod: Path, env: dict[str, str], logs: Path) -> None:
        self.prod = prod
        self.env = env
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        # Job processes (NVFlare spawns them with setsid, so they leave our process groups).
        self.spawned: dict[int, psutil.Process] = {}

    def start(self, name: str) -> subprocess.Popen[bytes]:
        kit = self.prod / name
        with open(self.logs / f"{name}.console.log", "wb") as out:
            proc = subprocess.Popen(
                ["bash", str(kit / "startup" / "sub_start.sh"), "--once"],
                cwd=kit, env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.procs[name] = proc
        return proc

    def track(self) -> None:
        """Remember every descendant of our participants (the job processes)."""
        for proc in self.procs.values():
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(proc.pid).children(recursive=True):
                    self.spawned.setdefault(child.pid, child)

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                pytest.fail(f"{name} exited with code {proc.returncode}\n{self.diagnostics()}", pytrace=False)

    def diagnostics(self) -> str:
        parts = []
        for name in self.procs:
            parts.append(_tail(self.logs / f"{name}.console.log", 15))
            parts.append(_tail(self.prod / name / "log.txt"))
        return "\n".join(parts)

    def stop(self) -> None:
        """Stop everything by PID: wait for a graceful exit, then SIGTERM and SIGKILL the groups."""
        self.track()
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
            alive = [p for p in self.procs.values() if p.poll() is None]
            alive_spawned = [p for p in self.spawned.values() if p.is_running()]
            if not alive and not alive_spawned:
                break
            for proc in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)  # start_new_session: its group id is its pid
            for child in alive_spawned:
                # psutil refuses if the pid was reused since we saw it.
                with contextlib.suppress(psutil.Error):
                    child.send_signal(sig)
            for proc in alive:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=grace)
            psutil.wait_procs(alive_spawned, timeout=grace)

    def leftovers(self, marker: str) -> list[str]:
        """Processes of ours still there: participants, spawned job processes, anything that runs
        from our POC workspace (``marker``)."""
        pids = {p.pid for p in self.procs.values()} | set(self.spawned)
        deadline = time.monotonic() + 15  # orphans are reaped by init, not by us
        while True:
            left: list[str] = []
            for pid in sorted(pids):
                try:
                    os.kill(pid, 0)
                    left.append(f"pid {pid} still exists")
                except ProcessLookupError:
                    pass
            for p in psutil.process_iter(["pid", "cmdline"]):
                cmdline = " ".join(p.info["cmdline"] or [])
                if marker in cmdline and p.info["pid"] not in pids:
                    left.append(f"pid {p.info['pid']} runs from the POC workspace: {cmdline[:200]}")
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.5)


@contextlib.contextmanager
def _admin_session(prod: Path, participants: _Participants) -> Iterator[Any]:
    from nvflare.fuel.flare_api.flare_api import new_secure_session

    session = new_secure_session(ADMIN, str(prod / ADMIN), timeout=START_TIMEOUT)
    try:
        yield session
    finally:
        # Shut the whole system down through the server; the caller then stops what is left by PID.
        with contextlib.suppress(Exception):
            participants.track()
            session.shutdown("all", wait=True, timeout=STOP_TIMEOUT)
        with contextlib.suppress(Exception):
            session.close()


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _zip_names(data: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert z.testzip() is None
        return z.namelist()


# -- the test --------------------------------------------------------------------------------------


def test_poc_job_runs_with_redis_job_manager(tmp_path: Path, redis_url: str) -> None:
    began = time.monotonic()
    workspace = tmp_path / "poc"
    env = _nvflare_env(tmp_path, workspace)
    prod, port = _prepare_poc(env, workspace, tmp_path)

    namespace = "nvflare-poc-" + uuid.uuid4().hex[:12]
    edited = configure(str(prod / "server"), url=redis_url, namespace=namespace)
    entry = [c for c in json.loads(Path(edited).read_text())["components"] if c["id"] == "job_manager"]
    assert entry[0]["path"] == ADAPTER and entry[0]["args"]["namespace"] == namespace

    job_folder = _build_job(tmp_path / "jobs")
    participants = _Participants(prod, env, tmp_path)
    store = RedisJobDefManager(redis_url, namespace=namespace)
    try:
        server = participants.start("server")

        def server_up() -> bool:
            participants.check_alive()
            return _listening(port)

        _wait(f"the server on port {port}", server_up, START_TIMEOUT, diagnostics=participants.diagnostics)
        for client in CLIENTS:
            participants.start(client)

        with _admin_session(prod, participants) as session:

            def clients_registered() -> bool:
                participants.check_alive()
                return sorted(c.name for c in session.get_connected_client_list()) == CLIENTS

            _wait("both clients", clients_registered, START_TIMEOUT, 1.0, participants.diagnostics)
            print(f"\nPOC up on port {port} after {time.monotonic() - began:.1f} s")

            jid = session.submit_job(str(job_folder))

            def finished() -> dict[str, Any] | None:
                participants.track()
                participants.check_alive()
                meta: dict[str, Any] = session.get_job_meta(jid)
                return meta if str(meta.get("status", "")).startswith("FINISHED") else None

            api_meta = _wait(f"job {jid} to finish", finished, JOB_TIMEOUT, 1.0, participants.diagnostics)
            print(f"job {jid} {api_meta['status']} after {time.monotonic() - began:.1f} s")
            assert api_meta["status"] == "FINISHED:COMPLETED", participants.diagnostics()

            # The clients' logs arrive after the job has finished.
            def client_logs() -> list[str] | None:
                participants.track()
                names = store.list_components(jid)
                return names if all(f"LOG_log.txt_{c}" in names for c in CLIENTS) else None

            def components() -> str:
                return f"components: {store.list_components(jid)}\n{participants.diagnostics()}"

            _wait("the clients' logs in Redis", client_logs, LOGS_TIMEOUT, 1.0, components)

            # What the admin commands see, through the server and the adapter.
            assert jid in [j["job_id"] for j in session.list_jobs()]
            extra = session.list_job_components(jid)
            assert sorted(extra) == sorted(f"LOG_log.txt_{c}" for c in CLIENTS), extra
            # download_job: get_storage_for_download of data, meta and workspace, unzipped by NVFlare.
            downloaded = Path(session.download_job_result(jid, str(tmp_path / "download")))
            files = {str(p.relative_to(downloaded)) for p in downloaded.rglob("*") if p.is_file()}
            expected = {
                "meta.json",
                f"job/{JOB_NAME}/meta.json",
                "workspace/log.txt",
                "workspace/models/server.npy",
            }
            assert expected <= files, sorted(files)
            assert json.loads((downloaded / "meta.json").read_text())["status"] == "FINISHED:COMPLETED"
        # (the admin session's exit shut the system down)

        # -- the job, read back from Redis with a plain manager ------------------------------------
        meta = store.get_meta(jid)
        assert meta["job_id"] == jid
        assert meta["name"] == JOB_NAME and meta["job_folder_name"] == JOB_NAME
        assert meta["status"] == "FINISHED:COMPLETED"
        assert meta["submitter_name"] == ADMIN
        assert meta["data_storage_format"] == 2
        start = datetime.fromisoformat(meta["start_time"])
        assert start.tzinfo is not None, meta["start_time"]  # 2.9: UTC-aware ISO
        assert meta["start_time"] == api_meta["start_time"]
        h, m, s = meta["duration"].split(":")
        duration = timedelta(hours=int(h), minutes=int(m), seconds=float(s))
        assert timedelta(0) < duration < timedelta(seconds=JOB_TIMEOUT), meta["duration"]
        assert int(meta["schedule_count"]) >= 1
        assert meta["schedule_history"], meta
        assert sorted(meta["job_deploy_detail"]) == sorted(f"{n}: OK" for n in ["server", *CLIENTS])

        # The uploaded job.
        content = store.get_content(meta)
        assert content is not None
        names = _zip_names(content)
        assert f"{JOB_NAME}/meta.json" in names, names
        assert f"{JOB_NAME}/app/config/config_fed_server.json" in names, names

        # The server's run folder, saved when the job ended.
        names = store.list_components(jid)
        assert {"data", "meta", "workspace"} <= set(names), names
        assert not [n for n in names if n.startswith("ERRORLOG")], {
            n: store.get_storage_component(jid, n)[:2000] for n in names if n.startswith("ERRORLOG")
        }
        workspace_zip = store.get_storage_component(jid, "workspace")
        with zipfile.ZipFile(io.BytesIO(workspace_zip)) as z:
            run_files = z.namelist()
            assert "log.txt" in run_files, run_files
            assert "app_server/config/config_fed_server.json" in run_files, run_files
            assert "models/server.npy" in run_files, run_files  # the persisted global model
            server_log = z.read("log.txt").decode(errors="replace")
            server_errors = (
                z.read("error_log.txt").decode(errors="replace") if "error_log.txt" in run_files else ""
            )
        assert not server_errors.strip(), f"the server's job logged errors:\n{server_errors[-4000:]}"
        assert "ScatterAndGather" in server_log or f"Round {ROUNDS - 1}" in server_log, server_log[-2000:]

        # Each client's log.txt, stored by the server with set_client_data.
        for client in CLIENTS:
            log = store.get_client_data(jid, client, "LOG_log.txt")
            assert log, f"no log of {client}"
            assert jid.encode() in log or client.encode() in log, log[-2000:]

        # The calls the server made, from the event stream: one job, one writer (the server's parent).
        events = [e for e in store.events(count=10_000) if e.jid == jid]
        assert [(e.op, e.old, e.new) for e in events] == [
            ("create", "", "SUBMITTED"),
            ("status", "SUBMITTED", "DISPATCHED"),
            ("status", "DISPATCHED", "RUNNING"),
            ("status", "RUNNING", "FINISHED:COMPLETED"),
        ], events
        assert {e.actor for e in events} == {f"{socket.gethostname()}:{server.pid}"}, events
        assert [e.time for e in events] == sorted(e.time for e in events)
        assert store.check_invariants() == []

        # The filesystem store was not used.
        assert not (workspace / "jobs-storage" / jid).exists()
        # Nothing from redisjobs in the server's logs (its warnings and tracebacks would be).
        for log_file in (prod / "server" / "log.txt", tmp_path / "server.console.log"):
            lines = [ln for ln in log_file.read_text(errors="replace").splitlines() if "redisjobs" in ln]
            assert not lines, f"{log_file}:\n" + "\n".join(lines[:50])
    finally:
        participants.stop()
        left = participants.leftovers(str(workspace))
        if left:
            print("LEFT RUNNING:", *left, sep="\n  ")
        with contextlib.suppress(Exception):
            for key in list(store.client.scan_iter(match=f"rj:{{{namespace}*", count=1000)):
                store.client.unlink(key)
        store.close()
        print(f"stopped after {time.monotonic() - began:.1f} s")
    assert not left, left
    for name, proc in participants.procs.items():
        assert proc.returncode is not None, name
        with pytest.raises(ProcessLookupError):
            os.kill(proc.pid, 0)
    for pid in participants.spawned:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
