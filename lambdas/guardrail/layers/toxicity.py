"""Amazon Comprehend DetectToxicContent, with the text cut to the API's segment limits."""

from __future__ import annotations

from typing import Any

from guardrail.fan_out import DEFAULT_THREADS, FanOut
from guardrail.model import CheckRequest, Finding, LayerResult, Span
from guardrail.segments import toxicity_batches
from guardrail.settings import DirectionSettings, LanguageCode


class ToxicityLayer:
    name = "toxicity"

    def __init__(
        self, comprehend: Any, language_code: LanguageCode = "en", *, concurrent_calls: int = DEFAULT_THREADS
    ) -> None:
        self._comprehend = comprehend
        self._language_code = language_code
        self._calls = FanOut(self.name, concurrent_calls)

    def check(self, request: CheckRequest, settings: DirectionSettings) -> LayerResult:
        thresholds = settings.toxicity_thresholds
        result = LayerResult()
        # Trusted items too (trust skips injection checks only). Segments of all items share calls (ten per
        # call, each scored on its own), and the calls run at once: a system prompt and a short message
        # cost one call.
        batches = toxicity_batches([item.text for item in request.items])
        responses = self._calls.map(
            lambda batch: self._comprehend.detect_toxic_content(
                TextSegments=[{"Text": piece.text} for _, piece in batch], LanguageCode=self._language_code
            ),
            batches,
        )
        for batch, response in zip(batches, responses, strict=True):
            for (index, piece), segment in zip(batch, response["ResultList"], strict=True):
                for label in segment.get("Labels", []):
                    threshold = thresholds.get(label["Name"])
                    if threshold is not None and label["Score"] >= threshold:
                        span = Span(index, piece.start, piece.end)
                        result.findings.append(
                            Finding(self.name, label["Name"], "block", label["Score"], span)
                        )
        return result
