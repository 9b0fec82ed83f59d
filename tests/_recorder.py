"""Which public methods of the manager a test called: for tests that must cover the whole API."""

from __future__ import annotations

import inspect
from typing import Any

from redisjobs import RedisJobDefManager

#: Not store operations: connection plumbing and context-manager support.
NOT_OPERATIONS = {"close"}


def public_methods() -> set[str]:
    return {
        name
        for name, value in inspect.getmembers(RedisJobDefManager)
        if not name.startswith("_") and callable(value) and name not in NOT_OPERATIONS
    }


class Recorder:
    """Forwards to a manager and records which of its methods were called."""

    def __init__(self, m: RedisJobDefManager) -> None:
        self.m, self.called = m, set[str]()

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.m, name)
        if callable(value):
            self.called.add(name)
        return value
