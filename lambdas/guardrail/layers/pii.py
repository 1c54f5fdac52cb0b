"""Amazon Comprehend DetectPiiEntities, chunked to 100 KB per call with offsets shifted back."""

from __future__ import annotations

from typing import Any

from guardrail.fan_out import DEFAULT_THREADS, FanOut
from guardrail.model import CheckRequest, Finding, FindingAction, LayerResult, Span
from guardrail.segments import pii_chunks
from guardrail.settings import DirectionSettings, LanguageCode


class PiiLayer:
    name = "pii"

    def __init__(
        self, comprehend: Any, language_code: LanguageCode = "en", *, concurrent_calls: int = DEFAULT_THREADS
    ) -> None:
        self._comprehend = comprehend
        self._language_code = language_code
        self._calls = FanOut(self.name, concurrent_calls)

    def check(self, request: CheckRequest, settings: DirectionSettings) -> LayerResult:
        result = LayerResult()
        # Every item (trusted ones too: a system prompt can carry PII) and the whole view, where PII split
        # across values or items shows whole; one call per 100 KB chunk, the calls at once.
        chunks = [(index, chunk) for index, text in request.scanned() for chunk in pii_chunks(text)]
        responses = self._calls.map(
            lambda scanned: self._comprehend.detect_pii_entities(
                Text=scanned[1].text, LanguageCode=self._language_code
            ),
            chunks,
        )
        for (index, chunk), response in zip(chunks, responses, strict=True):
            for entity in response.get("Entities", []):
                # Offsets are characters within the chunk; shift them to the item.
                span = Span(index, chunk.start + entity["BeginOffset"], chunk.start + entity["EndOffset"])
                action: FindingAction = settings.pii_action(entity["Type"])
                result.findings.append(
                    Finding(self.name, entity["Type"], action, entity.get("Score"), span, is_pii=True)
                )
        return result
