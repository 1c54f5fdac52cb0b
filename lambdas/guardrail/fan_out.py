"""A layer's independent service calls at once (a system prompt and the user's text, the whole view).

A request with two texts then waits for the slower call, not for the sum of both. The threads are the layer's
own and few: when all are busy (a stuck provider), the remaining calls run in the caller's thread one after
the other, as they would without this; nothing queues behind a stuck call, and no other layer's threads are
used (the engine's per-layer pools, engine.LayerRunner).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_THREADS = 4


class FanOut:
    def __init__(self, name: str, max_workers: int = DEFAULT_THREADS) -> None:
        """`max_workers=0`: every call in the caller's thread, in order (tests that script responses)."""
        self._executor = (
            ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=f"guardrail-{name}-call")
            if max_workers > 0
            else None
        )
        self._free = threading.BoundedSemaphore(max(1, max_workers))

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """`[fn(item) for item in items]`, the calls after the first on the fan-out threads while any is
        free; the first (and any without a free thread) in the caller's thread. Results in order; the
        first exception raised by a call is raised here."""
        started: list[Future[R] | None] = []
        for item in items[1:]:
            if self._executor is not None and self._free.acquire(blocking=False):
                try:
                    future = self._executor.submit(fn, item)
                except BaseException:
                    self._free.release()
                    raise
                future.add_done_callback(lambda _: self._free.release())
                started.append(future)
            else:
                started.append(None)
        results = [fn(items[0])] if items else []
        for item, pending in zip(items[1:], started, strict=True):
            results.append(fn(item) if pending is None else pending.result())
        return results
