"""Claim throughput with 1, 2, 4 and 8 processes, beside bare EVALSHA calls of a trivial script.

    python benchmarks/claims.py [--url URL] [--processes 1,2,4,8] [--seconds 3]

For each process count P, P processes claim (limit=1) from a deep queue for a fixed time; then the
same P processes call EVALSHA of ``return 1`` for the same time. Both are counted per second, in
the same run, against the same server: the ratio is what the store costs above the floor.

The floor is a bare redis-py call (``Script.__call__``). redisjobs sends its single-command calls
over its own connections (``Lane``), which skip the redis-py pool's per-command work; a third
round measures EVALSHA of ``return 1`` over that lane too, so the table shows both floors.

Each round also reports the CPU time per call of the client processes (user + system, summed
over the processes) and of the server (from INFO), so that a ratio can be read against where the
time went: on a machine with fewer cores than processes, every process's CPU time per call grows.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import time
from typing import Any

import redis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine, real_server, save, server_info, table

from redisjobs import RedisJobDefManager
from redisjobs._connection import lane_for, make_client, make_retry


def _claimer(url: str, ns: str, seconds: float, start: Any, out: Any) -> None:
    m = RedisJobDefManager(url, namespace=ns)
    m.client.ping()
    m.claim("warm-up", limit=1)
    owner = f"p{os.getpid()}"
    start.wait()
    cpu, began = _cpu(), time.perf_counter()
    n, stop = 0, began + seconds
    while time.perf_counter() < stop:
        got = len(m.claim(owner, limit=1, lease=600))
        if not got:
            break  # the queue ran dry: count only the time spent claiming
        n += got
    out.put((n, time.perf_counter() - began, _cpu() - cpu))


def _evalsha(url: str, seconds: float, start: Any, out: Any) -> None:
    client = redis.Redis.from_url(url)
    script = client.register_script("return 1")
    script()
    start.wait()
    cpu, began = _cpu(), time.perf_counter()
    n, stop = 0, began + seconds
    while time.perf_counter() < stop:
        script()
        n += 1
    out.put((n, time.perf_counter() - began, _cpu() - cpu))


def _evalsha_lane(url: str, seconds: float, start: Any, out: Any) -> None:
    client = make_client(url, socket_timeout=5, socket_connect_timeout=5, retry=make_retry(3, 0.05, 1))
    lane = lane_for(client)
    assert lane is not None
    sha = client.script_load("return 1")
    lane.execute("EVALSHA", sha, 0)
    start.wait()
    cpu, began = _cpu(), time.perf_counter()
    n, stop = 0, began + seconds
    while time.perf_counter() < stop:
        lane.execute("EVALSHA", sha, 0)
        n += 1
    out.put((n, time.perf_counter() - began, _cpu() - cpu))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _server_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


class Round:
    """One round: calls per second, and CPU microseconds per call in the clients and the server."""

    def __init__(self, rate: float, client_us: float, server_us: float) -> None:
        self.rate, self.client_us, self.server_us = rate, client_us, server_us


def _rate(ctx: Any, target: Any, args: tuple[Any, ...], procs: int, seconds: float, url: str) -> Round:
    start, out = ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=target, args=(*args, seconds, start, out)) for _ in range(procs)]
    for w in workers:
        w.start()
    time.sleep(1.0)  # let every worker connect and warm up
    admin = redis.Redis.from_url(url)
    server_before = _server_cpu(admin)
    start.set()
    done = [out.get(timeout=seconds + 60) for _ in workers]
    server = _server_cpu(admin) - server_before  # (includes the slowest worker's last call only)
    admin.close()
    for w in workers:
        w.join(timeout=30)
    calls = max(1, sum(n for n, _, _ in done))
    return Round(
        sum(n for n, _, _ in done) / max(elapsed for _, elapsed, _ in done),
        sum(cpu for _, _, cpu in done) / calls * 1e6,
        server / calls * 1e6,
    )


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
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--jobs", type=int, default=25_000, help="queue depth before each round")
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    rows, results = [], []
    with real_server(args.url) as url:
        for p in (int(x) for x in args.processes.split(",")):
            ns = f"bench-claims-{p}"
            fill(url, ns, args.jobs)
            claims = _rate(ctx, _claimer, (url, ns), p, args.seconds, url)
            bare = _rate(ctx, _evalsha, (url,), p, args.seconds, url)
            lean = _rate(ctx, _evalsha_lane, (url,), p, args.seconds, url)
            m = RedisJobDefManager(url, namespace=ns)
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
    print("\nresults:", save("claims", {"results": results, "server": info, "machine": machine()}))


if __name__ == "__main__":
    main()
