"""``redisjobs demo``: a short run on the real server and on the embedded fakeredis, Ctrl-C, and the
checks it makes (fed broken event sequences on purpose). Every run is bounded in time and leaves no
process behind.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from redisjobs import Event
from redisjobs._demo import (
    DemoConfig,
    compare_claims,
    find_double_claims,
    percentile,
    plot_latencies,
    progress_line,
    stop_workers,
)
from redisjobs.cli import main

SUBMITTED, DISPATCHED, RUNNING = "SUBMITTED", "DISPATCHED", "RUNNING"
COMPLETED, ABORTED = "FINISHED:COMPLETED", "FINISHED:ABORTED"


def event(n: int, jid: str, op: str, old: str, new: str, actor: str = "server-0") -> Event:
    return Event(f"{n}-0", jid, op, old, new, actor, float(n))


def claim(n: int, jid: str, actor: str = "server-0") -> Event:
    return event(n, jid, "claim", SUBMITTED, DISPATCHED, actor)


def created(n: int, jid: str) -> Event:
    return event(n, jid, "create", "", SUBMITTED, "submitter")


# -- the no-double-claim check -------------------------------------------------------------------


def test_a_job_claimed_twice_without_a_release_is_reported() -> None:
    events = [created(1, "a"), created(2, "b"), claim(3, "a"), claim(4, "b"), claim(5, "a", "server-1")]
    problems = find_double_claims(events)
    assert len(problems) == 1
    assert problems[0].startswith(
        "job a was claimed by server-0 (event 3-0) and again by server-1 (event 5-0)"
    )


def test_a_claim_after_the_job_finished_is_reported() -> None:
    events = [created(1, "a"), claim(2, "a"), event(3, "a", "status", DISPATCHED, RUNNING),
              event(4, "a", "status", RUNNING, COMPLETED), claim(5, "a", "server-1")]  # fmt: skip
    assert [p.split()[1] for p in find_double_claims(events)] == ["a"]


@pytest.mark.parametrize(
    "back",
    [
        event(3, "a", "status", DISPATCHED, SUBMITTED),  # released by its owner
        event(3, "a", "reap", DISPATCHED, SUBMITTED, "admin"),  # its lease ran out
        event(3, "a", "recover", DISPATCHED, SUBMITTED, "server-0"),  # its owner restarted
    ],
)
def test_a_job_back_in_the_queue_may_be_claimed_again(back: Event) -> None:
    events = [created(1, "a"), claim(2, "a"), back, claim(4, "a", "server-1")]
    assert find_double_claims(events) == []
    assert compare_claims(events, {"server-0": ["a"], "server-1": ["a"]}) == []


def test_the_servers_own_lists_are_checked_against_the_stream() -> None:
    events = [created(1, "a"), created(2, "b"), claim(3, "a"), claim(4, "b", "server-1")]
    assert compare_claims(events, {"server-0": ["a"], "server-1": ["b"]}) == []
    # server-1 believes it also got "a": the stream disagrees, and "a" never went back to the queue
    problems = compare_claims(events, {"server-0": ["a"], "server-1": ["b", "a"]})
    assert problems == [
        "job a: server-1 says it claimed it 1 times, the stream says 0",
        "job a was claimed 2 times but went back to SUBMITTED only 0 times",
    ]
    # a claim in the stream that no server reported
    assert compare_claims(events, {"server-0": [], "server-1": ["b"]}) == [
        "job a: server-0 says it claimed it 0 times, the stream says 1"
    ]


def test_percentile_and_progress_line() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.99), percentile([7.0], 0.99)) == (50.0, 99.0, 7.0)
    config = DemoConfig("redis://x", "ns", jobs=10)
    line = progress_line(3.2, {SUBMITTED: 2, RUNNING: 1, COMPLETED: 4, ABORTED: 0}, {"server-0": 3}, config)
    assert line == "    3s  jobs 7/10  queued 2  running 1  completed 4  | claims server-0 3"


def test_plot_writes_a_png_or_says_matplotlib_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    latencies = {"claim": [0.3, 0.4, 2.0], "create": [0.5, 0.6]}
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "matplotlib", None)  # as if not installed
        assert plot_latencies(latencies, tmp_path / "none.png") is False
    assert not (tmp_path / "none.png").exists()
    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    assert plot_latencies(latencies, tmp_path / "lat.png") is True
    assert (tmp_path / "lat.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stopping_workers_is_bounded_and_a_silent_worker_is_a_problem() -> None:
    ctx = multiprocessing.get_context("spawn")
    quiet = ctx.Process(target=time.sleep, args=(0,), name="server-0", daemon=True)
    stuck = ctx.Process(target=time.sleep, args=(60,), name="server-1", daemon=True)
    quiet.start()
    stuck.start()
    started = time.monotonic()
    reports, terminated = stop_workers([quiet, stuck], ctx.Queue(), timeout=2.0)
    assert time.monotonic() - started < 10
    assert terminated == ["server-1"] and not stuck.is_alive()
    assert [p for r in reports for p in r.problems] == [
        "server-0 sent no report (exit code 0)",
        f"server-1 sent no report (exit code -{signal.SIGTERM.value})",
    ]


# -- runs ----------------------------------------------------------------------------------------


def summary_checks(output: str) -> None:
    assert "final status" in output and "p50 ms" in output and "p99 ms" in output
    assert "no job was claimed twice: OK" in output
    assert "indexes consistent (check_invariants): OK" in output
    assert not re.search(r"^FAILED", output, re.M), output


@pytest.mark.real
@pytest.mark.slow
@pytest.mark.timeout(60)
def test_demo_on_the_real_server(redis_url: str, namespace: str, tmp_path: Path) -> None:
    started = time.monotonic()
    args = ["--namespace", namespace, "demo", "--jobs", "20", "--processes", "2", "--seconds", "30", "--url",
            redis_url, "--seed", "7", "--plot", str(tmp_path / "lat.png")]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, (result.output, result.exception)
    assert time.monotonic() - started < 40
    summary_checks(result.stdout)
    assert "all 20 jobs finished" in result.stdout
    assert re.search(r"^server-0 +\d+", result.stdout, re.M) and re.search(
        r"^server-1 +\d+", result.stdout, re.M
    )
    assert re.search(r"^claim +\d+ +[\d.]+ +[\d.]+$", result.stdout, re.M)
    assert f"--namespace {namespace}.demo-" in result.stdout  # where the jobs stay
    assert "submitter: submitted 20" in result.stdout


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_demo_on_the_embedded_fakeredis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDISJOBS_URL", raising=False)
    args = ["demo", "--embedded", "fakeredis", "--jobs", "8", "--processes", "1", "--seconds", "30"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.stdout.startswith("started a private fakeredis server at redis://127.0.0.1:")
    summary_checks(result.stdout)
    assert "all 8 jobs finished" in result.stdout


@contextlib.contextmanager
def demo_process() -> Iterator[subprocess.Popen[str]]:
    """``redisjobs demo`` on a private server, in its own process group (as a shell starts a
    foreground job); killed, with its group, if a test leaves it running."""
    env = {k: v for k, v in os.environ.items() if k != "REDISJOBS_URL"}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from redisjobs.cli import main; main()", "demo", "--seconds", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_ctrl_c_stops_workers_and_server_and_exits_130() -> None:
    with demo_process() as proc:
        assert proc.stdout is not None
        for _ in range(3):  # the start line, the workers line, one progress line
            assert proc.stdout.readline()
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted: workers stopped" in err and "Traceback" not in err
    assert group_is_gone(proc.pid, within=10.0), "a worker or the redis-server outlived the demo"


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_kill_or_a_closed_terminal_stops_workers_and_server(sig: signal.Signals) -> None:
    # kill <pid>, timeout(1) and a closed terminal send these to the demo alone: it cleans up as on
    # Ctrl-C (the private redis-server runs in a session of its own, so nothing else would stop it).
    with demo_process() as proc:
        assert proc.stdout is not None
        started = proc.stdout.readline()  # "started a private <kind> at <url> (removed on exit)"
        url = started.split(" at ", 1)[1].split()[0]
        for _ in range(2):  # the workers line, one progress line
            assert proc.stdout.readline()
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err
    assert group_is_gone(proc.pid, within=10.0), "a worker outlived the demo"
    with redis.Redis.from_url(url, socket_connect_timeout=1) as client, pytest.raises(redis.ConnectionError):
        client.ping()  # the private server is gone


def group_is_gone(pgid: int, within: float) -> bool:
    """Whether every process of the group has exited (the resource tracker goes last, once reaped)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False
