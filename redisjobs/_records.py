"""Submit-token records (NVFlare 2.8+): the facts that let a retried submission find its job.

A record is scoped by the sha256 of study, submitter (name, org, role) and token, each hashed as
canonical JSON exactly as NVFlare does, so records migrated from an NVFlare store keep their scope.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import posixpath
import uuid
import zipfile
from collections.abc import Iterator
from typing import Any

from ._types import SubmitRecordKey as K
from ._types import SubmitRecordState

#: Files a signed submission adds that must not change a job's content hash.
VOLATILE_SUBMIT_FILES = frozenset({".__nvfl_sig.json", ".__nvfl_submitter.crt"})
#: Largest single member hashed (as NVFlare): bigger ones are refused.
MAX_HASHED_MEMBER = 10 * 1024 * 1024


def canonical_json_hash(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def submitter_to_dict(submitter: Any) -> dict[str, str]:
    """``{name, org, role}`` from a dict (either key style), an object with such attributes, or a name."""
    if isinstance(submitter, dict):
        return {
            f: str(submitter.get(f) or submitter.get(f"submitter_{f}") or "") for f in ("name", "org", "role")
        }
    name = getattr(submitter, "name", "") or getattr(submitter, "submitter_name", "") or str(submitter or "")
    return {
        "name": name,
        "org": getattr(submitter, "org", "") or getattr(submitter, "submitter_org", "") or "",
        "role": getattr(submitter, "role", "") or getattr(submitter, "submitter_role", "") or "",
    }


def scope_suffix(study: str, submitter: Any, token: str) -> str:
    """The record's key suffix: ``<sha(study)>:<sha(submitter)>:<sha(token)>``."""
    parts = (study or "", submitter_to_dict(submitter), token or "")
    return ":".join(canonical_json_hash(p) for p in parts)


def suffix_of_record(record: dict[str, Any]) -> str:
    submitter = {
        "name": record.get(K.SUBMITTER_NAME.value, ""),
        "org": record.get(K.SUBMITTER_ORG.value, ""),
        "role": record.get(K.SUBMITTER_ROLE.value, ""),
    }
    return scope_suffix(record.get(K.STUDY.value, ""), submitter, record.get(K.SUBMIT_TOKEN.value, ""))


def new_submit_record(
    study: str,
    submitter: Any,
    submit_token: str,
    job_content_hash: str,
    job_name: str = "",
    job_folder_name: str = "",
    job_id: str | None = None,
    state: str = SubmitRecordState.CREATING.value,
) -> dict[str, Any]:
    who = submitter_to_dict(submitter)
    return {
        K.SCHEMA_VERSION.value: 1,
        K.STATE.value: getattr(state, "value", state),
        K.SUBMIT_TOKEN.value: submit_token,
        K.JOB_ID.value: job_id or str(uuid.uuid4()),
        K.STUDY.value: study,
        K.SUBMITTER_NAME.value: who["name"],
        K.SUBMITTER_ORG.value: who["org"],
        K.SUBMITTER_ROLE.value: who["role"],
        K.JOB_NAME.value: job_name,
        K.JOB_FOLDER_NAME.value: job_folder_name,
        K.JOB_CONTENT_HASH.value: job_content_hash,
        K.SUBMIT_TIME.value: datetime.datetime.now().astimezone().isoformat(),
    }


def job_content_hash(content: str | bytes | os.PathLike[str]) -> str:
    """``sha256:<hex>`` over the job's files (path and bytes, length-prefixed, sorted by path).

    A folder is hashed relative to itself; a zip (bytes or file) may wrap everything in one top
    folder, which is stripped, so a folder and ``zip -r job.zip job/`` hash the same.
    """
    digest = hashlib.sha256()
    for rel, data in _canonical_files(content):
        encoded = rel.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "big") + encoded)
        digest.update(len(data).to_bytes(8, "big") + data)
    return "sha256:" + digest.hexdigest()


def _canonical_files(content: str | bytes | os.PathLike[str]) -> Iterator[tuple[str, bytes]]:
    if isinstance(content, bytes):
        yield from _zip_files(content)
        return
    if not isinstance(content, str | os.PathLike):
        raise TypeError(f"job content must be bytes or a path, not {type(content)}")
    path = os.fspath(content)
    if os.path.isdir(path):
        found = []
        for root, _dirs, names in os.walk(path):
            for name in names:
                full = os.path.join(root, name)
                if name in VOLATILE_SUBMIT_FILES or os.path.islink(full):
                    continue
                found.append((posixpath.join(*os.path.relpath(full, path).split(os.sep)), full))
        for rel, full in sorted(found):
            with open(full, "rb") as f:
                yield rel, f.read()
        return
    with open(path, "rb") as f:
        yield from _zip_files(f.read())


def _zip_files(data: bytes) -> Iterator[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = []
        for info in zf.infolist():
            if info.is_dir():
                continue
            rel = posixpath.normpath(info.filename)
            if rel.startswith("../") or rel in {".", ".."} or posixpath.isabs(rel):
                raise ValueError(f"zip member has an unsafe path: {info.filename!r}")
            if posixpath.basename(rel) in VOLATILE_SUBMIT_FILES:
                continue
            if info.file_size > MAX_HASHED_MEMBER:
                raise ValueError(f"zip member above {MAX_HASHED_MEMBER} bytes: {info.filename!r}")
            members.append((rel, info))
        prefix = _single_top_folder([rel for rel, _ in members])
        for rel, info in sorted(members, key=lambda m: m[0]):
            name = rel[len(prefix) :]
            if not name:
                continue
            with zf.open(info) as f:
                body = f.read(MAX_HASHED_MEMBER + 1)
            if len(body) > MAX_HASHED_MEMBER:
                raise ValueError(f"zip member above {MAX_HASHED_MEMBER} bytes: {info.filename!r}")
            yield name, body


def _single_top_folder(paths: list[str]) -> str:
    tops = set()
    for rel in paths:
        head, sep, _ = rel.partition("/")
        if not sep:
            return ""
        tops.add(head)
    return f"{tops.pop()}/" if len(tops) == 1 else ""
