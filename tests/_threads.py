"""Running a test's work in several threads, bounded in time."""

from __future__ import annotations

import threading
from collections.abc import Callable


def run_threads(work: Callable[[int], None], count: int, timeout: float) -> list[BaseException]:
    """Run ``work(0)`` .. ``work(count - 1)`` in threads at once; return what they raised. Fails the
    test if any thread is still running ``timeout`` seconds after it was joined."""
    errors: list[BaseException] = []

    def guarded(n: int) -> None:
        try:
            work(n)
        except BaseException as e:  # handed back to the test
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(n,), daemon=True) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    assert not any(t.is_alive() for t in threads), f"a thread ran past {timeout} s"
    return errors
