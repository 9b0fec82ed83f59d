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

#: A job id (no "/": key parsing relies on it, see Keys.parse_chunk).
JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
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
    if not JOB_ID.fullmatch(jid):
        raise InvalidJobId(jid)
    return jid


def check_app_name(jid: str, app_name: object) -> str:
    if not isinstance(app_name, str) or not app_name or not JOB_ID.fullmatch(app_name):
        raise InvalidComponent(jid, app_name, "an app name must match ^[A-Za-z0-9][A-Za-z0-9._-]*$")
    return app_name


def _utf8(text: str) -> bytes | None:
    """``text`` as UTF-8, or None when it cannot be (a lone surrogate): such names never reach Redis,
    whose client would fail deep inside while encoding them."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return None


def is_valid_component(component: object) -> bool:
    if not isinstance(component, str) or _utf8(component) is None:
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


#: Default bound on the encoded size of the meta written by one call (names and JSON values).
DEFAULT_MAX_META_BYTES = 1024 * 1024


def _encode_value(jid: object, what: str, value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError as e:  # orjson.JSONEncodeError is a TypeError
        if "ecursion" in str(e):
            why = "nested too deeply: orjson encodes at most 254 levels of arrays and objects"
        else:
            why = f"not JSON-serializable: {e}"
        raise InvalidMeta(jid, f"{what} is {why}") from None


def _check_size(jid: object, size: int, max_bytes: int, what: str) -> None:
    if size > max_bytes:
        raise InvalidMeta(
            jid,
            f"{what} is {size} bytes, above the limit of {max_bytes} (encoded as JSON): keep large data "
            "in the job's content or a component, not in its meta",
        )


def encode_fields(
    jid: object, meta: Mapping[Any, Any], *, max_bytes: int = DEFAULT_MAX_META_BYTES
) -> list[bytes | str]:
    """Flatten meta into ``[key, orjson(value), ...]`` (UTF-8 bytes) for HSET, or raise ``InvalidMeta``.

    Refused, naming the key and the problem: a key that is not a non-empty str without NUL, or is
    not valid UTF-8 (a lone surrogate); a value orjson cannot encode (sets, bytes, arbitrary
    objects, ints beyond 64 bits, non-str dict keys at any depth, nesting deeper than 254 levels,
    str with lone surrogates); and meta whose encoded size (keys and values) exceeds ``max_bytes``.

    NaN and +/-infinity are accepted and stored as JSON ``null`` (JSON has no such numbers; orjson
    and JavaScript write null too), so they read back as None. Values orjson encodes natively are
    stored as their JSON form: tuples read back as lists, datetimes, UUIDs and enums as strings.
    """
    # The usual case in one tight pass; anything unusual takes the checked pass below, which
    # names the key and the problem.
    out: list[bytes | str] = []
    size = 0
    try:
        for key, value in meta.items():
            if type(key) is not str or not key or "\x00" in key:
                break
            raw, value_json = key.encode(), orjson.dumps(value)
            size += len(raw) + len(value_json)
            out += (raw, value_json)
        else:
            if size <= max_bytes:
                return out
    except (TypeError, UnicodeEncodeError):  # (orjson.JSONEncodeError is a TypeError)
        pass
    out, size = [], 0
    for key, value in meta.items():
        name = getattr(key, "value", key)  # a JobMetaKey works as a key
        if not isinstance(name, str) or not name or "\x00" in name:
            raise InvalidMeta(jid, f"meta keys must be non-empty strings without NUL, got {key!r}")
        raw_name = _utf8(name)
        if raw_name is None:
            raise InvalidMeta(jid, f"meta key {name!r} is not valid UTF-8 (a lone surrogate?)")
        encoded = _encode_value(jid, f"the value of {name!r}", value)
        size += len(raw_name) + len(encoded)
        _check_size(jid, size, max_bytes, "meta")
        out += [raw_name, encoded]
    return out


def approval_field(jid: object, reviewer: object) -> bytes:
    """The job hash field holding ``reviewer``'s verdict; ``InvalidMeta`` for a name that is not a
    non-empty, UTF-8-encodable str."""
    if not isinstance(reviewer, str) or not reviewer:
        raise InvalidMeta(jid, f"reviewer names must be non-empty strings, got {reviewer!r}")
    field = _utf8(APPROVAL_FIELD + reviewer)
    if field is None:
        raise InvalidMeta(jid, f"reviewer name {reviewer!r} is not valid UTF-8 (a lone surrogate?)")
    return field


def approval_pairs(
    jid: object, approvals: Mapping[Any, Any], *, max_bytes: int = DEFAULT_MAX_META_BYTES
) -> list[bytes | str]:
    """``[APPROVAL_FIELD + reviewer, orjson([approved, note]), ...]`` for HSET, or ``InvalidMeta``:
    reviewers as ``approval_field`` requires, verdicts as ``encode_fields`` requires of values
    (NaN stored as null), and at most ``max_bytes`` in all."""
    out: list[bytes | str] = []
    size = 0
    for reviewer, verdict in approvals.items():
        field = approval_field(jid, reviewer)
        encoded = _encode_value(jid, f"the approval of {reviewer!r}", verdict)
        size += len(field) + len(encoded)
        _check_size(jid, size, max_bytes, "approvals")
        out += [field, encoded]
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
    client rather than on the one Redis every process shares. A job without approval fields is
    spliced by one bytes formatting, with its schema's cached format (``_splice``).
    """
    one = _splice(flat) if flat else None
    if one is None:
        return _gathered(flat)
    meta: dict[str, Any] = orjson.loads(one)
    return meta


def _gathered(flat: list[bytes]) -> dict[str, Any]:
    """``decode_flat_meta`` of any hash, approval fields gathered."""
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


#: A job's field names, in the order its hash gives them, -> the bytes format that splices its
#: values into a JSON object (``b'{"name":%b,"status":%b}'``), or None for names that include an
#: approval field or an ``approvals`` field (``_gathered`` decodes those). Jobs written by the same
#: code share a few such schemas.
_FORMATS: dict[tuple[bytes, ...], bytes | None] = {}
_MAX_FORMATS = 1_000
#: A schema whose format is longer than this is used once and not cached: the cache holds at most
#: _MAX_FORMATS * 2 * _MAX_FORMAT_BYTES of names (8 MiB).
_MAX_FORMAT_BYTES = 4096


def _splice(flat: list[bytes]) -> bytes | None:
    """A job's hash (a non-empty flat field/value array) as a JSON object, its values formatted into
    its schema's format in one C call; None for a schema with approvals. A new schema is cached
    unless its format is long (the cache starts afresh once it holds ``_MAX_FORMATS``)."""
    names = tuple(flat[::2])
    try:
        form = _FORMATS[names]
    except KeyError:
        form = _format(names)
        if form is None or len(form) <= _MAX_FORMAT_BYTES:
            if len(_FORMATS) >= _MAX_FORMATS:
                _FORMATS.clear()
            _FORMATS[names] = form
    return None if form is None else form % tuple(flat[1::2])


def _format(names: tuple[bytes, ...]) -> bytes | None:
    if any(name.startswith(_APPROVAL_PREFIX) or name == b"approvals" for name in names):
        return None
    return b"{" + b",".join([_quoted(name).replace(b"%", b"%%") + b":%b" for name in names]) + b"}"


def decode_metas(replies: list[list[bytes]]) -> list[dict[str, Any]]:
    """``decode_flat_meta`` for many jobs at once (empty replies skipped): every job without
    approval fields is spliced into one JSON array and decoded by a single ``orjson.loads``.

    A job with approval fields is decoded alone (``_gathered``).
    """
    parts: list[bytes] = []
    special: dict[int, dict[str, Any]] = {}
    for flat in replies:
        if not flat:
            continue
        one = _splice(flat)
        if one is None:
            special[len(parts)] = _gathered(flat)
            one = b"0"
        parts.append(one)
    if not parts:
        return []
    metas: list[dict[str, Any]] = orjson.loads(b"[" + b",".join(parts) + b"]")
    for i, meta in special.items():
        metas[i] = meta
    return metas
