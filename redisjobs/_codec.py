"""Checks and orjson codecs: what may be stored, and how meta travels to and from Redis.

Meta is kept one field per top-level key, each value orjson-encoded, so a partial update writes
only its fields and Lua never decodes user JSON.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from ._errors import InvalidComponent, InvalidJobId, InvalidMeta, InvalidStatus
from ._lifecycle import STATUSES

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_STATUS_SET = frozenset(STATUSES)
#: Component prefixes NVFlare allows besides data, meta and workspace (``<PREFIX>_<rest>``).
COMPONENT_PREFIXES = ("ERRORLOG", "LOG")
BASE_COMPONENTS = ("data", "meta", "workspace")
#: Approvals are fields of the job hash named APPROVAL_FIELD + reviewer (one per reviewer, so
#: concurrent reviewers never overwrite each other); meta keys may not contain NUL, so no meta key
#: can collide with one.
APPROVAL_FIELD = "\x00approval:"
#: |priority| must stay below 2^21 so queue scores stay exact doubles.
MAX_PRIORITY = 2**21 - 1


def check_job_id(jid: object) -> str:
    """Return ``jid`` if it is a valid job id, else raise ``InvalidJobId`` (before any Redis call)."""
    if not isinstance(jid, str) or not jid:
        raise InvalidJobId(jid, "a job id must be a non-empty str")
    if not _ID.fullmatch(jid):
        raise InvalidJobId(jid)
    return jid


def check_app_name(jid: str, app_name: object) -> str:
    if not isinstance(app_name, str) or not app_name or not _ID.fullmatch(app_name):
        raise InvalidComponent(jid, app_name, "an app name must match ^[A-Za-z0-9][A-Za-z0-9._-]*$")
    return app_name


def is_valid_component(component: object) -> bool:
    if not isinstance(component, str):
        return False
    if component in BASE_COMPONENTS or component in COMPONENT_PREFIXES:
        return True
    return any(component.startswith(p + "_") for p in COMPONENT_PREFIXES)


def check_component(jid: str, component: object) -> str:
    if not is_valid_component(component) or any(c in str(component) for c in "/\\\x00"):
        raise InvalidComponent(jid, component)
    return str(component)


def check_status(jid: object, status: object) -> str:
    """The plain string value of a status given as our enum, NVFlare's enum, or a string."""
    value = getattr(status, "value", status)
    if not isinstance(value, str) or value not in _STATUS_SET:
        raise InvalidStatus(jid, status)
    return value


def check_priority(jid: object, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_PRIORITY:
        raise InvalidMeta(jid, f"priority must be an int with |priority| <= {MAX_PRIORITY}, got {value!r}")
    return value


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def encode_fields(jid: object, meta: Mapping[Any, Any]) -> list[bytes | str]:
    """Flatten meta into ``[key, orjson(value), ...]`` for HSET; raise ``InvalidMeta`` if it can't be."""
    out: list[bytes | str] = []
    for key, value in meta.items():
        name = getattr(key, "value", key)  # a JobMetaKey works as a key
        if not isinstance(name, str) or not name or "\x00" in name:
            raise InvalidMeta(jid, f"meta keys must be non-empty strings without NUL, got {key!r}")
        try:
            out += [name, orjson.dumps(value)]
        except TypeError as e:
            raise InvalidMeta(jid, f"the value of {name!r} is not JSON-serializable: {e}") from None
    return out


def approval_pairs(jid: object, approvals: Mapping[str, Any]) -> list[bytes | str]:
    """``[APPROVAL_FIELD + reviewer, orjson([approved, note]), ...]`` for HSET."""
    out: list[bytes | str] = []
    for reviewer, verdict in approvals.items():
        if not isinstance(reviewer, str) or not reviewer:
            raise InvalidMeta(jid, f"reviewer names must be non-empty strings, got {reviewer!r}")
        try:
            out += [APPROVAL_FIELD + reviewer, orjson.dumps(verdict)]
        except TypeError as e:
            raise InvalidMeta(jid, f"the approval of {reviewer!r} is not JSON-serializable: {e}") from None
    return out


_APPROVAL_PREFIX = APPROVAL_FIELD.encode()
#: JSON-quoted field names, b'"name"', cached: meta keys repeat from job to job.
_QUOTED: dict[bytes, bytes] = {}


def _quoted(name: bytes) -> bytes:
    quoted = _QUOTED.get(name)
    if quoted is None:
        quoted = orjson.dumps(name.decode())
        if len(_QUOTED) < 10_000:
            _QUOTED[name] = quoted
    return quoted


def decode_flat_meta(flat: list[bytes]) -> dict[str, Any]:
    """Rebuild a job's meta dict (a fresh one on every call) from its hash, given as a flat
    field/value array: meta fields, and approval fields gathered into ``meta["approvals"]`` (present
    once any approval exists, or when the job was given an ``approvals`` key).

    The values are JSON texts already, so the fields are spliced into one JSON object and decoded
    with one ``orjson.loads``: listings decode thousands of jobs, and this keeps the work on the
    client rather than on the one Redis every process shares.
    """
    parts: list[bytes] = []
    approvals: list[bytes] = []
    for i in range(0, len(flat), 2):
        name = flat[i]
        if name.startswith(_APPROVAL_PREFIX):
            approvals += [_quoted(name[len(_APPROVAL_PREFIX) :]), b":", flat[i + 1], b","]
        else:
            parts += [_quoted(name), b":", flat[i + 1], b","]
    if not parts:
        return {}
    parts[-1] = b"}"
    meta: dict[str, Any] = orjson.loads(b"{" + b"".join(parts))
    if approvals or "approvals" in meta:
        given = meta.get("approvals")
        merged: dict[str, Any] = given if isinstance(given, dict) else {}
        if approvals:
            approvals[-1] = b"}"
            merged.update(orjson.loads(b"{" + b"".join(approvals)))
        meta["approvals"] = merged
    return meta


def pairs_to_dict(flat: list[bytes]) -> dict[bytes, bytes]:
    """A Lua reply of HGETALL (a flat list) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))
