"""The function's environment picks the guardrail caller the business unit configured."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from app_backend.wiring import guard_from_env
from guardrail.client import InProcessGuardrail, LambdaGuardrail
from guardrail.engine import InvalidRequestError

from common.lake_writer import LakeWriter

from .conftest import BU, CANDIDATES, RAW, Backend


def test_lambda_packaging_invokes_the_named_guardrail_function(aws_env: None) -> None:
    guard = guard_from_env(
        {"GUARDRAIL_SETTINGS": "{}", "BUSINESS_UNIT": BU, "GUARDRAIL_FUNCTION": "exco-retail-dev-filter"}
    )
    assert isinstance(guard, LambdaGuardrail)
    assert (guard.function_name, guard.business_unit) == ("exco-retail-dev-filter", BU)


def test_lambda_packaging_without_a_function_name_is_refused(aws_env: None) -> None:
    with pytest.raises(ValueError, match=r"^function_name: required"):
        guard_from_env({"GUARDRAIL_SETTINGS": '{"packaging": "lambda"}', "BUSINESS_UNIT": BU})


def test_in_process_packaging_runs_the_engine_with_the_bedrock_guardrail_and_decision_records(
    aws_env: None,
) -> None:
    guard = guard_from_env(
        {
            "GUARDRAIL_SETTINGS": '{"packaging": "in_process", "max_request_bytes": 1234}',
            "BUSINESS_UNIT": BU,
            "FILTER_DECISIONS_BUCKET": "lake-filter-decisions",
            "BEDROCK_GUARDRAIL_ID": "gr-1",
            "BEDROCK_GUARDRAIL_VERSION": "3",
            "LAKE_STAGE": "preprod",
        }
    )
    assert isinstance(guard, InProcessGuardrail)
    assert guard.settings.max_request_bytes == 1234
    sink = guard.engine._sink
    assert isinstance(sink, LakeWriter) and sink.bucket == "lake-filter-decisions"
    assert sink.stage == "preprod"  # decision records land under <bu>/preprod/
    bedrock = guard.engine._layers["bedrock"]
    assert (bedrock._id, bedrock._version) == ("gr-1", "3")  # type: ignore[attr-defined]


class RefusingGuard:
    def check(self, event: Mapping[str, Any]) -> dict[str, Any]:
        raise InvalidRequestError("content: 2000000 bytes of text, more than the limit of 1000000")


def test_text_the_guardrail_refuses_is_a_400_naming_the_variables_and_writes_nothing(
    backend: Backend,
) -> None:
    backend.service.guard = RefusingGuard()
    status, body = backend.call("POST", "/invoke", {"prompt": "greet", "variables": {"name": "x"}})
    assert status == 400
    assert body["field"] == "variables"
    assert "more than the limit" in body["message"]
    assert backend.model.calls == []
    assert backend.table_items() == []
    assert backend.objects(RAW) == backend.objects(CANDIDATES) == []


def test_the_cold_start_builds_the_service_once_and_leaves_it_out_of_later_collections(monkeypatch):
    import gc

    from app_backend import handler, wiring

    built = object.__new__(handler.AppService)
    monkeypatch.setattr(wiring, "build_service", lambda: built)
    handler.use_service(None)
    gc.unfreeze()
    try:
        assert handler.service() is built
        assert handler.service() is built
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        handler.use_service(None)
