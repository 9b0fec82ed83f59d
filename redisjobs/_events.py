"""Events and settlements: what the store reports about the life of its jobs.

Every create, status change, approval, claim, reap, recovery and delete appends one entry to the
namespace's ``events`` stream (capped, approximately, at ``event_maxlen`` entries).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    """One entry of the event stream."""

    #: the stream entry id ("<ms>-<seq>"): pass it to ``watch(since=...)`` to resume after it
    id: str
    jid: str
    #: create, status, approval, claim, reap, recover or delete
    op: str
    old: str
    new: str
    actor: str
    #: epoch seconds, the writer's clock
    time: float

    @classmethod
    def from_entry(cls, entry_id: bytes | str, fields: dict[bytes, bytes]) -> Event:
        def get(name: str) -> str:
            return fields.get(name.encode(), b"").decode()

        eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        return cls(eid, get("jid"), get("op"), get("old"), get("new"), get("actor"), float(get("time") or 0))


@dataclass(frozen=True)
class Settled:
    """A claimed job that ``reap`` or ``recover`` moved on."""

    jid: str
    old: str
    new: str
    #: who held it
    owner: str
