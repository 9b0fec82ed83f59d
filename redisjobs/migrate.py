"""Import an NVFlare filesystem job store (``SimpleJobDefManager`` on ``FilesystemStorage``) into Redis.

NVFlare keeps one folder per job under its ``uri_root`` (``<jid>/meta`` as JSON, ``<jid>/data``, and
``workspace``, ``ERRORLOG_<client>`` and ``LOG_<file>_<client>`` once written), and its submit-token
records beside it, in ``job_submit_records/<sha>/<sha>/<sha>/meta``. ``migrate`` copies all of it:

- each job keeps its id, its meta exactly (status, times, approvals) and its place in submit order;
- it is idempotent: a job or record already in Redis with the same content is left alone, one whose
  stored content differs is reported as a conflict and never overwritten; a job interrupted half-way
  (its data stored, a component not) is completed by the next run;
- the source is never modified;
- a job of NVFlare's old storage format (no ``data_storage_format`` in its meta: ``data`` holds a
  fobs dict with the job's zip and maybe its workspace) is unwrapped, so that its content reads
  back as the zip NVFlare's ``get_content`` returns; this needs nvflare installed;
- the report compares counts, and the sha256 of every blob on disk with the sha256 that Redis holds.
"""

from __future__ import annotations

import ast
import contextlib
import datetime
import hashlib
import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ._codec import check_job_id, is_valid_component
from ._errors import InvalidJobId, RedisJobsError
from .manager import RedisJobDefManager

RECORDS_FOLDER = "job_submit_records"
#: Files NVFlare keeps in a job folder that are not components (tags such as "scheduled").
_NOT_COMPONENTS = {"meta", "scheduled"}


@dataclass
class MigrationReport:
    """What ``migrate`` found, did and verified."""

    jobs_found: int = 0
    jobs_imported: int = 0
    jobs_unchanged: int = 0
    components_imported: int = 0
    records_found: int = 0
    records_imported: int = 0
    records_unchanged: int = 0
    blobs_verified: int = 0
    dry_run: bool = False
    #: jobs or records that exist in Redis with different content (left as they are)
    conflicts: list[str] = field(default_factory=list)
    #: jobs or records that could not be read or stored
    errors: list[str] = field(default_factory=list)
    #: blobs whose sha256 in Redis differs from the file on disk after the import
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.conflicts or self.errors or self.mismatches)


def sha256_of(source: str | bytes) -> str:
    """sha256 of bytes, or of a file's contents read in blocks."""
    if isinstance(source, bytes):
        return hashlib.sha256(source).hexdigest()
    digest = hashlib.sha256()
    with open(source, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def read_meta(path: str) -> dict[str, Any]:
    """A meta file as NVFlare writes it: JSON, or (old stores) a JSON string of a Python literal."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    value = json.loads(text)
    if isinstance(value, str):
        value = ast.literal_eval(value)
    if not isinstance(value, dict):
        raise ValueError(f"{path}: meta is not a JSON object")
    return value


@dataclass
class _Job:
    jid: str
    folder: str
    meta: dict[str, Any]
    components: dict[str, str | bytes]  # name -> file path, or the bytes of an unwrapped old-format blob


def _unwrap_legacy(job: _Job) -> None:
    """NVFlare's old format: ``data`` is a fobs dict {"job_data_": zip, "workspace_data_": ...}."""
    try:
        from nvflare.fuel.utils import fobs
    except ImportError:
        raise ValueError("old-format job (no data_storage_format): install nvflare to migrate it") from None
    data = job.components["data"]
    if isinstance(data, str):
        with open(data, "rb") as f:
            data = f.read()
    payload = fobs.loads(data)
    if not isinstance(payload, dict) or not isinstance(payload.get("job_data_"), bytes):
        raise ValueError("old-format job whose data holds no job_data_")
    job.components["data"] = payload["job_data_"]
    if isinstance(payload.get("workspace_data_"), bytes) and "workspace" not in job.components:
        job.components["workspace"] = payload["workspace_data_"]


def find_jobs(jobs_dir: str) -> Iterator[_Job | str]:
    """Each job folder of an NVFlare store (a ``_Job``), or an error message for one that can't be read."""
    for name in sorted(os.listdir(jobs_dir)):
        folder = os.path.join(jobs_dir, name)
        if not (
            os.path.isfile(os.path.join(folder, "meta")) and os.path.isfile(os.path.join(folder, "data"))
        ):
            continue
        try:
            check_job_id(name)
            meta = read_meta(os.path.join(folder, "meta"))
        except (InvalidJobId, ValueError, SyntaxError, OSError) as e:
            yield f"job folder {name!r}: {e}"
            continue
        components: dict[str, str | bytes] = {
            entry: os.path.join(folder, entry)
            for entry in sorted(os.listdir(folder))
            if entry not in _NOT_COMPONENTS
            and is_valid_component(entry)
            and os.path.isfile(os.path.join(folder, entry))
        }
        job = _Job(name, folder, meta, components)
        if not meta.get("data_storage_format"):
            try:
                _unwrap_legacy(job)
            except (ValueError, OSError, RuntimeError) as e:
                yield f"job {name!r}: {e}"
                continue
        yield job


def find_records(jobs_dir: str) -> Iterator[dict[str, Any] | str]:
    """Submit-token records stored beside the jobs folder (NVFlare 2.8+)."""
    root = os.path.join(os.path.dirname(os.path.abspath(jobs_dir.rstrip(os.sep))), RECORDS_FOLDER)
    if not os.path.isdir(root):
        return
    for folder, _dirs, files in sorted(os.walk(root)):
        if "meta" in files:
            try:
                yield read_meta(os.path.join(folder, "meta"))
            except (ValueError, SyntaxError, OSError) as e:
                yield f"submit record {folder!r}: {e}"


def migrate(
    manager: RedisJobDefManager,
    jobs_dir: str,
    *,
    dry_run: bool = False,
    progress: Callable[[str], None] | None = None,
) -> MigrationReport:
    """Import the NVFlare job store at ``jobs_dir`` (its ``uri_root``) into ``manager``'s namespace.

    ``progress`` is called once per job and record handled (for a progress bar). With ``dry_run``
    nothing is written: the report says what would be imported.
    """
    if not os.path.isdir(jobs_dir):
        raise FileNotFoundError(f"no such folder: {jobs_dir!r} (give the job store's uri_root)")
    report = MigrationReport(dry_run=dry_run)
    found = list(find_jobs(jobs_dir))
    jobs = [j for j in found if isinstance(j, _Job)]
    jobs.sort(key=lambda j: _submitted(j.meta.get("submit_time")))
    report.errors += [j for j in found if isinstance(j, str)]
    report.jobs_found = len(jobs)
    for job in jobs:
        try:
            _migrate_job(manager, job, report)
        except (RedisJobsError, OSError, ValueError) as e:
            report.errors.append(f"job {job.jid!r}: {e}")
        if progress:
            progress(job.jid)
    for record in find_records(jobs_dir):
        if isinstance(record, str):
            report.errors.append(record)
            continue
        report.records_found += 1
        _migrate_record(manager, record, report)
        if progress:
            progress(str(record.get("job_id", "")))
    return report


def _submitted(value: Any) -> float:
    """A job's submit time as epoch seconds, for the import order: NVFlare writes a number; an ISO
    8601 text is read as one (naive: local time); anything else sorts first. The meta is imported
    as it is either way."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        with contextlib.suppress(OverflowError):  # (an int beyond a float's range)
            return float(value) if math.isfinite(value) else 0.0
    if isinstance(value, str):
        with contextlib.suppress(ValueError, OverflowError):
            return float(value) if math.isfinite(float(value)) else 0.0
        with contextlib.suppress(ValueError, OverflowError, OSError):
            return datetime.datetime.fromisoformat(value).timestamp()
    return 0.0


def _stored_shas(manager: RedisJobDefManager, jid: str) -> dict[str, str]:
    return {
        comp.decode(): json.loads(raw)["sha256"]
        for comp, raw in manager.client.hgetall(manager.keys.blobs(jid)).items()
    }


def _migrate_job(manager: RedisJobDefManager, job: _Job, report: MigrationReport) -> None:
    existing = manager.get_job(job.jid)
    if existing is not None and existing.meta != job.meta:
        report.conflicts.append(f"job {job.jid!r}: already in Redis with different meta")
        return
    shas = _stored_shas(manager, job.jid) if existing is not None else {}
    on_disk = {name: sha256_of(source) for name, source in job.components.items()}
    differing = [n for n in on_disk if n in shas and shas[n] != on_disk[n]]
    if differing:
        report.conflicts.append(f"job {job.jid!r}: already in Redis with different {', '.join(differing)}")
        return
    missing = [n for n in on_disk if n not in shas]
    if not missing:
        report.jobs_unchanged += 1
        report.blobs_verified += len(on_disk)
        return
    if report.dry_run:
        report.jobs_imported += existing is None
        report.components_imported += len([n for n in missing if n != "data"])
        return
    if existing is None:
        manager._store_new(job.jid, dict(job.meta), job.components["data"], op="import")
        report.jobs_imported += 1
    for name in missing:
        if name != "data":
            manager._put_component(job.jid, name, job.components[name], consume=False)
            report.components_imported += 1
    shas = _stored_shas(manager, job.jid)
    for name, sha in on_disk.items():
        if shas.get(name) != sha:
            report.mismatches.append(f"job {job.jid!r} component {name!r}: sha256 {shas.get(name)} != {sha}")
        else:
            report.blobs_verified += 1


def _migrate_record(manager: RedisJobDefManager, record: dict[str, Any], report: MigrationReport) -> None:
    who = {k: record.get(f"submitter_{k}", "") for k in ("name", "org", "role")}
    existing = manager.get_submit_record(record.get("study", ""), who, record.get("submit_token", ""))
    if existing is not None:
        if existing == record:
            report.records_unchanged += 1
        else:
            report.conflicts.append(f"submit record of job {record.get('job_id')!r}: differs in Redis")
        return
    if not report.dry_run:
        manager.create_submit_record(record)
    report.records_imported += 1
