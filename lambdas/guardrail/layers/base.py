from __future__ import annotations

from typing import Protocol

from guardrail.model import CheckRequest, LayerResult
from guardrail.settings import DirectionSettings


class Layer(Protocol):
    """One filter. `check` raises on service errors; the engine applies the failure policy."""

    name: str

    def check(self, request: CheckRequest, settings: DirectionSettings) -> LayerResult: ...
