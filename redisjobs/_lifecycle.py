"""The status transition table, in one place.

Python validates against it before a call reaches Redis (to fail fast with a clear error), and the
Lua scripts get the same table compiled into their source at load time (``lua_transition_table``),
so the check that counts, the atomic one, uses exactly these rules.
"""

from __future__ import annotations

from ._types import RunStatus

#: Every status, in a fixed order: the order of the per-status set keys passed to scripts.
STATUSES: tuple[str, ...] = tuple(s.value for s in RunStatus)
FINISHED: frozenset[str] = frozenset(s for s in STATUSES if s.startswith("FINISHED:"))

#: Finishing statuses that record a duration when the job has a start time (as NVFlare does).
TIMED_FINISH: frozenset[str] = frozenset(
    {
        RunStatus.FINISHED_COMPLETED.value,
        RunStatus.FINISHED_ABORTED.value,
        RunStatus.FINISHED_EXECUTION_EXCEPTION.value,
        RunStatus.FINISHED_ABNORMAL.value,
        RunStatus.FINISHED_CANT_SCHEDULE.value,
    }
)

TRANSITIONS: dict[str, frozenset[str]] = {
    RunStatus.SUBMITTED.value: frozenset({RunStatus.APPROVED.value, RunStatus.DISPATCHED.value}) | FINISHED,
    RunStatus.APPROVED.value: frozenset({RunStatus.DISPATCHED.value}) | FINISHED,
    RunStatus.DISPATCHED.value: frozenset({RunStatus.RUNNING.value, RunStatus.SUBMITTED.value}) | FINISHED,
    RunStatus.RUNNING.value: FINISHED,
    **{s: frozenset() for s in FINISHED},
}


def allowed(old: str, new: str) -> bool:
    """Whether ``old -> new`` is allowed. The same status again is always allowed (a no-op)."""
    return old == new or new in TRANSITIONS.get(old, frozenset())


def lua_transition_table() -> str:
    """The table as a Lua expression: ``{["OLD"]={["NEW"]=true, ...}, ...}``."""
    rows = []
    for old in STATUSES:
        targets = ",".join(f'["{new}"]=true' for new in sorted(TRANSITIONS[old]))
        rows.append(f'["{old}"]={{{targets}}}')
    return "{" + ",".join(rows) + "}"


def lua_status_list() -> str:
    """The statuses in key order, as a Lua array."""
    return "{" + ",".join(f'"{s}"' for s in STATUSES) + "}"
