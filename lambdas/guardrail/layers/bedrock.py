"""Amazon Bedrock Guardrails ApplyGuardrail: its action and assessments become findings."""

from __future__ import annotations

import re
from typing import Any

from guardrail.model import CheckRequest, Finding, LayerResult, Span
from guardrail.settings import DirectionSettings

INTERVENED = "GUARDRAIL_INTERVENED"
_CONFIDENCE_SCORE = {"NONE": 0.0, "LOW": 0.25, "MEDIUM": 0.5, "HIGH": 0.75}


class BedrockGuardrailLayer:
    name = "bedrock"

    def __init__(self, bedrock_runtime: Any, guardrail_id: str | None, guardrail_version: str | None) -> None:
        self._client = bedrock_runtime
        self._id = guardrail_id
        self._version = guardrail_version

    def check(self, request: CheckRequest, settings: DirectionSettings) -> LayerResult:
        if not self._id or not self._version:
            raise RuntimeError("no Bedrock guardrail id/version configured for this function")
        result = LayerResult()
        source = "INPUT" if request.direction == "input" else "OUTPUT"
        # One call per item: the masked output then maps back to exactly one item. Trusted items (system
        # prompts) are left out: the prompt-attack filter would read their instructions as an attack.
        for index, item in request.untrusted():
            response = self._client.apply_guardrail(
                guardrailIdentifier=self._id,
                guardrailVersion=self._version,
                source=source,
                content=[{"text": {"text": item.text}}],
            )
            if response.get("action") != INTERVENED:
                continue
            item_result = assessment_findings(self.name, index, item.text, response.get("assessments", []))
            if not item_result.findings:
                # Intervened for a reason this code does not know: safest is to block.
                item_result.findings.append(Finding(self.name, "intervened", "block"))
            if item_result.masked_texts:
                outputs = response.get("outputs") or []
                item_result.masked_texts = {index: outputs[0]["text"]} if outputs else {}
            result.findings.extend(item_result.findings)
            result.masked_texts.update(item_result.masked_texts)
        return result


def assessment_findings(layer: str, index: int, text: str, assessments: list[dict[str, Any]]) -> LayerResult:
    """Map ApplyGuardrail assessments of one item to findings.

    ANONYMIZED matches are located in the original text so they merge with the other layers' spans;
    when a match cannot be found verbatim, `masked_texts[index]` is set so the engine falls back on
    the service's masked output.
    """
    result = LayerResult()
    add = result.findings.append
    for assessment in assessments:
        for topic in assessment.get("topicPolicy", {}).get("topics", []):
            if topic.get("action") == "BLOCKED":
                add(Finding(layer, f"topic:{topic['name']}", "block"))
        for content_filter in assessment.get("contentPolicy", {}).get("filters", []):
            if content_filter.get("action") == "BLOCKED":
                score = _CONFIDENCE_SCORE.get(content_filter.get("confidence", ""))
                add(Finding(layer, f"content:{content_filter['type']}", "block", score))
        words = assessment.get("wordPolicy", {})
        for word in [*words.get("customWords", []), *words.get("managedWordLists", [])]:
            if word.get("action") == "BLOCKED":
                add(Finding(layer, "word", "block"))
        grounding = assessment.get("contextualGroundingPolicy", {})
        for grounding_filter in grounding.get("filters", []):
            if grounding_filter.get("action") == "BLOCKED":
                add(
                    Finding(
                        layer, f"grounding:{grounding_filter['type']}", "block", grounding_filter.get("score")
                    )
                )
        sensitive = assessment.get("sensitiveInformationPolicy", {})
        for entity in [*sensitive.get("piiEntities", []), *sensitive.get("regexes", [])]:
            kind = entity.get("type") or entity.get("name") or "REGEX"
            if entity.get("action") == "BLOCKED":
                # No offsets: the empty span marks the item so the data lake record withholds its text.
                add(Finding(layer, kind, "block", span=Span(index, 0, 0), is_pii=True))
            elif entity.get("action") == "ANONYMIZED":
                spans = [(m.start(), m.end()) for m in re.finditer(re.escape(entity.get("match", "")), text)]
                if not spans or not entity.get("match"):
                    # An empty span marks "somewhere in this item": only the masked output covers it.
                    result.masked_texts[index] = ""
                    add(Finding(layer, kind, "redact", span=Span(index, 0, 0), is_pii=True))
                for start, end in spans:
                    add(Finding(layer, kind, "redact", span=Span(index, start, end), is_pii=True))
    return result
