"""Replace detected spans with `[TYPE]`, merging overlaps so no detected character survives."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class TypedSpan:
    start: int
    end: int
    type: str


def merge_spans(spans: Iterable[TypedSpan]) -> list[TypedSpan]:
    """Overlapping or touching spans become one; the merged span keeps the type of its first part."""
    merged: list[TypedSpan] = []
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if span.end <= span.start:
            continue
        if merged and span.start <= merged[-1].end:
            last = merged[-1]
            merged[-1] = TypedSpan(last.start, max(last.end, span.end), last.type)
        else:
            merged.append(span)
    return merged


def redact(text: str, spans: Iterable[TypedSpan]) -> str:
    parts: list[str] = []
    cursor = 0
    for span in merge_spans(spans):
        start, end = max(span.start, cursor), min(span.end, len(text))
        if start >= end:
            continue
        parts.append(text[cursor:start])
        parts.append(f"[{span.type}]")
        cursor = end
    parts.append(text[cursor:])
    return "".join(parts)


def redact_literals(text: str, literals: Iterable[tuple[str, str]]) -> str:
    """Replace every occurrence of each (literal, type); for text whose offsets no longer match
    (a service already rewrote it), longest literal first so a shorter one cannot split it."""
    for literal, kind in sorted(literals, key=lambda pair: -len(pair[0])):
        if literal:
            text = text.replace(literal, f"[{kind}]")
    return text
