"""Prod's deployer on "Preprod Gate Passed": only an approved business-unit version is checked again."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from pydantic import ValidationError
from serving_deployer import handler

GROUP = "exco-retail-product-qa"
ARN = f"arn:aws:sagemaker:eu-west-1:111111111111:model-package/{GROUP}/4"
KEY = "arn:aws:kms:eu-west-1:333333333332:alias/exco/retail/preprod/model-gate"


class Context:
    function_name = "deployer"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:eu-west-1:333333333333:function:deployer"
    aws_request_id = "req"


def passed(**detail: Any) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "1",
        "detail-type": "Preprod Gate Passed",
        "source": "exco.preprod-gate",
        "account": "333333333332",
        "time": "2026-11-26T00:00:00Z",
        "region": "eu-west-1",
        "resources": [ARN],
        "detail": {
            "ModelPackageArn": ARN,
            "ModelPackageGroupName": GROUP,
            "ModelPackageVersion": 4,
            **detail,
        },
    }


def described(status: str, **metadata: str) -> dict[str, Any]:
    return {
        "ModelPackageArn": ARN,
        "ModelPackageGroupName": GROUP,
        "ModelPackageVersion": 4,
        "ModelApprovalStatus": status,
        "CustomerMetadataProperties": {"ArtifactSha256": "a" * 64, **metadata},
        "CreationTime": "2026-01-01T00:00:00Z",
        "ModelPackageStatus": "Completed",
        "ModelPackageName": GROUP,
        "ModelPackageStatusDetails": {"ValidationStatuses": [], "ImageScanStatuses": []},
    }


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Any:
    client = boto3.client("sagemaker", region_name="eu-west-1")
    monkeypatch.setattr(handler, "sagemaker_client", lambda: client)
    monkeypatch.setenv("PREPROD_GATE_KEY_ARN", KEY)
    monkeypatch.setenv("TENANT_GROUPS", '["exco-retail-prod-tenants-product-qa"]')
    with Stubber(client) as stub:
        yield stub
        stub.assert_no_pending_responses()


def test_a_stage_that_checks_no_gate_records_ignores_it_without_describing(
    registry: Stubber, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREPROD_GATE_KEY_ARN")
    outcome = handler.lambda_handler(passed(), Context())
    assert outcome["action"] == "ignored" and "does not check preprod gate records" in outcome["error"]


@pytest.mark.parametrize("status", ["PendingManualApproval", "Rejected"])
def test_a_version_not_approved_now_is_ignored(registry: Stubber, status: str) -> None:
    registry.add_response("describe_model_package", described(status), {"ModelPackageName": ARN})
    outcome = handler.lambda_handler(passed(), Context())
    assert outcome == {
        "action": "ignored",
        "group": GROUP,
        "version": 4,
        "error": f"approval status is {status}",
    }


def test_a_tenant_version_is_never_served_by_it(registry: Stubber) -> None:
    tenant = {
        **described("Approved", TenantId="ann", ModelName="m1"),
        "ModelPackageGroupName": "exco-retail-prod-tenants-product-qa",
    }
    registry.add_response("describe_model_package", tenant, {"ModelPackageName": ARN})
    outcome = handler.lambda_handler(passed(), Context())
    assert outcome["action"] == "ignored" and outcome["error"] == "a tenant version"


def test_an_approved_version_without_a_verifying_record_is_refused_as_on_approval(
    registry: Stubber, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.add_response("describe_model_package", described("Approved"), {"ModelPackageName": ARN})
    refusals: list[str] = []
    monkeypatch.setattr(handler, "records", lambda: Refusals(refusals))
    monkeypatch.setattr(handler, "kms_client", lambda: None)  # no record: KMS is never asked
    outcome = handler.lambda_handler(passed(), Context())
    assert outcome["action"] == "refused" and "no preprod gate record" in outcome["error"]
    assert refusals == ["refused"]


class Refusals:
    def __init__(self, into: list[str]) -> None:
        self.into = into

    def put_deployment(self, package: Any, status: str, reason: str | None) -> None:
        self.into.append(status)


@pytest.mark.parametrize(
    "detail",
    [
        {"ModelPackageArn": "arn:aws:s3:::not-a-package"},
        {"ModelPackageVersion": 0},
        {"ModelPackageGroupName": "bad name!"},
    ],
)
def test_a_malformed_event_names_the_field(registry: Stubber, detail: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match=next(iter(detail))):
        handler.lambda_handler(passed(**detail), Context())
