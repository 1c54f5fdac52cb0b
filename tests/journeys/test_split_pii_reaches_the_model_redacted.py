"""Split-PII journey (issue 16 item 6): an end user sends template values that are harmless one by one but
make an e-mail address once rendered -> the application backend renders the catalog prompt and sends the
values and the rendered prompt to its business unit's guardrail function -> the guardrail finds the address
in the whole and returns the prompt redacted -> the model receives the redacted prompt; the backend keeps no
values that would put the address back together, and the guardrail's decision record holds no PII.

Hops across the synthesized templates: the backend's GUARDRAIL_FUNCTION is the guardrail stack's function,
both run with the same guardrail settings, and the backend role's policy allows `lambda:InvokeFunction` on
exactly that function (tests/stacks/policy_eval.py). The guardrail hop runs the real Lambda handler with the
function's environment from its template (Comprehend and Bedrock clients are fakes that find nothing, so the
finding is the local rules' on the rendered prompt); the backend runs its real API handler in moto.
Negative journeys: a card split across values is blocked before any model call; the backend's other role
cannot invoke the guardrail; a guardrail function that fails blocks the request (fail_closed).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import SynthesizedPlatform
from tests.journeys._guardrail_hops import (
    GUARDRAIL_ARN,
    GUARDRAIL_NAME,
    JOURNEY_ENV,
    PROD,
    GuardrailFunction,
    Hops,
    backend_with,
    hops_of,
)
from tests.stacks.policy_eval import Request, decide_identity


@pytest.fixture(scope="module")
def hops(default_platform: SynthesizedPlatform) -> Hops:
    return hops_of(default_platform)


PROMPT = "Send the summary to {{ user }}@{{ domain }} by Friday."
CHARGE = "Charge {{ user }} {{ domain }} today."  # two values that are one card number together


@pytest.fixture
def backend(aws_env: None, hops: Hops) -> Iterator[Any]:
    from prompt_catalog.chains import ResolvedPrompt
    from prompt_catalog.models import PromptContent

    from tests.lambdas.app_backend.conftest import FakeCatalog

    catalog = FakeCatalog()
    for name, template in (("summary", PROMPT), ("charge", CHARGE)):
        content = PromptContent.model_validate(
            {"template": template, "variables": [{"name": "user"}, {"name": "domain"}]}
        )
        catalog.prompts[(name, "prod")] = ResolvedPrompt(f"{name}:prod", name, 2, content)
    with backend_with(hops, catalog, {"prompts": ["summary", "charge"], "chains": []}) as built:
        yield built


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in JOURNEY_ENV.items():
        monkeypatch.setenv(name, value)


def invoke(backend: Any, variables: dict[str, str], prompt: str = "summary") -> dict[str, Any]:
    status, body = backend.call("POST", "/invoke", {"prompt": prompt, "variables": variables})
    assert status == 200, body
    return body


def test_the_templates_connect_the_backend_to_its_guardrail(hops: Hops) -> None:
    assert hops.backend_env["GUARDRAIL_FUNCTION"] == GUARDRAIL_NAME
    assert hops.backend_env["GUARDRAIL_SETTINGS"] == hops.guardrail_env["GUARDRAIL_SETTINGS"]
    assert hops.backend_env["BUSINESS_UNIT"] == hops.guardrail_env["BUSINESS_UNIT"] == "retail"
    request = Request(PROD, "lambda:InvokeFunction", GUARDRAIL_ARN)
    assert decide_identity(hops.backend_statements, request) == "allow"
    other = Request(PROD, "lambda:InvokeFunction", GUARDRAIL_ARN.replace("retail-prod", "finance-prod"))
    assert decide_identity(hops.backend_statements, other) == "implicit"


def test_split_email_reaches_the_model_redacted(
    backend: Any, hops: Hops, monkeypatch: pytest.MonkeyPatch
) -> None:
    function = GuardrailFunction(hops, monkeypatch)
    backend.service.guard.lambda_client = function

    body = invoke(backend, {"user": "jane.roe", "domain": "example.com"})

    # Hop 1: the backend sent the values and the prompt as rendered.
    input_event = function.events[0]
    assert input_event["content"] == [{"text": "jane.roe"}, {"text": "example.com"}]
    assert input_event["rendered"] == "Send the summary to jane.roe@example.com by Friday."
    # Hop 2: the guardrail found the address in the whole, not in any value.
    assert body["verdicts"]["input"] == {
        "action": "redact",
        "findings": [{"layer": "local_rules", "type": "EMAIL", "action": "redact"}],
    }
    # Hop 3: the model got the redacted prompt.
    assert [call.prompt for call in backend.model.calls] == ["Send the summary to [EMAIL] by Friday."]
    # Nothing kept puts the address back together: no values stored, no PII in the decision record.
    [item] = backend.table_items()
    assert item.get("variables_redacted") is None
    assert "jane.roe" not in json.dumps(item, default=str)
    assert len(function.records) == 2  # the input check and the output check
    records = json.dumps([r.model_dump(mode="json") for r in function.records])
    assert "jane.roe" not in records and "example.com" not in records


def test_negative_split_card_is_blocked_before_the_model(
    backend: Any, hops: Hops, monkeypatch: pytest.MonkeyPatch
) -> None:
    function = GuardrailFunction(hops, monkeypatch)
    backend.service.guard.lambda_client = function

    body = invoke(backend, {"user": "4111 1111", "domain": "1111 1111"}, prompt="charge")

    assert body["blocked"] == "input"
    assert body["verdicts"]["input"]["findings"] == [
        {"layer": "local_rules", "type": "CREDIT_DEBIT_NUMBER", "action": "block"}
    ]
    assert function.events[0]["rendered"] == "Charge 4111 1111 1111 1111 today."
    assert backend.model.calls == []
    assert backend.table_items() == []


def test_negative_no_other_role_of_the_application_may_invoke_the_guardrail(hops: Hops) -> None:
    assert hops.other_role_statements, "the application stack should have roles besides the backend's"
    request = Request(PROD, "lambda:InvokeFunction", GUARDRAIL_ARN)
    assert decide_identity(hops.other_role_statements, request) == "implicit"


def test_negative_a_failing_guardrail_blocks_the_prompt(
    backend: Any, hops: Hops, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend.service.guard.lambda_client = GuardrailFunction(hops, monkeypatch, fail=True)

    body = invoke(backend, {"user": "jane.roe", "domain": "example.com"})

    assert body["blocked"] == "input"
    assert backend.model.calls == []
