"""The verdict's `rendered` carries every redaction, also those a layer found in the items only (the Bedrock
layer scans items, never `rendered`): what the caller sends to the model must not hold a redacted value."""

from __future__ import annotations

from guardrail.engine import GuardrailEngine
from guardrail.model import CheckRequest, ContentItem, Finding, LayerResult, Span
from guardrail.settings import DirectionSettings, GuardrailSettings, LayerSwitches

SETTINGS = GuardrailSettings(
    input=DirectionSettings(layers=LayerSwitches(toxicity=False, pii=False, bedrock=True, local_rules=False))
)


class ItemsOnlyLayer:
    """Like the Bedrock layer: looks at the items only; finds `needle` (anonymized) or masks without a span."""

    name = "bedrock"

    def __init__(self, needle: str, *, locate: bool = True) -> None:
        self.needle = needle
        self.locate = locate

    def check(self, request: CheckRequest, settings: DirectionSettings) -> LayerResult:
        result = LayerResult()
        for index, item in request.untrusted():
            start = item.text.find(self.needle)
            if start < 0:
                continue
            if self.locate:
                span = Span(index, start, start + len(self.needle))
            else:  # the service masked a match it does not locate: its output is the item's redacted text
                span = Span(index, 0, 0)
                result.masked_texts[index] = item.text.replace(self.needle, "{NAME}")
            result.findings.append(Finding(self.name, "NAME", "redact", 0.9, span, is_pii=True))
        return result


def check(layer: ItemsOnlyLayer, items: tuple[str, ...], rendered: str) -> tuple[str, str | None, list[str]]:
    engine = GuardrailEngine(SETTINGS, layers={"bedrock": layer}, metrics=False)
    request = CheckRequest(
        "input", tuple(ContentItem(t) for t in items), "retail", "m", "r-1", rendered=rendered
    )
    verdict = engine.check(request)
    return verdict.action, verdict.rendered, verdict.texts


def test_a_value_redacted_in_an_item_is_redacted_in_the_rendered_prompt_too():
    action, rendered, texts = check(ItemsOnlyLayer("Jane Roe"), ("ask Jane Roe",), "Summarize: ask Jane Roe.")
    assert action == "redact"
    assert texts == ["ask [NAME]"]
    assert rendered == "Summarize: ask [NAME]."


def test_a_value_the_template_changes_the_case_of_is_found_in_the_rendered_prompt():
    action, rendered, _ = check(ItemsOnlyLayer("Jane Roe"), ("Jane Roe",), "TO JANE ROE AND jane roe")
    assert (action, rendered) == ("redact", "TO [NAME] AND [NAME]")


def test_a_masked_item_without_a_span_is_redacted_whole_where_it_occurs_verbatim():
    action, rendered, texts = check(ItemsOnlyLayer("Roe", locate=False), ("Jane Roe",), "Hi Jane Roe!")
    assert action == "redact"
    assert texts == ["Jane {NAME}"]
    assert rendered == "Hi [NAME]!"


def test_a_masked_item_that_the_prompt_holds_transformed_blocks_rather_than_leak():
    action, _, _ = check(ItemsOnlyLayer("Roe", locate=False), ("Jane Roe",), "Hi Jane-Roe!")
    assert action == "block"


def test_a_redacted_value_the_template_leaves_out_is_not_searched_for_in_vain():
    action, rendered, _ = check(ItemsOnlyLayer("Jane Roe"), ("Jane Roe", "weather"), "What is the weather?")
    assert (action, rendered) == ("redact", "What is the weather?")
