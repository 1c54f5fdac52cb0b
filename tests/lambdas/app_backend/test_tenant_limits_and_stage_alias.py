"""Issue 16 items 10, 12 and the backend part of 13.

- per-tenant rates and quotas on /invoke, /uploads and /fine-tunes: one tenant using up its limit does
  not touch another's, a refused request counts nowhere, and the answer is a 429 with Retry-After;
- the stage fixes the catalog alias, and only the prompts and chains the use case offers are callable;
- an empty model output is a clean 502 naming the model, not a 500, and stores nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from app_backend import handler
from app_backend.quotas import TenantQuotas, windows
from app_backend.settings import ApplicationSettings, RouteLimit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from pydantic import ValidationError

from common.model_gateway import ModelRequest, ModelResponse

from .conftest import OFFERED, Backend, build_backend

LIMITS = {
    "invoke": {"per_minute": 3, "per_day": 5},
    "uploads": {"per_minute": 2, "per_day": 2},
    "fine_tunes": {"per_minute": 1, "per_day": 1},
}
GREET = {"prompt": "greet", "variables": {"name": "Bo"}}
UPLOAD = {"file_name": "data.jsonl", "content_type": "application/jsonl"}


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class StartedPipeline:
    """The `FineTunePipeline` interface the service calls (`app_backend.service`), always under capacity."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.model_names: list[str] = []

    def resolve_use_case(self, use_case: str | None) -> str:
        return use_case or "support-bot"

    def start(self, tenant_id: str, client_token: str, model_name: str, use_case: str) -> str:
        self.started.append(tenant_id)
        self.model_names.append(model_name)
        return f"arn:aws:sagemaker:us-east-1:123456789012:pipeline/ft/execution/{client_token[:12]}"

    def status(self, execution_arn: str) -> dict[str, Any]:
        return {"status": "Executing"}


@pytest.fixture
def limited(aws_env: None) -> Iterator[tuple[Backend, Clock, StartedPipeline]]:
    with mock_aws():
        pipeline = StartedPipeline()
        built = build_backend(
            ApplicationSettings(end_user_catalog=OFFERED, tenant_limits=LIMITS), fine_tunes=pipeline
        )
        clock = Clock(1_767_225_600.0)  # 2026-01-01T00:00:00Z, the start of a day and of a minute
        assert built.service.quotas is not None
        built.service.quotas._clock = clock
        handler.use_service(built.service)
        yield built, clock, pipeline
        handler.use_service(None)


def test_one_tenant_exhausting_invoke_does_not_affect_another(limited) -> None:
    backend, clock, _ = limited
    assert [backend.call("POST", "/invoke", GREET, sub="tenant-a")[0] for _ in range(4)] == [
        200,
        200,
        200,
        429,
    ]
    status, body = backend.call("POST", "/invoke", GREET, sub="tenant-b")
    assert status == 200  # tenant-b has its own counters
    calls_before = len(backend.model.calls)
    answer = handler.app.resolve(_event("tenant-a"), None)  # type: ignore[arg-type]
    assert answer["statusCode"] == 429
    assert answer["multiValueHeaders"]["Retry-After"] == ["60"]  # the minute window ends at :01
    assert len(backend.model.calls) == calls_before  # a refused request never reaches a model
    # Next minute: the rate refills, the day quota (5) still counts what was accepted (3).
    clock.now += 60
    assert [backend.call("POST", "/invoke", GREET, sub="tenant-a")[0] for _ in range(3)] == [200, 200, 429]
    status, body = backend.call("POST", "/invoke", GREET, sub="tenant-a")
    assert (status, body["field"]) == (429, "invoke") and "per day" in body["message"]
    clock.now += 86_400
    assert backend.call("POST", "/invoke", GREET, sub="tenant-a")[0] == 200
    assert backend.call("POST", "/invoke", GREET, sub="tenant-b")[0] == 200


def test_refused_requests_count_in_no_window(limited) -> None:
    backend, clock, _ = limited
    for _ in range(3):
        backend.call("POST", "/invoke", GREET)
    for _ in range(5):
        assert backend.call("POST", "/invoke", GREET)[0] == 429
    used = {item["sk"].split("#")[2]: int(item["used"]) for item in backend.quota_items()}
    assert used == {"minute": 3, "day": 3}  # the transaction refused both increments together
    [expiry] = {int(i["expires_at"]) for i in backend.quota_items() if "#minute#" in i["sk"]}
    assert expiry == int(clock.now) + 60 + 3_600  # the table's TTL removes spent counters


def test_fine_tunes_are_limited_per_tenant_so_nobody_starts_unlimited_gpu_runs(limited) -> None:
    backend, clock, pipeline = limited
    body = {"model_name": "mine"}
    assert backend.call("POST", "/fine-tunes", body, sub="tenant-a")[0] == 202
    clock.now += 120
    status, answer = backend.call("POST", "/fine-tunes", body, sub="tenant-a")
    assert (status, answer["field"]) == (429, "fine_tunes")
    assert backend.call("POST", "/fine-tunes", body, sub="tenant-b")[0] == 202
    assert pipeline.started == ["tenant-a", "tenant-b"]  # the refused request never reached the pipeline
    assert pipeline.model_names == ["mine", "mine"]


def test_uploads_are_limited_per_tenant(limited) -> None:
    backend, _, _ = limited
    assert backend.call("POST", "/uploads", UPLOAD, sub="tenant-a")[0] == 201
    assert backend.call("GET", "/uploads", sub="tenant-a")[0] == 200
    assert backend.call("POST", "/uploads", UPLOAD, sub="tenant-a")[0] == 429
    assert backend.call("POST", "/uploads", UPLOAD, sub="tenant-b")[0] == 201


def test_malformed_and_unoffered_requests_use_no_quota_but_a_refused_content_type_does(limited) -> None:
    """docs/application.md, "Per-tenant limits": body validation and the end_user_catalog check come before
    the counters; POST /uploads counts before it checks the content type."""
    backend, _, _ = limited
    assert backend.call("POST", "/invoke", {"prompt": "greet", "tenant_id": "x"})[0] == 400
    assert backend.call("POST", "/invoke", {"prompt": "not-offered"})[0] == 403
    assert backend.call("POST", "/uploads", {"file_name": "../up", "content_type": "text/csv"})[0] == 400
    assert backend.quota_items() == []
    refused = {"file_name": "x.exe", "content_type": "application/x-msdownload"}
    assert backend.call("POST", "/uploads", refused)[0] == 422
    used = {str(item["sk"]).rsplit("#", 1)[0]: int(item["used"]) for item in backend.quota_items()}
    assert used == {"QUOTA#uploads#minute": 1, "QUOTA#uploads#day": 1}


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sequence=st.lists(
        st.tuples(st.sampled_from(["tenant-a", "tenant-b", "tenant-c"]), st.integers(0, 90)),
        min_size=1,
        max_size=25,
    )
)
def test_per_tenant_counts_match_a_model_of_fixed_windows(aws_env: None, sequence) -> None:
    """Whatever the interleaving of tenants and clock steps, each tenant's accepted requests are what a
    fixed-window model of its own requests allows, independent of every other tenant."""
    limit = RouteLimit(per_minute=2, per_day=4)
    with mock_aws():
        backend = build_backend()
        clock = Clock(1_767_225_600.0)
        quotas = TenantQuotas(
            backend.table, backend.service.settings.tenant_limits.model_copy(update={"invoke": limit}), clock
        )
        counts: dict[tuple[str, str, int], int] = {}
        for tenant, step in sequence:
            clock.now += step
            keys = [(tenant, w.name, w.start) for w in windows(limit, clock.now)]
            allowed = all(
                counts.get(k, 0) < w.limit for k, w in zip(keys, windows(limit, clock.now), strict=True)
            )
            try:
                quotas.consume(tenant, "invoke")
                accepted = True
            except Exception as exc:
                assert type(exc).__name__ == "TooManyRequestsError" and exc.status == 429  # type: ignore[attr-defined]
                accepted = False
            assert accepted == allowed
            if accepted:
                for key in keys:
                    counts[key] = counts.get(key, 0) + 1


def test_the_stage_fixes_the_alias_and_a_body_alias_is_refused(backend: Backend) -> None:
    status, body = backend.call("POST", "/invoke", {**GREET, "alias": "dev"})
    assert (status, body["field"]) == (400, "body.alias")
    assert backend.call("POST", "/invoke", GREET)[1]["output"] == "answer to: Hello Bo"
    backend.service.stage = "preprod"  # a preprod backend asks the catalog for `greet:preprod`
    status, body = backend.call("POST", "/invoke", GREET)
    assert (status, body["field"]) == (404, "prompt") and "'preprod'" in body["message"]


def test_only_offered_prompts_and_chains_are_callable(backend: Backend) -> None:
    backend.service.settings = ApplicationSettings(end_user_catalog={"prompts": ["shout"]})
    status, body = backend.call("POST", "/invoke", GREET)
    assert (status, body["field"]) == (403, "prompt")
    status, body = backend.call("POST", "/invoke", {"chain": "greet-then-shout", "variables": {"name": "x"}})
    assert (status, body["field"]) == (403, "chain")
    assert backend.call("POST", "/invoke", {"prompt": "shout", "variables": {"text": "x"}})[0] == 200
    assert backend.model.calls[-1].prompt == "Shout: x"


def test_end_user_catalog_names_are_validated() -> None:
    with pytest.raises(ValidationError, match=r"end_user_catalog\.prompts"):
        ApplicationSettings.model_validate({"end_user_catalog": {"prompts": ["Bad Name"]}})
    with pytest.raises(ValidationError, match="per_day"):
        ApplicationSettings.model_validate({"tenant_limits": {"invoke": {"per_minute": 5, "per_day": 2}}})


class EmptyModel:
    name = "empty-model"

    def __init__(self, text: str) -> None:
        self.text = text
        self.calls: list[ModelRequest] = []

    def invoke(self, request: ModelRequest) -> ModelResponse:
        self.calls.append(request)
        return ModelResponse(text=self.text, latency_ms=1.0)


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_an_empty_model_output_is_a_clean_502_and_stores_nothing(backend: Backend, text: str) -> None:
    backend.service.default_model = EmptyModel(text)
    status, body = backend.call("POST", "/invoke", GREET)
    assert (status, body["field"]) == (502, "model")
    assert "no text" in body["message"]
    assert backend.table_items() == []
    status, body = backend.call("POST", "/invoke", {"chain": "greet-then-shout", "variables": {"name": "x"}})
    assert (status, body["field"]) == (502, "model")
    assert len(backend.service.default_model.calls) == 2  # the chain stopped at its first empty step


def _event(sub: str) -> dict[str, Any]:
    from .conftest import api_event

    return api_event("POST", "/invoke", GREET, sub=sub)
