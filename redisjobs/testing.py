"""Test helpers for code that uses redisjobs: a store on fakeredis, in memory, with no server.

Installed as a pytest plugin (the ``pytest11`` entry point), so once redisjobs is installed any test
can ask for the ``redisjobs_store`` fixture::

    def test_my_scheduler(redisjobs_store):
        jid = redisjobs_store.create({"name": "hello"}, b"zip bytes")["job_id"]
        ...

Outside pytest, ``fake_manager()`` builds the same store. Both need fakeredis with Lua
(``pip install 'redisjobs[embedded]'``). The plugin defines no autouse fixture and imports fakeredis
only when a store is built, so it costs the test runs that do not use it nothing but its import.
Disable it with ``pytest -p no:redisjobs``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .manager import RedisJobDefManager


def fake_manager(*, server: Any = None, **kwargs: Any) -> RedisJobDefManager:
    """A ``RedisJobDefManager`` on fakeredis with a unique namespace (unless ``namespace=`` is given).

    Managers built with the same ``server`` (a ``fakeredis.FakeServer``) share one store, like
    several server processes on one Redis; by default each call gets a fresh, empty server. Other
    keyword arguments go to ``RedisJobDefManager``. Close it (or use it in a ``with`` block) when done.
    """
    try:
        import fakeredis
    except ImportError:
        raise ImportError(
            "redisjobs.testing needs fakeredis with Lua: pip install 'redisjobs[embedded]'"
        ) from None
    from .manager import RedisJobDefManager

    client = fakeredis.FakeRedis(server=server or fakeredis.FakeServer())
    kwargs.setdefault("namespace", "test-" + uuid.uuid4().hex[:12])
    return RedisJobDefManager(client=client, **kwargs)


try:
    import pytest
except ImportError:  # fake_manager() works without pytest
    pass
else:

    @pytest.fixture
    def redisjobs_store() -> Iterator[RedisJobDefManager]:
        """A fresh ``RedisJobDefManager`` on an in-memory fakeredis, closed after the test."""
        with fake_manager() as store:
            yield store
