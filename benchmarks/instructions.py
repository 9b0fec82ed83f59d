"""Client CPU instructions per call, counted by valgrind: a measure that does not move with the machine.

    python benchmarks/instructions.py [--url URL] [--calls 2000] [--ops claim,create,...]

Timings on a shared machine move by 2x within the hour, so a change of 10% in what a call costs
cannot be seen in them. This script counts what the client executes instead: for each operation,
a child process runs under ``valgrind --tool=callgrind`` twice, with the same set-up and warm-up,
once without the measured calls and once with ``--calls`` of them; the difference divided by the
calls is the number of instructions one call executes in this process (Python, redis-py, hiredis,
orjson, libc), the same from run to run within a few percent. It leaves out the kernel (system calls:
sending, receiving, waiting) and the server.

valgrind's CPU has no SHA extensions, so sha256 (a create's content hash) runs OpenSSL's portable
code there: about 30 instructions a byte, where the real CPU needs far fewer. Needs ``valgrind``
on PATH and a Redis (a private ``redis-server`` unless ``--url``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from typing import Any

import redis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine, real_server, save, server_info, table

WARM_UP = 200
OPS = ["evalsha", "lane_evalsha", "get_job", "update_meta", "set_status", "create", "claim"]
WHAT = {
    "evalsha": "redis-py `Script` call of `return 1` (the bare floor)",
    "lane_evalsha": "EVALSHA of `return 1` over redisjobs's lane",
    "get_job": "get_job",
    "update_meta": "update_meta of one field",
    "set_status": "set_status SUBMITTED -> FINISHED:ABORTED",
    "create": "create with 2 KB content",
    "claim": "claim(limit=1)",
}


def child(url: str, namespace: str, op: str, calls: int, most: int) -> None:
    """Set up for ``most`` calls (the same set-up whatever ``calls`` is), warm up, then make
    ``calls`` calls of ``op`` (none when 0)."""
    from redisjobs import RedisJobDefManager, RunStatus

    m = RedisJobDefManager(url, namespace=namespace)
    content = b"x" * 2048
    total = WARM_UP + most
    if op == "evalsha":
        script = m.client.register_script("return 1")
        call: Any = script
    elif op == "lane_evalsha":
        sha, lane = m.client.script_load("return 1"), m._lane
        assert lane is not None, "a plain client has a lane"

        def call() -> None:
            lane.execute("EVALSHA", sha, 0)
    elif op in ("get_job", "update_meta"):
        jid = m.create({"name": "probe"}, content)["job_id"]
        call = (lambda: m.get_job(jid)) if op == "get_job" else (lambda: m.update_meta(jid, {"n": 1}))
    elif op == "set_status":
        ids = iter([m.create({"name": f"s{i}"}, content)["job_id"] for i in range(total)])

        def call() -> None:
            m.set_status(next(ids), RunStatus.FINISHED_ABORTED)
    elif op == "create":

        def call() -> None:
            m.create({"name": "c"}, content)
    elif op == "claim":
        for i in range(total):
            m.create({"name": f"q{i}"}, b"job")

        def call() -> None:
            m.claim("bench", limit=1, lease=600)
    else:
        raise SystemExit(f"unknown operation {op!r}")
    for _ in range(WARM_UP):
        call()
    for _ in range(calls):
        call()


def count(url: str, op: str, calls: int, most: int) -> int:
    """Instructions of one child run making ``calls`` calls (set up for ``most``); its keys are
    removed afterwards, outside the count."""
    namespace = f"bench-instr-{op}-{calls}"
    args = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    args += [sys.executable, os.path.abspath(__file__), "--child", url, namespace, op, str(calls), str(most)]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=1800, check=False)
    finally:
        with redis.Redis.from_url(url) as r:
            for key in list(r.scan_iter(match=f"rj:{{{namespace}[}}/]*", count=10_000)):
                r.unlink(key)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"valgrind run of {op} failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _, _, url, namespace, op, calls, most = sys.argv
        child(url, namespace, op, int(calls), int(most))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a Redis to measure (default: a private redis-server)")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--ops", default=",".join(OPS))
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind not found: install it (Debian: apt-get install valgrind)")
    rows, results = [], {}
    with real_server(args.url) as url:
        for op in args.ops.split(","):
            base = count(url, op, 0, args.calls)
            full = count(url, op, args.calls, args.calls)
            per_call = (full - base) / args.calls
            results[op] = per_call
            rows.append([op, WHAT.get(op, op), f"{per_call / 1000:,.1f}k"])
            print(f"{op}: {per_call:,.0f} instructions per call", flush=True)
        info = server_info(url)
    print()
    print(table(["operation", "what", "client instructions per call"], rows))
    payload = {"instructions_per_call": results, "calls": args.calls, "server": info, "machine": machine()}
    print("\nresults:", save("instructions", payload))


if __name__ == "__main__":
    main()
