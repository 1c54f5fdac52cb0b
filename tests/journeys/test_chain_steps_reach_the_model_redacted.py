"""Chain-step journey (issue 16 item 6): an end user runs a two-step chain -> the application backend renders
step 1 with the end user's value and sends it to its business unit's guardrail function -> step 1's model
answers with a name -> the backend renders step 2 with that answer and the end user's other value, which make
an e-mail address only together with step 2's template text, and sends the values and the rendered prompt to
the guardrail -> the guardrail finds the address in the whole -> step 2's model receives the redacted prompt;
the backend keeps no values that would put the address back together, and no decision record holds it.

Hops across the synthesized templates as in the split-PII journey (tests/journeys/_guardrail_hops.py): the
backend's GUARDRAIL_FUNCTION and GUARDRAIL_SETTINGS are the guardrail stack's, and the backend role may invoke
exactly that function; the guardrail hop runs the real Lambda handler with its template's environment, the
backend runs its real API handler in moto. Negative journeys: a card number made of step 1's answer and a
value blocks the chain at step 2 before step 2's model; a guardrail function that fails stops the chain before
any model call (fail_closed).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import SynthesizedPlatform
from tests.journeys._guardrail_hops import (
    GUARDRAIL_ARN,
    JOURNEY_ENV,
    PROD,
    GuardrailFunction,
    Hops,
    backend_with,
    hops_of,
)
from tests.lambdas.app_backend.conftest import ChainCatalog, ScriptedModel, chain_content
from tests.stacks.policy_eval import Request, decide_identity

PROMPTS = {
    "lookup": "Who owns the {{ topic }} account? Answer with the login only.",
    "notify": "Send the summary to {{ owner }}@{{ domain }} by Friday.",
    "charge": "Charge {{ first }} {{ last }} today.",
}
LOOKUP = ("lookup", "lookup", {"topic": "request.topic"})
CHAINS = {
    "notify-owner": [
        LOOKUP,
        ("notify", "notify", {"owner": "steps.lookup.output", "domain": "request.domain"}),
    ],
    "charge-owner": [LOOKUP, ("charge", "charge", {"first": "steps.lookup.output", "last": "request.last"})],
}


@pytest.fixture(scope="module")
def hops(default_platform: SynthesizedPlatform) -> Hops:
    return hops_of(default_platform)


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch, hops: Hops) -> Iterator[Any]:
    for name, value in JOURNEY_ENV.items():
        monkeypatch.setenv(name, value)
    catalog = ChainCatalog(PROMPTS)
    for name, steps in CHAINS.items():
        catalog.chains[(name, "prod")] = chain_content(steps)
    with backend_with(hops, catalog, {"prompts": [], "chains": sorted(CHAINS)}) as built:
        yield built


def run(
    backend: Any, chain: str, variables: dict[str, str], *replies: str
) -> tuple[dict[str, Any], ScriptedModel]:
    model = ScriptedModel(list(replies))
    backend.service.default_model = model
    status, body = backend.call("POST", "/invoke", {"chain": chain, "variables": variables})
    assert status == 200, body
    return body, model


def test_the_backend_may_invoke_its_guardrail_for_every_step(hops: Hops) -> None:
    request = Request(PROD, "lambda:InvokeFunction", GUARDRAIL_ARN)
    assert decide_identity(hops.backend_statements, request) == "allow"
    assert hops.backend_env["GUARDRAIL_SETTINGS"] == hops.guardrail_env["GUARDRAIL_SETTINGS"]


def test_an_email_made_of_step_ones_answer_reaches_step_twos_model_redacted(
    backend: Any, hops: Hops, monkeypatch: pytest.MonkeyPatch
) -> None:
    function = GuardrailFunction(hops, monkeypatch)
    backend.service.guard.lambda_client = function

    body, model = run(backend, "notify-owner", {"topic": "billing", "domain": "example.com"}, "jane.roe")

    # Hop 1: step 1 as rendered, with the end user's value, then step 1's model.
    first, second, output = function.events
    assert (first["content"], first["rendered"]) == (
        [{"text": "billing"}],
        "Who owns the billing account? Answer with the login only.",
    )
    # Hop 2: step 2 as rendered with step 1's answer (model output) and the end user's other value.
    assert second["content"] == [{"text": "jane.roe"}, {"text": "example.com"}]
    assert second["rendered"] == "Send the summary to jane.roe@example.com by Friday."
    # Hop 3: the guardrail found the address in the whole; step 2's model got the redacted prompt.
    assert body["verdicts"]["input"] == {
        "action": "redact",
        "findings": [{"layer": "local_rules", "type": "EMAIL", "action": "redact"}],
    }
    assert [call.prompt for call in model.calls] == [
        "Who owns the billing account? Answer with the login only.",
        "Send the summary to [EMAIL] by Friday.",
    ]
    # Hop 4: the last step's answer went through the output check, the only text shown to the end user.
    assert (output["direction"], body["output"]) == (
        "output",
        "answer to: Send the summary to [EMAIL] by Friday.",
    )
    # Nothing kept puts the address back together: no values stored, no PII in the decision records.
    [item] = backend.table_items()
    assert item.get("variables_redacted") is None
    assert "jane.roe" not in json.dumps(item, default=str)
    assert len(function.records) == 3  # one input check per step, one output check
    records = json.dumps([r.model_dump(mode="json") for r in function.records])
    assert "jane.roe" not in records


def test_negative_a_card_made_of_step_ones_answer_blocks_the_chain_before_step_twos_model(
    backend: Any, hops: Hops, monkeypatch: pytest.MonkeyPatch
) -> None:
    function = GuardrailFunction(hops, monkeypatch)
    backend.service.guard.lambda_client = function

    body, model = run(backend, "charge-owner", {"topic": "billing", "last": "1111 1111"}, "4111 1111")

    assert (body["output"], body["blocked"]) == (None, "input")
    assert body["verdicts"]["input"]["findings"] == [
        {"layer": "local_rules", "type": "CREDIT_DEBIT_NUMBER", "action": "block"}
    ]
    assert function.events[1]["rendered"] == "Charge 4111 1111 1111 1111 today."
    assert [call.prompt for call in model.calls] == [
        "Who owns the billing account? Answer with the login only."
    ]
    assert len(function.events) == 2  # no output check: nothing was answered
    assert backend.table_items() == []


def test_negative_a_failing_guardrail_stops_the_chain_before_any_model(
    backend: Any, hops: Hops, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend.service.guard.lambda_client = GuardrailFunction(hops, monkeypatch, fail=True)

    body, model = run(backend, "notify-owner", {"topic": "billing", "domain": "example.com"}, "jane.roe")

    assert body["blocked"] == "input"
    assert model.calls == []
    assert backend.table_items() == []
