"""Shared helpers of the fine-tuning journeys: find resources in synthesized templates, match events,
evaluate identity and resource policies (tests/stacks/policy_eval.py), build the events AWS emits."""

from __future__ import annotations

import copy
import json
from typing import Any

from moto.events.models import EventPattern

from tests.stacks.policy_eval import Request, as_list, decide, resolve


def resources(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == resource_type}


def function_by_handler(template: dict[str, Any], prefix: str) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (k, r["Properties"])
        for k, r in resources(template, "AWS::Lambda::Function").items()
        if r["Properties"]["Handler"].startswith(prefix)
    ]
    return found


def role_statements(template: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    """Identity statements of one role: inline policies attached to it, resolved to strings (a bucket
    without a fixed name resolves to `arn:aws:s3:::<logical id>`, which no real key matches)."""
    unnamed = {
        k: f"<{k}>"
        for k, r in resources(template, "AWS::S3::Bucket").items()
        if "BucketName" not in r["Properties"]
    }
    template = with_bucket_names(template, unnamed) if unnamed else template
    return [
        resolve(statement, template)
        for policy in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"].get("Roles", [])
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def function_role_statements(template: dict[str, Any], handler_prefix: str) -> list[dict[str, Any]]:
    _, function = function_by_handler(template, handler_prefix)
    return role_statements(template, function["Role"]["Fn::GetAtt"][0])


def identity_allows(statements: list[dict[str, Any]], action: str, resource: str, **context: str) -> bool:
    """IAM order over identity statements (no Principal): an explicit deny wins, then an allow."""
    as_caller = [{**s, "Principal": "*"} for s in statements]
    return decide(as_caller, Request("000000000000", action, resource, dict(context))) == "allow"


def resource_allows(
    statements: list[dict[str, Any]], account: str, action: str, resource: str, **context: str
) -> bool:
    return decide(statements, Request(account, action, resource, dict(context))) == "allow"


def service_allows(
    statements: list[dict[str, Any]], service: str, action: str, resource: str, **context: str
) -> bool:
    """A resource policy's decision for an AWS service principal (e.g. events.amazonaws.com): the
    statements that name the service, evaluated as if it were any caller (conditions still apply)."""
    for_service = [
        {**s, "Principal": "*"}
        for s in statements
        if isinstance(s.get("Principal"), dict) and service in as_list(s["Principal"].get("Service", []))
    ]
    return decide(for_service, Request("000000000000", action, resource, dict(context))) == "allow"


def with_bucket_names(template: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """A copy whose unnamed buckets get names, so ARNs built from GetAtt resolve to comparable strings."""
    named = copy.deepcopy(template)
    for logical_id, name in names.items():
        named["Resources"][logical_id]["Properties"]["BucketName"] = name
    return named


def matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    return bool(EventPattern.load(json.dumps(pattern)).matches_event(event))


def rules(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [r["Properties"] for r in resources(template, "AWS::Events::Rule").values()]


def s3_object_created(account: str, region: str, bucket: str, key: str) -> dict[str, Any]:
    """The event S3 puts on the bucket owner's default bus for an upload (EventBridge notifications)."""
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": account,
        "time": "2025-01-01T00:00:00Z",
        "region": region,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": key, "size": 12, "etag": "b1946ac92492d2347c6235b4d2611184", "sequencer": "00"},
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": account,
            "source-ip-address": "203.0.113.7",
            "reason": "PostObject",
        },
    }


def model_package_state_change(account: str, region: str, described: dict[str, Any]) -> dict[str, Any]:
    """ "SageMaker Model Package State Change": the registry's event carries the package's description."""
    detail = {k: v for k, v in described.items() if k != "ResponseMetadata"}
    detail["CreationTime"] = str(detail.get("CreationTime", ""))
    detail.pop("LastModifiedTime", None)
    return {
        "version": "0",
        "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": "SageMaker Model Package State Change",
        "source": "aws.sagemaker",
        "account": account,
        "time": "2025-01-01T00:00:00Z",
        "region": region,
        "resources": [described["ModelPackageArn"]],
        "detail": json.loads(json.dumps(detail, default=str)),
    }


IC_CALLS = ("create_inference_component", "describe_inference_component", "delete_inference_component")


class SplitSageMaker:
    """One `sagemaker` client for the deployer: the registry from moto, inference components from a Stubber
    (moto does not implement them)."""

    def __init__(self, registry: Any, components: Any) -> None:
        self._registry = registry
        self._components = components

    def __getattr__(self, name: str) -> Any:
        return getattr(self._components if name in IC_CALLS else self._registry, name)


def expect_adapter(stub: Any, endpoint: str, account: str, region: str) -> None:
    """A component the deployer creates comes up InService (any name: the deployer derives it)."""
    from botocore.stub import ANY

    arn = f"arn:aws:sagemaker:{region}:{account}:inference-component/x"
    stub.add_response(
        "create_inference_component",
        {"InferenceComponentArn": arn},
        {
            "InferenceComponentName": ANY,
            "EndpointName": endpoint,
            "VariantName": "AllTraffic",
            "Specification": ANY,
            "Tags": ANY,
        },
    )
    stub.add_response(
        "describe_inference_component",
        {
            "InferenceComponentName": "x",
            "InferenceComponentArn": arn,
            "EndpointName": endpoint,
            "EndpointArn": f"arn:aws:sagemaker:{region}:{account}:endpoint/{endpoint}",
            "CreationTime": "2025-01-01T00:00:00Z",
            "LastModifiedTime": "2025-01-01T00:00:00Z",
            "InferenceComponentStatus": "InService",
        },
    )


def registration_for(definition: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """The RegisterModel step one run of the synthesized pipeline executes once its held-out thresholds
    passed: CheckThresholds' IfSteps, through every Condition step on the run's parameters (`In` checks
    on Get Parameters.*, the only kind the definition uses to pick a registration)."""
    (check,) = [s for s in definition["Steps"] if s["Name"] == "CheckThresholds"]
    (step,) = check["Arguments"]["IfSteps"]
    while step["Type"] == "Condition":
        holds = True
        for condition in step["Arguments"]["Conditions"]:
            assert condition["Type"] == "In", condition
            value = parameters[condition["QueryValue"]["Get"].removeprefix("Parameters.")]
            holds = holds and value in condition["Values"]
        (step,) = step["Arguments"]["IfSteps" if holds else "ElseSteps"]
    assert step["Type"] == "RegisterModel", step
    return step
