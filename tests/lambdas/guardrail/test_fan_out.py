"""A layer's service calls at once: proven with a barrier (both calls must be in flight together), not timing."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from guardrail.fan_out import FanOut
from guardrail.layers.pii import PiiLayer
from guardrail.layers.toxicity import ToxicityLayer
from guardrail.model import CheckRequest, ContentItem
from guardrail.settings import DirectionSettings

SETTINGS = DirectionSettings()


class MeetingComprehend:
    """Every call waits until `parties` calls are in flight at once: calls made one after the other time out."""

    def __init__(self, parties: int) -> None:
        self.barrier = threading.Barrier(parties, timeout=10)
        self.toxicity_calls: list[list[str]] = []

    def detect_pii_entities(self, Text: str, LanguageCode: str) -> dict[str, Any]:  # noqa: N803 - boto3 names
        self.barrier.wait()
        at = Text.find("@")
        return {"Entities": [{"Type": "EMAIL", "Score": 0.9, "BeginOffset": at - 3, "EndOffset": at + 12}]}

    def detect_toxic_content(self, TextSegments: list[dict[str, str]], LanguageCode: str) -> dict[str, Any]:  # noqa: N803
        self.toxicity_calls.append([s["Text"] for s in TextSegments])
        return {"ResultList": [{"Labels": [{"Name": "INSULT", "Score": 0.99}]} for _ in TextSegments]}


def two_item_request() -> CheckRequest:
    items = (
        ContentItem("Write to bob@example.org today.", trusted=True),
        ContentItem("Ask ann@example.org now"),
    )
    return CheckRequest("input", items, "retail", "model", "req-1")


def test_the_pii_layer_calls_for_the_system_prompt_and_the_message_at_once() -> None:
    comprehend = MeetingComprehend(parties=2)  # sequential calls would break the barrier
    findings = PiiLayer(comprehend).check(two_item_request(), SETTINGS).findings
    assert sorted((f.span.item, f.span.start) for f in findings) == [(0, 9), (1, 4)]


def test_with_every_fan_out_thread_busy_the_calls_run_in_the_callers_thread() -> None:
    release = threading.Event()
    fan_out = FanOut("test", max_workers=1)
    blocked = threading.Thread(target=fan_out.map, args=(lambda x: release.wait(10) and x, [0, 1]))
    blocked.start()  # holds the only fan-out thread until released
    try:
        assert fan_out.map(lambda x: x * 2, [1, 2, 3]) == [2, 4, 6]
    finally:
        release.set()
        blocked.join()


def test_a_failing_call_raises_from_map() -> None:
    def call(x: int) -> int:
        if x == 2:
            raise RuntimeError("provider failed")
        return x

    with pytest.raises(RuntimeError, match="provider failed"):
        FanOut("test").map(call, [1, 2, 3])


def test_toxicity_scores_all_items_in_one_call_and_maps_findings_back() -> None:
    comprehend = MeetingComprehend(parties=1)
    findings = ToxicityLayer(comprehend).check(two_item_request(), SETTINGS).findings
    assert comprehend.toxicity_calls == [["Write to bob@example.org today.", "Ask ann@example.org now"]]
    assert [(f.type, f.span.item, f.span.start, f.span.end) for f in findings] == [
        ("INSULT", 0, 0, 31),
        ("INSULT", 1, 0, 23),
    ]
