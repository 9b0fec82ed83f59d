"""redisjobs: a Redis-backed job definition store for federated-learning servers.

It implements NVIDIA FLARE's ``JobDefManagerSpec`` (and what NVFlare 2.6-2.9 added) on Redis, so
that several server processes can share one job store safely and scheduling reads stay fast
however many jobs have accumulated.
"""

from ._blobs import DEFAULT_CHUNK_SIZE, GcReport
from ._codec import check_job_id
from ._errors import (
    BlobCorrupt,
    BlobNotFound,
    BlobTooLarge,
    InvalidComponent,
    InvalidJobId,
    InvalidMeta,
    InvalidStatus,
    InvalidTransition,
    JobExists,
    JobNotFound,
    LeaseExpired,
    NotOwner,
    NotReplicated,
    RecordNotFound,
    RedisJobsError,
    StatusConflict,
    StoreFull,
    StoreUnavailable,
    UploadExpired,
)
from ._events import Event, Settled
from ._lifecycle import TRANSITIONS
from ._types import Job, JobMetaKey, RunStatus, SubmitRecordKey, SubmitRecordState
from .manager import RedisJobDefManager, Retention
from .server import embedded

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "TRANSITIONS",
    "BlobCorrupt",
    "BlobNotFound",
    "BlobTooLarge",
    "Event",
    "GcReport",
    "InvalidComponent",
    "InvalidJobId",
    "InvalidMeta",
    "InvalidStatus",
    "InvalidTransition",
    "Job",
    "JobExists",
    "JobMetaKey",
    "JobNotFound",
    "LeaseExpired",
    "NotOwner",
    "NotReplicated",
    "RecordNotFound",
    "RedisJobDefManager",
    "RedisJobsError",
    "Retention",
    "RunStatus",
    "Settled",
    "StatusConflict",
    "StoreFull",
    "StoreUnavailable",
    "SubmitRecordKey",
    "SubmitRecordState",
    "UploadExpired",
    "__version__",
    "check_job_id",
    "embedded",
]
