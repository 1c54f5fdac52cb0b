"""Amazon Comprehend DetectToxicContent, with the text cut to the API's segment limits."""

from __future__ import annotations

from typing import Any

from guardrail.model import CheckRequest, Finding, LayerResult, Span
from guardrail.segments import toxicity_batches
from guardrail.settings import DirectionSettings, LanguageCode


class ToxicityLayer:
    name = "toxicity"

    def __init__(self, comprehend: Any, language_code: LanguageCode = "en") -> None:
        self._comprehend = comprehend
        self._language_code = language_code

    def check(self, request: CheckRequest, settings: DirectionSettings) -> LayerResult:
        thresholds = settings.toxicity_thresholds
        result = LayerResult()
        for index, item in enumerate(request.items):  # trusted items too: trust skips injection checks only
            for batch in toxicity_batches(item.text):
                response = self._comprehend.detect_toxic_content(
                    TextSegments=[{"Text": piece.text} for piece in batch], LanguageCode=self._language_code
                )
                for piece, segment in zip(batch, response["ResultList"], strict=True):
                    for label in segment.get("Labels", []):
                        threshold = thresholds.get(label["Name"])
                        if threshold is not None and label["Score"] >= threshold:
                            span = Span(index, piece.start, piece.end)
                            result.findings.append(
                                Finding(self.name, label["Name"], "block", label["Score"], span)
                            )
        return result
