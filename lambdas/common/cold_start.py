"""What a handler does once its cold start has built the objects that live as long as the environment."""

from __future__ import annotations

import gc


def keep_out_of_collections() -> None:
    """Move what the cold start built (modules, settings, clients, compiled patterns) out of the garbage
    collector's reach: a full collection walks every tracked object, and a large request's allocations
    trigger one often enough to put 10 ms or more on the p99 of a 64 KB guardrail check
    (docs/perf/guardrail.md). Collected first, so no garbage is kept."""
    gc.collect()
    gc.freeze()
