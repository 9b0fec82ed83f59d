"""The client redisjobs builds: its packer and its retry policy."""

from __future__ import annotations

import os

import pytest
from redis.backoff import ExponentialWithJitterBackoff

from redisjobs import RedisJobDefManager
from redisjobs._connection import LARGE_ARGUMENT, Packer, make_retry


def test_a_large_value_is_handed_to_the_socket_without_a_copy() -> None:
    value = os.urandom(LARGE_ARGUMENT + 1)
    pieces = Packer().pack("SET", "k", value)
    assert any(piece is value for piece in pieces)
    assert b"".join(bytes(p) for p in pieces).endswith(value + b"\r\n")


def test_small_commands_pack_to_the_same_bytes_either_way() -> None:
    args = ("EVALSHA", "a" * 40, 2, "k1", "k2", b"\x00\xff", 1.5, 7)
    small = b"".join(bytes(p) for p in Packer().pack(*args))
    assert small.startswith(b"*8\r\n$7\r\nEVALSHA\r\n")
    assert b"$2\r\n\x00\xff\r\n$3\r\n1.5\r\n$1\r\n7\r\n" in small


@pytest.mark.real
def test_large_values_round_trip_through_the_managers_client(redis_url: str, namespace: str) -> None:
    m = RedisJobDefManager(redis_url, namespace=namespace)
    value = os.urandom(3 * LARGE_ARGUMENT)
    key = m.keys.prefix + "packer-check"
    m.client.set(key, memoryview(value))
    assert m.client.get(key) == value
    m.client.delete(key)
    m.close()


def test_the_retry_policy_is_redis_pys_exponential_backoff_with_jitter() -> None:
    retry = make_retry(4, 0.01, 0.2)
    assert retry.get_retries() == 4
    backoff = retry._backoff
    assert isinstance(backoff, ExponentialWithJitterBackoff)
    waits = [backoff.compute(n) for n in range(1, 12) for _ in range(20)]
    assert all(0 <= w <= 0.2 for w in waits) and len(set(waits)) > 1
    with pytest.raises(ValueError, match="retries"):
        make_retry(-1, 0.01, 0.2)


@pytest.mark.real
def test_a_url_managers_client_has_its_retry_policy_and_timeouts(redis_url: str, namespace: str) -> None:
    m = RedisJobDefManager(
        redis_url, namespace=namespace, retries=2, socket_timeout=0.5, socket_connect_timeout=0.25
    )
    kwargs = m.client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 0.5 and kwargs["socket_connect_timeout"] == 0.25
    assert kwargs["retry"].get_retries() == 2
    assert isinstance(kwargs["command_packer"], Packer)
    m.close()


def test_multi_host_urls_are_parsed() -> None:
    from redisjobs._connection import _Parsed

    p = _Parsed(
        "rediss+sentinel://u%40x:p%3Aw@h1:26380,[::1]:26381,h3/mymaster/2?ssl_ca_certs=/ca.pem", 26379
    )
    assert (p.username, p.password) == ("u@x", "p:w")
    assert p.nodes == [("h1", 26380), ("::1", 26381), ("h3", 26379)]
    assert p.path == ["mymaster", "2"]
    assert p.tls_options() == {"ssl": True, "ssl_ca_certs": "/ca.pem"}
    q = _Parsed("redis+cluster://h:7000", 6379)
    assert (q.username, q.password, q.nodes, q.tls_options()) == (None, None, [("h", 7000)], {})
    with pytest.raises(ValueError, match="no host"):
        _Parsed("redis+cluster://", 6379)
    with pytest.raises(ValueError, match="bad port"):
        _Parsed("redis+cluster://h:x", 6379)


def test_a_sentinel_url_must_name_its_master() -> None:
    m = RedisJobDefManager("redis+sentinel://:secret@127.0.0.1:1")
    with pytest.raises(ValueError, match="names its master") as e:
        m.client  # noqa: B018 - building the client parses the URL
    assert "secret" not in str(e.value)
