"""Claim throughput with 1, 2, 4 and 8 processes, beside bare EVALSHA calls of a trivial script.

    python benchmarks/claims.py [--url URL] [--processes 1,2,4,8] [--seconds 4] [--slice 0.5] [--out DIR]

For each process count P, P processes claim (limit=1) from a deep queue, and the same P processes
call EVALSHA of ``return 1``, against the same server in the same run: the ratio of the two rates
is what the store costs above the floor.

The two are interleaved: every process follows one timetable of short slices (``--slice``
seconds), claims in one slice, bare EVALSHA in the next, then EVALSHA over redisjobs's lane, and
round again, until each has had ``--seconds``. This machine's speed drifts by up to 2x within
minutes; one round of claims then one of EVALSHA let a slow stretch fall on one side only, and
moved the ratio by as much. Interleaved, the two sides see the machine alike.

The floor is a bare redis-py call (``Script.__call__``). redisjobs sends its single-command calls
over its own connections (``Lane``), which skip the redis-py pool's per-command work; the third
kind of slice measures EVALSHA of ``return 1`` over that lane too, so the table shows both floors.

Each kind also reports the CPU time per call of the client processes (user + system, summed over
the processes) and of the server (from INFO, read at the slices' edges), so that a ratio can be
read against where the time went: on a machine with fewer cores than processes, every process's
CPU time per call grows.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import redis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import RESULTS, machine, real_server, save, server_info, table

from redisjobs import RedisJobDefManager
from redisjobs._connection import lane_for, make_client, make_retry

KINDS = ("claim", "evalsha", "lane_evalsha")


def _callers(url: str, ns: str) -> dict[str, Callable[[], int]]:
    """One call of each kind, warmed up; each returns how many calls it counts (a claim that
    found the queue empty counts none)."""
    m = RedisJobDefManager(url, namespace=ns)
    m.client.ping()
    m.claim("warm-up", limit=1)
    owner = f"p{os.getpid()}"
    client = redis.Redis.from_url(url)
    script = client.register_script("return 1")
    script()
    lean_client = make_client(url, socket_timeout=5, socket_connect_timeout=5, retry=make_retry(3, 0.05, 1))
    lane = lane_for(lean_client)
    assert lane is not None
    sha = lean_client.script_load("return 1")
    lane.execute("EVALSHA", sha, 0)

    def claim() -> int:
        return len(m.claim(owner, limit=1, lease=600))

    def evalsha() -> int:
        script()
        return 1

    def lane_evalsha() -> int:
        lane.execute("EVALSHA", sha, 0)
        return 1

    return {"claim": claim, "evalsha": evalsha, "lane_evalsha": lane_evalsha}


def _worker(
    url: str, ns: str, plan: list[str], slice_s: float, ready: Any, go: Any, start: Any, out: Any
) -> None:
    calls = _callers(url, ns)
    ready.put(os.getpid())
    go.wait()
    t0 = start.value
    done = {kind: [0, 0.0, 0.0] for kind in KINDS}  # calls, seconds, CPU seconds
    for i, kind in enumerate(plan):
        begin, end = t0 + i * slice_s, t0 + (i + 1) * slice_s
        time.sleep(max(0.0, begin - time.time()))
        call = calls[kind]
        cpu, began = _cpu(), time.perf_counter()
        n = 0
        while time.time() < end:
            got = call()
            if not got:
                break  # the queue ran dry (size it with --jobs): count only the time spent claiming
            n += got
        row = done[kind]
        row[0] += n
        row[1] += time.perf_counter() - began
        row[2] += _cpu() - cpu
    out.put(done)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _server_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


class Round:
    """One kind of call: calls per second, and CPU microseconds per call in the clients and the
    server."""

    def __init__(self, rate: float, client_us: float, server_us: float) -> None:
        self.rate, self.client_us, self.server_us = rate, client_us, server_us


def _rounds(ctx: Any, url: str, ns: str, procs: int, seconds: float, slice_s: float) -> dict[str, Round]:
    """The three kinds of call, interleaved in slices, from ``procs`` processes."""
    rounds = max(1, math.ceil(seconds / slice_s))
    plan = [kind for _ in range(rounds) for kind in KINDS]
    ready, out, go, start = ctx.Queue(), ctx.Queue(), ctx.Event(), ctx.Value("d", 0.0)
    args = (url, ns, plan, slice_s, ready, go, start, out)
    workers = [ctx.Process(target=_worker, args=args) for _ in range(procs)]
    for w in workers:
        w.start()
    for _ in workers:
        ready.get(timeout=120)  # every worker connected and warmed up
    admin = redis.Redis.from_url(url)
    start.value = t0 = time.time() + 0.5
    go.set()
    server = dict.fromkeys(KINDS, 0.0)  # the server's CPU seconds, read at each slice's edges
    time.sleep(max(0.0, t0 - time.time()))
    before = _server_cpu(admin)
    for i, kind in enumerate(plan):
        time.sleep(max(0.0, t0 + (i + 1) * slice_s - time.time()))
        now = _server_cpu(admin)
        server[kind] += now - before
        before = now
    done = [out.get(timeout=60) for _ in workers]
    admin.close()
    for w in workers:
        w.join(timeout=30)
    result = {}
    for kind in KINDS:
        calls = sum(d[kind][0] for d in done)
        elapsed = sum(d[kind][1] for d in done) / len(done)  # (each process's time in these slices)
        cpu = sum(d[kind][2] for d in done)
        result[kind] = Round(calls / elapsed, cpu / max(1, calls) * 1e6, server[kind] / max(1, calls) * 1e6)
    return result


def fill(url: str, ns: str, n: int) -> None:
    m = RedisJobDefManager(url, namespace=ns)
    for i in range(n):
        m.create({"name": f"bench-{i}", "priority": i % 4}, b"job")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a Redis to measure (default: a private redis-server)")
    parser.add_argument("--processes", default="1,2,4,8")
    parser.add_argument("--seconds", type=float, default=4.0, help="time each kind of call gets")
    parser.add_argument("--slice", type=float, default=0.5, help="length of one slice of the timetable")
    parser.add_argument(
        "--jobs", type=int, default=80_000, help="queue depth for each process count (enough for --seconds)"
    )
    parser.add_argument("--out", default=RESULTS, help="folder for the results (default: %(default)s)")
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    rows, results = [], []
    with real_server(args.url) as url:
        for p in (int(x) for x in args.processes.split(",")):
            ns = f"bench-claims-{p}"
            fill(url, ns, args.jobs)
            got = _rounds(ctx, url, ns, p, args.seconds, args.slice)
            claims, bare, lean = got["claim"], got["evalsha"], got["lane_evalsha"]
            m = RedisJobDefManager(url, namespace=ns)
            if not m.client.zcard(m.keys.queue):
                print(f"the queue ran dry with {p} processes: claims counted less time (raise --jobs)")
            assert m.check_invariants() == [], "invariants broken under load"
            for key in list(m.client.scan_iter(match=f"rj:{{{ns}*", count=5000)):
                m.client.unlink(key)
            results.append(
                {
                    "processes": p,
                    "claims_per_s": claims.rate,
                    "evalsha_per_s": bare.rate,
                    "ratio": claims.rate / bare.rate,
                    "lane_evalsha_per_s": lean.rate,
                    "lane_ratio": claims.rate / lean.rate,
                    "cpu_us_per_call": {
                        name: {"clients": r.client_us, "server": r.server_us}
                        for name, r in (("claim", claims), ("evalsha", bare), ("lane_evalsha", lean))
                    },
                }
            )
            row = [f"{claims.rate:,.0f}", f"{bare.rate:,.0f}", f"{claims.rate / bare.rate:.2f}"]
            row += [f"{lean.rate:,.0f}", f"{claims.rate / lean.rate:.2f}"]
            row += [
                f"{claims.client_us:.0f} / {claims.server_us:.0f}",
                f"{bare.client_us:.0f} / {bare.server_us:.0f}",
            ]
            rows.append([p, *row])
            print(
                f"{p} processes: {row[0]} claims/s; bare EVALSHA/s {row[1]}, ratio {row[2]}; "
                f"lane EVALSHA/s {row[3]}, ratio {row[4]}; CPU us per claim (clients / server) {row[5]}, "
                f"per bare EVALSHA {row[6]}",
                flush=True,
            )
        info = server_info(url)
    print()
    headers = ["processes", "claims/s", "bare EVALSHA/s", "ratio", "lane EVALSHA/s", "lane ratio"]
    headers += ["CPU µs per claim (clients / server)", "per bare EVALSHA"]
    print(table(headers, rows))
    print("\nresults:", save("claims", {"results": results, "server": info, "machine": machine()}, args.out))


if __name__ == "__main__":
    main()
