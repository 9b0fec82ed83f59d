"""Shared helpers of the benchmark scripts: a server to measure against, timing, output."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis

from redisjobs.server import RedisServer, find_redis_server

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


@contextlib.contextmanager
def real_server(url: str | None) -> Iterator[str]:
    """The given URL, or a private redis-server started for this run."""
    if url:
        yield url
        return
    binary = find_redis_server()
    if binary is None:
        raise SystemExit("no redis-server found: install one or pass --url")
    server = RedisServer(binary)
    try:
        yield server.url
    finally:
        server.stop()


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def server_info(url: str) -> dict[str, Any]:
    with redis.Redis.from_url(url) as r:
        info = r.info("server")
    return {"redis_version": info.get("redis_version"), "url": url}


def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}


def save(name: str, payload: dict[str, Any], folder: str = RESULTS) -> str:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}.json")
    with open(path, "w") as f:
        json.dump(payload, f, indent=2)
    return path


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A markdown table."""
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)
