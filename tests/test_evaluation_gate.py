"""The pipeline's evaluation gate against a Stubber-checked Step Functions client (no network, no sleeps)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from tools.evaluation_gate import judge, run_gate

ARN = "arn:aws:states:eu-west-1:444444444442:stateMachine:exco-finance-preprod-evaluation"


def execution_arn(n: int) -> str:
    return f"arn:aws:states:eu-west-1:444444444442:execution:exco-finance-preprod-evaluation:run{n}"


def described(n: int, status: str, output: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "executionArn": execution_arn(n),
        "stateMachineArn": ARN,
        "status": status,
        "startDate": "2026-01-01T00:00:00Z",
    }
    if output is not None:
        response["output"] = json.dumps(output)
    return response


@pytest.fixture
def sfn() -> Any:
    return boto3.client(
        "stepfunctions", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )


def test_gate_starts_one_gate_run_per_use_case_and_passes_when_all_pass(sfn: Any) -> None:
    sleeps: list[float] = []
    with Stubber(sfn) as stub:
        for n in range(2):
            stub.add_response(
                "start_execution",
                {"executionArn": execution_arn(n), "startDate": "2026-01-01T00:00:00Z"},
                {"stateMachineArn": ARN, "name": ANY, "input": ANY},
            )
        stub.add_response("describe_execution", described(0, "RUNNING"), {"executionArn": execution_arn(0)})
        stub.add_response(
            "describe_execution",
            described(0, "SUCCEEDED", {"passed": True}),
            {"executionArn": execution_arn(0)},
        )
        stub.add_response(
            "describe_execution",
            described(1, "SUCCEEDED", {"passed": True}),
            {"executionArn": execution_arn(1)},
        )
        results = run_gate(
            sfn,
            state_machine_arn=ARN,
            use_cases=["qa", "summary"],
            commit="abc",
            timeout_seconds=60,
            sleep=sleeps.append,
        )
        stub.assert_no_pending_responses()
    assert [(r.use_case, r.passed) for r in results] == [("qa", True), ("summary", True)]
    assert sleeps == [15]


def test_gate_input_marks_the_run_as_a_gate(sfn: Any) -> None:
    with Stubber(sfn) as stub:
        stub.add_response(
            "start_execution",
            {"executionArn": execution_arn(0), "startDate": "2026-01-01T00:00:00Z"},
            {"stateMachineArn": ARN, "name": ANY, "input": ANY},
        )
        stub.add_response(
            "describe_execution",
            described(0, "SUCCEEDED", {"passed": False, "reason": "accuracy 0.61 < 0.8"}),
            {"executionArn": execution_arn(0)},
        )
        calls: list[dict[str, Any]] = []
        sfn.meta.events.register(
            "before-parameter-build.states.StartExecution", lambda params, **_: calls.append(params)
        )
        (result,) = run_gate(
            sfn,
            state_machine_arn=ARN,
            use_cases=["qa"],
            commit="abc",
            timeout_seconds=60,
            sleep=lambda _: None,
        )
    assert json.loads(calls[0]["input"])["gate"] is True
    assert json.loads(calls[0]["input"])["use_case"] == "qa"
    assert result.passed is False and "accuracy 0.61" in result.reason


def test_gate_stops_a_run_that_exceeds_the_timeout_and_fails(sfn: Any) -> None:
    with Stubber(sfn) as stub:
        stub.add_response(
            "start_execution",
            {"executionArn": execution_arn(0), "startDate": "2026-01-01T00:00:00Z"},
            {"stateMachineArn": ARN, "name": ANY, "input": ANY},
        )
        for _ in range(3):
            stub.add_response(
                "describe_execution", described(0, "RUNNING"), {"executionArn": execution_arn(0)}
            )
        stub.add_response(
            "stop_execution",
            {"stopDate": "2026-01-01T00:00:00Z"},
            {"executionArn": execution_arn(0), "cause": ANY},
        )
        (result,) = run_gate(
            sfn,
            state_machine_arn=ARN,
            use_cases=["qa"],
            commit="abc",
            timeout_seconds=30,
            sleep=lambda _: None,
        )
        stub.assert_no_pending_responses()
    assert result.passed is False and "TIMED_OUT" in result.reason


@pytest.mark.parametrize(
    ("execution", "passed"),
    [
        ({"status": "FAILED", "cause": "gate failed"}, False),
        ({"status": "SUCCEEDED", "output": "not json"}, False),
        ({"status": "SUCCEEDED", "output": json.dumps({"passed": "yes"})}, False),
        ({"status": "SUCCEEDED", "output": json.dumps({"passed": True})}, True),
    ],
)
def test_only_a_succeeded_run_with_passed_true_passes(execution: dict[str, Any], passed: bool) -> None:
    assert judge("qa", execution).passed is passed


def test_a_passed_gate_names_the_dataset_version_it_judged() -> None:
    output = {"passed": True, "reason": "all rules hold", "dataset": {"name": "product-qa", "version": 4}}
    result = judge("product-qa", {"status": "SUCCEEDED", "output": json.dumps(output)})
    assert result.passed and result.reason == "all rules hold (dataset product-qa version 4)"
