"""Building the redis-py client: timeouts, the retry policy, and a command packer for large values.

Retries: redis-py repeats a command (or a whole pipeline) that failed on a connection error or a
timeout, backing off exponentially with jitter. That is safe here because every operation is safe
to repeat (see the "Faults" section of the README): scripts recognise their own earlier success
(a job created with the same submit time, a transition already applied, a delete or claim with the
same request id) and answer as the first attempt would have, without a second event.

Packing: with hiredis installed, redis-py packs commands with ``hiredis.pack_command``, which is
fast for small arguments and copies (slowly) a large one: about 1.4 ms per MB here, half of a 1 MB
SET. Commands carrying a large value go through redis-py's pure-Python packer instead, which hands
the value to the socket as it is.
"""

from __future__ import annotations

from typing import Any

import redis
from redis._parsers.encoders import Encoder
from redis.backoff import ExponentialWithJitterBackoff
from redis.connection import PythonRespSerializer
from redis.retry import Retry

try:
    from redis.connection import HiredisRespSerializer
    from redis.utils import HIREDIS_AVAILABLE
except ImportError:  # pragma: no cover - older redis-py
    HIREDIS_AVAILABLE = False

#: Arguments at least this long are sent without copying (pure-Python packer).
LARGE_ARGUMENT = 16 * 1024

DEFAULT_RETRIES = 3
DEFAULT_BACKOFF_BASE = 0.05
DEFAULT_BACKOFF_CAP = 1.0


class Packer:
    """hiredis's packer for ordinary commands, redis-py's zero-copy one for large values."""

    def __init__(self) -> None:
        encoder = Encoder("utf-8", "strict", False)  # type: ignore[no-untyped-call]
        self._plain = PythonRespSerializer(LARGE_ARGUMENT, encoder.encode)
        self._fast = HiredisRespSerializer() if HIREDIS_AVAILABLE else None

    def pack(self, *args: Any) -> list[bytes | memoryview]:
        if self._fast is not None:
            for arg in args:
                if isinstance(arg, bytes | bytearray | memoryview) and len(arg) >= LARGE_ARGUMENT:
                    break
            else:
                return self._fast.pack(*args)  # type: ignore[no-any-return]
        return self._plain.pack(*args)  # type: ignore[no-any-return,no-untyped-call]


def make_retry(retries: int, base: float, cap: float) -> Retry:
    """redis-py's Retry: ``retries`` more attempts after the first, on connection errors and
    timeouts, sleeping a random time up to ``min(cap, base * 2**failures)`` between them."""
    if retries < 0:
        raise ValueError(f"retries must be at least 0, got {retries}")
    return Retry(ExponentialWithJitterBackoff(cap=cap, base=base), retries)


def make_client(url: str, *, socket_timeout: float, socket_connect_timeout: float, retry: Retry) -> Any:
    """A client for ``url`` with explicit timeouts, the given retry policy and the packer above."""
    return redis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_connect_timeout,
        health_check_interval=30,
        retry=retry,
        command_packer=Packer(),
    )
