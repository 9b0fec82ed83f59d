"""The drop-in ``job_manager`` component for an NVFlare server (``pip install 'redisjobs[nvflare]'``).

Switch a server to it by editing the one ``job_manager`` entry of its ``local/resources.json``
(or ``resources.json.default``), or with ``redisjobs nvflare configure <kit> --url URL``::

    {"id": "job_manager",
     "path": "redisjobs.nvflare.RedisJobDefManager",
     "args": {"uri_root": "...", "job_store_id": "job_store",
              "url": "redis://127.0.0.1:6379/0", "namespace": "fl-prod"}}

What it adds to the core manager, for NVFlare's sake:

- it is a ``JobDefManagerSpec`` (the admin commands check ``isinstance``) and returns NVFlare's
  ``Job`` objects;
- it accepts ``uri_root`` and ``job_store_id`` (POC and deploy tooling write them) and ignores them:
  the jobs live in Redis, under ``namespace``;
- it connects on first use, because the job process constructs the component too and never calls it;
- it raises NVFlare's ``StorageException`` where NVFlare's own store does and its callers catch it;
- on the scheduling path (``get_jobs_to_schedule``, ``get_job``) it never lets an exception escape
  (but ``ValueError`` for an invalid job id, as NVFlare's store raises; the scheduler only passes
  ids the store gave it): one would stop NVFlare's scheduling loop for good, so it logs and returns
  what it can. NVFlare's
  job runner reads ``get_job(...).meta`` without checking for None, so while Redis is unreachable
  ``get_job`` keeps retrying, with backoff, for up to ``scheduling_patience`` seconds (30 by
  default: a restart or a Sentinel failover) before it gives up and returns None;
- a status change the store refuses (a DISPATCHED after an abort) is logged, not raised, so that the
  server's own follow-up status check sees the truth;
- a ``priority`` in a job's meta that is not an int within ``MAX_PRIORITY`` (NVFlare stores any
  value there) is kept as given, and the job queued at priority 0, with a warning.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

import redis
from nvflare.apis.job_def import job_from_meta
from nvflare.apis.job_def_manager_spec import JobDefManagerSpec
from nvflare.apis.storage import StorageException

from . import manager as core
from ._errors import (
    InvalidJobId,
    InvalidMeta,
    InvalidStatus,
    InvalidTransition,
    NotOwner,
    RedisJobsError,
    StatusConflict,
)

log = logging.getLogger("redisjobs.nvflare")

F = TypeVar("F", bound=Callable[..., Any])


@contextlib.contextmanager
def _storage_errors() -> Iterator[None]:
    """Re-raise the store's errors, and Redis being unreachable, as NVFlare's ``StorageException``
    (keeping the cause), as NVFlare's filesystem store does for the same failures: its admin
    commands catch that one. Invalid ids stay ``ValueError``, as in NVFlare."""
    try:
        yield
    except (InvalidJobId, InvalidStatus):
        raise
    except (RedisJobsError, redis.RedisError) as e:
        raise StorageException(str(e)) from e


def _as_storage_errors(method: F) -> F:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _storage_errors():
            return method(*args, **kwargs)

    return cast(F, wrapper)


class RedisJobDefManager(core.RedisJobDefManager, JobDefManagerSpec):  # type: ignore[misc]
    """``redisjobs.RedisJobDefManager`` as an NVFlare ``JobDefManagerSpec`` component.

    Args:
        uri_root: accepted for NVFlare's tooling, which writes it; unused.
        job_store_id: accepted for NVFlare's tooling; unused.
        url: the Redis URL (default ``$REDISJOBS_URL``, else ``redis://127.0.0.1:6379/0``).
        namespace: the store's namespace in Redis.
        scheduling_patience: seconds ``get_job`` keeps retrying while Redis is unreachable.
        **options: any other keyword of ``redisjobs.RedisJobDefManager``.
    """

    def __init__(
        self,
        uri_root: str = "jobs",
        job_store_id: str = "job_store",
        url: str | None = None,
        namespace: str = "redisjobs",
        scheduling_patience: float = 30.0,
        **options: Any,
    ) -> None:
        JobDefManagerSpec.__init__(self)
        core.RedisJobDefManager.__init__(self, url, namespace=namespace, **options)
        self.uri_root = uri_root
        self.job_store_id = job_store_id
        self.scheduling_patience = scheduling_patience

    def _job_from_meta(self, meta: dict[str, Any]) -> Any:
        return job_from_meta(meta)

    def _queue_priority(self, jid: str, value: object) -> int:
        # NVFlare stores whatever a job's meta.json says, and has no priority of its own: a
        # "priority" that is no int (or out of range) is kept as given, and the job queued at 0.
        try:
            return super()._queue_priority(jid, value)
        except InvalidMeta as e:
            log.warning("%s; job %s is queued at priority 0", e, jid)
            return 0

    # -- the scheduling path: never raise ----------------------------------------------------------

    def get_jobs_to_schedule(self, fl_ctx: Any = None) -> list[Any]:
        try:
            return super().get_jobs_to_schedule(fl_ctx)
        except Exception:
            log.exception("get_jobs_to_schedule failed; returning no candidates this round")
            return []

    def get_job(self, jid: str, fl_ctx: Any = None) -> Any:
        deadline = time.monotonic() + self.scheduling_patience
        delay = 0.05
        while True:
            try:
                return super().get_job(jid, fl_ctx)
            except InvalidJobId:
                raise  # a ValueError, as NVFlare's store raises (ids from the store are valid)
            except (redis.ConnectionError, redis.TimeoutError) as e:
                if time.monotonic() + delay > deadline:
                    log.error("get_job(%r): Redis still unreachable (%s); returning None", jid, e)
                    return None
                log.warning("get_job(%r): Redis unreachable (%s); retrying in %.2f s", jid, e, delay)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
            except Exception:
                log.exception("get_job(%r) failed; returning None", jid)
                return None

    # -- status changes the store refuses are logged, not raised -----------------------------------

    def set_status(self, jid: str, status: Any, fl_ctx: Any = None, **kwargs: Any) -> bool:
        with _storage_errors():
            try:
                return super().set_status(jid, status, fl_ctx, **kwargs)
            except (InvalidTransition, StatusConflict, NotOwner) as e:
                log.warning("status change refused, job left as it is: %s", e)
                return False

    # -- StorageException where NVFlare's store raises it ------------------------------------------

    create = _as_storage_errors(core.RedisJobDefManager.create)
    clone = _as_storage_errors(core.RedisJobDefManager.clone)
    delete = _as_storage_errors(core.RedisJobDefManager.delete)
    update_meta = _as_storage_errors(core.RedisJobDefManager.update_meta)
    save_workspace = _as_storage_errors(core.RedisJobDefManager.save_workspace)
    set_client_data = _as_storage_errors(core.RedisJobDefManager.set_client_data)
    get_storage_component = _as_storage_errors(core.RedisJobDefManager.get_storage_component)
    get_storage_for_download = _as_storage_errors(core.RedisJobDefManager.get_storage_for_download)
