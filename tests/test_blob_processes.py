"""Blobs under real processes and a real server: writers killed mid-upload, readers racing a
replacing writer, and client memory while moving a 1 GiB blob. Every process is bounded in time
and stopped by its PID."""

from __future__ import annotations

import hashlib
import json
import random
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator

import pytest

from redisjobs import RedisJobDefManager

pytestmark = [pytest.mark.real, pytest.mark.slow]

CS = 64 * 1024

WRITER = textwrap.dedent(
    """
    import sys
    from redisjobs import RedisJobDefManager
    url, ns, mode, jid, size, fill = sys.argv[1:7]
    m = RedisJobDefManager(url, namespace=ns, chunk_size=int(sys.argv[7]))
    data = bytes([int(fill)]) * int(size)
    m.client.ping()
    print("ready", flush=True)
    if mode == "create":
        m.create({"job_id": jid, "name": "crash"}, data)
    else:
        m.save_workspace(jid, data)
    print("done", flush=True)
    """
)


@pytest.fixture
def manager(redis_url: str) -> Iterator[RedisJobDefManager]:
    ns = "proc-" + uuid.uuid4().hex[:8]
    m = RedisJobDefManager(redis_url, namespace=ns, chunk_size=CS)
    yield m
    for key in list(m.client.scan_iter(match=f"rj:{{{ns}*", count=1000)):
        m.client.unlink(key)
    m.close()


def start(code: str, *args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_ready(proc: subprocess.Popen[str], timeout: float = 20.0) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = proc.stdout.readline()
    assert line.strip() == "ready" or time.monotonic() > deadline, (
        line,
        proc.stderr.read() if proc.stderr else "",
    )


def test_writers_killed_mid_upload_never_leave_a_partial_blob(
    manager: RedisJobDefManager, redis_url: str
) -> None:
    m = manager
    size = 24 * CS + 123
    owner = m.create({"name": "owner"}, b"content")["job_id"]
    old = bytes([1]) * size
    m.save_workspace(owner, old)
    rng = random.Random(20261128)
    outcomes = {"old": 0, "new": 0, "absent": 0, "created": 0}
    for trial in range(24):
        mode = "create" if trial % 2 else "replace"
        jid = f"crash-{trial}" if mode == "create" else owner
        fill = 2 + trial
        proc = start(WRITER, redis_url, m.namespace, mode, jid, size, fill, CS)
        try:
            wait_ready(proc)
            time.sleep(rng.uniform(0.0, 0.06))
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=20)
            proc.communicate()  # closes its pipes
        if mode == "replace":
            value = m.get_storage_component(owner, "workspace")  # verifies size and sha256
            assert value in (old, bytes([fill]) * size), f"trial {trial}: a mix of versions"
            if value == old:
                outcomes["old"] += 1
            else:
                outcomes["new"] += 1
                old = value
        else:
            job = m.get_job(jid)
            if job is None:
                outcomes["absent"] += 1
                assert m.get_content({"job_id": jid}) is None
            else:
                outcomes["created"] += 1
                assert m.get_content({"job_id": jid}) == bytes([fill]) * size
    report = m.gc(grace=0)
    assert m.check_invariants() == [], "orphan chunks survived gc()"
    assert m.client.zcard(m.keys.uploads) == 0
    # The kills must have landed mid-upload at least sometimes, or the test proves nothing.
    assert report.chunks_freed > 0, outcomes


READER = textwrap.dedent(
    """
    import sys, json
    from redisjobs import RedisJobDefManager
    url, ns, jid, size, rounds = sys.argv[1:6]
    m = RedisJobDefManager(url, namespace=ns, chunk_size=int(sys.argv[6]))
    seen = {}
    bad = 0
    for _ in range(int(rounds)):
        value = m.get_storage_component(jid, "workspace")
        whole = len(value) == int(size) and value.count(value[:1]) == len(value)
        bad += not whole
        seen[value[0]] = seen.get(value[0], 0) + 1
    print(json.dumps({"bad": bad, "seen": seen}))
    """
)

REPLACER = textwrap.dedent(
    """
    import sys
    from redisjobs import RedisJobDefManager
    url, ns, jid, size, rounds = sys.argv[1:6]
    m = RedisJobDefManager(url, namespace=ns, chunk_size=int(sys.argv[6]))
    for i in range(int(rounds)):
        m.save_workspace(jid, bytes([65 + i % 2]) * int(size))
    """
)


def test_readers_racing_a_replacing_writer_get_whole_versions(
    manager: RedisJobDefManager, redis_url: str
) -> None:
    m = manager
    size = 40 * CS
    jid = m.create({"name": "race"}, b"c")["job_id"]
    m.save_workspace(jid, b"A" * size)
    writer = start(REPLACER, redis_url, m.namespace, jid, size, 60, CS)
    readers = [start(READER, redis_url, m.namespace, jid, size, 40, CS) for _ in range(3)]
    results = []
    for proc in [*readers, writer]:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        if proc is not writer:
            results.append(json.loads(out))
    assert all(r["bad"] == 0 for r in results), results
    seen = set().union(*(r["seen"] for r in results))
    assert seen <= {"65", "66"}
    m.gc(grace=0)
    assert m.check_invariants() == []


RSS = textwrap.dedent(
    """
    import json, sys
    from redisjobs import RedisJobDefManager

    def status_kib(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])

    url, ns, mode, path = sys.argv[1:5]
    m = RedisJobDefManager(url, namespace=ns)
    warm = m.create({"name": "warm"}, b"w" * 4096)["job_id"]
    m.get_content({"job_id": warm})
    base = status_kib("VmRSS")
    if mode == "upload":
        jid = m.create({"job_id": "big", "name": "big"}, path)["job_id"]
    else:
        import os
        m.get_storage_for_download("big", os.path.dirname(path), "data", os.path.basename(path))
    # VmHWM: this image's peak RSS. (getrusage's ru_maxrss survives exec on Linux: it would start
    # at the forking pytest process's size.)
    peak = status_kib("VmHWM")
    print(json.dumps({"base_kib": base, "peak_kib": peak}))
    """
)


def test_one_gib_upload_and_download_stay_within_100_mib_of_baseline(
    manager: RedisJobDefManager, redis_url: str, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    m = manager
    src = tmp_path / "big.bin"
    block = hashlib.sha256(b"seed").digest() * (1 << 15)  # 1 MiB
    digest = hashlib.sha256()
    with open(src, "wb") as f:
        for _ in range(1024):
            f.write(block)
            digest.update(block)
    up = start(RSS, redis_url, m.namespace, "upload", src)
    out, err = up.communicate(timeout=300)
    assert up.returncode == 0, err
    upload = json.loads(out)
    assert not src.exists()  # consumed
    dl_dir = tmp_path / "dl"
    dl_dir.mkdir()
    down = start(RSS, redis_url, m.namespace, "download", dl_dir / "job.zip")  # lands in dl/big/
    out, err = down.communicate(timeout=300)
    assert down.returncode == 0, err
    download = json.loads(out)
    got = hashlib.sha256()
    with open(dl_dir / "big" / "job.zip", "rb") as f:
        while piece := f.read(1 << 20):
            got.update(piece)
    assert got.hexdigest() == digest.hexdigest()
    m.delete("big")
    for name, r in (("upload", upload), ("download", download)):
        grown_mib = (r["peak_kib"] - r["base_kib"]) / 1024
        assert grown_mib < 100, f"{name} grew RSS by {grown_mib:.0f} MiB"
    print(
        f"peak RSS growth: upload {(upload['peak_kib'] - upload['base_kib']) / 1024:.1f} MiB, "
        f"download {(download['peak_kib'] - download['base_kib']) / 1024:.1f} MiB"
    )
