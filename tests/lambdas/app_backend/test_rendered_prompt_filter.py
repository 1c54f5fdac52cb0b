"""/invoke sends the prompt as the model will see it to the input guardrail (issue 16 item 6): PII split
across values or between a value and the template's text is found in the whole and reaches the model
redacted. The guardrail here is the real engine in-process (local rules only:
Comprehend and Bedrock need an account)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from app_backend import handler
from app_backend.settings import ApplicationSettings
from moto import mock_aws
from prompt_catalog.chains import ResolvedPrompt
from prompt_catalog.models import ChainContent, PromptContent

from .conftest import ROOMY, Backend, FakeCatalog, RecordingGuard, build_backend, local_rules_guard


def _prompt(name: str, template: str, variables: list[dict[str, str]]) -> ResolvedPrompt:
    content = PromptContent.model_validate({"template": template, "variables": variables})
    return ResolvedPrompt(f"{name}:prod", name, 1, content)


class SplitCatalog(FakeCatalog):
    """FakeCatalog plus templates where a value and its neighbour (or the template text) make one entity."""

    def __init__(self) -> None:
        super().__init__()
        for prompt in (
            _prompt(
                "reply", "Reply to {{ user }}{{ domain }} today.", [{"name": "user"}, {"name": "domain"}]
            ),
            _prompt("forward", "Forward the invoice to {{ user }}@example.com.", [{"name": "user"}]),
            _prompt("charge", "Charge {{ first }} {{ last }} now.", [{"name": "first"}, {"name": "last"}]),
            _prompt("call", "Call {{ number }} back.", [{"name": "number", "type": "integer"}]),
            _prompt("shout-upper", "{{ text | upper }}!", [{"name": "text"}]),
        ):
            self.prompts[(prompt.name, "prod")] = prompt
        self.chains[("joined", "prod")] = ChainContent.model_validate(
            {
                "variables": [{"name": "user"}, {"name": "domain"}],
                "steps": [
                    {
                        "id": "r",
                        "prompt": "reply@1",
                        "inputs": {"user": "request.user", "domain": "request.domain"},
                    }
                ],
            }
        )

    def chain(self, name: str, alias: str) -> tuple[ChainContent, dict[str, ResolvedPrompt]]:
        if name == "joined":
            return self.chains[(name, alias)], {"reply@1": self.prompts[("reply", "prod")]}
        return super().chain(name, alias)


OFFERED = {"prompts": ["greet", "reply", "forward", "charge", "call", "shout-upper"], "chains": ["joined"]}


@pytest.fixture
def split(aws_env: None) -> Iterator[Backend]:
    with mock_aws():
        app = {"end_user_catalog": OFFERED, "tenant_limits": ROOMY}
        built = build_backend(ApplicationSettings.model_validate(app))
        built.service.catalog = SplitCatalog()
        built.service.guard = local_rules_guard()
        handler.use_service(built.service)
        yield built
        handler.use_service(None)


def invoke(
    backend: Backend, variables: dict[str, Any], *, prompt: str = "", chain: str = ""
) -> dict[str, Any]:
    target = {"prompt": prompt} if prompt else {"chain": chain}
    status, body = backend.call("POST", "/invoke", {**target, "variables": variables})
    assert status == 200, body
    return body


def stored_variables(backend: Backend) -> str | None:
    [item] = backend.table_items()
    return item.get("variables_redacted")


def test_an_email_split_across_two_values_reaches_the_model_redacted(split: Backend) -> None:
    body = invoke(split, {"user": "alice.smith", "domain": "@example.com"}, prompt="reply")

    assert [call.prompt for call in split.model.calls] == ["Reply to [EMAIL] today."]
    assert body["verdicts"]["input"]["action"] == "redact"
    assert {"layer": "local_rules", "type": "EMAIL", "action": "redact"} in body["verdicts"]["input"][
        "findings"
    ]
    # The values alone hold no e-mail, yet together they do: they are not kept for ratings or datasets.
    assert stored_variables(split) is None
    assert "alice.smith" not in json.dumps(split.table_items(), default=str)


def test_an_email_split_between_a_value_and_the_template_text_reaches_the_model_redacted(
    split: Backend,
) -> None:
    invoke(split, {"user": "alice.smith"}, prompt="forward")

    assert [call.prompt for call in split.model.calls] == ["Forward the invoice to [EMAIL]."]
    assert stored_variables(split) is None


def test_the_guardrail_receives_the_values_and_the_prompt_as_rendered(split: Backend) -> None:
    recorded = RecordingGuard(split.service.guard)
    split.service.guard = recorded
    invoke(split, {"user": "alice.smith"}, prompt="forward")

    input_event = recorded.events[0]
    assert input_event["direction"] == "input"
    assert input_event["content"] == [{"text": "alice.smith"}]
    assert input_event["rendered"] == "Forward the invoice to alice.smith@example.com."
    assert "rendered" not in recorded.events[1]  # the output check has no template


def test_a_card_split_across_two_values_is_blocked_before_any_model_call(split: Backend) -> None:
    body = invoke(split, {"first": "4111 1111", "last": "1111 1111"}, prompt="charge")

    assert body["blocked"] == "input"
    assert {"layer": "local_rules", "type": "CREDIT_DEBIT_NUMBER", "action": "block"} in body["verdicts"][
        "input"
    ]["findings"]
    assert split.model.calls == []
    assert split.table_items() == []


def test_an_email_split_across_a_chain_steps_values_reaches_the_model_redacted(split: Backend) -> None:
    # A chain step's prompt is checked as rendered, like a single prompt (more in test_chain_step_filter.py).
    invoke(split, {"user": "alice.smith", "domain": "@example.com"}, chain="joined")

    assert [call.prompt for call in split.model.calls] == ["Reply to [EMAIL] today."]
    assert stored_variables(split) is None


def test_a_phone_number_sent_as_a_number_reaches_the_model_redacted(split: Backend) -> None:
    invoke(split, {"number": 4155552671}, prompt="call")

    assert [call.prompt for call in split.model.calls] == ["Call [PHONE] back."]
    assert stored_variables(split) is None  # the number itself cannot be redacted in the stored values


def test_pii_whole_in_one_value_is_redacted_and_the_redacted_values_are_kept(split: Backend) -> None:
    invoke(split, {"name": "alice.smith@example.com"}, prompt="greet")

    assert [call.prompt for call in split.model.calls] == ["Hello [EMAIL]"]
    assert json.loads(stored_variables(split) or "{}") == {"name": "[EMAIL]"}


def test_a_redaction_in_a_value_reaches_a_prompt_that_changes_its_case(split: Backend) -> None:
    invoke(split, {"text": "mail alice.smith@example.com"}, prompt="shout-upper")

    [call] = split.model.calls
    assert "ALICE" not in call.prompt and "[EMAIL]" in call.prompt


def test_clean_values_pass_unchanged_and_are_kept(split: Backend) -> None:
    invoke(split, {"user": "alice", "domain": "example"}, prompt="reply")

    assert [call.prompt for call in split.model.calls] == ["Reply to aliceexample today."]
    assert json.loads(stored_variables(split) or "{}") == {"user": "alice", "domain": "example"}
