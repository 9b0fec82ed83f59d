"""Blob throughput and memory: redisjobs put/get beside raw pipelined redis-py SET/GET.

    python benchmarks/blobs.py [--url URL] [--sizes 1,100,1024] [--chunk-sizes ...] [--repeat 3]

For each size (MB) it stores the same bytes as a job's workspace (put: ``save_workspace``; get:
``get_storage_component``, sha256 verified) and, in the same run, with raw pipelined SETs/GETs of
the same chunk size (no manifest, no hashing): the floor redisjobs is measured against. The raw
calls go through the manager's own redis-py client, so both sides send large values the same way
(a default client with hiredis copies each value while packing it: ``--plain-client`` measures
that too). It also reports Redis's ``used_memory`` growth per stored byte for each chunk size.
"""

from __future__ import annotations

import argparse
import os
import sys

import redis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine, median, real_server, save, server_info, table, timed

from redisjobs import DEFAULT_CHUNK_SIZE, RedisJobDefManager

MB = 1_000_000


def raw_put(client: redis.Redis, key: str, data: memoryview, cs: int, batch: int = 4) -> None:
    pipe = client.pipeline(transaction=False)
    for i, start in enumerate(range(0, len(data), cs)):
        pipe.set(f"{key}:{i}", data[start : start + cs])
        if (i + 1) % batch == 0:
            pipe.execute()
    pipe.execute()


def raw_get(client: redis.Redis, key: str, size: int, cs: int, batch: int = 4) -> bytes:
    n = -(-size // cs)
    parts = []
    for start in range(0, n, batch):
        parts += client.mget([f"{key}:{i}" for i in range(start, min(n, start + batch))])
    return b"".join(parts)


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def measure(
    m: RedisJobDefManager, client: redis.Redis, jid: str, data: bytes, cs: int, repeat: int
) -> dict[str, float]:
    """Median seconds of each operation, interleaved so that each pair shares the machine's mood."""
    view = memoryview(data)
    size = len(data)
    put: list[float] = []
    get: list[float] = []
    rput: list[float] = []
    rget: list[float] = []
    for _ in range(repeat):
        put.append(timed(lambda: m.save_workspace(jid, data)))
        get.append(timed(lambda: m.get_storage_component(jid, "workspace")))
        rput.append(timed(lambda: raw_put(client, "bench:raw", view, cs)))
        rget.append(timed(lambda: raw_get(client, "bench:raw", size, cs)))
        client.delete(*[f"bench:raw:{i}" for i in range(-(-size // cs))])
    return {"put": median(put), "get": median(get), "raw_put": median(rput), "raw_get": median(rget)}


def stored_bytes(m: RedisJobDefManager, client: redis.Redis, data: bytes) -> float:
    """Redis used_memory growth per byte for one stored copy of ``data``."""
    jid = m.create({"name": "memory"}, b"x")["job_id"]
    before = used_memory(client)
    m.save_workspace(jid, data)
    grown = used_memory(client) - before
    m.delete(jid)
    return grown / len(data)


def run(url: str, sizes_mb: list[int], chunk_sizes: list[int], repeat: int, plain: bool) -> dict[str, object]:
    results: list[dict[str, object]] = []
    for cs in chunk_sizes:
        m = RedisJobDefManager(url, namespace=f"bench-blobs-{cs}", chunk_size=cs)
        client = redis.Redis.from_url(url) if plain else m.client
        jid = m.create({"name": "bench"}, b"x")["job_id"]
        for size_mb in sizes_mb:
            size = size_mb * MB
            block = os.urandom(min(size, 64 * MB))
            data = (block * -(-size // len(block)))[:size]
            # Small sizes are over in a few ms: repeat them more so the medians mean something.
            t = measure(m, client, jid, data, cs, max(repeat, 200 // max(size_mb, 1)))
            memory = stored_bytes(m, client, data)
            row: dict[str, float] = {
                "chunk_size": cs,
                "size_mb": size_mb,
                "put_mb_s": size / MB / t["put"],
                "get_mb_s": size / MB / t["get"],
                "raw_set_mb_s": size / MB / t["raw_put"],
                "raw_get_mb_s": size / MB / t["raw_get"],
                "memory_per_byte": memory,
            }
            row["put_ratio"] = row["put_mb_s"] / row["raw_set_mb_s"]
            row["get_ratio"] = row["get_mb_s"] / row["raw_get_mb_s"]
            results.append(dict(row))
            print(
                f"chunk {cs:>8} size {size_mb:>5} MB: put {row['put_mb_s']:.0f} MB/s "
                f"({row['put_ratio']:.2f}x raw), get {row['get_mb_s']:.0f} MB/s "
                f"({row['get_ratio']:.2f}x raw), memory {memory:.3f} B/B",
                flush=True,
            )
        m.delete(jid)
        m.gc(grace=0)
        m.close()
    return {"results": results}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a Redis to measure (default: a private redis-server)")
    parser.add_argument("--sizes", default="1,100,1024", help="sizes in MB, comma-separated")
    parser.add_argument("--chunk-sizes", default=str(DEFAULT_CHUNK_SIZE), help="bytes, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--plain-client", action="store_true", help="raw calls through a default redis-py client instead"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    chunk_sizes = [int(eval(c, {})) for c in args.chunk_sizes.split(",")]  # allows 1024*1024-64
    with real_server(args.url) as url:
        out = run(url, sizes, chunk_sizes, args.repeat, args.plain_client)
        out["raw_client"] = "default redis-py" if args.plain_client else "the manager's"
        out["server"] = server_info(url)
    out["machine"] = machine()
    rows = [
        [r["chunk_size"], r["size_mb"], f"{r['put_mb_s']:.0f}", f"{r['raw_set_mb_s']:.0f}",
         f"{r['put_ratio']:.2f}", f"{r['get_mb_s']:.0f}", f"{r['raw_get_mb_s']:.0f}", f"{r['get_ratio']:.2f}",
         f"{r['memory_per_byte']:.3f}"]
        for r in out["results"]  # type: ignore[attr-defined]
    ]  # fmt: skip
    print()
    print(table(["chunk B", "MB", "put MB/s", "raw SET MB/s", "put/raw", "get MB/s", "raw GET MB/s",
                 "get/raw", "Redis B per B"], rows))  # fmt: skip
    print("\nresults:", save("blobs", out))


if __name__ == "__main__":
    main()
