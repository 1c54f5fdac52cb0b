"""The gate recorder's announcement: a passing record on an already approved version -> "Preprod Gate Passed"."""

from __future__ import annotations

import json
from typing import Any

import pytest
from evaluation.gate_record import announce_if_approved

from common.preprod_gate import GATE_PASSED_DETAIL_TYPE, GateRecord, gate_passed_source

ARN = "arn:aws:sagemaker:eu-west-1:111111111111:model-package/exco-retail-product-qa/3"
RECORD = GateRecord(ARN, "exco-retail-product-qa", "a" * 64, "passed", "bu-gate-exco-retail-product-qa-v3")


class Registry:
    def __init__(self, status: str) -> None:
        self.status = status

    def describe_model_package(self, ModelPackageName: str) -> dict[str, Any]:  # noqa: N803 (boto3's name)
        return {
            "ModelPackageArn": ModelPackageName,
            "ModelPackageGroupName": "exco-retail-product-qa",
            "ModelPackageVersion": 3,
            "ModelApprovalStatus": self.status,
        }


class Events:
    def __init__(self, failed: int = 0) -> None:
        self.failed, self.entries = failed, []  # type: ignore[var-annotated]

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803 (boto3's name)
        self.entries.extend(Entries)
        codes = (
            [{"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}]
            if self.failed
            else [{"EventId": "1"}]
        )
        return {"FailedEntryCount": self.failed, "Entries": codes}


def test_an_approved_version_is_announced_by_arn_group_and_version() -> None:
    events = Events()
    assert announce_if_approved(events, Registry("Approved"), gate_passed_source("exco"), RECORD) is True
    (entry,) = events.entries
    assert entry["Source"] == "exco.preprod-gate" and entry["DetailType"] == GATE_PASSED_DETAIL_TYPE
    assert entry["Resources"] == [ARN]
    assert json.loads(entry["Detail"]) == {
        "ModelPackageArn": ARN,
        "ModelPackageGroupName": "exco-retail-product-qa",
        "ModelPackageVersion": 3,
    }


@pytest.mark.parametrize("status", ["PendingManualApproval", "Rejected"])
def test_a_version_not_approved_is_not_announced(status: str) -> None:
    events = Events()
    assert announce_if_approved(events, Registry(status), "exco.preprod-gate", RECORD) is False
    assert events.entries == []


def test_a_failed_put_fails_the_invocation_so_eventbridge_retries_it() -> None:
    with pytest.raises(RuntimeError, match="announcing the passed gate failed"):
        announce_if_approved(Events(failed=1), Registry("Approved"), "exco.preprod-gate", RECORD)
