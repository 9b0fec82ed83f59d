"""Latency of the job-manager API: redisjobs beside NVFlare's own store and a bare Redis round trip.

    python benchmarks/latency.py [--sizes 1000,10000,100000] [--url URL] [--repeat 200] [--plot]
    redisjobs bench [same options]        (the same harness, from a source checkout)

For each N stored jobs, median and p99 latency of every operation, for:

- ``redis``: redisjobs on a real redis-server (a private one on loopback unless ``--url``);
- ``fakeredis``: redisjobs on fakeredis, in process (``--no-fake`` to skip);
- ``nvflare``: NVFlare's ``SimpleJobDefManager`` on ``FilesystemStorage`` in a temp folder, when
  nvflare is installed (``pip install 'redisjobs[nvflare]'``; ``--no-nvflare`` to skip);

each beside bare redis-py round trips measured in the same run, just before the stores at each N:
PING, and EVALSHA of ``return 1``. That EVALSHA is also timed right after every sample of a
single-job operation of redisjobs on the real server, and the operation's ratio to EVALSHA is to
those timings: over a run of half an hour this machine's speed drifts by up to 2x, and the two
then drift together. Listings keep the floor measured before (a bare call right after a listing
reads slow).

The stores are measured side by side, for the same reason: all of them hold the N jobs at once,
and each operation is sampled in blocks of 20 on one store, then the next, in turn (the order
rotating), so that a ratio between two stores compares them at the same moments. A listing takes
``--repeat`` / 20 samples on each store, then more, up to ``--repeat``, on each store where they took
less than a second in all.
Writes ``benchmarks/results/latency.json`` and ``latency.md`` (a markdown table with ratios), and
``latency.png`` (latency against N) with ``--plot`` (needs matplotlib).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import RESULTS, machine, median, p99, real_server, save, server_info, table

from redisjobs import RedisJobDefManager, RunStatus

KB = 1024
QUEUED_FEW = 10
QUEUED_MANY = 1000
#: Samples of one operation taken on one store before the next store's turn (see ``measure``).
BLOCK = 20
#: A listing takes a few samples on every store, then more, in blocks, on each store whose samples
#: of it took less than this many seconds so far, up to ``--repeat`` (see ``measure``).
LISTING_BUDGET = 1.0


class Target:
    """One store under test, with NVFlare's calling convention (``fl_ctx`` last)."""

    def __init__(
        self, name: str, manager: Any, fl_ctx: Any = None, cleanup: Callable[[], None] | None = None
    ):
        self.name, self.m, self.ctx = name, manager, fl_ctx
        self.cleanup = cleanup or (lambda: None)

    def create(self, meta: dict[str, Any], content: bytes) -> str:
        return str(self.m.create(meta, content, self.ctx)["job_id"])


def redis_target(url: str, namespace: str) -> Target:
    m = RedisJobDefManager(url, namespace=namespace)

    def cleanup() -> None:
        for key in list(m.client.scan_iter(match=f"rj:{{{namespace}*", count=10_000)):
            m.client.unlink(key)

    cleanup()
    return Target("redis", m, cleanup=cleanup)


def fake_target() -> Target:
    import fakeredis

    return Target("fakeredis", RedisJobDefManager(client=fakeredis.FakeRedis()))


def nvflare_target() -> Target | None:
    try:
        from unittest.mock import MagicMock

        from nvflare.apis.fl_context import FLContextManager
        from nvflare.apis.impl.job_def_manager import SimpleJobDefManager
        from nvflare.apis.server_engine_spec import ServerEngineSpec
        from nvflare.app_common.storages.filesystem_storage import FilesystemStorage
    except ImportError:
        return None
    folder = tempfile.mkdtemp(prefix="redisjobs-bench-nvflare-")
    engine = MagicMock(spec=ServerEngineSpec)
    engine.get_component.return_value = FilesystemStorage()
    ctx = FLContextManager(engine=engine).new_context()
    manager = SimpleJobDefManager(uri_root=os.path.join(folder, "jobs"))
    return Target("nvflare", manager, ctx, cleanup=lambda: shutil.rmtree(folder, ignore_errors=True))


def populate(t: Target, n: int, queued: int, content: bytes) -> list[str]:
    """n jobs, of which ``queued`` stay SUBMITTED and the rest are finished."""
    ids = [t.create({"name": f"bench-{i}"}, content) for i in range(n)]
    for jid in ids[: n - queued]:
        t.m.set_status(jid, RunStatus.FINISHED_COMPLETED, t.ctx)
    return ids


def measure(
    made: list[Target], n: int, repeat: int, small: bytes, big: bytes, floor: Callable[[], Any] | None = None
) -> tuple[dict[str, dict[str, list[float]]], dict[str, list[float]]]:
    """Every operation against every store in ``made``, each holding n jobs (QUEUED_FEW of them
    SUBMITTED): ``{store: {operation: timings}}``, and with ``floor``, that call's timings taken
    beside each of redisjobs's samples of a single-job operation on the real server.

    The stores are measured side by side: a block of samples of an operation on each store in turn
    (the order rotating), then the next blocks. This machine's speed drifts by up to 2x within
    minutes; measured one store after the other, a slow stretch fell on one of them and moved the
    ratio between them by as much. Blocks rather than single samples: a call right after another
    store's (fakeredis's Python, NVFlare's file writes) finds the caches cold, and alternating
    every sample made redisjobs's calls read up to 2.5x slower than in a block.

    A listing can take seconds a call (NVFlare's, at 100,000 jobs), so every store first takes a
    few samples of it, one block each; then a store whose samples of it took less than
    ``LISTING_BUDGET`` seconds in all takes more, in blocks, in turn with the others still under
    it, up to ``repeat``: a median of ten fast samples moves with one slow stretch."""
    r: dict[str, dict[str, list[float]]] = {t.name: {} for t in made}
    beside: dict[str, list[float]] = {}

    def take(
        op: str, fn: Callable[[Target, Any], Any], count: int, before: Callable[[Target], Any] | None = None
    ) -> None:
        # Beside single-job operations only: after a listing, a bare call reads slow for a while
        # (the garbage it left, the server's lazy frees), which would flatter the listing's ratio.
        listing = op.startswith("get_jobs") or op == "get_all_jobs"
        times = {t.name: r[t.name].setdefault(op, []) for t in made}
        spent = dict.fromkeys(times, 0.0)

        def sample(t: Target, n: int) -> None:
            for _ in range(n):
                arg = before(t) if before else None
                start = time.perf_counter()
                fn(t, arg)
                took = time.perf_counter() - start
                times[t.name].append(took)
                spent[t.name] += took
                if floor is not None and t.name == "redis" and not listing:
                    start = time.perf_counter()
                    floor()
                    beside.setdefault(op, []).append(time.perf_counter() - start)

        block = min(BLOCK, count)  # (a listing's few samples: one block, each store in turn)
        turn = 0
        for first in range(0, count, block):
            for t in made[turn:] + made[:turn]:
                sample(t, min(block, count - first))
            turn = (turn + 1) % len(made)
        while listing:  # then more of a listing where they are cheap (see LISTING_BUDGET)
            rotated = made[turn:] + made[:turn]
            more = [t for t in rotated if spent[t.name] < LISTING_BUDGET and len(times[t.name]) < repeat]
            if not more:
                break
            for t in more:
                sample(t, min(BLOCK, repeat - len(times[t.name])))
            turn = (turn + 1) % len(made)

    def each(fn: Callable[[Target], Any]) -> dict[str, Any]:
        return {t.name: fn(t) for t in made}

    ids = each(lambda t: populate(t, n, QUEUED_FEW, small))
    probe = {name: got[-1] for name, got in ids.items()}  # a SUBMITTED job
    few = max(3, repeat // 20)  # listings are slow on some stores: fewer samples
    each(lambda t: t.m.get_jobs_to_schedule(t.ctx))  # NVFlare tags finished jobs on its first scan
    # Reads and in-place updates first, while exactly QUEUED_FEW jobs are queued.
    take("get_job", lambda t, _: t.m.get_job(probe[t.name], t.ctx), repeat)
    # (NVFlare reads the content's format from the meta)
    probe_meta = each(lambda t: t.m.get_job(probe[t.name], t.ctx).meta)
    take("get_content", lambda t, _: t.m.get_content(probe_meta[t.name], t.ctx), repeat)
    take("update_meta", lambda t, _: t.m.update_meta(probe[t.name], {"schedule_count": 1}, t.ctx), repeat)
    take(
        "set_approval",
        lambda t, _: t.m.set_approval(probe[t.name], "admin@example.org", True, "ok", t.ctx),
        repeat,
    )
    take("get_jobs_to_schedule (10 queued)", lambda t, _: t.m.get_jobs_to_schedule(t.ctx), few)
    take("get_all_jobs", lambda t, _: t.m.get_all_jobs(t.ctx), few)
    take("get_jobs_by_status", lambda t, _: t.m.get_jobs_by_status(RunStatus.SUBMITTED, t.ctx), few)
    # Then what adds or removes jobs.
    take("create 2KB", lambda t, _: t.create({"name": "c"}, small), repeat)
    take("create 1MB", lambda t, _: t.create({"name": "c"}, big), max(3, repeat // 10))
    fresh = each(lambda t: iter([t.create({"name": "s"}, small) for _ in range(repeat)]))
    take(
        "set_status",
        lambda t, jid: t.m.set_status(jid, RunStatus.FINISHED_ABORTED, t.ctx),
        repeat,
        lambda t: next(fresh[t.name]),
    )
    doomed = each(lambda t: iter([t.create({"name": "d"}, small) for _ in range(repeat)]))
    take("delete", lambda t, jid: t.m.delete(jid, t.ctx), repeat, lambda t: next(doomed[t.name]))
    each(lambda t: t.cleanup())
    # Half the jobs queued: what a busy server's scheduler reads every second.
    queued = each(lambda t: populate(t, n, n // 2, small)[n - n // 2 :])
    each(lambda t: t.m.get_jobs_to_schedule(t.ctx))
    take("get_jobs_to_schedule (N/2 queued)", lambda t, _: t.m.get_jobs_to_schedule(t.ctx), few)

    # Then 1,000 queued (all N when N is smaller): finish the others, or start over.
    def fewer(t: Target) -> None:
        if n // 2 >= QUEUED_MANY:
            for jid in queued[t.name][QUEUED_MANY:]:
                t.m.set_status(jid, RunStatus.FINISHED_COMPLETED, t.ctx)
        else:
            t.cleanup()
            populate(t, n, min(n, QUEUED_MANY), small)
        t.m.get_jobs_to_schedule(t.ctx)

    each(fewer)
    take(f"get_jobs_to_schedule ({QUEUED_MANY:,} queued)", lambda t, _: t.m.get_jobs_to_schedule(t.ctx), few)
    each(lambda t: t.cleanup())
    return r, beside


def floor(client: redis.Redis, script: Callable[[], Any], repeat: int) -> dict[str, list[float]]:
    """Bare round trips through ``client``: PING, and ``script`` (EVALSHA of ``return 1``)."""

    def sample(fn: Callable[[], Any]) -> list[float]:
        out = []
        for _ in range(repeat * 5):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
        return out

    return {"PING": sample(client.ping), "EVALSHA": sample(script)}


@contextlib.contextmanager
def targets(url: str, fake: bool, nvflare: bool) -> Iterator[list[Target]]:
    made = [redis_target(url, "bench-latency")]
    if fake:
        made.append(fake_target())
    if nvflare:
        nv = nvflare_target()
        if nv is None:
            print("nvflare is not installed: measuring redisjobs only (pip install 'redisjobs[nvflare]')")
        else:
            made.append(nv)
    try:
        yield made
    finally:
        for t in made:
            t.cleanup()


def report(results: dict[str, Any]) -> str:
    """The markdown table: medians (ms) per store, ratios to EVALSHA and to NVFlare."""
    lines = []
    for n, per_target in results["runs"].items():
        floor_ms = {k: median(v) * 1e3 for k, v in results["floor"][n].items()}
        beside = results.get("beside", {}).get(n, {})
        names = list(per_target)
        headers = ["operation", *[f"{t} p50 / p99 ms" for t in names]]
        headers += ["EVALSHA beside ms", "redis / EVALSHA"] if beside else ["redis / EVALSHA"]
        if "nvflare" in names:
            headers.append("nvflare / redis")
        rows = []
        for op in per_target["redis"]:
            meds = {t: median(per_target[t][op]) * 1e3 for t in names}
            row = [op, *[f"{meds[t]:.3f} / {p99(per_target[t][op]) * 1e3:.3f}" for t in names]]
            if beside.get(op):  # the ratio to the EVALSHA timed beside this operation's samples
                row += [
                    f"{median(beside[op]) * 1e3:.3f}",
                    f"{meds['redis'] / (median(beside[op]) * 1e3):.2f}x",
                ]
            else:  # a listing, or results from before there were such timings: the floor before
                row += ["-"] if beside else []
                row.append(f"{meds['redis'] / floor_ms['EVALSHA']:.2f}x")
            if "nvflare" in names:
                row.append(f"{meds['nvflare'] / meds['redis']:.1f}x")
            rows.append(row)
        lines += [
            f"### N = {int(n):,} jobs",
            "",
            f"Bare round trips, measured just before: PING {floor_ms['PING']:.3f} ms, "
            f"EVALSHA {floor_ms['EVALSHA']:.3f} ms (medians)."
            + (
                " For a single-job operation, the ratio to EVALSHA is to the bare EVALSHA timed "
                "right after each of redisjobs's samples of it (the column before it), so that the "
                "two see the machine alike; for a listing, to the floor measured before."
                if beside
                else ""
            ),
            "",
            table(headers, rows),
            "",
        ]
    return "\n".join(lines)


def plot(results: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [int(n) for n in results["runs"]]
    ops = list(next(iter(results["runs"].values()))["redis"])
    fig, axes = plt.subplots(4, 4, figsize=(16, 13))
    for ax, op in zip(axes.flat, ops, strict=False):
        for name in next(iter(results["runs"].values())):
            ax.plot(
                sizes,
                [median(results["runs"][str(n)][name][op]) * 1e3 for n in sizes],
                marker="o",
                label=name,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(op, fontsize=9)
        ax.set_xlabel("stored jobs")
        ax.set_ylabel("median ms")
    axes.flat[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a Redis to measure (default: a private redis-server)")
    parser.add_argument("--sizes", default="1000,10000,100000", help="stored job counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=200, help="samples per single-job operation")
    parser.add_argument("--no-fake", action="store_true", help="skip redisjobs on fakeredis")
    parser.add_argument("--no-nvflare", action="store_true", help="skip NVFlare's filesystem store")
    parser.add_argument("--plot", action="store_true", help="write latency.png (needs matplotlib)")
    parser.add_argument("--out", default=RESULTS, help="folder for the results (default: %(default)s)")
    args = parser.parse_args(argv)
    small, big = os.urandom(2 * KB), os.urandom(1024 * KB)
    results: dict[str, Any] = {"runs": {}, "machine": machine()}
    with real_server(args.url) as url, targets(url, not args.no_fake, not args.no_nvflare) as made:
        results["server"] = server_info(url)
        results["floor"], results["beside"] = {}, {}
        bare_client = redis.Redis.from_url(url)
        bare = bare_client.register_script("return 1")
        bare()
        for n in (int(s) for s in args.sizes.split(",")):
            # The floor for this N, measured just before the stores are (a machine's speed drifts
            # over a run of half an hour); and the same EVALSHA beside each of redisjobs's samples.
            results["floor"][str(n)] = floor(bare_client, bare, args.repeat)
            start = time.monotonic()
            runs, beside = measure(made, n, args.repeat, small, big, bare)
            results["runs"][str(n)] = runs
            results["beside"][str(n)] = beside
            print(f"N={n:,}: measured in {time.monotonic() - start:.0f} s", flush=True)
    text = report(results)
    print()
    print(text)
    save("latency", results, args.out)
    with open(os.path.join(args.out, "latency.md"), "w") as f:
        f.write(text + "\n")
    if args.plot:
        plot(results, os.path.join(args.out, "latency.png"))
    print(
        f"\nresults: {os.path.join(args.out, 'latency.json')}, latency.md"
        + (", latency.png" if args.plot else "")
    )


if __name__ == "__main__":
    main()
