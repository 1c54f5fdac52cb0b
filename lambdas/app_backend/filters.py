"""The guardrail as the backend sees it: `guardrail.client.GuardrailCaller` (Lambda or in-process, as the
business unit's `guardrails.packaging` says), called with events built here."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from guardrail.engine import InvalidRequestError
from prompt_catalog.errors import BadRequestError, CatalogError
from prompt_catalog.models import ChainContent

if TYPE_CHECKING:
    from guardrail.client import GuardrailCaller

Render = Callable[[Mapping[str, Any]], str]


def filter_event(
    direction: str, text: str, *, business_unit: str, model_id: str, request_id: str, tenant_id: str
) -> dict[str, Any]:
    return {
        "direction": direction,
        "content": [{"text": text}],
        "business_unit": business_unit,
        "model_id": model_id,
        "request_id": request_id,
        "tenant_id": tenant_id,
    }


def checked_values(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(name, text) of every non-blank value an end user sent: strings as written, numbers and booleans as
    text (a card number sent as a number is PII too)."""
    texts = ((name, value if isinstance(value, str) else str(value)) for name, value in values.items())
    return [(name, text) for name, text in texts if text.strip()]


def input_event(texts: list[str], rendered: str | None, **ids: str) -> dict[str, Any]:
    """The input check of an /invoke: the end user's values as content items and, for a prompt, the prompt
    as the model will see it (`rendered`), where PII split across values or between a value and the
    template's text shows whole."""
    event = filter_event("input", "", **ids)
    event["content"] = [{"text": text} for text in texts]
    if rendered is not None:
        event["rendered"] = rendered
    return event


def redacted_values(
    values: Mapping[str, Any], checked: list[tuple[str, str]], verdict: Mapping[str, Any]
) -> dict[str, Any]:
    """`values` with each string value replaced by its redacted text. A number or boolean keeps its value:
    a redaction in it reaches the model through the redacted prompt, and the values are then not stored
    (`stored_values`)."""
    redacted = dict(values)
    for (name, _), text in zip(checked, verdict["texts"], strict=True):
        if isinstance(values[name], str):
            redacted[name] = text
    return redacted


def prompt_for_model(verdict: Mapping[str, Any], rendered: str, render_redacted: Callable[[], str]) -> str:
    """The prompt to send: the guardrail's redacted `rendered` when it redacted something. A verdict
    without one (a guardrail unreachable under fail_open allows; it never redacts) falls back on the
    template rendered with the redacted values."""
    if verdict.get("action") != "redact":
        return rendered
    text = verdict.get("rendered")
    return text if isinstance(text, str) else render_redacted()


def stored_values(
    values: Mapping[str, Any], verdict: Mapping[str, Any], sent: str, render: Callable[[], str]
) -> dict[str, Any] | None:
    """The (redacted) values, kept for ratings and evaluation candidates; None when they may hold what the
    guardrail redacted: a layer failed, or rendering them (`render`) does not give the prompt the model
    received (`sent`), because PII was found only in the prompt as a whole (split across values, or between
    a value and the template's text) or in a number."""
    if verdict.get("errors"):
        return None
    if verdict.get("action") == "redact":
        try:
            if render() != sent:
                return None
        except CatalogError:  # the redacted values no longer render (a template's test fails on them)
            return None
    return dict(values)


@dataclass(frozen=True)
class CheckedPrompt:
    """A prompt after the input guardrail: what its model may receive and what of its values may be kept."""

    verdict: Mapping[str, Any] | None  # None: no value to check (the catalog's template text alone)
    sent: str | None  # the prompt for the model; None: the guardrail blocked it
    kept: dict[str, Any] | None  # the redacted values (`stored_values`); None: not to be kept


def check_prompt(
    guard: GuardrailCaller,
    rendered: str,
    values: Mapping[str, Any],
    render: Render,
    *,
    field: str,
    ids: Mapping[str, str],
) -> CheckedPrompt:
    """One input check of a prompt as the model will see it: the values (`content`) and `rendered` (the
    prompt rendered with them; `render` renders it with other values) in one guardrail call. The model is
    to receive the verdict's redacted rendering. Used for a single prompt and for each step of a chain,
    whose values are the end user's and earlier steps' outputs. A request the guardrail refuses (more text
    than it accepts) is a 400 naming `field`."""
    checked = checked_values(values)
    if not checked:
        return CheckedPrompt(None, rendered, dict(values))
    try:
        verdict = guard.check(input_event([text for _, text in checked], rendered, **ids))
    except InvalidRequestError as exc:
        raise BadRequestError(field, f"refused by the guardrail ({exc})") from None
    if verdict["action"] == "block":
        return CheckedPrompt(verdict, None, None)
    redacted = redacted_values(values, checked, verdict) if verdict["action"] == "redact" else dict(values)
    sent = prompt_for_model(verdict, rendered, lambda: render(redacted))
    return CheckedPrompt(verdict, sent, stored_values(redacted, verdict, sent, lambda: render(redacted)))


def chain_kept_values(chain: ChainContent, checks: Mapping[str, CheckedPrompt]) -> dict[str, Any] | None:
    """The end user's values of a chain that ran to the end, as its steps' checks left them; None when a
    step's kept values are None (they would not render the prompt its model received) or two steps
    redacted one value differently. A value no step uses reached no model and is not kept."""
    kept: dict[str, Any] = {}
    for step in chain.steps:
        step_kept = checks[step.id].kept
        if step_kept is None:
            return None
        for var, source in step.inputs.items():
            origin, name = source.split(".")[:2]
            if origin != "request" or var not in step_kept:
                continue
            if kept.setdefault(name, step_kept[var]) != step_kept[var]:
                return None
    return kept


def redacted_or_none(verdict: Mapping[str, Any]) -> str | None:
    """Text safe to keep: PII actions are block or redact, so an unblocked verdict without layer errors
    has every detected PII span redacted. Anything else is not stored at all."""
    if verdict.get("action") == "block" or verdict.get("errors"):
        return None
    text = verdict.get("text")
    return text if isinstance(text, str) else None
