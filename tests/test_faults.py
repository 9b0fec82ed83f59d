"""Faults the store must notice. (More arrive with the fault-tolerance work: restarts, cut
connections, a paused server, out of memory.)"""

from __future__ import annotations

import warnings

import pytest

from redisjobs import RedisJobDefManager
from redisjobs.server import RedisServer, find_redis_server

pytestmark = pytest.mark.real


def test_an_evicting_maxmemory_policy_is_warned_about_at_start_up() -> None:
    binary = find_redis_server()
    assert binary is not None, "no redis-server: apt-get install redis-server"
    server = RedisServer(binary, "--maxmemory-policy", "allkeys-lru")
    try:
        m = RedisJobDefManager(server.url, namespace="evict")
        with pytest.warns(RuntimeWarning, match="allkeys-lru.*noeviction"):
            m.client.ping()  # connecting checks the policy
        m.close()
        m.client.config_set("maxmemory-policy", "noeviction")
        quiet = RedisJobDefManager(server.url, namespace="evict")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            quiet.client.ping()
        quiet.close()
    finally:
        server.stop()
