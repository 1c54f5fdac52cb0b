"""Preprod's gate recorder: a business-unit gate run ended -> its result on the model package version.

Triggered by the "Step Functions Execution Status Change" event of the evaluation state machine for
executions named `bu-gate-...` (the preprod deployer starts them, common.preprod_gate.execution_name). The
execution is described again (the event only says which one ended); a run without a candidate is a consumer
gate run and is left alone. The record (common.preprod_gate) goes into the version's CustomerMetadataProperties
in the central registry, MAC-signed with the business unit's preprod gate key; a failed gate also rejects the
version (ModelApprovalStatus Rejected, ApprovalDescription = why), which retires it from preprod serving.

An approval may come before the record: prod's deployer then refuses the version (no record yet). So once a
passing record is written, the version is described again and, when it is Approved by then, a "Preprod Gate
Passed" event naming exactly that version goes on this account's default bus; a rule forwards it to prod's,
where the deployer checks the version again (the record itself, never the event, decides what serves).
Described after the write, not before: an approval landing between the two is either seen here or its own
event finds the record in prod.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.preprod_gate import GATE_PASSED_DETAIL_TYPE, GateOutcome, GateRecord, sign
from evaluation.candidate import RunCandidate

GATE_FAILED_ERROR = "EvaluationGateFailed"  # the state machine's error for a failed gate (evaluation_stack)
MAX_DESCRIPTION = 1024  # UpdateModelPackage ApprovalDescription


class ExecutionStatusDetail(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    execution_arn: str = Field(
        alias="executionArn", pattern=r"^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:execution:[^:]+:[^:]+$"
    )
    status: Literal["SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"]


class ExecutionStatusChange(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    detail: ExecutionStatusDetail


@dataclass(frozen=True)
class Recorded:
    action: Literal["recorded", "ignored"]
    reason: str
    result: GateOutcome | None = None
    model_package_arn: str | None = None
    announced: bool = False  # a "Preprod Gate Passed" event went out (the version was already Approved)


def gate_outcome(execution: dict[str, Any]) -> tuple[GateOutcome, str]:
    """passed only for a run that succeeded with `{"passed": true}`; anything else fails, saying why."""
    status = execution["status"]
    if status == "SUCCEEDED":
        try:
            output = json.loads(execution.get("output") or "{}")
        except json.JSONDecodeError:
            return "failed", "the evaluation run's output is not JSON"
        if isinstance(output, dict) and output.get("passed") is True:
            return "passed", str(output.get("reason") or "every gate rule held")
        return "failed", f"gate not passed: {output.get('reason', 'no reason given')}"
    if execution.get("error") == GATE_FAILED_ERROR:
        try:
            cause = json.loads(execution.get("cause") or "{}")
        except json.JSONDecodeError:
            cause = {}
        return "failed", f"gate failed: {cause.get('reason', 'no reason given')}"
    detail = ": ".join(p for p in (execution.get("error"), execution.get("cause")) if p)
    return "failed", f"evaluation run ended {status}" + (f" ({detail})" if detail else "")


def record_gate(
    event: object,
    *,
    sfn: Any,
    sagemaker: Any,
    kms: Any,
    key_id: str,
    groups: frozenset[str],
    events: Any = None,
    source: str | None = None,
) -> Recorded:
    """`groups`: the business unit's central groups as version ARN prefixes (`...:model-package/<group>/`).
    `events` and `source`: where a passing record on an already approved version is announced (None: not)."""
    try:
        change = ExecutionStatusChange.model_validate(event)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValueError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    execution = sfn.describe_execution(executionArn=change.detail.execution_arn)
    try:
        run_input = json.loads(execution.get("input") or "{}")
        candidate = (
            RunCandidate.model_validate(run_input["candidate"]) if run_input.get("candidate") else None
        )
    except (json.JSONDecodeError, ValidationError, TypeError) as exc:
        return Recorded("ignored", f"the run's input names no valid candidate: {exc}")
    if candidate is None:
        return Recorded("ignored", "a consumer gate run (no candidate): nothing to record")
    if candidate.model_package_arn.rsplit("/", 1)[0] + "/" not in groups:
        return Recorded(
            "ignored", f"{candidate.model_package_arn} is not in one of this business unit's groups"
        )
    result, reason = gate_outcome(execution)
    described = sagemaker.describe_model_package(ModelPackageName=candidate.model_package_arn)
    metadata = dict(described.get("CustomerMetadataProperties") or {})
    registered = metadata.get("ArtifactSha256")
    if registered != candidate.artifact_sha256:
        result, reason = (
            "failed",
            (
                f"the run evaluated checksum {candidate.artifact_sha256}, the version is registered with {registered}"
            ),
        )
    record = GateRecord(
        model_package_arn=candidate.model_package_arn,
        group=candidate.group,
        artifact_sha256=candidate.artifact_sha256,
        result=result,
        run_id=str(execution.get("name") or change.detail.execution_arn.rsplit(":", 1)[-1]),
    )
    update: dict[str, Any] = {
        "ModelPackageArn": candidate.model_package_arn,
        # Restated in full: the registry keeps what it had, and the record's keys are (over)written.
        "CustomerMetadataProperties": {**metadata, **record.properties(sign(kms, key_id, record))},
    }
    if result == "failed":
        update["ModelApprovalStatus"] = "Rejected"
        update["ApprovalDescription"] = f"preprod gate: {reason}"[:MAX_DESCRIPTION]
    sagemaker.update_model_package(**update)
    announced = False
    if result == "passed" and events is not None and source:
        announced = announce_if_approved(events, sagemaker, source, record)
    return Recorded("recorded", reason, result, candidate.model_package_arn, announced)


def gate_passed_detail(described: dict[str, Any]) -> dict[str, Any]:
    """The event's detail: which version (prod's rule matches the group; its deployer describes the ARN)."""
    return {
        "ModelPackageArn": described["ModelPackageArn"],
        "ModelPackageGroupName": described["ModelPackageGroupName"],
        "ModelPackageVersion": int(described["ModelPackageVersion"]),
    }


def announce_if_approved(events: Any, sagemaker: Any, source: str, record: GateRecord) -> bool:
    described = sagemaker.describe_model_package(ModelPackageName=record.model_package_arn)
    if described.get("ModelApprovalStatus") != "Approved":
        return False  # the approval, when it comes, has its own event and finds the record
    response = events.put_events(
        Entries=[
            {
                "Source": source,
                "DetailType": GATE_PASSED_DETAIL_TYPE,
                "Detail": json.dumps(gate_passed_detail(described)),
                "Resources": [record.model_package_arn],
            }
        ]
    )
    if response.get("FailedEntryCount"):
        # Raised, so the invocation fails and EventBridge retries it (the record write is idempotent).
        raise RuntimeError(f"announcing the passed gate failed: {response['Entries']}")
    return True
