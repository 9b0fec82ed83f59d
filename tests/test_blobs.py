"""Blobs on both backends: sizes around the chunk boundary, every source kind, streaming reads,
replacement, and garbage collection."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from typing import Any

import orjson
import pytest
import redis

from redisjobs import BlobCorrupt, BlobNotFound, JobNotFound, RedisJobDefManager, UploadExpired

pytestmark = pytest.mark.cluster

CS = 1024  # a small chunk size, so multi-chunk blobs stay small


@pytest.fixture
def small(make_store) -> RedisJobDefManager:  # type: ignore[no-untyped-def]
    """Small chunks, and nothing inlined but the empty blob: these tests are about chunks."""
    return make_store(chunk_size=CS, inline_max=0)  # type: ignore[no-any-return]


def payload(n: int, seed: int = 0) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:n])


SIZES = [0, 1, CS - 1, CS, CS + 1, 7 * CS + 13]


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_from_bytes(small: RedisJobDefManager, size: int) -> None:
    data = payload(size)
    jid = small.create({}, data)["job_id"]
    assert small.get_content({"job_id": jid}) == data
    assert b"".join(small.iter_chunks(jid)) == data
    with small.open_blob(jid) as f:
        assert f.read() == data
    manifest = small.blobs.manifest(jid, "data")
    assert manifest is not None
    assert manifest["size"] == size
    assert manifest["chunks"] == -(-size // CS)
    assert manifest["sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_from_file_consumes_it(small: RedisJobDefManager, tmp_path, size: int) -> None:  # type: ignore[no-untyped-def]
    data = payload(size, seed=1)
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    jid = small.create({}, str(path))["job_id"]
    assert not path.exists()
    small.save_workspace(jid, data[::-1])
    assert small.get_storage_component(jid, "workspace") == data[::-1]
    assert small.get_content({"job_id": jid}) == data


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_from_list_of_paths(small: RedisJobDefManager, tmp_path, size: int) -> None:  # type: ignore[no-untyped-def]
    run = tmp_path / "run"
    (run / "sub").mkdir(parents=True)
    (run / "sub" / "model.bin").write_bytes(payload(size, seed=2))
    (run / "log.txt").write_text("hello")
    single = tmp_path / "extra.json"
    single.write_text("{}")
    jid = small.create({}, b"x")["job_id"]
    small.save_workspace(jid, [str(run), str(single)])
    assert (run / "sub" / "model.bin").exists() and single.exists()  # sources are kept
    raw = small.get_storage_component(jid, "workspace")
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        names = set(z.namelist())
        assert {"sub/model.bin", "log.txt", "extra.json", "sub/"} <= names
        assert z.read("sub/model.bin") == payload(size, seed=2)
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())


def test_download_streams_into_place(small: RedisJobDefManager, tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = payload(5 * CS + 5)
    jid = small.create({}, data)["job_id"]
    small.get_storage_for_download(jid, str(tmp_path), "data", "job.zip")
    assert (tmp_path / jid / "job.zip").read_bytes() == data
    assert os.listdir(tmp_path / jid) == ["job.zip"]


def test_corrupt_chunk_is_detected_and_verification_can_be_switched_off(make_store) -> None:  # type: ignore[no-untyped-def]
    checked = make_store(chunk_size=CS)
    unchecked = make_store(chunk_size=CS, verify_blobs=False)
    jid = checked.create({}, payload(3 * CS))["job_id"]
    manifest = checked.blobs.manifest(jid, "data")
    assert manifest is not None
    checked.client.set(checked.keys.chunk(jid, "data", manifest["v"], 1), b"\0" * CS)
    with pytest.raises(BlobCorrupt, match=jid):
        checked.get_content({"job_id": jid})
    assert (
        unchecked.get_content({"job_id": jid})
        == payload(3 * CS)[:CS] + b"\0" * CS + payload(3 * CS)[2 * CS :]
    )
    checked.client.set(checked.keys.chunk(jid, "data", manifest["v"], 1), payload(3 * CS)[CS : 2 * CS])


def test_replacing_a_blob_frees_the_old_version(small: RedisJobDefManager) -> None:
    jid = small.create({}, b"x")["job_id"]
    small.save_workspace(jid, payload(4 * CS, seed=1))
    first = small.blobs.manifest(jid, "workspace")
    small.save_workspace(jid, payload(2 * CS, seed=2))
    assert first is not None
    assert small.client.exists(small.keys.chunk(jid, "workspace", first["v"], 0)) == 0
    assert small.get_storage_component(jid, "workspace") == payload(2 * CS, seed=2)


@pytest.mark.parametrize("meanwhile", ["nothing", "another commit"])
def test_a_commit_resent_after_a_lost_reply_answers_as_its_first_run(
    small: RedisJobDefManager, monkeypatch: pytest.MonkeyPatch, meanwhile: str
) -> None:
    # The repeat names the version the first run replaced, so that its caller frees it, even when
    # another commit replaced this one before the resend (it used to report UploadExpired).
    jid = small.create({}, b"a")["job_id"]
    small.save_workspace(jid, payload(3 * CS))
    real = small._s.commit_blob

    def resent(keys: list[Any], args: list[Any]) -> Any:
        real(keys=keys, args=args)  # it ran; its reply never arrives
        monkeypatch.setattr(small._s, "commit_blob", real)
        if meanwhile == "another commit":
            small.save_workspace(jid, payload(3 * CS, seed=2))
        return real(keys=keys, args=args)  # redis-py's resend

    monkeypatch.setattr(small._s, "commit_blob", resent)
    small.save_workspace(jid, payload(3 * CS, seed=1))
    last = 2 if meanwhile == "another commit" else 1
    assert small.get_storage_component(jid, "workspace") == payload(3 * CS, seed=last)
    assert small.check_invariants() == []  # no chunk left that no manifest references


def test_gc_leaves_an_upload_that_commits_while_gc_runs(small: RedisJobDefManager) -> None:
    # gc lists a registration older than the grace period (a slow upload); the upload commits
    # before gc takes the registration: its chunks are the manifest's now, and stay.
    from redisjobs._blobs import collect_garbage

    jid = small.create({}, b"a")["job_id"]
    manifest, writer = small.blobs.stage(jid, "workspace", payload(5 * CS))
    small.client.zadd(small.keys.uploads, {writer.registration: 1.0})  # registered long ago
    client = small.client

    class CommitsRightAfterTheListing:
        def __getattr__(self, name: str) -> Any:
            return getattr(client, name)

        def zrangebyscore(self, *args: Any, **kwargs: Any) -> Any:
            listed = client.zrangebyscore(*args, **kwargs)
            small._put_commit(jid, "workspace", manifest, writer)
            return listed

    report = collect_garbage(CommitsRightAfterTheListing(), small.keys, grace=60)
    assert (report.abandoned_uploads, report.chunks_freed) == (0, 0)
    assert small.get_storage_component(jid, "workspace") == payload(5 * CS)


@pytest.mark.parametrize("size", [3 * CS, 9 * CS], ids=["piped", "staged"])
def test_gc_keeps_the_chunks_of_a_committed_version_whose_registration_was_left(
    small: RedisJobDefManager, size: int
) -> None:
    # A call resent with its chunks re-registers them; if the resend stops before its script
    # runs, the registration of a committed version is left behind. gc takes it away, and the
    # chunks stay: the manifest references them.
    jid = small.create({}, payload(size))["job_id"]
    version = small.blobs.manifest(jid, "data")["v"]  # type: ignore[index]
    small.client.zadd(small.keys.uploads, {orjson.dumps([jid, "data", version]): 1.0})
    report = small.gc(grace=0)
    assert (report.abandoned_uploads, report.chunks_freed) == (0, 0)
    assert small.client.zcard(small.keys.uploads) == 0
    assert small.get_content({"job_id": jid}) == payload(size)


def test_abort_keeps_chunks_a_manifest_references(small: RedisJobDefManager) -> None:
    # A call whose first attempt committed and whose retry failed aborts its upload, not knowing:
    # the committed chunks stay; an upload nothing references goes.
    jid = small.create({}, b"a")["job_id"]
    manifest, writer = small.blobs.stage(jid, "workspace", payload(5 * CS))
    small._put_commit(jid, "workspace", manifest, writer)
    small.blobs.abort(writer)
    assert small.get_storage_component(jid, "workspace") == payload(5 * CS)
    _manifest, dead = small.blobs.stage(jid, "workspace", payload(5 * CS, seed=9))
    small.blobs.abort(dead)
    assert small.client.exists(*dead.chunk_keys()) == 0
    assert small.check_invariants() == []


def test_delete_frees_every_chunk(small: RedisJobDefManager) -> None:
    jid = small.create({}, payload(3 * CS))["job_id"]
    small.save_workspace(jid, payload(3 * CS, seed=3))
    small.set_client_data(jid, b"log", "site-1", "ERRORLOG")
    small.delete(jid)
    assert list(small.client.scan_iter(match=small.keys.chunk_pattern())) == []


def test_gc_frees_abandoned_uploads_and_orphans_but_not_live_uploads(small: RedisJobDefManager) -> None:
    keep = small.create({}, payload(2 * CS))["job_id"]
    # A writer that died mid-upload: chunks and a registration, never committed.
    _manifest, dead = small.blobs.stage(keep, "workspace", payload(3 * CS, seed=4))
    # Chunks of a job deleted by a process that died before unlinking them.
    small.client.set(small.keys.chunk("gone", "data", "0123", 0), b"x")
    # An upload in progress right now.
    _m2, live = small.blobs.stage(keep, "LOG_x_site", payload(2 * CS, seed=5))

    report = small.gc(grace=3600)  # the dead upload is still within its grace period
    assert report.abandoned_uploads == 0
    assert report.chunks_freed == 1  # only the deleted job's chunk
    assert small.client.exists(*dead.chunk_keys()[:3]) == 3

    small.client.zadd(small.keys.uploads, {dead.registration: 1.0})  # make it old
    report = small.gc(grace=3600)
    assert report.abandoned_uploads == 1
    assert report.chunks_freed == 3
    assert small.client.exists(*live.chunk_keys()[:2]) == 2  # the live upload is untouched

    small.blobs.abort(live)
    assert small.gc(grace=0).chunks_freed == 0
    assert small.get_content({"job_id": keep}) == payload(2 * CS)


def test_gc_and_the_orphan_check_leave_other_namespaces_alone(small: RedisJobDefManager) -> None:
    # A namespace is free text: "<ns>/prod" begins with "<ns>/", as every chunk key of <ns> does,
    # and "<ns>*" is a glob pattern that matches <ns> itself. Neither may take the other's chunks.
    ns = small.keys.namespace
    others = [
        RedisJobDefManager(client=small.client, namespace=ns + suffix, chunk_size=CS, inline_max=0)
        for suffix in ("/prod", "*", "/a/b", "?")
    ]
    metas = [other.create({}, payload(3 * CS, seed=i)) for i, other in enumerate(others)]
    mine = small.create({}, payload(2 * CS))
    stray = f"rj:{{{ns}/{mine['job_id']}}}:chunk:data:v1:\u00b2"  # (no chunk: "²" is a digit to str.isdigit)
    small.client.set(stray, b"x")
    for m in [small, *others]:
        assert m.check_invariants() == []
        report = m.gc(grace=0)
        assert (report.chunks_freed, report.chunks_scanned) == (0, 2 if m is small else 3)
    for i, (other, meta) in enumerate(zip(others, metas, strict=True)):
        assert other.get_content(meta) == payload(3 * CS, seed=i)
    assert small.get_content(mine) == payload(2 * CS)
    assert small.client.exists(stray)  # not ours to free: no key chunk() makes
    small.client.unlink(stray)


def test_commit_after_gc_collected_the_upload_fails_cleanly(small: RedisJobDefManager) -> None:
    jid = small.create({}, b"old")["job_id"]
    manifest, writer = small.blobs.stage(jid, "workspace", payload(2 * CS))
    small.client.zadd(small.keys.uploads, {writer.registration: 1.0})
    small.gc(grace=10)
    with pytest.raises(UploadExpired, match=jid):
        small._put_commit(jid, "workspace", manifest, writer)
    with pytest.raises(BlobNotFound):
        small.get_storage_component(jid, "workspace")


def test_save_to_a_missing_job_leaves_nothing(small: RedisJobDefManager, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "w.zip"
    path.write_bytes(payload(3 * CS))
    with pytest.raises(JobNotFound):
        small.save_workspace("no-such-job", str(path))
    assert path.exists()  # not consumed: nothing was stored
    assert list(small.client.scan_iter(match=small.keys.chunk_pattern())) == []
    assert small.client.zcard(small.keys.uploads) == 0


def test_a_reader_racing_a_replacement_gets_one_whole_version(small: RedisJobDefManager) -> None:
    """Deterministic interleaving: the blob is replaced between the reader's manifest read and its
    chunk reads; the reader restarts on the new version."""
    jid = small.create({}, b"x")["job_id"]
    a, b = b"a" * (6 * CS), b"b" * (6 * CS)
    small.save_workspace(jid, a)
    real_lookup = small.blobs._lookup
    calls = {"n": 0}

    def lookup_then_replace(j: str, c: str):  # type: ignore[no-untyped-def]
        found = real_lookup(j, c)
        calls["n"] += 1
        if calls["n"] == 1:
            small.blobs._lookup = real_lookup  # type: ignore[method-assign]
            small.save_workspace(jid, b)  # frees a's chunks under the reader
        return found

    small.blobs._lookup = lookup_then_replace  # type: ignore[method-assign]
    assert small.get_storage_component(jid, "workspace") == b


@pytest.mark.parametrize("size", [0, 1, 2048, 64 * 1024])
def test_small_blobs_are_inline_and_take_one_round_trip(make_store, size: int) -> None:  # type: ignore[no-untyped-def]
    m = make_store()  # default chunk size and inline_max (64 KiB)
    data = payload(size, seed=7)
    jid = m.create({}, data)["job_id"]
    manifest = m.blobs.manifest(jid, "data")
    assert manifest is not None and manifest["inline"] is True and manifest["chunks"] == 0
    assert list(m.client.scan_iter(match=m.keys.chunk_pattern())) == []
    assert m.client.zcard(m.keys.uploads) == 0
    assert m.get_content({"job_id": jid}) == data
    m.save_workspace(jid, data[::-1])
    assert m.get_storage_component(jid, "workspace") == data[::-1]
    m.delete(jid)
    assert m.client.exists(m.keys.inline(jid)) == 0


def test_replacing_inline_with_chunked_and_back(make_store) -> None:  # type: ignore[no-untyped-def]
    m = make_store(chunk_size=4096, inline_max=1000)
    jid = m.create({}, b"x")["job_id"]
    for value in (payload(10, 1), payload(3 * 4096 + 5, 2), payload(999, 3), payload(1001, 4)):
        m.save_workspace(jid, value)
        assert m.get_storage_component(jid, "workspace") == value
        stored_inline = m.client.hexists(m.keys.inline(jid), "workspace")
        assert bool(stored_inline) == (len(value) <= 1000)
    assert m.gc(grace=0).chunks_freed == 0  # replaced versions were freed at once


def test_a_corrupt_inline_blob_is_detected(make_store) -> None:  # type: ignore[no-untyped-def]
    m = make_store()
    jid = m.create({}, b"inline bytes")["job_id"]
    m.client.hset(m.keys.inline(jid), "data", b"inline bytez")
    with pytest.raises(BlobCorrupt, match=jid):
        m.get_content({"job_id": jid})
    m.client.hset(m.keys.inline(jid), "data", b"inline bytes")


def test_an_inline_blob_replaced_between_its_two_reads_is_read_again(make_store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # The manifest and the inline bytes are two reads: a commit between them pairs the old
    # manifest with the new bytes. That is no corruption: the read starts again.
    m = make_store()
    jid = m.create({}, b"first")["job_id"]
    old_manifest = m.blobs.manifest(jid, "data")
    m._put_component(jid, "data", b"second")  # (inline too)
    real = m.blobs._lookup
    lookups = []

    def racing(jid_: str, component: str) -> Any:
        manifest, inline = real(jid_, component)
        lookups.append(inline)
        return (old_manifest if len(lookups) == 1 else manifest), inline

    monkeypatch.setattr(m.blobs, "_lookup", racing)
    assert m.get_content({"job_id": jid}) == b"second"
    assert lookups == [b"second", b"second"]


def test_a_single_chunk_is_read_in_pieces_and_verified(make_store) -> None:  # type: ignore[no-untyped-def]
    """One chunk larger than SPLIT (the default chunk size holds 1 MB): read as ranges, hashed as
    they arrive, whole; a chunk altered in place is caught; a replacement mid-read is restarted."""
    from redisjobs._blobs import SPLIT

    m = make_store()
    data = payload(3 * SPLIT + 12_345, seed=11)
    jid = m.create({}, data)["job_id"]
    manifest = m.blobs.manifest(jid, "data")
    assert manifest is not None and manifest["chunks"] == 1
    sent: list[str] = []
    lane = m._lane
    if lane is not None:  # (a cluster client has no lane, and reads whole chunks)
        real_many = lane.execute_many
        lane.execute_many = lambda *c, **kw: (sent.extend(x[0] for x in c), real_many(*c, **kw))[1]  # type: ignore[method-assign]
    assert m.get_content({"job_id": jid}) == data
    assert b"".join(m.blobs.iter_chunks(jid, "data")) == data
    if lane is not None:
        assert sent.count("GETRANGE") == 2 * 4  # two reads, four pieces each

    # A replacement between the manifest read and the chunk read: the new version, whole.
    real_lookup, calls = m.blobs._lookup, {"n": 0}
    newer = payload(2 * SPLIT + 7, seed=12)

    def lookup_then_replace(j: str, c: str):  # type: ignore[no-untyped-def]
        found = real_lookup(j, c)
        calls["n"] += 1
        if calls["n"] == 1:
            m.blobs._lookup = real_lookup  # type: ignore[method-assign]
            m.save_workspace(jid, newer)
        return found

    m.save_workspace(jid, data)
    m.blobs._lookup = lookup_then_replace  # type: ignore[method-assign]
    assert m.get_storage_component(jid, "workspace") == newer

    # The chunk's bytes changed under its manifest: refused, naming the job.
    key = m.keys.chunk(jid, "data", manifest["v"], 0)
    m.client.setrange(key, SPLIT + 5, b"?")
    with pytest.raises(BlobCorrupt, match=jid):
        m.get_content({"job_id": jid})


@pytest.mark.real
def test_a_piecewise_read_retried_midway_is_hashed_afresh(redis_url: str, namespace: str) -> None:
    """The pieces of a single chunk are hashed as they arrive; when the connection drops after
    some of them and redis-py's retry reads them all again, the hash starts again too (it used to
    hash the first pieces twice and report the blob corrupt)."""
    from redisjobs._blobs import SPLIT

    m = RedisJobDefManager(redis_url, namespace=namespace)
    data = payload(3 * SPLIT + 99, seed=21)
    jid = m.create({}, data)["job_id"]
    assert m.get_content({"job_id": jid}) == data  # the lane's connection is made
    assert m._lane is not None
    conn = m._lane._idle[-1]
    real_read, reads = conn._parser.read_from_socket, {"n": 0, "drop": 0}

    def counted_read(*args, **kwargs):  # type: ignore[no-untyped-def]
        reads["n"] += 1
        if reads["n"] == reads["drop"]:
            raise redis.exceptions.ConnectionError("dropped")
        return real_read(*args, **kwargs)

    conn._parser.read_from_socket = counted_read
    assert m.get_content({"job_id": jid}) == data
    whole = reads["n"]  # socket reads for the manifest and the four pieces
    assert whole > 4
    reads["n"], reads["drop"] = 0, whole * 3 // 4  # past the first pieces: hashed already
    assert m.get_content({"job_id": jid}) == data
    assert reads["n"] > whole  # the pieces were read again
    m.close()
