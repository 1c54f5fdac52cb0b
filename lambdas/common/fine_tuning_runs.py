"""Starting a tenant's fine-tuning run within the business unit's cap (`fine_tuning.max_concurrent_runs`).

Both starters use it: the upload trigger (lambdas/fine_tuning_trigger) and POST /fine-tunes (app backend).
The cap is exact because a run first takes one of `max_concurrent_runs` lease slots in a DynamoDB table
with a conditional write (DynamoDB applies each conditional write atomically, so two starters racing for
the last slot cannot both win), and only then starts the execution:

- reserve: `SLOT#<n>` for n < cap is written only if it is free (absent) or its lease expired. A lease not
  yet bound to an execution expires after `RESERVATION_SECONDS` (a starter that crashed frees it).
- bind: after StartPipelineExecution the lease names the execution and lives as long as a run can
  (three jobs, each within `max_runtime_hours`).
- cancel: a start that failed deletes its own lease at once (nothing leaks).
- release: the pipeline's end (Succeeded, Failed or Stopped, an EventBridge event) deletes the lease that
  names the execution. The table's TTL removes expired leases for good.

Each run names its use case: the pipeline registers into `<org>-<bu>-<stage>-tenants-<use case>` with the
registry status of that use case's promotion policy (`TenantUseCases`, which the fine-tuning stack computes
from the config and writes into both starters' environment as `TENANT_USE_CASES`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

RESERVATION_SECONDS = (
    600  # a start takes seconds; a reservation older than this belonged to a crashed starter
)
CONDITION_FAILED = "ConditionalCheckFailedException"


class AtCapacityError(Exception):
    """The business unit already runs its maximum number of fine-tuning executions in this stage."""


class UnknownUseCaseError(ValueError):
    """A run asked for a use case the business unit does not have."""


@dataclass(frozen=True)
class TenantUseCases:
    """The business unit's use cases a tenant run may train for, each with the registry status its version
    gets once the held-out thresholds passed (`automatic` -> Approved, `reviewed` -> PendingManualApproval),
    and the use case a run trains when it names none (the pipeline's own default)."""

    default: str
    approval_statuses: Mapping[str, str]

    ENV = "TENANT_USE_CASES"

    def __post_init__(self) -> None:
        if self.default not in self.approval_statuses:
            raise ValueError(f"the default use case {self.default!r} has no promotion policy")

    def to_json(self) -> str:
        return json.dumps(
            {"default": self.default, "approval_statuses": dict(self.approval_statuses)},
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> TenantUseCases:
        value = json.loads(text)
        return cls(default=str(value["default"]), approval_statuses=dict(value["approval_statuses"]))

    def resolve(self, use_case: str | None) -> str:
        """The use case a run trains: the one asked for, the default when none; UnknownUseCaseError else."""
        chosen = self.default if use_case is None else use_case
        if chosen not in self.approval_statuses:
            raise UnknownUseCaseError(
                f"unknown use case {chosen!r}; this business unit has {', '.join(sorted(self.approval_statuses))}"
            )
        return chosen

    def parameters(self, use_case: str) -> list[dict[str, str]]:
        """The pipeline parameters that pick the use case's registry group and its approval status."""
        return [
            {"Name": "UseCase", "Value": use_case},
            {"Name": "ModelApprovalStatus", "Value": self.approval_statuses[self.resolve(use_case)]},
        ]


@dataclass(frozen=True)
class PipelineRef:
    name: str
    business_unit: str
    stage: str
    max_concurrent_runs: int
    max_runtime_hours: int
    use_cases: TenantUseCases

    @property
    def longest_run_seconds(self) -> int:
        """No execution runs longer: three jobs run one after another, each within its runtime limit."""
        return (3 * self.max_runtime_hours + 1) * 3600


@dataclass(frozen=True)
class Lease:
    slot: int
    token: str


def _condition_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == CONDITION_FAILED


class RunLeases:
    """The cap's lease slots of one pipeline in the leases table (`pk` = pipeline name, `sk` = `SLOT#<n>`)."""

    def __init__(self, dynamodb: Any, table_name: str, pipeline: PipelineRef) -> None:
        self._dynamodb, self.table_name, self.pipeline = dynamodb, table_name, pipeline

    def _key(self, slot: int) -> dict[str, Any]:
        return {"pk": {"S": self.pipeline.name}, "sk": {"S": f"SLOT#{slot}"}}

    def held(self, *, now: datetime) -> list[dict[str, Any]]:
        """Leases not yet expired (strongly consistent: what the next conditional write will see)."""
        pages = self._dynamodb.get_paginator("query").paginate(
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": self.pipeline.name}},
            ConsistentRead=True,
        )
        stamp = int(now.timestamp())
        return [i for page in pages for i in page.get("Items", []) if int(i["expires_at"]["N"]) > stamp]

    def reserve(self, token: str, *, now: datetime) -> Lease:
        """One free slot for `token`, or the slot it already holds (a redelivered upload); else AtCapacityError."""
        held = self.held(now=now)
        for item in held:
            if item["token"]["S"] == token:
                return Lease(int(item["sk"]["S"].removeprefix("SLOT#")), token)
        stamp = int(now.timestamp())
        for slot in range(self.pipeline.max_concurrent_runs):
            try:
                self._dynamodb.put_item(
                    TableName=self.table_name,
                    Item={
                        **self._key(slot),
                        "token": {"S": token},
                        "expires_at": {"N": str(stamp + RESERVATION_SECONDS)},
                    },
                    ConditionExpression="attribute_not_exists(pk) OR expires_at <= :now",
                    ExpressionAttributeValues={":now": {"N": str(stamp)}},
                )
            except ClientError as exc:
                if _condition_failed(exc):
                    continue  # taken: try the next slot
                raise
            return Lease(slot, token)
        raise AtCapacityError(
            f"{len(held)} fine-tuning runs in progress; fine_tuning.max_concurrent_runs is "
            f"{self.pipeline.max_concurrent_runs}"
        )

    def bind(self, lease: Lease, execution_arn: str, *, now: datetime) -> None:
        """The lease now lasts as long as the execution can run."""
        self._dynamodb.update_item(
            TableName=self.table_name,
            Key=self._key(lease.slot),
            UpdateExpression="SET execution_arn = :arn, expires_at = :expires",
            ConditionExpression="#token = :token",
            ExpressionAttributeNames={"#token": "token"},
            ExpressionAttributeValues={
                ":arn": {"S": execution_arn},
                ":expires": {"N": str(int(now.timestamp()) + self.pipeline.longest_run_seconds)},
                ":token": {"S": lease.token},
            },
        )

    def cancel(self, lease: Lease) -> None:
        """Give back a lease whose start failed; a lease taken over meanwhile is left alone."""
        try:
            self._dynamodb.delete_item(
                TableName=self.table_name,
                Key=self._key(lease.slot),
                ConditionExpression="#token = :token",
                ExpressionAttributeNames={"#token": "token"},
                ExpressionAttributeValues={":token": {"S": lease.token}},
            )
        except ClientError as exc:
            if not _condition_failed(exc):
                raise

    def release(self, execution_arn: str, *, now: datetime) -> int:
        """Free the slot of an execution that ended; returns how many leases were freed (0 or 1)."""
        freed = 0
        for item in self.held(now=now):
            if item.get("execution_arn", {}).get("S") != execution_arn:
                continue
            try:
                self._dynamodb.delete_item(
                    TableName=self.table_name,
                    Key={"pk": item["pk"], "sk": item["sk"]},
                    ConditionExpression="execution_arn = :arn",
                    ExpressionAttributeValues={":arn": {"S": execution_arn}},
                )
                freed += 1
            except ClientError as exc:
                if not _condition_failed(exc):
                    raise
        return freed


def start_for_tenant(
    sagemaker: Any,
    leases: RunLeases,
    *,
    tenant_id: str,
    input_uri: str,
    model_name: str,
    client_token: str,
    now: datetime,
    use_case: str | None = None,
) -> str:
    """Start one execution for the tenant in a reserved slot (AtCapacityError when none is free) that trains
    `use_case` (the default when None) under its promotion policy; an unknown use case takes no slot."""
    pipeline = leases.pipeline
    use_case_parameters = pipeline.use_cases.parameters(pipeline.use_cases.resolve(use_case))
    lease = leases.reserve(client_token, now=now)
    try:
        response = sagemaker.start_pipeline_execution(
            PipelineName=pipeline.name,
            PipelineExecutionDisplayName=f"tenant-{tenant_id}"[:82],
            PipelineParameters=[
                {"Name": "TenantId", "Value": tenant_id},
                {"Name": "ModelName", "Value": model_name},
                {"Name": "InputDataUri", "Value": input_uri},
                *use_case_parameters,
            ],
            ClientRequestToken=client_token,
        )
    except BaseException:
        leases.cancel(lease)
        raise
    arn = str(response["PipelineExecutionArn"])
    leases.bind(lease, arn, now=now)
    return arn
