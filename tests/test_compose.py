"""docker-compose.yml: its three profiles carry the settings the tests run natively, and the
standalone one's redis-server command line starts (here, natively) with the promised settings."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from redisjobs import RedisJobDefManager
from redisjobs.server import RedisServer, find_redis_server

COMPOSE = Path(__file__).resolve().parent.parent / "docker-compose.yml"


def services() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())["services"]  # type: ignore[no-any-return]


def command(service: dict[str, Any]) -> str:
    value = service["command"]
    return value if isinstance(value, str) else " ".join(value)


def test_three_profiles() -> None:
    by_profile: dict[str, list[str]] = {}
    for name, service in services().items():
        for profile in service.get("profiles", []):
            by_profile.setdefault(profile, []).append(name)
    assert sorted(by_profile) == ["cluster", "sentinel", "standalone"]
    assert len([n for n in by_profile["sentinel"] if n.startswith("sentinel-") and n[-1].isdigit()]) == 3
    assert len([n for n in by_profile["cluster"] if n.startswith("cluster-7")]) == 3


DATA_NODES = ["redis", "sentinel-master", "sentinel-replica", "cluster-7000", "cluster-7001", "cluster-7002"]


@pytest.mark.parametrize("name", DATA_NODES)
def test_every_data_node_persists_refuses_eviction_needs_a_password_and_stays_local(name: str) -> None:
    service = services()[name]
    text = command(service)
    assert "--appendonly yes" in text and "--appendfsync everysec" in text
    assert "--maxmemory-policy noeviction" in text
    assert "--requirepass" in text
    if service.get("network_mode") == "host":
        assert "--bind 127.0.0.1" in text
    else:
        assert service["ports"] == ["127.0.0.1:6379:6379"]


def test_sentinels_watch_the_master_with_its_password() -> None:
    for name in ("sentinel-1", "sentinel-2", "sentinel-3"):
        text = command(services()[name])
        assert "--sentinel" in text and "sentinel monitor redisjobs 127.0.0.1 6379 2" in text
        assert "sentinel auth-pass redisjobs" in text and "bind 127.0.0.1" in text


def test_cluster_nodes_are_cluster_enabled_and_created_once() -> None:
    s = services()
    for name in ("cluster-7000", "cluster-7001", "cluster-7002"):
        assert "--cluster-enabled yes" in command(s[name])
    assert "redis-cli --cluster create" in command(s["cluster-init"])


@pytest.mark.real
def test_the_standalone_command_line_starts_with_the_promised_settings() -> None:
    text = command(services()["redis"])
    text = re.sub(r'"\$\{REDIS_PASSWORD[^}]*\}"', "s3cret", text)
    args = shlex.split(text)
    assert args[0] == "redis-server"
    binary = find_redis_server()
    assert binary is not None, "no redis-server: apt-get install redis-server"
    # RedisServer adds its own port, directory and (no) persistence; the compose flags come after
    # and win, as they would in the container.
    server = RedisServer(binary, *args[1:], password="s3cret")
    try:
        client = redis.Redis(port=server.port, password="s3cret")
        config = client.config_get("*")
        assert (config["appendonly"], config["appendfsync"]) == ("yes", "everysec")
        assert config["maxmemory-policy"] == "noeviction"
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=server.port).ping()
        m = RedisJobDefManager(f"redis://:s3cret@127.0.0.1:{server.port}/0", namespace="compose")
        jid = m.create({"name": "c"}, b"x")["job_id"]
        assert m.get_meta(jid)["status"] == "SUBMITTED"
        m.close()
        client.close()
    finally:
        server.stop()
