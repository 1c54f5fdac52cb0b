"""Every step of a chain is checked as the model will see it (issue 16 item 6): the backend renders the step's
prompt (template text + the end user's values + earlier steps' outputs), sends it as `rendered` with the values
it uses to the input guardrail, and the step's model receives the guardrail's redacted rendering. A block at
any step stops the chain. The guardrail here is the real engine in-process (local rules only)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from app_backend import handler
from app_backend.filters import CheckedPrompt, chain_kept_values
from app_backend.settings import ApplicationSettings
from guardrail.settings import GuardrailSettings
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from prompt_catalog.models import ChainContent

from .conftest import (
    ROOMY,
    Backend,
    ChainCatalog,
    Messages,
    RecordingGuard,
    ScriptedModel,
    build_backend,
    chain_content,
    local_rules_guard,
    pinned,
)

PROMPTS = {
    "ask": "Who handles {{ topic }}?",
    "reply": "Reply to {{ user }}{{ domain }} today.",
    "forward": "Forward the invoice to {{ user }}@example.com.",
    "charge": "Charge {{ first }} {{ last }} now.",
    "note": "Note for {{ who }}: {{ what }}",
}
ASK = ("ask", "ask", {"topic": "request.topic"})
# Chains as (step id, prompt name, inputs); each prompt is pinned as `<name>@1`.
CHAINS: dict[str, list[tuple[str, str, dict[str, str]]]] = {
    "split-values": [ASK, ("r", "reply", {"user": "request.user", "domain": "request.domain"})],
    "value-and-template": [ASK, ("f", "forward", {"user": "request.user"})],
    "carried-output": [ASK, ("f", "forward", {"user": "steps.ask.output"})],
    "output-and-value": [ASK, ("r", "reply", {"user": "steps.ask.output", "domain": "request.domain"})],
    "output-alone": [ASK, ("n", "ask", {"topic": "steps.ask.output"})],
    "charge-later": [ASK, ("c", "charge", {"first": "steps.ask.output", "last": "request.last"})],
    "value-twice": [
        ("n1", "note", {"who": "request.who", "what": "request.topic"}),
        ("n2", "note", {"who": "request.who", "what": "steps.n1.output"}),
    ],
}


@pytest.fixture
def chains(aws_env: None) -> Iterator[Backend]:
    with mock_aws():
        offered = {"prompts": ["greet", "charge"], "chains": [*sorted(CHAINS), "random"]}
        built = build_backend(
            ApplicationSettings.model_validate({"end_user_catalog": offered, "tenant_limits": ROOMY})
        )
        catalog = ChainCatalog(PROMPTS)
        for name, steps in CHAINS.items():
            catalog.chains[(name, "prod")] = chain_content(steps)
        built.service.catalog = catalog
        built.service.guard = local_rules_guard()
        handler.use_service(built.service)
        yield built
        handler.use_service(None)


def run(backend: Backend, chain: str, variables: dict[str, Any], *replies: str) -> dict[str, Any]:
    model = ScriptedModel(list(replies))
    backend.service.default_model = model
    status, body = backend.call("POST", "/invoke", {"chain": chain, "variables": variables})
    assert status == 200, body
    body["_prompts"] = [call.prompt for call in model.calls]
    return body


def stored_variables(backend: Backend) -> str | None:
    [item] = backend.table_items()
    return item.get("variables_redacted")


def test_pii_split_across_two_values_of_a_step_reaches_that_steps_model_redacted(chains: Backend) -> None:
    variables = {"topic": "billing", "user": "alice.smith", "domain": "@example.com"}
    body = run(chains, "split-values", variables)

    assert body["_prompts"] == ["Who handles billing?", "Reply to [EMAIL] today."]
    assert body["verdicts"]["input"] == {
        "action": "redact",
        "findings": [{"layer": "local_rules", "type": "EMAIL", "action": "redact"}],
    }
    assert stored_variables(chains) is None  # the values alone would put the address back together


def test_pii_split_between_a_value_and_the_steps_template_reaches_the_model_redacted(
    chains: Backend,
) -> None:
    body = run(chains, "value-and-template", {"topic": "billing", "user": "alice.smith"})

    assert body["_prompts"] == ["Who handles billing?", "Forward the invoice to [EMAIL]."]
    assert stored_variables(chains) is None


@pytest.mark.parametrize(
    ("chain", "variables", "reply", "second_prompt"),
    [
        ("carried-output", {}, "alice.smith", "Forward the invoice to [EMAIL]."),
        ("output-and-value", {"domain": "@example.com"}, "alice.smith", "Reply to [EMAIL] today."),
        ("output-alone", {}, "Ask bob@example.org", "Who handles Ask [EMAIL]?"),
    ],
)
def test_pii_carried_in_by_an_earlier_steps_output_reaches_the_next_model_redacted(
    chains: Backend, chain: str, variables: dict[str, str], reply: str, second_prompt: str
) -> None:
    body = run(chains, chain, {"topic": "billing", **variables}, reply)

    assert body["_prompts"] == ["Who handles billing?", second_prompt]
    assert body["verdicts"]["input"]["action"] == "redact"


def test_a_block_at_step_two_stops_the_chain_before_its_model(chains: Backend) -> None:
    chains.service.usage = usage = Messages()

    body = run(chains, "charge-later", {"topic": "billing", "last": "1111 1111"}, "4111 1111")

    # Step 1 ran; step 2's prompt ("Charge 4111 1111 1111 1111 now.") never reached the model.
    assert body.pop("_prompts") == ["Who handles billing?"]
    assert body == {
        "output": None,
        "request_id": body["request_id"],
        "blocked": "input",
        "verdicts": {
            "input": {
                "action": "block",
                "findings": [{"layer": "local_rules", "type": "CREDIT_DEBIT_NUMBER", "action": "block"}],
            }
        },
    }
    assert chains.table_items() == []  # as for a blocked prompt: nothing stored
    [record] = usage.sent  # step 1's model call was made and is accounted for
    assert (record.blocked, record.model_calls) == ("input", 1)


def test_a_blocked_chain_answers_like_a_blocked_prompt(chains: Backend) -> None:
    chains.service.catalog.prompts[("charge", "prod")] = pinned("charge", PROMPTS["charge"])
    status, prompt_body = chains.call(
        "POST", "/invoke", {"prompt": "charge", "variables": {"first": "4111 1111", "last": "1111 1111"}}
    )
    assert status == 200
    chain_body = run(chains, "charge-later", {"topic": "billing", "last": "1111 1111"}, "4111 1111")
    chain_body.pop("_prompts")

    assert chain_body.keys() == prompt_body.keys()
    assert chain_body["verdicts"] == prompt_body["verdicts"]


def test_one_input_check_per_step_with_the_values_it_uses_and_its_rendered_prompt(chains: Backend) -> None:
    recorded = RecordingGuard(chains.service.guard)
    chains.service.guard = recorded
    run(chains, "carried-output", {"topic": "billing"}, "alice.smith")

    assert [(e["direction"], e["content"], e.get("rendered")) for e in recorded.events] == [
        ("input", [{"text": "billing"}], "Who handles billing?"),
        ("input", [{"text": "alice.smith"}], "Forward the invoice to alice.smith@example.com."),
        ("output", [{"text": "answer to: Forward the invoice to [EMAIL]."}], None),
    ]


def test_a_value_redacted_in_every_step_is_kept_redacted_and_sampled(chains: Backend) -> None:
    chains.service.sample_rate = 1.0
    chains.service.samples = samples = Messages()

    body = run(chains, "value-twice", {"who": "alice.smith@example.com", "topic": "billing"}, "Paid.")

    assert body["_prompts"] == ["Note for [EMAIL]: billing", "Note for [EMAIL]: Paid."]
    assert json.loads(stored_variables(chains) or "{}") == {"who": "[EMAIL]", "topic": "billing"}
    [sample] = samples.sent
    assert json.loads(sample.question) == {"who": "[EMAIL]", "topic": "billing"}


def test_values_that_do_not_reproduce_a_steps_prompt_are_neither_kept_nor_sampled(chains: Backend) -> None:
    chains.service.sample_rate = 1.0
    chains.service.samples = samples = Messages()

    run(chains, "value-and-template", {"topic": "billing", "user": "alice.smith"})

    assert stored_variables(chains) is None
    assert samples.sent == []
    assert "alice.smith" not in json.dumps(chains.table_items(), default=str)


def test_a_step_the_guardrail_refuses_is_a_400_naming_the_step(chains: Backend) -> None:
    chains.service.guard = local_rules_guard(GuardrailSettings(max_request_bytes=60))

    model = ScriptedModel(["x" * 40])
    chains.service.default_model = model
    status, body = chains.call(
        "POST", "/invoke", {"chain": "output-alone", "variables": {"topic": "billing"}}
    )

    assert (status, body["field"]) == (400, "steps.n")
    assert [call.prompt for call in model.calls] == ["Who handles billing?"]
    assert chains.table_items() == []


# ---- property: random chains with random split PII -------------------------------------------------------

EMAIL = st.builds(
    lambda local, domain, tld: f"{local}@{domain}.{tld}",
    st.from_regex(r"[a-z][a-z0-9.]{0,8}[a-z0-9]", fullmatch=True),
    st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True),
    st.sampled_from(["com", "org", "de", "io"]),
)


@st.composite
def split_pii_chains(
    draw: st.DrawFn,
) -> tuple[dict[str, str], list[tuple[str, str, dict[str, str]]], dict[str, str], list[str]]:
    """(prompts, chain steps, request values, model replies): each step's template is `<head>{{ a }}<mid>{{ b }}<tail>`
    with an e-mail address cut into those five parts; `a` and `b` come from request values or earlier steps'
    outputs, and every model reply carries a part of an address too."""
    steps: list[tuple[str, str, dict[str, str]]] = []
    prompts: dict[str, str] = {}
    values: dict[str, str] = {}
    replies: list[str] = []
    for i in range(draw(st.integers(1, 4))):
        email = draw(EMAIL)
        # `a` is never empty: a step whose values are all blank sends the catalog's own template text unchecked.
        start = draw(st.integers(0, len(email) - 1))
        cuts = [start, draw(st.integers(start + 1, len(email)))]
        cuts += sorted(draw(st.lists(st.integers(cuts[1], len(email)), min_size=2, max_size=2)))
        head, a, mid, b, tail = (email[lo:hi] for lo, hi in zip([0, *cuts], [*cuts, len(email)], strict=True))
        prompts[f"s{i}"] = f"{head}{{{{ a }}}}{mid}{{{{ b }}}}{tail}"
        inputs = {}
        for var, part in (("a", a), ("b", b)):
            if i and draw(st.booleans()):  # an earlier step's output: that step's model answers with a part
                source = draw(st.integers(0, i - 1))
                inputs[var] = f"steps.s{source}.output"
            else:
                values[f"v{i}{var}"] = part
                inputs[var] = f"request.v{i}{var}"
        steps.append((f"s{i}", f"s{i}", inputs))
        email_part = draw(EMAIL)
        cut = draw(st.integers(0, len(email_part)))
        replies.append(draw(st.sampled_from([email_part[:cut], email_part[cut:], email_part])) or "x")
    return prompts, steps, values, replies


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=split_pii_chains())
def test_random_chains_never_deliver_a_detected_email_to_any_steps_model(
    chains: Backend,
    case: tuple[dict[str, str], list[tuple[str, str, dict[str, str]]], dict[str, str], list[str]],
) -> None:
    prompts, steps, values, replies = case
    catalog = ChainCatalog(prompts)
    catalog.chains[("random", "prod")] = chain_content(steps)
    chains.service.catalog = catalog
    model = ScriptedModel(list(replies))
    chains.service.default_model = model

    status, body = chains.call("POST", "/invoke", {"chain": "random", "variables": values})

    assert status == 200, body
    event(f"input {body['verdicts'].get('input', {}).get('action')}, {len(model.calls)} model calls")
    detector = local_rules_guard()
    for call in model.calls:
        verdict = detector.check(
            {
                "direction": "input",
                "content": [{"text": call.prompt}],
                "business_unit": "retail",
                "model_id": "m",
                "request_id": "r",
            }
        )
        assert not [f for f in verdict["findings"] if f["type"] == "EMAIL"], call.prompt


def test_a_step_without_any_value_sends_the_catalogs_template_text_unchecked(chains: Backend) -> None:
    recorded = RecordingGuard(chains.service.guard)
    chains.service.guard = recorded
    body = run(chains, "value-and-template", {"topic": " ", "user": ""})

    assert body["_prompts"] == ["Who handles  ?", "Forward the invoice to @example.com."]
    assert [event["direction"] for event in recorded.events] == ["output"]
    assert "input" not in body["verdicts"]


def _checked(kept: dict[str, Any] | None) -> CheckedPrompt:
    return CheckedPrompt({"action": "redact"}, "sent", kept)


def test_kept_chain_values_need_every_step_to_agree_and_leave_out_unused_values() -> None:
    two_steps = ChainContent.model_validate(
        {
            "variables": [{"name": "who"}, {"name": "unused"}],
            "steps": [
                {"id": "a", "prompt": "note@1", "inputs": {"who": "request.who", "what": "request.who"}},
                {"id": "b", "prompt": "note@1", "inputs": {"who": "request.who", "what": "steps.a.output"}},
            ],
        }
    )
    same = {
        "a": _checked({"who": "[EMAIL]", "what": "[EMAIL]"}),
        "b": _checked({"who": "[EMAIL]", "what": "x"}),
    }
    assert chain_kept_values(two_steps, same) == {"who": "[EMAIL]"}
    differ = {**same, "b": _checked({"who": "[NAME]", "what": "x"})}
    assert chain_kept_values(two_steps, differ) is None
    differ_in_one_step = {**same, "a": _checked({"who": "[EMAIL]", "what": "bob"})}
    assert chain_kept_values(two_steps, differ_in_one_step) is None
    not_reproducible = {**same, "b": _checked(None)}
    assert chain_kept_values(two_steps, not_reproducible) is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    variables=st.dictionaries(
        st.sampled_from(["topic", "user", "domain", "other"]),
        st.text(max_size=30)
        | st.sampled_from(["\ud800", "alice\udfff"])  # lone surrogates: not UTF-8
        | st.integers()
        | st.floats(allow_nan=False)
        | st.booleans(),
        max_size=4,
    ),
    reply=st.text(min_size=1, max_size=30),
)
def test_bad_chain_values_are_a_4xx_naming_the_field_and_store_nothing(
    chains: Backend, variables: dict[str, Any], reply: str
) -> None:
    before = chains.table_items()
    model = ScriptedModel([reply])
    chains.service.default_model = model

    status, body = chains.call("POST", "/invoke", {"chain": "split-values", "variables": variables})

    assert status < 500 or (status == 502 and body["field"] == "model"), body  # a blank model answer
    if status >= 400:
        assert body["field"], body
        assert chains.table_items() == before
