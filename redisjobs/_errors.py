"""Exceptions raised by redisjobs.

Every exception derives from ``RedisJobsError``; where a caller would naturally catch a builtin,
the exception subclasses it too, so ``except LookupError`` or ``except ValueError`` keeps working::

    RedisJobsError
    ├── JobNotFound        (LookupError)   no job with that id
    ├── JobExists          (ValueError)    create/clone with an id already taken
    ├── InvalidJobId       (ValueError)    empty, not a str, or not ^[A-Za-z0-9][A-Za-z0-9._-]*$
    ├── InvalidMeta        (ValueError)    meta that cannot be stored (keys, types, priority, ...)
    ├── InvalidComponent   (ValueError)    a storage component or app name that is not allowed
    ├── InvalidStatus      (ValueError)    not one of RunStatus's values
    ├── InvalidTransition  (ValueError)    the status table forbids old -> new
    ├── StatusConflict                     compare-and-set: the job's status was not the expected one
    ├── NotOwner           (PermissionError) a claimed job touched by a process that does not hold it
    ├── BlobNotFound       (LookupError)   a component the job does not have
    ├── RecordNotFound     (LookupError)   update of a submit-token record that does not exist
    ├── UploadExpired                      an upload outlived gc()'s grace period and was collected
    ├── BlobCorrupt                        stored bytes do not match their manifest (size or sha256)
    ├── BlobTooLarge       (ValueError)    a blob above the manager's max_blob_size: nothing stored
    ├── StoreUnavailable   (redis ConnectionError)  Redis did not answer, after the retries
    │   └── NotReplicated                  too few replicas confirmed a write in time (wait_replicas)
    └── StoreFull                          Redis is out of memory (maxmemory, noeviction): nothing written

Scripts report failures as small negative integers; ``raise_for_code`` is the one place that
turns them into these exceptions.
"""

from __future__ import annotations

from typing import NoReturn

import redis


class RedisJobsError(Exception):
    """Root of every redisjobs exception."""


class JobNotFound(RedisJobsError, LookupError):
    def __init__(self, jid: str) -> None:
        self.jid = jid
        super().__init__(f"job {jid!r} not found: check the id (list jobs to see what exists)")


class JobExists(RedisJobsError, ValueError):
    def __init__(self, jid: str) -> None:
        self.jid = jid
        super().__init__(f"job {jid!r} already exists: jobs are never overwritten; choose another id")


class InvalidJobId(RedisJobsError, ValueError):
    def __init__(self, jid: object, why: str = "") -> None:
        self.jid = jid
        reason = why or "a job id must be a non-empty str matching ^[A-Za-z0-9][A-Za-z0-9._-]*$"
        super().__init__(f"invalid job id {jid!r}: {reason}")


class InvalidMeta(RedisJobsError, ValueError):
    def __init__(self, jid: object, why: str) -> None:
        self.jid = jid
        super().__init__(f"invalid meta for job {jid!r}: {why}")


class InvalidComponent(RedisJobsError, ValueError):
    def __init__(self, jid: object, component: object, why: str = "") -> None:
        self.jid = jid
        self.component = component
        reason = (
            why or "valid components are data, meta, workspace, and names starting with ERRORLOG_ or LOG_"
        )
        super().__init__(f"invalid component {component!r} for job {jid!r}: {reason}")


def _for_job(jid: object) -> str:
    """ " for job 'x'" when the error is about a job, "" when it is not (a listing, a recovery)."""
    return f" for job {jid!r}" if jid is not None else ""


class InvalidStatus(RedisJobsError, ValueError):
    def __init__(self, jid: object, status: object) -> None:
        self.jid = jid
        self.status = status
        super().__init__(f"invalid status {status!r}{_for_job(jid)}: use a RunStatus value")


class InvalidTransition(RedisJobsError, ValueError):
    def __init__(self, jid: str | None, old: str, new: str) -> None:
        self.jid, self.old, self.new = jid, old, new
        who = f"job {jid!r}" if jid is not None else "a job"
        super().__init__(f"{who} cannot go from {old} to {new}: the status table forbids it")


class StatusConflict(RedisJobsError):
    def __init__(self, jid: str, expected: str, actual: str) -> None:
        self.jid, self.expected, self.actual = jid, expected, actual
        super().__init__(
            f"job {jid!r} is {actual}, not {expected}: it changed meanwhile; re-read the job and decide again"
        )


class BlobNotFound(RedisJobsError, LookupError):
    def __init__(self, jid: str, component: str) -> None:
        self.jid, self.component = jid, component
        super().__init__(f"job {jid!r} has no component {component!r}")


class RecordNotFound(RedisJobsError, LookupError):
    def __init__(self, scope: str) -> None:
        self.scope = scope
        super().__init__(f"no submit record with scope {scope}: create it first (create_submit_record)")


class NotOwner(RedisJobsError, PermissionError):
    def __init__(self, jid: str, owner: str, holder: str) -> None:
        self.jid, self.owner, self.holder = jid, owner, holder
        held = f"held by {holder!r}" if holder else "not held by anyone (its lease was reaped or released)"
        super().__init__(
            f"job {jid!r} is {held}, not by {owner or 'the caller'!r}: only the owner that claimed it "
            "may start, renew or release it"
        )


class LeaseExpired(NotOwner):
    """The owner's lease on a claimed job ran out before it started the job: ``reap`` takes such a
    job back (to the queue), so it may not start. Renew the lease sooner, or claim again."""

    def __init__(self, jid: str, owner: str, holder: str) -> None:
        self.jid, self.owner, self.holder = jid, owner, holder
        RedisJobsError.__init__(
            self,
            f"the lease of {holder!r} on job {jid!r} ran out before it started the job: reap() puts "
            "the job back in the queue; renew a lease before it runs out, or claim again",
        )


class BlobTooLarge(RedisJobsError, ValueError):
    def __init__(self, jid: str, component: str, limit: int) -> None:
        self.jid, self.component, self.limit = jid, component, limit
        super().__init__(
            f"component {component!r} of job {jid!r} is larger than max_blob_size ({limit} bytes): "
            "nothing was stored; raise the limit if this size is expected"
        )


class UploadExpired(RedisJobsError):
    def __init__(self, jid: str) -> None:
        self.jid = jid
        super().__init__(
            f"upload for job {jid!r} outlived gc()'s grace period and was collected: nothing was stored; "
            "retry, or give gc() a longer grace"
        )


class BlobCorrupt(RedisJobsError):
    def __init__(self, jid: str, component: str, why: str) -> None:
        self.jid, self.component = jid, component
        super().__init__(f"component {component!r} of job {jid!r} is corrupt: {why}")


def _about(op: str, jid: object) -> str:
    return f"{op} of job {jid!r}" if jid is not None else op


class StoreUnavailable(RedisJobsError, redis.exceptions.ConnectionError):
    """Redis could not be reached, or did not answer within the socket timeout, after the retries.

    Every operation is safe to repeat, so the caller may simply try again later.
    """

    def __init__(self, op: str, jid: object, where: str, cause: BaseException) -> None:
        self.op, self.jid, self.where = op, jid, where
        super().__init__(
            f"{_about(op, jid)} failed: Redis at {where} is unavailable ({cause}); nothing is half-written: "
            "retry once it is back"
        )


class NotReplicated(StoreUnavailable):
    """The master applied a write, but fewer replicas than ``wait_replicas`` confirmed it in time:
    a failover now could lose it. Repeating the call is safe."""

    def __init__(self, op: str, jid: object, where: str, acked: int, wanted: int, timeout: float) -> None:
        self.acked, self.wanted = acked, wanted
        RedisJobsError.__init__(
            self,
            f"{_about(op, jid)}: Redis at {where} applied it, but only {acked} of {wanted} replicas "
            f"confirmed it within {timeout:g} s: it may be lost if the master fails now; check the "
            "replicas, then repeat the call (safe)",
        )
        self.op, self.jid, self.where = op, jid, where


class StoreFull(RedisJobsError):
    """Redis refused a write because it reached ``maxmemory`` (with the noeviction policy)."""

    def __init__(self, op: str, jid: object, where: str) -> None:
        self.op, self.jid, self.where = op, jid, where
        super().__init__(
            f"{_about(op, jid)} failed: Redis at {where} is out of memory (maxmemory reached); nothing was "
            "stored: free space (delete jobs, run gc) or raise maxmemory"
        )


# Codes the Lua scripts return (first element of their reply). Keep in step with lua/includes.
OK = 1
NOOP = 0
E_NOT_FOUND = -1
E_EXISTS = -2
E_TRANSITION = -3
E_CONFLICT = -4
E_UPLOAD_EXPIRED = -5
E_NOT_OWNER = -6
E_LEASE_EXPIRED = -7


def raise_for_code(
    code: int, jid: str, detail: list[bytes], new_status: str = "", expected: str = "", owner: str = ""
) -> None:
    """Raise the exception a script's failure code stands for; return on success codes."""
    if code >= 0:
        return
    current = detail[0].decode() if detail else "?"
    _raise(code, jid, current, new_status, expected, owner)


def _raise(code: int, jid: str, current: str, new_status: str, expected: str, owner: str) -> NoReturn:
    if code == E_NOT_FOUND:
        raise JobNotFound(jid)
    if code == E_EXISTS:
        raise JobExists(jid)
    if code == E_TRANSITION:
        raise InvalidTransition(jid, current, new_status)
    if code == E_CONFLICT:
        raise StatusConflict(jid, expected, current)
    if code == E_UPLOAD_EXPIRED:
        raise UploadExpired(jid)
    if code == E_NOT_OWNER:
        raise NotOwner(jid, owner, current)
    if code == E_LEASE_EXPIRED:
        raise LeaseExpired(jid, owner, current)
    raise RedisJobsError(f"job {jid!r}: unexpected script result code {code}")
