"""Preprod starts one gate run per served business-unit version; the execution name fits and is stable."""

import json

import boto3
from botocore.stub import ANY, Stubber
from serving_deployer.core import ModelPackage
from serving_deployer.preprod_gate import start_gate

from common.preprod_gate import EXECUTION_PREFIX, execution_name

MACHINE = "arn:aws:states:eu-west-1:333333333332:stateMachine:exco-retail-preprod-evaluation"
PACKAGE = ModelPackage(
    arn="arn:aws:sagemaker:eu-west-1:111111111111:model-package/exco-retail-product-qa/7",
    group="exco-retail-product-qa",
    version=7,
    status="PendingManualApproval",
    artifact_url="s3://b/k",
    sha256="d" * 64,
)


def test_the_gate_run_names_the_served_version_and_a_redelivered_event_starts_nothing_twice():
    sfn = boto3.client("stepfunctions", region_name="eu-west-1")
    started = []
    sfn.meta.events.register(
        "provide-client-params.sfn.StartExecution", lambda params, **_: started.append(params)
    )
    with Stubber(sfn) as stub:
        stub.add_response("start_execution", {"executionArn": f"{MACHINE}:x", "startDate": "2026-01-01"},
                          {"stateMachineArn": MACHINE, "name": ANY, "input": ANY})  # fmt: skip
        stub.add_client_error("start_execution", "ExecutionAlreadyExists")
        route = {"inference_component": "exco-retail-preprod-serving-abc123-v7"}
        names = [
            start_gate(
                sfn,
                MACHINE,
                PACKAGE,
                use_case="product-qa",
                endpoint_name="exco-retail-preprod-serving",
                route=route,
            )
            for _ in range(2)
        ]
        stub.assert_no_pending_responses()
    assert names == ["bu-gate-exco-retail-product-qa-v7"] * 2
    run = json.loads(started[0]["input"])
    assert run == {
        "gate": True,
        "run_id": "bu-gate-exco-retail-product-qa-v7",
        "use_case": "product-qa",
        "candidate": {
            "model_package_arn": PACKAGE.arn,
            "version": 7,
            "artifact_sha256": "d" * 64,
            "endpoint_name": "exco-retail-preprod-serving",
            "inference_component": "exco-retail-preprod-serving-abc123-v7",
            "payload_format": "tgi",
        },
    }


def test_execution_names_fit_step_functions_and_keep_long_groups_apart():
    longest = "g" * 63
    names = {execution_name(longest, 9_999_999_999), execution_name(longest[:-1] + "h", 9_999_999_999)}
    assert len(names) == 2
    assert all(len(n) <= 80 and n.startswith(EXECUTION_PREFIX) for n in names)


def test_a_refusal_is_one_emf_data_point_per_business_unit_and_group(capsys, monkeypatch):
    from serving_deployer.preprod_gate import REFUSAL_METRIC, emit_refusal

    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "LLMOpsPlatform")
    emit_refusal("retail", "exco-retail-product-qa")
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines() if "_aws" in x]
    (directive,) = line["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "LLMOpsPlatform"
    assert directive["Metrics"] == [{"Name": REFUSAL_METRIC, "Unit": "Count"}]
    assert set(directive["Dimensions"][0]) >= {"BusinessUnit", "ModelPackageGroup"}
    assert (line["BusinessUnit"], line["ModelPackageGroup"], line[REFUSAL_METRIC]) == (
        "retail",
        "exco-retail-product-qa",
        [1.0],
    )
