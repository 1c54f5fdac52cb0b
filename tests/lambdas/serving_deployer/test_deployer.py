"""The deployer: moto S3 for multi-model artifacts, botocore Stubber for runtime and inference components."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from moto import mock_aws
from pydantic import ValidationError
from serving_deployer import handler
from serving_deployer.core import InferenceComponentTarget, ModelVersion, MultiModelTarget, handle_change
from serving_deployer.settings import ServingMode, ServingSettings

ENDPOINT = "exco-retail-prod-serving"
GROUP = "exco-retail-product-qa"
PAYLOAD = ServingSettings().test_payload


def body(text: str = '{"generated_text": "ok"}') -> StreamingBody:
    return StreamingBody(io.BytesIO(text.encode()), len(text))


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="eu-west-1")
        for bucket in ("models", "exco-retail-dev-fine-tuning-models"):
            client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        for version in (1, 2, 3):
            client.put_object(
                Bucket="exco-retail-dev-fine-tuning-models",
                Key=f"models/v{version}/model.tar.gz",
                Body=b"weights",
            )
        yield client


@pytest.fixture
def runtime() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("sagemaker-runtime", region_name="eu-west-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def mme(s3: Any, runtime: Any) -> MultiModelTarget:
    return MultiModelTarget(
        s3=s3, runtime=runtime, endpoint_name=ENDPOINT, bucket="models", prefix="mme/", test_payload=PAYLOAD
    )


def model(version: int) -> ModelVersion:
    return ModelVersion(
        GROUP, version, f"s3://exco-retail-dev-fine-tuning-models/models/v{version}/model.tar.gz"
    )


def keys(s3: Any) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket="models").get("Contents", []))


def expect_probe(stubber: Stubber, target: str, *, fail: bool = False) -> None:
    params = {"EndpointName": ENDPOINT, "TargetModel": target, "ContentType": "application/json", "Body": ANY}
    if fail:
        stubber.add_client_error(
            "invoke_endpoint", "ModelError", "CUDA out of memory", 424, expected_params=params
        )
    else:
        stubber.add_response("invoke_endpoint", {"Body": body(), "ContentType": "application/json"}, params)


def test_approval_copies_the_artifact_and_probes_it_by_target_model(s3: Any, runtime: Any) -> None:
    client, stubber = runtime
    expect_probe(stubber, f"{GROUP}/v1.tar.gz")
    outcome = handle_change(mme(s3, client), model(1), "Approved")
    assert (outcome.action, outcome.target) == ("deployed", f"{GROUP}/v1.tar.gz")
    assert keys(s3) == [f"mme/{GROUP}/v1.tar.gz"]
    assert s3.get_object(Bucket="models", Key=f"mme/{GROUP}/v1.tar.gz")["Body"].read() == b"weights"


def test_a_failed_test_invocation_rolls_the_copy_back(s3: Any, runtime: Any) -> None:
    client, stubber = runtime
    expect_probe(stubber, f"{GROUP}/v1.tar.gz", fail=True)
    outcome = handle_change(mme(s3, client), model(1), "Approved")
    assert outcome.action == "rolled_back"
    assert "ModelError" in (outcome.error or "")
    assert keys(s3) == []


def test_a_newer_approval_retires_the_older_versions(s3: Any, runtime: Any) -> None:
    client, stubber = runtime
    target = mme(s3, client)
    for version in (1, 2):
        expect_probe(stubber, f"{GROUP}/v{version}.tar.gz")
        handle_change(target, model(version), "Approved")
    assert keys(s3) == [f"mme/{GROUP}/v2.tar.gz"]


def test_a_failed_newer_version_keeps_the_served_one(s3: Any, runtime: Any) -> None:
    client, stubber = runtime
    target = mme(s3, client)
    expect_probe(stubber, f"{GROUP}/v1.tar.gz")
    handle_change(target, model(1), "Approved")
    expect_probe(stubber, f"{GROUP}/v2.tar.gz", fail=True)
    assert handle_change(target, model(2), "Approved").action == "rolled_back"
    assert keys(s3) == [f"mme/{GROUP}/v1.tar.gz"]


def test_rejection_retires_that_version_and_a_stale_approval_is_skipped(s3: Any, runtime: Any) -> None:
    client, stubber = runtime
    target = mme(s3, client)
    expect_probe(stubber, f"{GROUP}/v3.tar.gz")
    handle_change(target, model(3), "Approved")
    assert handle_change(target, model(2), "Approved").action == "skipped_stale"
    assert handle_change(target, model(2), "Rejected").action == "nothing_to_retire"
    outcome = handle_change(target, model(3), "Rejected")
    assert (outcome.action, outcome.retired) == ("retired", [f"{GROUP}/v3.tar.gz"])
    assert keys(s3) == []


def test_a_missing_artifact_url_is_a_rollback_not_a_crash(s3: Any, runtime: Any) -> None:
    client, _ = runtime
    outcome = handle_change(mme(s3, client), ModelVersion(GROUP, 1, None), "Approved")
    assert outcome.action == "rolled_back"
    assert "ModelDataUrl" in (outcome.error or "")


# ---- inference components (moto does not implement them: Stubber checks the requests) -------------


@pytest.fixture
def sagemaker() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("sagemaker", region_name="eu-west-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def components(sm: Any, runtime: Any) -> InferenceComponentTarget:
    return InferenceComponentTarget(
        sagemaker=sm,
        runtime=runtime,
        endpoint_name=ENDPOINT,
        variant_name="AllTraffic",
        base_component_name=f"{ENDPOINT}-base",
        test_payload=PAYLOAD,
        sleep=lambda _: None,
    )


def test_adapter_component_is_created_waited_for_probed_and_rolled_back_on_failure(
    sagemaker: Any, runtime: Any
) -> None:
    sm, sm_stub = sagemaker
    rt, rt_stub = runtime
    target = components(sm, rt)
    name = f"{target.component_prefix(GROUP)}4"
    sm_stub.add_response(
        "list_inference_components",
        {"InferenceComponents": []},
        {"EndpointNameEquals": ENDPOINT, "NameContains": target.component_prefix(GROUP)},
    )
    sm_stub.add_response(
        "create_inference_component",
        {"InferenceComponentArn": f"arn:aws:sagemaker:eu-west-1:333333333333:inference-component/{name}"},
        {
            "InferenceComponentName": name,
            "EndpointName": ENDPOINT,
            "VariantName": "AllTraffic",
            "Specification": {
                "BaseInferenceComponentName": f"{ENDPOINT}-base",
                "Container": {"ArtifactUrl": model(4).artifact_url},
            },
            "Tags": ANY,
        },
    )
    for status in ("Creating", "InService"):
        sm_stub.add_response(
            "describe_inference_component",
            {
                "InferenceComponentName": name,
                "InferenceComponentArn": f"arn:aws:sagemaker:eu-west-1:333333333333:inference-component/{name}",
                "EndpointName": ENDPOINT,
                "EndpointArn": f"arn:aws:sagemaker:eu-west-1:333333333333:endpoint/{ENDPOINT}",
                "CreationTime": "2025-01-01T00:00:00Z",
                "LastModifiedTime": "2025-01-01T00:00:00Z",
                "InferenceComponentStatus": status,
            },
            {"InferenceComponentName": name},
        )
    rt_stub.add_client_error(
        "invoke_endpoint",
        "ValidationError",
        "adapter weights do not match the base model",
        400,
        expected_params={
            "EndpointName": ENDPOINT,
            "InferenceComponentName": name,
            "ContentType": "application/json",
            "Body": ANY,
        },
    )
    sm_stub.add_response("delete_inference_component", {}, {"InferenceComponentName": name})
    outcome = handle_change(target, model(4), "Approved")
    assert (outcome.action, outcome.target) == ("rolled_back", name)
    assert len(name) <= 63


def test_adapter_approval_retires_the_previous_component(sagemaker: Any, runtime: Any) -> None:
    sm, sm_stub = sagemaker
    rt, rt_stub = runtime
    target = components(sm, rt)
    prefix = target.component_prefix(GROUP)
    sm_stub.add_response(
        "list_inference_components",
        {
            "InferenceComponents": [
                {
                    "InferenceComponentName": f"{prefix}1",
                    "InferenceComponentArn": "arn:aws:sagemaker:eu-west-1:333333333333:inference-component/x",
                    "EndpointName": ENDPOINT,
                    "EndpointArn": f"arn:aws:sagemaker:eu-west-1:333333333333:endpoint/{ENDPOINT}",
                    "VariantName": "AllTraffic",
                    "CreationTime": "2025-01-01T00:00:00Z",
                    "LastModifiedTime": "2025-01-01T00:00:00Z",
                    "InferenceComponentStatus": "InService",
                }
            ]
        },
        {"EndpointNameEquals": ENDPOINT, "NameContains": prefix},
    )
    sm_stub.add_response(
        "create_inference_component",
        {"InferenceComponentArn": "arn:aws:sagemaker:eu-west-1:333333333333:inference-component/y"},
    )
    sm_stub.add_response(
        "describe_inference_component",
        {
            "InferenceComponentName": f"{prefix}2",
            "InferenceComponentArn": "arn:aws:sagemaker:eu-west-1:333333333333:inference-component/y",
            "EndpointName": ENDPOINT,
            "EndpointArn": f"arn:aws:sagemaker:eu-west-1:333333333333:endpoint/{ENDPOINT}",
            "CreationTime": "2025-01-01T00:00:00Z",
            "LastModifiedTime": "2025-01-01T00:00:00Z",
            "InferenceComponentStatus": "InService",
        },
    )
    rt_stub.add_response("invoke_endpoint", {"Body": body(), "ContentType": "application/json"})
    sm_stub.add_response("delete_inference_component", {}, {"InferenceComponentName": f"{prefix}1"})
    outcome = handle_change(target, model(2), "Approved")
    assert (outcome.action, outcome.retired) == ("deployed", [f"{prefix}1"])


# ---- handler ----------------------------------------------------------------------------------------


def registry_event(status: str = "Approved", **detail: Any) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": "SageMaker Model Package State Change",
        "source": "aws.sagemaker",
        "account": "111111111111",
        "time": "2025-01-01T00:00:00Z",
        "region": "eu-west-1",
        "resources": [],
        "detail": {
            "ModelPackageGroupName": GROUP,
            "ModelPackageVersion": 1,
            "ModelPackageArn": f"arn:aws:sagemaker:eu-west-1:111111111111:model-package/{GROUP}/1",
            "ModelApprovalStatus": status,
            "InferenceSpecification": {"Containers": [{"Image": "x", "ModelDataUrl": model(1).artifact_url}]},
            **detail,
        },
    }


class LambdaContext:
    function_name = "deployer"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:333333333333:function:deployer"
    aws_request_id = "req-1"


def test_handler_deploys_from_the_event_with_the_configured_mode(
    s3: Any, runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, stubber = runtime
    expect_probe(stubber, f"{GROUP}/v1.tar.gz")
    monkeypatch.setattr(handler, "serving_target", lambda: mme(s3, client))
    result = handler.lambda_handler(registry_event(), LambdaContext())
    assert (result["action"], result["target"]) == ("deployed", f"{GROUP}/v1.tar.gz")


@pytest.mark.parametrize(
    "detail",
    [{"ModelApprovalStatus": "PendingManualApproval"}, {"ModelPackageVersion": 0}, {"ModelPackageArn": "x"}],
)
def test_handler_rejects_malformed_events_naming_the_field(detail: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as error:
        handler.lambda_handler(registry_event(**detail), LambdaContext())
    assert next(iter(detail)) in str(error.value)


def test_serving_target_follows_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = ServingSettings(mode=ServingMode.MULTI_MODEL_ENDPOINT, min_capacity=1)
    for name, value in {
        "SERVING_SETTINGS": settings.model_dump_json(),
        "ENDPOINT_NAME": ENDPOINT,
        "MODEL_BUCKET": "models",
        "MODEL_PREFIX": "mme/",
        "VARIANT_NAME": "AllTraffic",
        "BASE_COMPONENT_NAME": "",
    }.items():
        monkeypatch.setenv(name, value)
    handler.serving_target.cache_clear()
    try:
        target = handler.serving_target()
        assert isinstance(target, MultiModelTarget)
        assert (target.bucket, target.prefix) == ("models", "mme/")
    finally:
        handler.serving_target.cache_clear()
    assert json.loads(settings.test_payload)["inputs"] == "ping"
