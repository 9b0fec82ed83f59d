"""The job model: statuses, meta keys and the ``Job`` object, with NVFlare's values.

The core never imports NVFlare. Its enums are ``str`` enums whose values equal NVFlare's, so an
NVFlare ``RunStatus`` (itself a ``str`` enum) is accepted wherever a status is expected, and a
plain string such as ``"FINISHED:ABORTED"`` works too.
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class RunStatus(str, Enum):
    """A job's status. The values are NVFlare's."""

    SUBMITTED = "SUBMITTED"
    APPROVED = "APPROVED"
    DISPATCHED = "DISPATCHED"
    RUNNING = "RUNNING"
    FINISHED_COMPLETED = "FINISHED:COMPLETED"
    FINISHED_ABORTED = "FINISHED:ABORTED"
    FINISHED_EXECUTION_EXCEPTION = "FINISHED:EXECUTION_EXCEPTION"
    FINISHED_ABNORMAL = "FINISHED:ABNORMAL"
    FINISHED_CANT_SCHEDULE = "FINISHED:CAN_NOT_SCHEDULE"
    FAILED_TO_RUN = "FINISHED:FAILED_TO_RUN"
    ABANDONED = "FINISHED:ABANDONED"

    def __str__(self) -> str:
        return self.value

    @property
    def is_finished(self) -> bool:
        return self.value.startswith("FINISHED:")


class JobMetaKey(str, Enum):
    """Top-level meta keys NVFlare knows (the values are NVFlare's), plus ``priority``."""

    JOB_ID = "job_id"
    JOB_NAME = "name"
    JOB_FOLDER_NAME = "job_folder_name"
    SUBMITTER_NAME = "submitter_name"
    SUBMITTER_ORG = "submitter_org"
    SUBMITTER_ROLE = "submitter_role"
    STATUS = "status"
    DATA_STORAGE_FORMAT = "data_storage_format"
    DEPLOY_MAP = "deploy_map"
    RESOURCE_SPEC = "resource_spec"
    CONTENT_LOCATION = "content_location"
    RESULT_LOCATION = "result_location"
    APPROVALS = "approvals"
    MIN_CLIENTS = "min_clients"
    MANDATORY_CLIENTS = "mandatory_clients"
    SUBMIT_TIME = "submit_time"
    SUBMIT_TIME_ISO = "submit_time_iso"
    START_TIME = "start_time"
    DURATION = "duration"
    JOB_DEPLOY_DETAIL = "job_deploy_detail"
    SCHEDULE_COUNT = "schedule_count"
    SCOPE = "scope"
    CLONED_FROM = "cloned_from"
    LAST_SCHEDULE_TIME = "last_schedule_time"
    SCHEDULE_HISTORY = "schedule_history"
    STATS_POOL_CONFIG = "stats_pool_config"
    CUSTOM_PROPS = "custom_props"
    EDGE_METHOD = "edge_method"
    JOB_CLIENTS = "job_clients"
    STUDY = "study"
    JOB_LAUNCHER_SPEC = "launcher_spec"
    #: redisjobs only: an int, higher is scheduled first (default 0).
    PRIORITY = "priority"

    def __str__(self) -> str:
        return self.value


class SubmitRecordState(str, Enum):
    CREATING = "creating"
    CREATED = "created"
    JOB_DELETED = "job_deleted"


class SubmitRecordKey(str, Enum):
    SCHEMA_VERSION = "schema_version"
    STATE = "state"
    SUBMIT_TOKEN = "submit_token"
    JOB_ID = "job_id"
    STUDY = "study"
    SUBMITTER_NAME = "submitter_name"
    SUBMITTER_ORG = "submitter_org"
    SUBMITTER_ROLE = "submitter_role"
    JOB_NAME = "job_name"
    JOB_FOLDER_NAME = "job_folder_name"
    JOB_CONTENT_HASH = "job_content_hash"
    SUBMIT_TIME = "submit_time"
    DELETED_TIME = "deleted_time"
    DELETED_BY = "deleted_by"


class Job:
    """A job as the scheduler sees it: its id, deployment, resources and full meta.

    ``meta`` is a fresh dict on every read: callers may mutate it freely.
    """

    def __init__(
        self,
        job_id: str,
        resource_spec: dict[str, Any],
        deploy_map: dict[str, Any],
        meta: dict[str, Any],
        min_sites: int = 1,
        required_sites: list[str] | None = None,
    ) -> None:
        self.job_id = job_id
        self.resource_spec = resource_spec
        self.deploy_map = deploy_map
        self.meta = meta
        self.min_sites = min_sites
        self.required_sites: list[str] = required_sites or []
        self.dispatcher_id: Any = None
        self.dispatch_time: Any = None
        self.submit_time: Any = None
        self.run_record: Any = None
        self.run_aborted = False

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> Job:
        get = meta.get  # (positional arguments: listings build thousands of jobs)
        return cls(
            get("job_id", ""),
            get("resource_spec", {}),
            get("deploy_map", {}),
            meta,
            get("min_clients", 1),
            get("mandatory_clients", []),
        )

    @property
    def status(self) -> str | None:
        value = self.meta.get("status")
        return value if isinstance(value, str) else None

    def get_deployment(self) -> dict[str, Any]:
        return self.deploy_map

    def get_application_name(self, participant: str) -> str | None:
        for app, sites in self.deploy_map.items():
            if participant in sites:
                return str(app)
        return None

    def get_resource_requirements(self) -> dict[str, Any]:
        return self.resource_spec

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and self.job_id == other.job_id

    def __hash__(self) -> int:
        return hash(self.job_id)

    def __repr__(self) -> str:
        return f"Job(job_id={self.job_id!r}, status={self.status!r})"
