"""Redis Cluster: every public method on a real 3-master cluster the fixtures start on loopback,
one hash slot per namespace for everything scripts touch, and blob chunks spread by job.

(The store tests of test_api, test_blobs, test_claims, test_records, test_limits and test_get_app
also run against the cluster: they are marked ``cluster``.)
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from _recorder import drive_whole_api
from redis.cluster import RedisCluster

from redisjobs import RedisJobDefManager

pytestmark = pytest.mark.real


@pytest.fixture
def cluster_store(cluster_url: str) -> Iterator[RedisJobDefManager]:
    ns = "c-" + uuid.uuid4().hex[:10]
    m = RedisJobDefManager(cluster_url, namespace=ns)
    yield m
    assert m.check_invariants() == []
    for key in list(m.client.scan_iter(match=f"rj:{{{ns}*", count=1000)):
        m.client.unlink(key)
    m.close()


def test_the_client_for_a_cluster_url_is_a_cluster_client(cluster_store: RedisJobDefManager) -> None:
    assert isinstance(cluster_store.client, RedisCluster)
    assert len(cluster_store.client.get_primaries()) == 3


def test_every_public_method_works_on_a_cluster(cluster_store: RedisJobDefManager, tmp_path: Path) -> None:
    drive_whole_api(cluster_store, tmp_path)


def test_a_namespace_keeps_its_scripted_keys_in_one_slot_and_spreads_chunks(
    cluster_store: RedisJobDefManager,
) -> None:
    m = cluster_store
    ids = [m.create({"name": f"j{i}"}, os.urandom(200_000))["job_id"] for i in range(12)]
    client = m.client
    slot = client.keyslot(m.keys.jobs)
    k = m.keys
    scripted = [k.queue, k.events, k.uploads, k.leases, k.owners, k.seq, k.job(ids[0]), k.blobs(ids[0]),
                k.inline(ids[0]), k.request("x"), *k.status_sets]  # fmt: skip
    for name in scripted:
        assert client.keyslot(name) == slot, name
    chunk_nodes = {
        client.get_node_from_key(key.decode()).name
        for key in client.scan_iter(match=m.keys.chunk_pattern(), count=1000)
    }
    assert len(chunk_nodes) >= 2  # 12 jobs' chunks land on more than one primary


def test_waiting_for_replicas_is_refused_on_a_cluster(cluster_url: str) -> None:
    m = RedisJobDefManager(cluster_url, namespace="c-wait", wait_replicas=1)
    with pytest.raises(ValueError, match="not supported on a Redis Cluster"):
        m.get_job("x")
    m.close()
