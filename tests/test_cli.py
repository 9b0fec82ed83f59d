"""The ``redisjobs`` command, every subcommand through click's CliRunner, and redisjobs.testing.

Commands run against the session's real redis-server (``--url``), each test in its own namespace;
one test repeats the basics on a fakeredis TCP server (no INFO there). Error paths check the
promise of the CLI: one ``error:`` line on stderr, exit code 1, no traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
from click.testing import CliRunner, Result

from redisjobs import RedisJobDefManager, RunStatus
from redisjobs.cli import format_table, human_bytes, main, parse_status, redact
from redisjobs.server import free_port
from redisjobs.testing import fake_manager

Run = Callable[..., Result]
UNREACHABLE = "redis://127.0.0.1:1/0"


@pytest.fixture
def store(redis_url: str, namespace: str) -> Iterator[RedisJobDefManager]:
    """The manager behind the commands, to set up and check what they do."""
    with RedisJobDefManager(redis_url, namespace=namespace) as m:
        yield m


def runner(url: str, namespace: str) -> Run:
    def run(*args: str, input: bytes | str | None = None, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(main, ["--url", url, "--namespace", namespace, *args], input=input, env=env)

    return run


@pytest.fixture
def run(redis_url: str, namespace: str) -> Run:
    return runner(redis_url, namespace)


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def error_line(result: Result, code: int = 1) -> str:
    """The one error line of a failed command (and the checks that it is only that)."""
    assert result.exit_code == code, (result.output, result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def job_folder(root: Path, name: str = "hello-numpy", meta: dict[str, Any] | None = None) -> Path:
    folder = root / name
    (folder / "app" / "config").mkdir(parents=True)
    (folder / "app" / "config" / "config_fed_server.json").write_text('{"format_version": 2}')
    if meta is not None:
        (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def submitted(run: Run, path: Path, *options: str) -> str:
    jid = ok(run("submit", str(path), *options)).strip()
    assert len(jid) == 36, jid
    return jid


def show(run: Run, jid: str) -> dict[str, Any]:
    return json.loads(ok(run("show", jid, "--json")))  # type: ignore[no-any-return]


# -- help ----------------------------------------------------------------------------------------


# `bench --help` is the harness's own help, printed by its process: test_bench_runs_the_latency_harness.
@pytest.mark.parametrize("command", [[], *([name] for name in sorted(main.commands) if name != "bench")])
def test_help_of_every_command(command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Usage: ")
    if command:
        assert main.commands[command[0]].help


def test_usage_error_exits_2() -> None:
    result = CliRunner().invoke(main, ["show"])
    assert result.exit_code == 2
    assert "Missing argument 'JID'" in result.stderr


# -- submit, list, show, download ----------------------------------------------------------------


def test_submit_a_folder_with_meta_and_read_it_back(run: Run, tmp_path: Path) -> None:
    folder = job_folder(
        tmp_path, meta={"name": "from-meta", "deploy_map": {"app": ["@ALL"]}, "min_clients": 2}
    )
    jid = submitted(run, folder, "--priority", "3")

    meta = show(run, jid)["meta"]
    assert meta["name"] == "from-meta" and meta["priority"] == 3 and meta["min_clients"] == 2
    assert meta["job_folder_name"] == "hello-numpy" and meta["status"] == "SUBMITTED"

    out = tmp_path / "data.zip"
    assert "wrote data" in ok(run("download", jid, "-o", str(out)))
    with zipfile.ZipFile(out) as z:  # NVFlare's layout: the job folder at the top
        assert sorted(z.namelist()) == [
            "hello-numpy/app/config/config_fed_server.json",
            "hello-numpy/meta.json",
        ]


def test_submit_a_zip_keeps_it_and_takes_its_meta_and_name(run: Run, tmp_path: Path) -> None:
    archive = tmp_path / "job.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("cifar/meta.json", '{"name": "cifar10", "priority": 1}')
        z.writestr("cifar/app/config/config_fed_client.json", "{}")
    jid = submitted(run, archive, "--name", "renamed")

    assert archive.exists()  # the user's file is not consumed
    meta = show(run, jid)["meta"]
    assert (meta["name"], meta["priority"], meta["job_folder_name"]) == ("renamed", 1, "cifar")


def test_submit_takes_the_job_folder_name_from_what_it_uploads(run: Run, tmp_path: Path) -> None:
    # A job downloaded, then renamed: its meta.json still names the old folder. The app is found
    # by job_folder_name, so it must name the folder the zip holds (as NVFlare's submit sets it).
    folder = job_folder(tmp_path, "renamed", meta={"name": "x", "job_folder_name": "orig"})
    jid = submitted(run, folder)
    assert show(run, jid)["meta"]["job_folder_name"] == "renamed"
    archive = tmp_path / "job.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("inzip/meta.json", '{"name": "y", "job_folder_name": "orig"}')
        z.writestr("inzip/app/config/config_fed_server.json", "{}")
    jid = submitted(run, archive)
    assert show(run, jid)["meta"]["job_folder_name"] == "inzip"


def test_submit_of_a_damaged_zip_is_one_line_that_says_so(run: Run, tmp_path: Path) -> None:
    archive = tmp_path / "job.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("j/meta.json", '{"name": "y"}')
    data = bytearray(archive.read_bytes())
    at = data.index(b'{"name"')
    data[at + 2] ^= 0xFF  # meta.json's bytes no longer match their CRC
    archive.write_bytes(bytes(data))
    line = error_line(run("submit", str(archive)))
    assert "damaged zip" in line and "unexpected" not in line


def test_submit_without_meta_names_the_job_after_the_folder(run: Run, tmp_path: Path) -> None:
    jid = submitted(run, job_folder(tmp_path, "plain"))
    assert show(run, jid)["meta"]["name"] == "plain"


def test_list_as_table_and_json_and_by_status(run: Run, tmp_path: Path) -> None:
    assert "no jobs" in ok(run("list"))
    first = submitted(run, job_folder(tmp_path, "a"))
    second = submitted(run, job_folder(tmp_path, "b"), "--priority", "2")
    ok(run("status", second, "aborted"))

    table = ok(run("list")).splitlines()
    assert table[0].split() == ["job", "id", "name", "status", "priority", "submitted", "duration"]
    assert [line.split()[0] for line in table[1:]] == [first, second]  # submit order
    assert "FINISHED:ABORTED" in table[2]

    listed = json.loads(ok(run("list", "--json")))
    assert [m["job_id"] for m in listed] == [first, second]
    assert [m["job_id"] for m in json.loads(ok(run("list", "--status", "COMPLETED", "--json")))] == []
    assert [m["job_id"] for m in json.loads(ok(run("list", "--status", "submitted", "--json")))] == [first]
    assert "no jobs with status FINISHED:COMPLETED" in ok(run("list", "--status", "finished:completed"))


def test_show_lists_components_and_the_lease(run: Run, store: RedisJobDefManager, tmp_path: Path) -> None:
    jid = submitted(run, job_folder(tmp_path))
    text = ok(run("show", jid))
    assert "job_folder_name" in text and "hello-numpy" in text and "lease: none" in text

    store.claim("server-7", lease=60)
    store.save_workspace(jid, b"w" * 3000)
    shown = show(run, jid)
    assert shown["components"] == {"meta": None, "data": shown["components"]["data"], "workspace": 3000}
    assert shown["lease"]["owner"] == "server-7" and shown["lease"]["expires"] > time.time() + 50
    text = ok(run("show", jid))
    assert "workspace  2.9 KiB" in text and "held by server-7" in text


def test_download_components_to_files_and_stdout(run: Run, store: RedisJobDefManager, tmp_path: Path) -> None:
    jid = submitted(run, job_folder(tmp_path))
    store.save_workspace(jid, b"workspace bytes")

    ok(run("download", jid, "workspace", "-o", str(tmp_path / "ws.bin")))
    assert (tmp_path / "ws.bin").read_bytes() == b"workspace bytes"
    ok(run("download", jid, "meta", "-o", str(tmp_path / "meta.json")))
    assert json.loads((tmp_path / "meta.json").read_text())["job_id"] == jid
    result = run("download", jid, "workspace", "-o", "-")
    assert result.exit_code == 0 and result.stdout_bytes == b"workspace bytes"
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".redisjobs-")]  # no temporary left


def test_big_transfers_show_progress(run: Run, tmp_path: Path) -> None:
    folder = job_folder(tmp_path)
    (folder / "weights.bin").write_bytes(os.urandom(5 * 1024 * 1024))  # random: the zip stays > 4 MiB
    result = run("submit", str(folder))
    jid = ok(result).strip()
    assert "uploading" in result.stderr

    result = run("download", jid, "-o", str(tmp_path / "back.zip"))
    assert result.exit_code == 0 and "downloading" in result.stderr
    with zipfile.ZipFile(tmp_path / "back.zip") as z:
        assert z.read("hello-numpy/weights.bin") == (folder / "weights.bin").read_bytes()


# -- approve, status, clone, delete --------------------------------------------------------------


def test_approve_and_reject(run: Run, tmp_path: Path) -> None:
    jid = submitted(run, job_folder(tmp_path))
    assert "approved by alice" in ok(run("approve", jid, "--reviewer", "alice", "--note", "fine"))
    assert "rejected by bob" in ok(run("approve", jid, "--reviewer", "bob", "--reject"))
    assert show(run, jid)["meta"]["approvals"] == {"alice": [True, "fine"], "bob": [False, ""]}


def test_status_moves_checks_and_compares(run: Run, tmp_path: Path) -> None:
    jid = submitted(run, job_folder(tmp_path))
    line = error_line(run("status", jid, "RUNNING", "--expected", "DISPATCHED"))
    assert "is SUBMITTED, not DISPATCHED" in line

    assert (
        ok(run("status", jid, "DISPATCHED", "--expected", "submitted")).strip()
        == f"job {jid}: now DISPATCHED"
    )
    assert "now RUNNING" in ok(run("status", jid, "running"))
    assert "now FINISHED:COMPLETED" in ok(run("status", jid, "COMPLETED"))
    assert "already FINISHED:COMPLETED, nothing changed" in ok(run("status", jid, "FINISHED:COMPLETED"))
    assert "cannot go from FINISHED:COMPLETED to SUBMITTED" in error_line(run("status", jid, "SUBMITTED"))


def test_clone_copies_content_and_settings(run: Run, tmp_path: Path) -> None:
    jid = submitted(run, job_folder(tmp_path, meta={"name": "orig", "deploy_map": {"app": ["site-1"]}}))
    ok(run("status", jid, "ABORTED"))
    copy = ok(run("clone", jid, "--name", "again")).strip()

    meta = show(run, copy)["meta"]
    assert meta["cloned_from"] == jid and meta["name"] == "again" and meta["status"] == "SUBMITTED"
    assert meta["deploy_map"] == {"app": ["site-1"]}
    ok(run("download", copy, "-o", str(tmp_path / "a.zip")))
    ok(run("download", jid, "-o", str(tmp_path / "b.zip")))
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()


def test_delete(run: Run, store: RedisJobDefManager, tmp_path: Path) -> None:
    jid = submitted(run, job_folder(tmp_path))
    assert ok(run("delete", jid)).strip() == f"deleted job {jid}"
    assert store.get_job(jid) is None
    assert store.check_invariants() == []


# -- watch, stats, gc, reap ----------------------------------------------------------------------


def test_watch_prints_one_line_per_event(run: Run, store: RedisJobDefManager, tmp_path: Path) -> None:
    jid = submitted(run, job_folder(tmp_path))
    ok(run("approve", jid, "--reviewer", "alice"))
    ok(run("status", jid, "ABORTED"))

    lines = ok(run("watch", "--since", "0", "--idle-timeout", "0.2")).splitlines()
    assert [line.split()[2] for line in lines] == ["create", "approval", "status"]
    assert all(jid in line for line in lines)
    assert "SUBMITTED -> FINISHED:ABORTED" in lines[2]

    resumed = ok(run("watch", "--since", lines[1].split()[0], "--idle-timeout", "0.2")).splitlines()
    assert resumed == lines[2:]
    assert ok(run("watch", "--idle-timeout", "0.2")) == ""  # default: only new events


def test_stats_counts_jobs_queue_blobs_and_memory(
    run: Run, store: RedisJobDefManager, tmp_path: Path
) -> None:
    jid = submitted(run, job_folder(tmp_path))
    submitted(run, job_folder(tmp_path, "second"))
    store.save_workspace(jid, b"x" * 100_000)
    ok(run("status", jid, "ABORTED"))

    figures = json.loads(ok(run("stats", "--json")))
    data = sum(show(run, j)["components"]["data"] for j in store.iter_job_ids())
    assert figures["jobs"] == 2 and figures["queue"] == 1 and figures["leases"] == 0
    assert figures["statuses"]["SUBMITTED"] == 1 and figures["statuses"]["FINISHED:ABORTED"] == 1
    assert figures["blob_bytes"] == data + 100_000
    assert figures["used_memory"] > 0  # a real server has INFO

    text = ok(run("stats"))
    assert "queue depth" in text and "redis used_memory" in text and "n/a" not in text


def test_gc_frees_orphan_chunks(run: Run, store: RedisJobDefManager) -> None:
    assert "freed 0 chunks" in ok(run("gc", "--grace", "0"))
    store.client.set(store.keys.chunk("gone", "data", "v1", 0), b"orphan")
    assert "freed 1 chunks (0 abandoned uploads)" in ok(run("gc", "--grace", "0"))


def test_gc_drops_other_versions_function_libraries_when_asked(run: Run, store: RedisJobDefManager) -> None:
    store.client.function_load(
        "#!lua name=redisjobs_0123456789ab\n"
        "redis.register_function('rj_0123456789ab_x', function() return 1 end)"
    )
    assert "function libraries" not in ok(run("gc"))
    # (containment: a server shared with other tests may hold other versions' libraries too)
    out = ok(run("gc", "--old-functions")).splitlines()[-1]
    assert out.startswith("dropped ") and "function libraries of other versions: " in out
    assert "redisjobs_0123456789ab" in out.split(": ")[1].split(", ")
    assert "redisjobs_0123456789ab" not in ok(run("gc", "--old-functions"))


def test_gc_applies_a_retention_policy(run: Run, store: RedisJobDefManager, tmp_path: Path) -> None:
    ids = [submitted(run, job_folder(tmp_path / str(i))) for i in range(3)]
    for jid in ids:
        store.set_status(jid, "FINISHED:COMPLETED")
    assert ok(run("gc", "--grace", "0")).startswith("expired 0 finished jobs")
    assert ok(run("gc", "--grace", "0", "--keep-last", "1")).startswith("expired 2 finished jobs")
    assert [j.job_id for j in store.get_all_jobs()] == ids[2:]


def test_reap_settles_expired_leases(run: Run, store: RedisJobDefManager, tmp_path: Path) -> None:
    jid = submitted(run, job_folder(tmp_path))
    assert ok(run("reap")).strip() == "no expired leases"
    store.claim("server-1", lease=0.05)
    time.sleep(0.2)
    table = ok(run("reap")).splitlines()
    assert table[1].split() == [jid, "DISPATCHED", "SUBMITTED", "server-1"]


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["list"],
        ["show", "abc"],
        ["stats"],
        ["watch", "--idle-timeout", "1"],
        ["gc"],
        ["reap"],
        ["approve", "abc", "--reviewer", "r"],
        ["status", "abc", "ABORTED"],
        ["download", "abc", "-o", "out.zip"],
        ["delete", "abc"],
        ["clone", "abc"],
        ["submit", "JOB"],
        ["demo", "--jobs", "1"],
    ],
)
def test_unreachable_redis_is_one_clear_line(args: list[str], tmp_path: Path) -> None:
    args = [str(job_folder(tmp_path)) if a == "JOB" else a for a in args]
    line = error_line(runner(UNREACHABLE, "ns")(*args))
    assert line.startswith(f"error: cannot reach Redis at {UNREACHABLE}: ")
    assert line.endswith("Start one (docker compose up -d) or pass --url")


def test_the_demo_names_the_redis_it_could_not_reach(redis_url: str) -> None:
    result = runner(redis_url, "ns")("demo", "--url", UNREACHABLE)
    assert error_line(result).startswith(f"error: cannot reach Redis at {UNREACHABLE}: ")
    assert result.stdout == ""


def test_debug_shows_the_traceback_instead() -> None:
    result = CliRunner().invoke(main, ["--url", UNREACHABLE, "--debug", "list"])
    assert result.exit_code == 1
    assert isinstance(result.exception, redis.ConnectionError)


@pytest.mark.parametrize(
    "args",
    [
        ["show", "nope"],
        ["approve", "nope", "--reviewer", "r"],
        ["status", "nope", "ABORTED"],
        ["download", "nope", "-o", "x"],
        ["delete", "nope"],
        ["clone", "nope"],
    ],
)
def test_unknown_job(run: Run, args: list[str]) -> None:
    assert (
        error_line(run(*args)) == "error: job 'nope' not found: check the id (list jobs to see what exists)"
    )


def test_invalid_job_id(run: Run) -> None:
    assert error_line(run("show", "../etc")).startswith("error: invalid job id '../etc'")


def test_bad_status(run: Run, tmp_path: Path) -> None:
    jid = submitted(run, job_folder(tmp_path))
    line = error_line(run("status", jid, "done"))
    assert line.startswith(f"error: invalid status 'done' for job '{jid}': use one of SUBMITTED")
    assert "SUBMITTED, APPROVED" in line and "FINISHED:ABANDONED" in line
    assert "use one of SUBMITTED" in error_line(run("list", "--status", "DONE"))
    assert "invalid status 'nope'" in error_line(run("status", jid, "ABORTED", "--expected", "nope"))


def test_bad_files(run: Run, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a zip")
    assert error_line(run("submit", str(text))) == (
        f"error: {text} is neither a folder nor a zip file. Pass a job folder, or a .zip of one"
    )
    missing = tmp_path / "missing"
    assert (
        error_line(run("submit", str(missing))) == f"error: no such file or folder: {missing}. Check the path"
    )
    folder = job_folder(tmp_path)
    (folder / "meta.json").write_text("{not json")
    assert "meta.json is not valid JSON" in error_line(run("submit", str(folder)))
    (folder / "meta.json").write_text("[1, 2]")
    assert "must hold a JSON object, not list" in error_line(run("submit", str(folder)))
    (folder / "meta.json").write_text('{"priority": "high"}')
    assert "priority must be an int" in error_line(run("submit", str(folder)))


def test_missing_or_invalid_component(run: Run, tmp_path: Path) -> None:
    jid = submitted(run, job_folder(tmp_path))
    line = error_line(run("download", jid, "workspace", "-o", str(tmp_path / "w")))
    assert (
        line
        == f"error: job '{jid}' has no component 'workspace'. See its components with: redisjobs show {jid}"
    )
    assert "invalid component 'secrets'" in error_line(
        run("download", jid, "secrets", "-o", str(tmp_path / "w"))
    )
    assert not (tmp_path / "w").exists()


def test_bad_namespace(redis_url: str) -> None:
    assert "invalid namespace 'a b'" in error_line(runner(redis_url, "a b")("list"))


# -- settings, helpers ---------------------------------------------------------------------------


def test_url_and_namespace_from_the_environment(
    run: Run, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    jid = submitted(run, job_folder(tmp_path))
    env = {"REDISJOBS_URL": redis_url, "REDISJOBS_NAMESPACE": namespace}
    assert jid in ok(CliRunner().invoke(main, ["list"], env=env))


def test_commands_work_on_a_fakeredis_server(tmp_path: Path) -> None:
    port = free_port()
    server = fakeredis.TcpFakeServer(("127.0.0.1", port), server_type="redis")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        run = runner(f"redis://127.0.0.1:{port}/0", "fake")
        jid = submitted(run, job_folder(tmp_path))
        assert jid in ok(run("list"))
        figures = json.loads(ok(run("stats", "--json")))
        assert figures["jobs"] == 1 and figures["used_memory"] is None  # fakeredis has no INFO
        assert "redis used_memory  n/a" in ok(run("stats"))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_format_table_aligns_text_left_and_numbers_right() -> None:
    table = format_table(["name", "n", "ratio"], [["a", 5, 0.5], ["long-name", 12345, None]])
    assert table.splitlines() == [
        "name           n  ratio",
        "a              5   0.50",
        "long-name  12345      -",
    ]


def test_small_helpers() -> None:
    assert (
        human_bytes(512) == "512 B" and human_bytes(1536) == "1.5 KiB" and human_bytes(5 << 30) == "5.0 GiB"
    )
    assert redact("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert redact("rediss://user:pw@host/1") == "rediss://user:***@host/1"
    assert redact("redis://host:6379/0") == "redis://host:6379/0"
    assert parse_status("aborted") == "FINISHED:ABORTED"
    assert parse_status("Running") == "RUNNING"
    assert parse_status("finished:completed") == "FINISHED:COMPLETED"
    assert parse_status("done") == "done"


def test_errors_from_the_library_are_mapped_to_one_line() -> None:
    @main.command("boom-test", hidden=True)
    def boom() -> None:
        raise RuntimeError("something odd")

    try:
        line = error_line(CliRunner().invoke(main, ["boom-test"]))
    finally:
        main.commands.pop("boom-test")
    assert (
        line
        == "error: unexpected RuntimeError: something odd. Run again with --debug, and report the traceback"
    )


def test_ctrl_c_exits_130() -> None:
    @main.command("interrupt-test", hidden=True)
    def interrupt() -> None:
        raise KeyboardInterrupt

    try:
        result = CliRunner().invoke(main, ["interrupt-test"])
    finally:
        main.commands.pop("interrupt-test")
    assert result.exit_code == 130 and "Traceback" not in result.output


# -- redisjobs.testing (installed as a pytest plugin) --------------------------------------------


def test_the_redisjobs_store_fixture(redisjobs_store: RedisJobDefManager) -> None:
    jid = redisjobs_store.create({"name": "t"}, b"content")["job_id"]
    assert redisjobs_store.claim("srv")[0].job_id == jid
    assert redisjobs_store.namespace.startswith("test-")
    assert isinstance(redisjobs_store.client, fakeredis.FakeRedis)


def test_fake_manager_shares_a_server_when_asked() -> None:
    server = fakeredis.FakeServer()
    with (
        fake_manager(server=server, namespace="shared") as a,
        fake_manager(server=server, namespace="shared") as b,
    ):
        jid = a.create({}, b"x")["job_id"]
        b.set_status(jid, RunStatus.FINISHED_ABORTED)
        assert a.get_meta(jid)["status"] == "FINISHED:ABORTED"
    with fake_manager() as alone:
        assert alone.get_all_jobs() == []


def test_the_plugin_adds_no_autouse_fixture_and_imports_no_fakeredis(request: pytest.FixtureRequest) -> None:
    import redisjobs.testing as testing

    assert "redisjobs_store" not in request.fixturenames
    assert not hasattr(testing, "fakeredis")  # imported only when a store is built


def test_bench_runs_the_latency_harness(redis_url: str, tmp_path: Path) -> None:
    """`redisjobs bench` is benchmarks/latency.py: its options pass through, --url included."""
    cli = [sys.executable, "-c", "from redisjobs.cli import main; main()"]
    shown = subprocess.run([*cli, "bench", "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "--sizes" in shown.stdout and "EVALSHA" in shown.stdout
    out = tmp_path / "results"
    done = subprocess.run(
        [
            *cli,
            "--url",
            redis_url,
            "bench",
            "--sizes",
            "20",
            "--repeat",
            "3",
            "--no-nvflare",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    table = (out / "latency.md").read_text()
    assert "### N = 20 jobs" in table and "| get_job |" in table and "fakeredis" in table
    assert json.loads((out / "latency.json").read_text())["server"]["url"] == redis_url


def test_the_claims_benchmark_interleaves_claims_with_bare_calls(redis_url: str, tmp_path: Path) -> None:
    """benchmarks/claims.py, briefly: every kind of call gets its slices, and the results add up."""
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "claims.py"
    args = ["--url", redis_url, "--processes", "2", "--seconds", "0.2", "--slice", "0.1", "--jobs", "8000"]
    done = subprocess.run(
        [sys.executable, str(script), *args, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (row,) = json.loads((tmp_path / "claims.json").read_text())["results"]
    assert row["processes"] == 2
    assert row["claims_per_s"] > 0 and row["evalsha_per_s"] > 0 and row["lane_evalsha_per_s"] > 0
    assert row["ratio"] == row["claims_per_s"] / row["evalsha_per_s"]
    assert "ran dry" not in done.stdout
