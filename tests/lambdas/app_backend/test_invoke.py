from __future__ import annotations

import json

from .conftest import Backend, RecordingGuard, local_rules_guard


def test_invoke_renders_the_prompt_calls_the_model_and_stores_the_request(backend: Backend) -> None:
    status, body = backend.call("POST", "/invoke", {"prompt": "greet", "variables": {"name": "Bo"}})

    assert status == 200
    assert body["output"] == "answer to: Hello Bo"
    assert body["verdicts"]["input"]["action"] == "allow"
    assert body["verdicts"]["output"]["action"] == "allow"
    assert [call.prompt for call in backend.model.calls] == ["Hello Bo"]
    [item] = backend.table_items()
    assert item["pk"] == "TENANT#tenant-a"
    assert item["sk"] == f"REQUEST#{body['request_id']}"
    assert item["prompt_ref"] == "greet@3"
    assert json.loads(item["variables_redacted"]) == {"name": "Bo"}
    assert item["output_redacted"] == "answer to: Hello Bo"


def test_blocked_input_never_reaches_a_model_and_stores_nothing(backend: Backend) -> None:
    status, body = backend.call("POST", "/invoke", {"prompt": "greet", "variables": {"name": "BLOCKME now"}})

    assert status == 200
    assert body["output"] is None
    assert body["blocked"] == "input"
    assert body["verdicts"]["input"]["findings"] == [
        {"layer": "local_rules", "type": "DENY", "action": "block"}
    ]
    assert backend.model.calls == []
    assert backend.table_items() == []


def test_redacted_input_is_what_the_model_sees_and_what_is_stored(backend: Backend) -> None:
    status, _ = backend.call(
        "POST", "/invoke", {"prompt": "greet", "variables": {"name": "alice@example.com"}}
    )

    assert status == 200
    assert [call.prompt for call in backend.model.calls] == ["Hello [EMAIL]"]
    stored = json.dumps(backend.table_items(), default=str)
    assert "alice@example.com" not in stored
    assert "[EMAIL]" in stored


def test_blocked_output_is_withheld(backend: Backend) -> None:
    status, body = backend.call("POST", "/invoke", {"prompt": "greet", "variables": {"name": "x"}})
    assert status == 200 and body["output"] is not None
    backend.model.reply = "BLOCKME secret"
    status, body = backend.call("POST", "/invoke", {"prompt": "greet", "variables": {"name": "y"}})

    assert status == 200
    assert body["output"] is None
    assert body["blocked"] == "output"
    assert body["verdicts"]["output"]["action"] == "block"


def test_chain_runs_every_step_in_order(backend: Backend) -> None:
    status, body = backend.call("POST", "/invoke", {"chain": "greet-then-shout", "variables": {"name": "Bo"}})

    assert status == 200
    assert [call.prompt for call in backend.model.calls] == ["Hello Bo", "Shout: answer to: Hello Bo"]
    assert body["output"] == "answer to: Shout: answer to: Hello Bo"


def test_personal_model_is_used_only_when_the_tenant_has_one(backend: Backend) -> None:
    status, body = backend.call(
        "POST", "/invoke", {"prompt": "greet", "variables": {"name": "a"}, "model": "personal"}
    )
    assert status == 409
    assert body["field"] == "model"
    assert backend.model.calls == []

    backend.table.put_item(
        Item={"pk": "TENANT#tenant-a", "sk": "MODEL#mine", "endpoint_name": "ep-a", "created_at": 5}
    )
    status, _ = backend.call(
        "POST", "/invoke", {"prompt": "greet", "variables": {"name": "a"}, "model": "personal"}
    )
    assert status == 200
    assert [item["endpoint_name"] for item in backend.tenant_models] == ["ep-a"]

    # Tenant b has no model, even though tenant a has one.
    status, _ = backend.call(
        "POST",
        "/invoke",
        {"prompt": "greet", "variables": {"name": "a"}, "model": "personal"},
        sub="tenant-b",
    )
    assert status == 409


def test_unoffered_prompt_is_403_missing_alias_404_and_missing_variable_422(backend: Backend) -> None:
    status, body = backend.call("POST", "/invoke", {"prompt": "nope", "variables": {"name": "a"}})
    assert (status, body["field"]) == (403, "prompt")
    backend.service.stage = "dev"  # FakeCatalog has no `dev` alias for greet
    status, body = backend.call("POST", "/invoke", {"prompt": "greet", "variables": {"name": "a"}})
    assert (status, body["field"]) == (404, "prompt") and "'dev'" in body["message"]
    backend.service.stage = "prod"
    status, body = backend.call("POST", "/invoke", {"prompt": "greet", "variables": {"other": "a"}})
    assert status == 422
    assert "other" in body["message"]
    assert backend.table_items() == []


def test_requests_without_a_verified_user_are_401(backend: Backend) -> None:
    status, body = backend.call("POST", "/invoke", {"prompt": "greet", "variables": {"name": "a"}}, sub=None)
    assert (status, body["field"]) == (401, "authorization")
    status, _ = backend.call("POST", "/invoke", {"prompt": "greet"}, sub="../other")
    assert status == 401
    assert backend.model.calls == []


def test_a_tenant_id_in_the_body_is_refused_not_used(backend: Backend) -> None:
    status, body = backend.call(
        "POST", "/invoke", {"prompt": "greet", "variables": {"name": "a"}, "tenant_id": "tenant-b"}
    )
    assert status == 400
    assert body["field"] == "body.tenant_id"


def test_the_backend_benchmark_measures_answered_requests() -> None:
    """bench/app_backend_bench.py (docs/perf/app_backend.md) times 200 answers, not refusals (it once
    timed nothing: its use case offered no prompt, so every /invoke was a 403)."""
    from app_backend import handler

    from bench import app_backend_bench

    try:
        for target in ("prompt", "chain"):
            answer = app_backend_bench.build().app.resolve(app_backend_bench.event(target), None)
            assert answer["statusCode"] == 200, answer["body"]
            assert json.loads(answer["body"])["request_id"]
    finally:
        handler.use_service(None)


def test_an_answer_the_guardrail_refuses_to_check_is_blocked_not_a_500(backend: Backend) -> None:
    # The real engine's request limit (guardrails.max_request_bytes, 1 MB by default) on the model's answer.
    guard = RecordingGuard(local_rules_guard())
    backend.service.guard = guard
    backend.model.reply = "word " * 250_000

    status, body = backend.call("POST", "/invoke", {"prompt": "greet", "variables": {"name": "Bo"}})

    assert status == 200
    assert body["output"] is None
    assert body["blocked"] == "output"
    assert body["verdicts"]["output"] == {"action": "block", "findings": []}
    assert [event["direction"] for event in guard.events] == ["input", "output"]  # sent, refused
    [item] = backend.table_items()
    assert "output_redacted" not in item or item["output_redacted"] is None
    assert "word word" not in json.dumps(item, default=str)
