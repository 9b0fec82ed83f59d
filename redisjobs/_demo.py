"""``redisjobs demo``: several server processes sharing one job store, watchable live.

Every role is a process of the ``spawn`` context that builds its own ``RedisJobDefManager`` from
the URL (with its role as the manager's ``actor``, so the event stream says who did what):

- ``server-<i>`` loops: ``claim`` -> a short "deploy" pause -> ``set_status(RUNNING, owner=...)``
  -> simulated work, renewing the lease -> ``save_workspace`` (bytes, or a list of files zipped on
  the fly) -> read the workspace back and compare -> ``FINISHED:COMPLETED``, sometimes
  ``EXECUTION_EXCEPTION``; a few jobs fail to start (``FAILED_TO_RUN``) or are released;
- ``submitter`` submits ``jobs`` jobs with priorities 0..3, in bursts;
- ``reviewer`` follows the event stream and approves (or rejects) each new job;
- ``admin`` aborts a few SUBMITTED and DISPATCHED jobs (compare-and-set: an abort that comes too
  late loses cleanly) and reaps expired leases.

Each role times its operations and sends a ``WorkerReport`` back at the end. The parent prints one
line a second, stops the workers when every job is finished or time is up, and checks the run:
``find_double_claims`` (from the event stream), ``compare_claims`` (the servers' own lists against
the stream) and ``check_invariants``.
"""

from __future__ import annotations

import io
import math
import multiprocessing
import os
import queue
import random
import signal
import tempfile
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as StopFlag
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from ._errors import InvalidTransition, NotOwner, StatusConflict
from ._events import Event
from ._lifecycle import FINISHED, STATUSES
from ._types import RunStatus
from .manager import RedisJobDefManager

P = ParamSpec("P")
T = TypeVar("T")

#: Seconds a claim holds a job without renewal; servers renew every RENEW_EVERY seconds of work.
LEASE = 5.0
RENEW_EVERY = 1.0
#: Submitted jobs per second per server process: a little below what the servers can run.
SUBMIT_RATE_PER_SERVER = 1.5
PRIORITIES = (0, 1, 2, 3)
PRIORITY_WEIGHTS = (50, 25, 15, 10)
#: The chance that the admin aborts a job it sees in each status.
ABORT_CHANCE = {RunStatus.SUBMITTED.value: 0.1, RunStatus.DISPATCHED.value: 0.08}
#: Errors that mean the store took a job away from a server (an abort won, or the lease ran out).
TAKEN_AWAY = (StatusConflict, InvalidTransition, NotOwner)


@dataclass(frozen=True)
class DemoConfig:
    """What to run: the store, how many jobs and servers, for how long, with which seed."""

    url: str
    namespace: str
    jobs: int = 200
    processes: int = 3
    seconds: float = 60.0
    seed: int | None = None

    @property
    def submit_rate(self) -> float:
        """Jobs submitted per second: a little below what the servers can run, or faster if that
        is what it takes to submit every job within three quarters of ``seconds``."""
        return max(SUBMIT_RATE_PER_SERVER * self.processes, self.jobs / (0.75 * self.seconds))

    def rng(self, name: str) -> random.Random:
        """A worker's random source: reproducible with a seed, else fresh."""
        return random.Random(f"{self.seed}-{name}" if self.seed is not None else None)


@dataclass
class WorkerReport:
    """What one worker process did: latencies (ms) per operation, outcomes, claims, problems."""

    name: str
    latencies: dict[str, list[float]] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    #: job ids in the order this server claimed them (servers only)
    claims: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def timed(self, op: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn`` and record how long it took under ``op`` (failures included)."""
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.latencies.setdefault(op, []).append((time.perf_counter() - start) * 1000)


@dataclass
class DemoResult:
    """The outcome of a demo run, for the summary."""

    config: DemoConfig
    elapsed: float
    statuses: dict[str, int]
    reports: list[WorkerReport]
    #: workers that had to be terminated (they did not stop in time)
    terminated: list[str]
    claims_checked: int
    double_claims: list[str]
    invariant_problems: list[str]

    @property
    def worker_problems(self) -> list[str]:
        return [p for r in self.reports for p in r.problems]

    @property
    def ok(self) -> bool:
        return not (self.double_claims or self.invariant_problems or self.worker_problems)

    def latencies(self) -> dict[str, list[float]]:
        """Latencies (ms) per operation, merged over every worker."""
        merged: dict[str, list[float]] = {}
        for report in self.reports:
            for op, values in report.latencies.items():
                merged.setdefault(op, []).extend(values)
        return merged


# -- the checks ----------------------------------------------------------------------------------


def find_double_claims(events: Iterable[Event]) -> list[str]:
    """Jobs claimed again without going back to SUBMITTED since their last claim, one line each.

    ``events`` is the event stream in order. A claim holds the job until an event moves it back to
    SUBMITTED (a release, a reap, a recovery, or its creation anew); finishing does not let go of
    it for claiming purposes, so a claim after a finish is reported too.
    """
    held: dict[str, Event] = {}
    problems: list[str] = []
    for event in events:
        if event.op == "claim":
            first = held.get(event.jid)
            if first is not None:
                problems.append(
                    f"job {event.jid} was claimed by {first.actor} (event {first.id}) and again by "
                    f"{event.actor} (event {event.id}) without going back to SUBMITTED in between"
                )
            held[event.jid] = event
        elif event.new == RunStatus.SUBMITTED.value:
            held.pop(event.jid, None)
    return problems


def compare_claims(events: Iterable[Event], claims: Mapping[str, list[str]]) -> list[str]:
    """Check the servers' own claim lists (owner -> job ids) against the event stream.

    Each server's claims appear in the stream under its name, as often as it says; and a job that
    the servers claimed n times went back to SUBMITTED at least n - 1 times.
    """
    events = list(events)
    stream = Counter((e.jid, e.actor) for e in events if e.op == "claim" and e.actor in claims)
    own = Counter((jid, owner) for owner, jids in claims.items() for jid in jids)
    problems = [
        f"job {jid}: {owner} says it claimed it {own[jid, owner]} times, the stream says {stream[jid, owner]}"
        for jid, owner in sorted(set(stream) | set(own))
        if stream[jid, owner] != own[jid, owner]
    ]
    returns = Counter(e.jid for e in events if e.new == RunStatus.SUBMITTED.value and e.op != "create")
    per_job = Counter(jid for jids in claims.values() for jid in jids)
    problems += [
        f"job {jid} was claimed {n} times but went back to SUBMITTED only {returns[jid]} times"
        for jid, n in sorted(per_job.items())
        if n > returns[jid] + 1
    ]
    return problems


def read_events(m: RedisJobDefManager, batch: int = 1000) -> list[Event]:
    """The whole event stream of ``m``'s namespace, read in batches."""
    out: list[Event] = []
    since = "-"
    while got := m.events(since, count=batch):
        out += got
        since = got[-1].id
    return out


def status_counts(m: RedisJobDefManager) -> dict[str, int]:
    """Jobs per status (every status, zeros included), in one round trip."""
    pipe = m.client.pipeline(transaction=False)
    for key in m.keys.status_sets:
        pipe.scard(key)
    return dict(zip(STATUSES, (int(n) for n in pipe.execute()), strict=True))


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 < q <= 1) of ``values`` (not empty)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# -- the workers ---------------------------------------------------------------------------------


def worker_main(role: str, name: str, config: DemoConfig, stop: StopFlag, reports: Any) -> None:
    """Entry point of a worker process: run ``role`` until ``stop``, then send a ``WorkerReport``.

    It ignores SIGINT from its first instruction on (see ``start_workers``): Ctrl-C is the parent's,
    which stops the workers through ``stop``."""
    report = WorkerReport(name)
    try:
        with RedisJobDefManager(config.url, namespace=config.namespace, actor=name) as m:
            ROLES[role](m, config, stop, report)
    except Exception as exc:
        report.problems.append(f"{name} stopped early: {type(exc).__name__}: {exc}")
    reports.put(report)


def serve(m: RedisJobDefManager, config: DemoConfig, stop: StopFlag, report: WorkerReport) -> None:
    """A server process: claim jobs one at a time and run them."""
    rng = config.rng(report.name)
    with tempfile.TemporaryDirectory(prefix=f"redisjobs-demo-{report.name}-") as scratch:
        while not stop.is_set():
            claimed = report.timed("claim", m.claim, report.name, lease=LEASE)
            if not claimed:
                stop.wait(0.05)
                continue
            jid = claimed[0].job_id
            report.claims.append(jid)
            try:
                outcome = run_job(m, jid, rng, report, Path(scratch))
            except TAKEN_AWAY:
                outcome = "taken away"
            report.counts[outcome] += 1


def run_job(m: RedisJobDefManager, jid: str, rng: random.Random, report: WorkerReport, scratch: Path) -> str:
    """Run one claimed job to its end; return the outcome."""
    owner = report.name
    time.sleep(rng.uniform(0.02, 0.1))  # deploying to the clients: the admin may abort meanwhile
    roll = rng.random()
    if roll < 0.03:
        report.timed("release", m.release, jid, owner)
        return "released"
    if roll < 0.07:
        report.timed("finish", m.set_status, jid, RunStatus.FAILED_TO_RUN, owner=owner)
        return "failed to run"
    report.timed("start", m.set_status, jid, RunStatus.RUNNING, owner=owner, expected=RunStatus.DISPATCHED)
    work(m, jid, rng, report)
    save_and_check_workspace(m, jid, rng, report, scratch)
    failed = rng.random() < 0.08
    final = RunStatus.FINISHED_EXECUTION_EXCEPTION if failed else RunStatus.FINISHED_COMPLETED
    report.timed("finish", m.set_status, jid, final, owner=owner)
    return "exception" if failed else "completed"


def work(m: RedisJobDefManager, jid: str, rng: random.Random, report: WorkerReport) -> None:
    """Sleep like a training run (a few long ones), renewing the lease while it lasts."""
    seconds = rng.uniform(1.5, 3.0) if rng.random() < 0.05 else rng.uniform(0.05, 0.5)
    end = renewed = time.monotonic()
    end += seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(left, 0.25))
        if time.monotonic() - renewed >= RENEW_EVERY:
            report.timed("renew", m.renew, jid, report.name, lease=LEASE)
            renewed = time.monotonic()


def save_and_check_workspace(
    m: RedisJobDefManager, jid: str, rng: random.Random, report: WorkerReport, scratch: Path
) -> None:
    """Save a workspace (bytes, or two files zipped on the fly), read it back and compare."""
    files = {"log.txt": f"job {jid} ran on {report.name}\n".encode(), "model.bin": rng.randbytes(4096)}
    data = rng.randbytes(rng.randint(1_000, 64_000))
    as_files = rng.random() < 0.5
    if as_files:
        for name, content in files.items():
            (scratch / name).write_bytes(content)
        report.timed("save_workspace", m.save_workspace, jid, [str(scratch / name) for name in files])
    else:
        report.timed("save_workspace", m.save_workspace, jid, data)
    got = report.timed("read_workspace", m.get_storage_component, jid, "workspace")
    intact = _unzip(got) == files if as_files else got == data
    if not intact:
        report.problems.append(f"job {jid}: the workspace read back differs from the one saved")


def _unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {name: z.read(name) for name in z.namelist()}


def demo_job_zip() -> bytes:
    """A small NVFlare-shaped job folder, zipped: meta.json and one app."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("demo-job/meta.json", '{"name": "demo-job", "deploy_map": {"app": ["@ALL"]}}')
        z.writestr("demo-job/app/config/config_fed_server.json", '{"format_version": 2, "workflows": []}')
        z.writestr("demo-job/app/config/config_fed_client.json", '{"format_version": 2, "executors": []}')
    return buf.getvalue()


def submit(m: RedisJobDefManager, config: DemoConfig, stop: StopFlag, report: WorkerReport) -> None:
    """The submitter: ``config.jobs`` jobs of mixed priorities, in bursts, at ``submit_rate``."""
    rng = config.rng(report.name)
    content = demo_job_zip()
    submitted = 0
    while submitted < config.jobs and not stop.is_set():
        burst = min(rng.randint(1, 5), config.jobs - submitted)
        for _ in range(burst):
            priority = rng.choices(PRIORITIES, PRIORITY_WEIGHTS)[0]
            meta = {
                "name": f"demo-{submitted:04d}",
                "job_folder_name": "demo-job",
                "priority": priority,
                "deploy_map": {"app": ["@ALL"]},
                "submitter_name": "demo",
            }
            report.timed("create", m.create, meta, content)
            submitted += 1
        stop.wait(burst / config.submit_rate)
    report.counts["submitted"] = submitted


def review(m: RedisJobDefManager, config: DemoConfig, stop: StopFlag, report: WorkerReport) -> None:
    """The reviewer: follow the event stream and approve (nine in ten) or reject each new job."""
    rng = config.rng(report.name)
    since = "-"
    while not stop.is_set():
        events = report.timed("read_events", m.events, since, count=100)
        for event in events:
            if event.op == "create":
                approved = rng.random() < 0.9
                note = "looks good" if approved else "needs a smaller learning rate"
                report.timed("approve", m.set_approval, event.jid, report.name, approved, note)
                report.counts["approved" if approved else "rejected"] += 1
        if events:
            since = events[-1].id
        else:
            stop.wait(0.1)


def administer(m: RedisJobDefManager, config: DemoConfig, stop: StopFlag, report: WorkerReport) -> None:
    """The admin: now and then abort a queued or dispatched job; reap expired leases every second."""
    rng = config.rng(report.name)
    seen: set[tuple[str, str]] = set()
    last_reap = time.monotonic()
    while not stop.wait(0.1):
        queued = report.timed("list_queue", m.get_jobs_to_schedule)
        dispatched = report.timed("list_dispatched", m.get_jobs_by_status, RunStatus.DISPATCHED)
        for job in [*queued, *dispatched]:
            status = job.status or ""
            if (job.job_id, status) not in seen:
                seen.add((job.job_id, status))
                if rng.random() < ABORT_CHANCE.get(status, 0.0):
                    abort(m, job.job_id, status, report)
        if time.monotonic() - last_reap >= 1.0:
            report.counts["reaped"] += len(report.timed("reap", m.reap))
            last_reap = time.monotonic()


def abort(m: RedisJobDefManager, jid: str, status: str, report: WorkerReport) -> None:
    """Abort ``jid`` if it is still in ``status`` (compare-and-set): a server that got there first wins."""
    try:
        report.timed("abort", m.set_status, jid, RunStatus.FINISHED_ABORTED, expected=status)
        report.counts[f"aborted {status.lower()}"] += 1
    except (StatusConflict, InvalidTransition):
        report.counts["abort too late"] += 1


ROLES: dict[str, Callable[[RedisJobDefManager, DemoConfig, StopFlag, WorkerReport], None]] = {
    "server": serve,
    "submitter": submit,
    "reviewer": review,
    "admin": administer,
}


# -- the parent ----------------------------------------------------------------------------------


def new_namespace(base: str) -> str:
    """A fresh namespace for one demo run, so that its checks see only its own jobs."""
    return f"{base}.demo-{uuid.uuid4().hex[:8]}"


def run_demo(config: DemoConfig, echo: Callable[[str], None]) -> DemoResult:
    """Run the demo: start the workers, print a line a second, stop them, check the outcome.

    On KeyboardInterrupt the workers are stopped (bounded, terminated as a last resort) and the
    interrupt is re-raised.
    """
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    reports = ctx.Queue()
    names = [*(f"server-{i}" for i in range(config.processes)), "submitter", "reviewer", "admin"]
    procs = [
        ctx.Process(
            target=worker_main, args=(name.split("-")[0], name, config, stop, reports), name=name, daemon=True
        )
        for name in names
    ]
    with RedisJobDefManager(config.url, namespace=config.namespace, actor="demo") as m:
        m.client.ping()  # fail fast, before any worker starts, when Redis is not there
        echo(
            f"{config.processes} server processes, a submitter, a reviewer and an admin share namespace "
            f"{config.namespace!r}: {config.jobs} jobs, at most {config.seconds:g} s"
        )
        start = time.monotonic()
        try:
            start_workers(procs)
            watch_progress(m, config, procs, start, echo)
        finally:
            stop.set()
            got, terminated = stop_workers(procs, reports)
        elapsed = time.monotonic() - start
        return check_run(m, config, elapsed, got, terminated)


def start_workers(procs: Sequence[BaseProcess]) -> None:
    """Start the workers with SIGINT ignored, which they inherit through exec (Python then installs
    no KeyboardInterrupt handler): a Ctrl-C in the terminal reaches the whole process group, and
    must not kill a worker mid-import or mid-write."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for proc in procs:
            proc.start()
    finally:
        signal.signal(signal.SIGINT, previous)


def watch_progress(
    m: RedisJobDefManager,
    config: DemoConfig,
    procs: Sequence[BaseProcess],
    start: float,
    echo: Callable[[str], None],
) -> None:
    """Print a line a second until every job is finished, time is up, or no server is left."""
    claims: Counter[str] = Counter()
    since = "-"
    tick = start
    while True:
        tick += 1.0
        time.sleep(max(0.0, tick - time.monotonic()))
        for event in _events_since(m, since):
            since = event.id
            if event.op == "claim":
                claims[event.actor] += 1
        counts = status_counts(m)
        elapsed = time.monotonic() - start
        echo(progress_line(elapsed, counts, claims, config))
        total, finished = sum(counts.values()), sum(counts[s] for s in FINISHED)
        servers_alive = any(p.is_alive() for p in procs if p.name.startswith("server-"))
        if (total >= config.jobs and finished == total) or elapsed >= config.seconds or not servers_alive:
            return


def _events_since(m: RedisJobDefManager, since: str) -> list[Event]:
    out: list[Event] = []
    while got := m.events(since, count=1000):
        out += got
        since = got[-1].id
    return out


SHORT_STATUS = {"SUBMITTED": "queued", "EXECUTION_EXCEPTION": "exception", "FAILED_TO_RUN": "failed"}


def short_status(status: str) -> str:
    """A status as the progress line names it: ``FINISHED:EXECUTION_EXCEPTION`` -> ``exception``."""
    name = status.removeprefix("FINISHED:")
    return SHORT_STATUS.get(name, name.lower())


def progress_line(
    elapsed: float, counts: Mapping[str, int], claims: Mapping[str, int], config: DemoConfig
) -> str:
    """One line of live progress: jobs per status (those with any), then claims per server."""
    total = sum(counts.values())
    statuses = "  ".join(f"{short_status(s)} {n}" for s, n in counts.items() if n)
    per_server = "  ".join(f"{name} {claims.get(name, 0)}" for name in sorted(claims))
    parts = [f"{elapsed:5.0f}s", f"jobs {total}/{config.jobs}", *([statuses] if statuses else [])]
    return "  ".join([*parts, f"| claims {per_server or '-'}"])


def stop_workers(
    procs: Sequence[BaseProcess], reports: Any, timeout: float = 15.0
) -> tuple[list[WorkerReport], list[str]]:
    """Collect every worker's report and join them within ``timeout`` seconds, terminating (then
    killing) the ones that do not stop. Returns the reports (a worker that sent none gets one that
    says so, as a problem) and the names of the terminated workers."""
    deadline = time.monotonic() + timeout
    got: list[WorkerReport] = []
    while len(got) < len(procs) and time.monotonic() < deadline:
        try:
            got.append(reports.get(timeout=0.2))
        except queue.Empty:
            if not any(p.is_alive() for p in procs):
                break
    terminated = []
    for proc in procs:
        proc.join(timeout=max(0.1, deadline - time.monotonic()))
        if proc.is_alive():
            terminated.append(proc.name)
            proc.terminate()
            proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5)
    reported = {r.name for r in got}
    got += [
        WorkerReport(p.name, problems=[f"{p.name} sent no report (exit code {p.exitcode})"])
        for p in procs
        if p.name not in reported
    ]
    return got, terminated


def check_run(
    m: RedisJobDefManager,
    config: DemoConfig,
    elapsed: float,
    reports: list[WorkerReport],
    terminated: list[str],
) -> DemoResult:
    """Check the finished run: no double claim (stream and servers' lists) and sound indexes."""
    events = read_events(m)
    claims = {r.name: r.claims for r in reports if r.name.startswith("server-")}
    double = find_double_claims(events) + compare_claims(events, claims)
    if terminated:  # a worker killed mid-upload leaves chunks behind: collect them before checking
        m.gc(grace=0)
    return DemoResult(
        config=config,
        elapsed=elapsed,
        statuses=status_counts(m),
        reports=sorted(reports, key=lambda r: names_order(r.name)),
        terminated=terminated,
        claims_checked=sum(1 for e in events if e.op == "claim"),
        double_claims=double,
        invariant_problems=m.check_invariants(),
    )


def names_order(name: str) -> tuple[int, str]:
    """Servers first (by number), then the other roles by name."""
    head, _, number = name.partition("-")
    return (int(number), "") if head == "server" and number.isdigit() else (1 << 30, name)


def plot_latencies(latencies: Mapping[str, list[float]], path: str | os.PathLike[str]) -> bool:
    """Write a PNG of the latency distribution of each operation (box plots, fastest first, log
    scale); return False, writing nothing, when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    ops = sorted((op for op in latencies if latencies[op]), key=lambda op: percentile(latencies[op], 0.5))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(ops) + 2), 5.5))
    ax.boxplot([latencies[op] for op in ops], whis=(1, 99), flierprops={"markersize": 2})
    ax.set_xticks(
        range(1, len(ops) + 1), [f"{op} ({len(latencies[op])})" for op in ops], rotation=45, ha="right"
    )
    ax.set_yscale("log")
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_title("redisjobs demo: box p25-p75, line p50, whiskers p1-p99")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
