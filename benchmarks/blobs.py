"""Blob throughput and memory: redisjobs put/get beside raw pipelined redis-py SET/GET.

    python benchmarks/blobs.py [--url URL] [--sizes 1,100,1024] [--chunk-sizes ...] [--repeat 3]

For each size (MB) it stores the same bytes as a job's workspace (put: ``save_workspace``; get:
``get_storage_component``, sha256 verified) and, in the same run, with raw pipelined SETs/GETs of
the same chunk size (no manifest, no hashing): the floor redisjobs is measured against. It also
reports Redis's ``used_memory`` growth per stored byte for each chunk size.
"""

from __future__ import annotations

import argparse
import os
import sys

import redis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine, median, real_server, save, server_info, table, timed  # noqa: E402

from redisjobs import DEFAULT_CHUNK_SIZE, RedisJobDefManager  # noqa: E402

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


def run(url: str, sizes_mb: list[int], chunk_sizes: list[int], repeat: int) -> dict[str, object]:
    client = redis.Redis.from_url(url)
    results: list[dict[str, object]] = []
    for cs in chunk_sizes:
        m = RedisJobDefManager(url, namespace=f"bench-blobs-{cs}", chunk_size=cs)
        jid = m.create({"name": "bench"}, b"x")["job_id"]
        for size_mb in sizes_mb:
            size = size_mb * MB
            data = os.urandom(min(size, 64 * MB)) * (-(-size // (64 * MB)))
            data = data[:size]
            view = memoryview(data)
            put, get, rput, rget = [], [], [], []
            for _ in range(repeat):
                put.append(timed(lambda: m.save_workspace(jid, data)))
                get.append(timed(lambda: m.get_storage_component(jid, "workspace")))
                rput.append(timed(lambda: raw_put(client, "bench:raw", view, cs)))
                rget.append(timed(lambda: raw_get(client, "bench:raw", size, cs)))
                client.delete(*[f"bench:raw:{i}" for i in range(-(-size // cs))])
            before = used_memory(client)
            m.save_workspace(jid, data)  # replaces the stored copy: measure one copy alone
            m.delete(jid)
            after_delete = used_memory(client)
            jid = m.create({"name": "bench"}, b"x")["job_id"]
            m.save_workspace(jid, data)
            stored = used_memory(client)
            row = {
                "chunk_size": cs,
                "size_mb": size_mb,
                "put_mb_s": size / MB / median(put),
                "get_mb_s": size / MB / median(get),
                "raw_set_mb_s": size / MB / median(rput),
                "raw_get_mb_s": size / MB / median(rget),
                "memory_per_byte": (stored - after_delete) / size,
            }
            row["put_ratio"] = row["put_mb_s"] / row["raw_set_mb_s"]  # type: ignore[operator]
            row["get_ratio"] = row["get_mb_s"] / row["raw_get_mb_s"]  # type: ignore[operator]
            results.append(row)
            del before
            print(
                f"chunk {cs:>8} size {size_mb:>5} MB: put {row['put_mb_s']:.0f} MB/s "
                f"({row['put_ratio']:.2f}x raw), get {row['get_mb_s']:.0f} MB/s ({row['get_ratio']:.2f}x raw), "
                f"memory {row['memory_per_byte']:.3f} B/B",
                flush=True,
            )
            del data, view
        m.delete(jid)
        m.gc(grace=0)
        m.close()
    return {"results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a Redis to measure (default: a private redis-server)")
    parser.add_argument("--sizes", default="1,100,1024", help="sizes in MB, comma-separated")
    parser.add_argument("--chunk-sizes", default=str(DEFAULT_CHUNK_SIZE), help="bytes, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    chunk_sizes = [int(eval(c, {})) for c in args.chunk_sizes.split(",")]  # allows 1024*1024-64
    with real_server(args.url) as url:
        out = run(url, sizes, chunk_sizes, args.repeat)
        out["server"] = server_info(url)
    out["machine"] = machine()
    rows = [
        [r["chunk_size"], r["size_mb"], f"{r['put_mb_s']:.0f}", f"{r['raw_set_mb_s']:.0f}", f"{r['put_ratio']:.2f}",
         f"{r['get_mb_s']:.0f}", f"{r['raw_get_mb_s']:.0f}", f"{r['get_ratio']:.2f}", f"{r['memory_per_byte']:.3f}"]
        for r in out["results"]  # type: ignore[attr-defined]
    ]  # fmt: skip
    print()
    print(table(["chunk B", "MB", "put MB/s", "raw SET MB/s", "put/raw", "get MB/s", "raw GET MB/s",
                 "get/raw", "Redis B per B"], rows))  # fmt: skip
    print("\nresults:", save("blobs", out))


if __name__ == "__main__":
    main()
