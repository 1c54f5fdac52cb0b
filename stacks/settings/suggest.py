"""`did you mean` for a mistyped name: the closest allowed value, reading look-alike characters as equal."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

# Characters people and OCR swap: eu-west-l is eu-west-1, not eu-west-3.
_LOOKALIKES = str.maketrans({"l": "1", "i": "1", "I": "1", "o": "0", "O": "0"})


def closest(value: str, allowed: Iterable[str], *, cutoff: float = 0.6) -> str | None:
    def score(candidate: str) -> tuple[float, float]:
        folded = difflib.SequenceMatcher(None, value.translate(_LOOKALIKES), candidate.translate(_LOOKALIKES))
        return folded.ratio(), difflib.SequenceMatcher(None, value, candidate).ratio()

    ranked = sorted(set(allowed), key=lambda c: (score(c), c), reverse=True)
    if not ranked or score(ranked[0])[0] < cutoff:
        return None
    return ranked[0]


def did_you_mean(value: str, allowed: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest allowed value, or nothing when none is close."""
    match = closest(value, allowed)
    return f" (did you mean '{match}'?)" if match else ""
