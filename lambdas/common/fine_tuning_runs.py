"""Starting a tenant's fine-tuning run within the business unit's cap (`fine_tuning.max_concurrent_runs`).

Both starters use it: the upload trigger (lambdas/fine_tuning_trigger) and POST /fine-tunes (app backend).
The cap is exact because a run first takes one of `max_concurrent_runs` lease slots in a DynamoDB table
with a conditional write (DynamoDB applies each conditional write atomically, so two starters racing for
the last slot cannot both win), and only then starts the execution:

- reserve: `SLOT#<n>` for n < cap is written only if it is free (absent) or its lease expired. A lease not
  yet bound to an execution expires after `RESERVATION_SECONDS` (a starter that crashed frees it); every
  function that starts runs has a shorter Lambda timeout (tests/stacks/test_fine_tuning.py), so a live
  starter binds before its reservation can expire.
- bind: after StartPipelineExecution the lease names the execution and lives as long as a run can
  (three jobs, each within `max_runtime_hours`). Should the reservation have expired and another starter
  taken the slot anyway, the execution just started is stopped and SlotLostError (a retryable
  AtCapacityError) raised: no run ever holds no slot.
- cancel: a start that failed deletes its own lease at once (nothing leaks).
- release: the pipeline's end (Succeeded, Failed or Stopped, an EventBridge event) deletes the lease that
  names the execution. The table's TTL removes expired leases for good.

Each run names its use case (`TenantUseCases`, which the fine-tuning stack computes from the config and
writes into both starters' environment as `TENANT_USE_CASES`): the pipeline registers into
`<org>-<bu>-<stage>-tenants-<use case>`. The registry status is no starter's choice: the pipeline derives it
from the use case's promotion policy (stacks/fine_tuning_pipeline.py), and the job role may register a
`reviewed` use case's versions only as PendingManualApproval.
"""

from __future__ import annotations

import json
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


class SlotLostError(AtCapacityError):
    """The start outlived its reservation and another starter took the slot: the execution it started was
    stopped, so the cap holds; the caller tries again later, like at capacity."""


class UnknownUseCaseError(ValueError):
    """A run asked for a use case the business unit does not have."""


# The tenant pipeline's registration steps (stacks/fine_tuning_pipeline.py), by the status each registers
# with: the pipeline picks one from the run's use case; readers of a run look for either name.
REGISTER_STEPS = {"RegisterApproved": "Approved", "RegisterForReview": "PendingManualApproval"}


@dataclass(frozen=True)
class TenantUseCases:
    """The business unit's use cases a tenant run may train for, and the one a run trains when it names
    none (the pipeline's own default). Their promotion policies are the pipeline's business, not a starter's."""

    default: str
    names: tuple[str, ...]

    ENV = "TENANT_USE_CASES"

    def __post_init__(self) -> None:
        if self.default not in self.names:
            raise ValueError(f"the default use case {self.default!r} is not one of {', '.join(self.names)}")

    def to_json(self) -> str:
        return json.dumps(
            {"default": self.default, "use_cases": sorted(self.names)}, separators=(",", ":"), sort_keys=True
        )

    @classmethod
    def from_json(cls, text: str) -> TenantUseCases:
        value = json.loads(text)
        return cls(default=str(value["default"]), names=tuple(sorted(str(u) for u in value["use_cases"])))

    def resolve(self, use_case: str | None) -> str:
        """The use case a run trains: the one asked for, the default when none; UnknownUseCaseError else."""
        chosen = self.default if use_case is None else use_case
        if chosen not in self.names:
            raise UnknownUseCaseError(
                f"unknown use case {chosen!r}; this business unit has {', '.join(sorted(self.names))}"
            )
        return chosen


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
    """A taken slot: `token` names the starter's request (a redelivered one finds its slot again);
    `reserved_at` tells this reservation from a later one of the same request (after a lost slot)."""

    slot: int
    token: str
    reserved_at: int = 0

    @property
    def start_token(self) -> str:
        """StartPipelineExecution's idempotency token: one execution per reservation, so a redelivered
        request restarts nothing, and a retry after a lost (stopped) start gets a new execution."""
        return f"{self.token}-{self.reserved_at}"


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
                reserved_at = int(item.get("reserved_at", {}).get("N", "0"))
                return Lease(int(item["sk"]["S"].removeprefix("SLOT#")), token, reserved_at)
        stamp = int(now.timestamp())
        for slot in range(self.pipeline.max_concurrent_runs):
            try:
                self._dynamodb.put_item(
                    TableName=self.table_name,
                    Item={
                        **self._key(slot),
                        "token": {"S": token},
                        "reserved_at": {"N": str(stamp)},
                        "expires_at": {"N": str(stamp + RESERVATION_SECONDS)},
                    },
                    ConditionExpression="attribute_not_exists(pk) OR expires_at <= :now",
                    ExpressionAttributeValues={":now": {"N": str(stamp)}},
                )
            except ClientError as exc:
                if _condition_failed(exc):
                    continue  # taken: try the next slot
                raise
            return Lease(slot, token, stamp)
        raise AtCapacityError(
            f"{len(held)} fine-tuning runs in progress; fine_tuning.max_concurrent_runs is "
            f"{self.pipeline.max_concurrent_runs}"
        )

    def bind(self, lease: Lease, execution_arn: str, *, now: datetime) -> None:
        """The lease now lasts as long as the execution can run; ConditionalCheckFailed when the slot is no
        longer this reservation's (it expired and another starter took it)."""
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

    def bind_or_stop(self, sagemaker: Any, lease: Lease, execution_arn: str, *, now: datetime) -> None:
        """`bind`; if the slot was lost meanwhile, stop the execution just started and raise SlotLostError."""
        try:
            self.bind(lease, execution_arn, now=now)
        except ClientError as exc:
            if not _condition_failed(exc):
                raise
            # Stopping is idempotent: a retried stop of the same execution does no harm.
            sagemaker.stop_pipeline_execution(
                PipelineExecutionArn=execution_arn, ClientRequestToken=lease.start_token
            )
            raise SlotLostError(
                f"the start took longer than its {RESERVATION_SECONDS} s reservation and every slot of "
                f"fine_tuning.max_concurrent_runs ({self.pipeline.max_concurrent_runs}) is taken; the "
                "execution was stopped"
            ) from None

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
    """Start one execution for the tenant in a reserved slot (AtCapacityError when none is free, SlotLostError
    when the slot was lost during a slow start) that trains `use_case` (the default when None); an unknown use
    case takes no slot."""
    pipeline = leases.pipeline
    chosen = pipeline.use_cases.resolve(use_case)
    lease = leases.reserve(client_token, now=now)
    try:
        response = sagemaker.start_pipeline_execution(
            PipelineName=pipeline.name,
            PipelineExecutionDisplayName=f"tenant-{tenant_id}"[:82],
            PipelineParameters=[
                {"Name": "TenantId", "Value": tenant_id},
                {"Name": "ModelName", "Value": model_name},
                {"Name": "InputDataUri", "Value": input_uri},
                {"Name": "UseCase", "Value": chosen},
            ],
            ClientRequestToken=lease.start_token,
        )
    except BaseException:
        leases.cancel(lease)
        raise
    arn = str(response["PipelineExecutionArn"])
    leases.bind_or_stop(sagemaker, lease, arn, now=now)
    return arn
