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

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from moto import mock_aws

from tests.conftest import SynthesizedPlatform
from tests.journeys._consumer import LambdaContext, resources
from tests.stacks.policy_eval import Request, decide_identity, resolve

APPLICATION_STACK = "exco-retail-prod-application"
GUARDRAIL_STACK = "exco-retail-prod-guardrail"
PROD = "333333333333"
REGION = "eu-west-1"
GUARDRAIL_NAME = "exco-retail-prod-guardrail-filter"  # what Ref of the function resolves to at deploy time
GUARDRAIL_ARN = f"arn:aws:lambda:{REGION}:{PROD}:function:{GUARDRAIL_NAME}"


@pytest.fixture(scope="module")
def templates(default_platform: SynthesizedPlatform) -> dict[str, dict[str, Any]]:
    return {name: default_platform.template(name) for name in (APPLICATION_STACK, GUARDRAIL_STACK)}


def function_with(template: dict[str, Any], variable: str) -> tuple[str, dict[str, Any]]:
    [found] = [
        (logical_id, function["Properties"])
        for logical_id, function in resources(template, "AWS::Lambda::Function").items()
        if variable in function["Properties"].get("Environment", {}).get("Variables", {})
    ]
    return found


def role_statements(template: dict[str, Any], role_logical_id: str) -> list[dict[str, Any]]:
    return [
        statement
        for policy in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role_logical_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def imported(value: Any, exporter: dict[str, Any], guardrail_logical_id: str) -> Any:
    """Fn::ImportValue of the guardrail stack's exports, as deployed: Ref -> the function's name,
    GetAtt Arn -> its ARN. An export of anything else stays unresolved (and matches nothing)."""
    if isinstance(value, list):
        return [imported(v, exporter, guardrail_logical_id) for v in value]
    if isinstance(value, dict) and "Fn::ImportValue" in value:
        for output in exporter.get("Outputs", {}).values():
            if output.get("Export", {}).get("Name") != value["Fn::ImportValue"]:
                continue
            if output["Value"] == {"Ref": guardrail_logical_id}:
                return GUARDRAIL_NAME
            if output["Value"] == {"Fn::GetAtt": [guardrail_logical_id, "Arn"]}:
                return GUARDRAIL_ARN
        return f"<unresolved {value['Fn::ImportValue']}>"
    if isinstance(value, dict):
        return {k: imported(v, exporter, guardrail_logical_id) for k, v in value.items()}
    return value


@dataclass
class Hops:
    backend_env: dict[str, Any]
    guardrail_env: dict[str, Any]
    backend_statements: list[dict[str, Any]]
    other_role_statements: list[dict[str, Any]]


@pytest.fixture(scope="module")
def hops(templates: dict[str, dict[str, Any]]) -> Hops:
    application, guardrail = templates[APPLICATION_STACK], templates[GUARDRAIL_STACK]
    guardrail_id, guardrail_function = function_with(guardrail, "FILTER_DECISIONS_BUCKET")
    _, backend = function_with(application, "APP_SETTINGS")
    backend_role = backend["Role"]["Fn::GetAtt"][0]
    others = [
        logical_id
        for logical_id in resources(application, "AWS::IAM::Role")
        if logical_id != backend_role and role_statements(application, logical_id)
    ]
    return Hops(
        backend_env=imported(backend["Environment"]["Variables"], guardrail, guardrail_id),
        guardrail_env=dict(guardrail_function["Environment"]["Variables"]),
        backend_statements=[
            resolve(imported(s, guardrail, guardrail_id), application)
            for s in role_statements(application, backend_role)
        ],
        other_role_statements=[
            resolve(imported(s, guardrail, guardrail_id), application)
            for logical_id in others
            for s in role_statements(application, logical_id)
        ],
    )


class GuardrailFunction:
    """Lambda Invoke of the guardrail function: the caller's policy must allow it, then the real handler
    runs with the function's environment from its template."""

    def __init__(self, hops: Hops, monkeypatch: pytest.MonkeyPatch, *, fail: bool = False) -> None:
        from guardrail import handler as guardrail_handler
        from guardrail.engine import GuardrailEngine, default_layers
        from guardrail.settings import GuardrailSettings

        self.hops, self.fail = hops, fail
        self.events: list[dict[str, Any]] = []
        self.records: list[Any] = []
        for name in ("BUSINESS_UNIT", "GUARDRAIL_SETTINGS"):
            monkeypatch.setenv(name, hops.guardrail_env[name])
        settings = GuardrailSettings.model_validate_json(hops.guardrail_env["GUARDRAIL_SETTINGS"])
        layers = default_layers(
            settings, comprehend=NothingFound(), bedrock_runtime=NothingFound(), bedrock_ref=("gr-1", "1")
        )
        sink = ListSink(self.records)
        monkeypatch.setattr(
            guardrail_handler, "_engine", GuardrailEngine(settings, layers=layers, sink=sink, metrics=False)
        )
        self.handler = guardrail_handler

    def invoke(self, *, FunctionName: str, InvocationType: str, Payload: bytes) -> dict[str, Any]:  # noqa: N803
        arn = (
            FunctionName
            if FunctionName.startswith("arn:")
            else GUARDRAIL_ARN.replace(GUARDRAIL_NAME, FunctionName)
        )
        allowed = decide_identity(self.hops.backend_statements, Request(PROD, "lambda:InvokeFunction", arn))
        assert allowed == "allow", f"the backend role may not invoke {arn}"
        assert FunctionName == GUARDRAIL_NAME and InvocationType == "RequestResponse"
        event = json.loads(Payload)
        self.events.append(event)
        if self.fail:
            return {"FunctionError": "Unhandled", "Payload": io.BytesIO(b'{"errorMessage": "boom"}')}
        answer = self.handler.lambda_handler(event, LambdaContext())
        return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(answer).encode())}


class NothingFound:
    """Comprehend and Bedrock runtime clients that find nothing (the journey's finding is the local rules')."""

    def detect_toxic_content(self, TextSegments: list[Any], LanguageCode: str) -> dict[str, Any]:  # noqa: N803
        return {"ResultList": [{"Labels": [], "Toxicity": 0.0} for _ in TextSegments]}

    def detect_pii_entities(self, Text: str, LanguageCode: str) -> dict[str, Any]:  # noqa: N803
        return {"Entities": []}

    def apply_guardrail(self, **_: Any) -> dict[str, Any]:
        return {"action": "NONE", "outputs": [], "assessments": []}


class ListSink:
    def __init__(self, records: list[Any]) -> None:
        self.records = records

    def append(self, record: Any) -> None:
        self.records.append(record)


PROMPT = "Send the summary to {{ user }}@{{ domain }} by Friday."
CHARGE = "Charge {{ user }} {{ domain }} today."  # two values that are one card number together


@pytest.fixture
def backend(aws_env: None, hops: Hops) -> Iterator[Any]:
    from app_backend import handler as app_handler
    from app_backend.settings import ApplicationSettings
    from app_backend.wiring import guard_from_env
    from prompt_catalog.chains import ResolvedPrompt
    from prompt_catalog.models import PromptContent

    from tests.lambdas.app_backend.conftest import ROOMY, FakeCatalog, build_backend

    with mock_aws():
        offered = {"prompts": ["summary", "charge"], "chains": []}
        settings = {"end_user_catalog": offered, "tenant_limits": ROOMY}
        built = build_backend(ApplicationSettings.model_validate(settings))
        catalog = FakeCatalog()
        for name, template in (("summary", PROMPT), ("charge", CHARGE)):
            content = PromptContent.model_validate(
                {"template": template, "variables": [{"name": "user"}, {"name": "domain"}]}
            )
            catalog.prompts[(name, "prod")] = ResolvedPrompt(f"{name}:prod", name, 2, content)
        built.service.catalog = catalog
        # The backend's guardrail exactly as its wiring builds it from the synthesized environment.
        built.service.guard = guard_from_env(
            {k: v for k, v in hops.backend_env.items() if isinstance(v, str)}
        )
        app_handler.use_service(built.service)
        yield built
        app_handler.use_service(None)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",  # moto's buckets of the backend double (no location constraint)
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_METRICS_NAMESPACE": "test",
        "POWERTOOLS_SERVICE_NAME": "journey",
    }.items():
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
