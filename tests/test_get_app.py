"""get_app: one app folder of a job's content, re-zipped relative to the app; hostile input refused.

Job zips are built in memory. Extraction must never write outside a private temporary folder: the
hostile tests point ``tempfile`` at a folder of their own and the working directory at another,
then check that nothing appeared anywhere under ``tmp_path`` (or at ``/``).
"""

from __future__ import annotations

import io
import json
import os
import stat
import tempfile
import uuid
import zipfile
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from redisjobs import InvalidComponent, InvalidJobId, Job, RedisJobDefManager

pytestmark = pytest.mark.cluster

SERVER_CONFIG = b'{"format_version": 2, "workflows": []}'
CLIENT_CODE = b"print('hello from the client')\n"
META = {"name": "myjob", "job_folder_name": "myjob", "deploy_map": {"app_server": ["server"]}}


#: Entry times fixed, so that the same files always make the same zip bytes.
FIXED_TIME = (2020, 1, 1, 0, 0, 0)


def job_zip(
    files: dict[str, bytes] | None = None,
    *,
    folder_entries: bool = True,
    extra: list[tuple[zipfile.ZipInfo, bytes]] | None = None,
) -> bytes:
    """A job zip: ``myjob/`` with meta.json, app_server/config/... and app_client/custom/x.py."""
    if files is None:
        files = {
            "myjob/meta.json": json.dumps(META).encode(),
            "myjob/app_server/config/config_fed_server.json": SERVER_CONFIG,
            "myjob/app_client/custom/x.py": CLIENT_CODE,
        }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        if folder_entries:
            folders = sorted({name[: i + 1] for name in files for i, c in enumerate(name) if c == "/"})
            for folder in folders:
                z.writestr(zipfile.ZipInfo(folder, date_time=FIXED_TIME), b"")
        for name, data in files.items():
            z.writestr(zipfile.ZipInfo(name, date_time=FIXED_TIME), data, zipfile.ZIP_DEFLATED)
        for info, data in extra or []:
            z.writestr(info, data)
    return buf.getvalue()


def make_job(store: RedisJobDefManager, content: bytes, **meta: Any) -> Job:
    jid = store.create({**META, **meta}, content)["job_id"]
    job = store.get_job(jid)
    assert job is not None
    return job


def names(data: bytes) -> set[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert z.testzip() is None
        return set(z.namelist())


def read(data: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return z.read(name)


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if not p.is_dir())


@pytest.fixture
def jail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Temporary folders go to tmp_path/tmp and the working directory is tmp_path/cwd."""
    (tmp_path / "tmp").mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.chdir(tmp_path / "cwd")
    return tmp_path


# -- the normal case -------------------------------------------------------------------------------


def test_get_app_zips_the_app_folder_relative_to_it(store: RedisJobDefManager, jail: Path) -> None:
    job = make_job(store, job_zip())
    server = store.get_app(job, "app_server")
    assert isinstance(server, bytes)
    assert names(server) == {"config/", "config/config_fed_server.json"}
    assert read(server, "config/config_fed_server.json") == SERVER_CONFIG
    client = store.get_app(job, "app_client")
    assert names(client) == {"custom/", "custom/x.py"}
    assert read(client, "custom/x.py") == CLIENT_CODE
    assert files_under(jail) == []  # the temporary folder was removed
    assert store.get_content(job.meta) == job_zip()  # the stored content is untouched


def test_get_app_without_folder_entries(store: RedisJobDefManager) -> None:
    job = make_job(store, job_zip(folder_entries=False))
    assert names(store.get_app(job, "app_server")) == {"config/", "config/config_fed_server.json"}


def test_get_app_with_apps_at_the_zip_root(store: RedisJobDefManager) -> None:
    content = job_zip({"meta.json": b"{}", "app/a.txt": b"a", "app/sub/b.txt": b"b"})
    job = make_job(store, content, job_folder_name="")
    app = store.get_app(job, "app")
    assert names(app) == {"a.txt", "sub/", "sub/b.txt"}
    assert read(app, "sub/b.txt") == b"b"


def test_get_app_with_job_folder_name_missing(store: RedisJobDefManager) -> None:
    content = job_zip({"app/a.txt": b"a"})
    jid = store.create({"name": "no folder name"}, content)["job_id"]
    job = store.get_job(jid)
    assert job is not None and "job_folder_name" not in job.meta
    assert names(store.get_app(job, "app")) == {"a.txt"}


def test_get_app_missing_app(store: RedisJobDefManager, jail: Path) -> None:
    job = make_job(store, job_zip())
    with pytest.raises(FileNotFoundError, match="app_missing"):
        store.get_app(job, "app_missing")
    with pytest.raises(FileNotFoundError):
        store.get_app(job, "meta.json")  # a file, not an app folder
    assert files_under(jail) == []


def test_get_app_wrong_job_folder_name(store: RedisJobDefManager) -> None:
    job = make_job(store, job_zip(), job_folder_name="otherjob")
    with pytest.raises(FileNotFoundError):
        store.get_app(job, "app_server")


def test_get_app_content_not_a_zip(store: RedisJobDefManager, jail: Path) -> None:
    job = make_job(store, b"this is not a zip file")
    with pytest.raises(ValueError, match="not a zip"):
        store.get_app(job, "app_server")
    assert files_under(jail) == []


# -- hostile names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "app", ["../x", "/etc", "a/b", "", "..", ".", "app_server/../app_client", "-a", None]
)
def test_hostile_app_names_are_refused_before_redis(app: Any) -> None:
    client = mock.MagicMock()
    m = RedisJobDefManager(client=client, namespace="apps")
    job = Job.from_meta({"job_id": "j1", **META})
    with pytest.raises(InvalidComponent) as info:
        m.get_app(job, app)
    assert isinstance(info.value, ValueError)
    assert client.mock_calls == []


@pytest.mark.parametrize("app", ["../x", "/etc", "a/b", "", "..", "."])
def test_hostile_app_names_on_a_real_job(store: RedisJobDefManager, app: str, jail: Path) -> None:
    job = make_job(store, job_zip())
    with pytest.raises(InvalidComponent):
        store.get_app(job, app)
    assert files_under(jail) == []


def test_get_app_invalid_job_id_before_redis() -> None:
    client = mock.MagicMock()
    m = RedisJobDefManager(client=client, namespace="apps")
    with pytest.raises(InvalidJobId):
        m.get_app(Job.from_meta({"job_id": "../x", **META}), "app_server")
    assert client.mock_calls == []


@pytest.mark.parametrize("folder", ["../..", "..", "/", "/etc", "myjob/../..", "../myjob", 5, ["myjob"]])
def test_escaping_job_folder_name(store: RedisJobDefManager, folder: Any, jail: Path) -> None:
    job = make_job(store, job_zip())
    job.meta["job_folder_name"] = folder
    with pytest.raises(ValueError) as info:
        store.get_app(job, "app_server")
    assert not isinstance(info.value, FileNotFoundError)
    assert files_under(jail) == []


# -- hostile archives ------------------------------------------------------------------------------


def _symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


HOSTILE = {
    "dotdot": [(zipfile.ZipInfo("../evil.txt"), b"evil")],
    "dotdot-deep": [(zipfile.ZipInfo("myjob/app_server/../../../evil.txt"), b"evil")],
    "dotdot-in-app": [(zipfile.ZipInfo("myjob/app_server/config/../../../../evil.txt"), b"evil")],
    "absolute": [(zipfile.ZipInfo("/redisjobs-test-abs-{uid}.txt"), b"evil")],
    "backslash": [(zipfile.ZipInfo("..\\evil.txt"), b"evil")],
    "drive": [(zipfile.ZipInfo("C:/evil.txt"), b"evil")],
    "symlink-file": [(_symlink("myjob/app_server/config/evil.txt"), b"/etc/passwd")],
    "symlink-dir-then-write": [
        (_symlink("myjob/app_server/out"), b"../../../.."),
        (zipfile.ZipInfo("myjob/app_server/out/evil.txt"), b"evil"),
    ],
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_archive_is_refused_and_writes_nothing(
    store: RedisJobDefManager, kind: str, jail: Path
) -> None:
    uid = uuid.uuid4().hex
    extra = []
    for info, data in HOSTILE[kind]:
        clone = zipfile.ZipInfo(info.filename.replace("{uid}", uid))
        clone.external_attr = info.external_attr
        extra.append((clone, data))
    absolute = Path(f"/redisjobs-test-abs-{uid}.txt")
    job = make_job(store, job_zip(extra=extra))
    with pytest.raises(ValueError, match="unsafe"):
        store.get_app(job, "app_server")
    assert list(jail.rglob("evil.txt")) == []
    assert list(jail.parent.glob("evil.txt")) == []
    assert files_under(jail) == []  # nothing in cwd, and the temporary folder was removed
    assert not absolute.exists()
    assert not os.path.lexists(jail / "cwd" / absolute.name)


def test_zip_above_max_unzipped_is_refused(make_store: Any, jail: Path) -> None:
    store = make_store(max_unzipped=1000)
    small = make_job(store, job_zip({"myjob/app_server/ok.bin": b"\0" * 500}))
    assert read(store.get_app(small, "app_server"), "ok.bin") == b"\0" * 500  # under the bound: fine
    big = make_job(store, job_zip({"myjob/app_server/big.bin": b"\0" * 5000}))
    assert len(store.get_content(big.meta) or b"") < 1000  # compressed it is small: a tiny zip bomb
    with pytest.raises(ValueError, match="1000"):
        store.get_app(big, "app_server")
    assert files_under(jail) == []


def test_many_small_members_add_up(make_store: Any) -> None:
    store = make_store(max_unzipped=1000)
    files = {f"myjob/app_server/f{i}.txt": b"x" * 100 for i in range(11)}
    job = make_job(store, job_zip(files))
    with pytest.raises(ValueError):
        store.get_app(job, "app_server")
