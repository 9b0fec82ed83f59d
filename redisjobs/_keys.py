"""Every Redis key name redisjobs uses is built here, and nowhere else.

A namespace's metadata and indexes share one Redis Cluster hash tag, ``rj:{<namespace>}:``, so every
script touches keys of one slot. Blob chunks carry a per-job tag, ``rj:{<namespace>/<jid>}:``, so a
namespace's bytes spread over a cluster and one job's chunks live together.

=====================================  ==========  ===================================================
key                                    type        holds
=====================================  ==========  ===================================================
``job:<jid>``                          hash        meta: one field per top-level key, orjson values;
                                                   and "\\0approval:<reviewer>" -> ``[approved, note]``
``blobs:<jid>``                        hash        component -> orjson manifest
``inline:<jid>``                       hash        component -> bytes, for blobs small enough to inline
``status:<STATUS>``                    set         ids of the jobs in that status
``jobs``                               zset        every id, scored by a submit sequence number
``queue``                              zset        SUBMITTED ids: -priority * 2^32 + sequence
``seq``                                string      the submit sequence counter
``events``                             stream      one entry per create, transition, approval, delete
``uploads``                            zset        blob uploads in progress: orjson [jid, comp, ver] by start
``leases``                             zset        claimed jobs by lease expiry (server ms)
``owners``                             hash        claimed job id -> owner
``rec:<study>:<submitter>:<token>``    hash        a submit-token record (sha256 parts)
``recjob:<jid>``                       set         record key suffixes of a job id
``{ns/jid}:chunk:<comp>:<ver>:<i>``    string      blob bytes
=====================================  ==========  ===================================================
"""

from __future__ import annotations

from ._codec import JOB_ID
from ._lifecycle import SOURCES, STATUSES

#: What a SCAN or ACL glob pattern treats as special (a backslash escapes any character).
_GLOB = frozenset("*?[]\\^")


def glob_escape(text: str) -> str:
    """``text`` as a glob pattern that matches only itself."""
    return "".join("\\" + c if c in _GLOB else c for c in text)


class Keys:
    """Key names of one namespace. Build it once per manager; its attributes are plain strings."""

    def __init__(self, namespace: str) -> None:
        if not namespace or any(c in namespace for c in "{}\r\n "):
            raise ValueError(f"invalid namespace {namespace!r}: non-empty, without braces or whitespace")
        self.namespace = namespace
        self.prefix = f"rj:{{{namespace}}}:"
        p = self.prefix
        self.jobs = p + "jobs"
        self.queue = p + "queue"
        self.seq = p + "seq"
        self.events = p + "events"
        self.uploads = p + "uploads"
        self.leases = p + "leases"
        self.owners = p + "owners"
        self.status_sets: tuple[str, ...] = tuple(p + "status:" + s for s in STATUSES)
        self._status_set = dict(zip(STATUSES, self.status_sets, strict=True))
        #: status -> its set, then the sets of the statuses that can move to it (SOURCES order):
        #: the sets a status change to it touches (see the update script)
        self.move_sets: dict[str, tuple[str, ...]] = {
            new: (self._status_set[new], *(self._status_set[old] for old in SOURCES[new])) for new in STATUSES
        }
        #: ``job(jid)`` is ``job_prefix + jid`` (bytes, for hot paths that hold ids as bytes).
        self.job_prefix = (p + "job:").encode()
        #: owner -> the record of its last claim (see claim's script)
        self.claim_requests = f"{p}claimreq"
        #: The fixed KEYS of the claim script, in its order.
        self.claim_keys = (self.queue, self.leases, self.owners, self.events,
                           self._status_set["SUBMITTED"], self._status_set["DISPATCHED"],
                           self.claim_requests)  # fmt: skip

    def request(self, rid: str) -> str:
        """A request record: a repeated call's answer (see the scripts' "request record")."""
        return f"{self.prefix}req:{rid}"

    def job(self, jid: str) -> str:
        return f"{self.prefix}job:{jid}"

    def blobs(self, jid: str) -> str:
        return f"{self.prefix}blobs:{jid}"

    def inline(self, jid: str) -> str:
        return f"{self.prefix}inline:{jid}"

    def status(self, status: str) -> str:
        return self._status_set[status]

    def job_pattern(self) -> str:
        """SCAN pattern matching every job hash of the namespace (and no other namespace's)."""
        return f"rj:{{{glob_escape(self.namespace)}}}:job:*"

    def chunk_pattern(self) -> str:
        """SCAN pattern matching every chunk key of the namespace, and also those of namespaces
        named after it and a "/" (``team/prod`` for ``team``): ``parse_chunk`` tells them apart."""
        return f"rj:{{{glob_escape(self.namespace)}/*}}:chunk:*"

    def parse_chunk(self, key: str) -> tuple[str, str, str, int] | None:
        """``(jid, component, version, index)`` of a chunk key built by ``chunk``; None for any
        other key ``chunk_pattern`` matches. A chunk of namespace ``team/prod`` reads, to namespace
        ``team``, as a chunk of a job ``prod/<jid>``, and no job id holds a "/"."""
        head = f"rj:{{{self.namespace}/"
        jid, sep, rest = key[len(head) :].partition("}:chunk:")
        parts = rest.rsplit(":", 2)
        if not key.startswith(head) or not sep or len(parts) != 3 or not JOB_ID.fullmatch(jid):
            return None
        component, version, index = parts
        return (jid, component, version, int(index)) if index.isascii() and index.isdigit() else None

    def chunk(self, jid: str, component: str, version: str, index: int) -> str:
        return f"rj:{{{self.namespace}/{jid}}}:chunk:{component}:{version}:{index}"

    def record(self, suffix: str) -> str:
        return f"{self.prefix}rec:{suffix}"

    def record_index(self, jid: str) -> str:
        return f"{self.prefix}recjob:{jid}"
