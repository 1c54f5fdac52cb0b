"""Starting a tenant's fine-tuning run within the business unit's cap (`fine_tuning.max_concurrent_runs`).

Both starters use it: the upload trigger (lambdas/fine_tuning_trigger) and POST /fine-tunes (app backend).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any


class AtCapacityError(Exception):
    """The business unit already runs its maximum number of fine-tuning executions in this stage."""


@dataclass(frozen=True)
class PipelineRef:
    name: str
    business_unit: str
    stage: str
    max_concurrent_runs: int
    max_runtime_hours: int


def running_executions(sagemaker: Any, pipeline: PipelineRef, *, now: datetime) -> int:
    """Executions still running; none can be older than the jobs' runtime limits allow."""
    oldest = now - timedelta(hours=3 * pipeline.max_runtime_hours + 1)  # three jobs run one after another
    count = 0
    for page in sagemaker.get_paginator("list_pipeline_executions").paginate(
        PipelineName=pipeline.name, CreatedAfter=oldest, SortBy="CreationTime", SortOrder="Descending"
    ):
        count += sum(
            1
            for summary in page.get("PipelineExecutionSummaries", [])
            if summary.get("PipelineExecutionStatus") == "Executing"
        )
    return count


def start_for_tenant(
    sagemaker: Any,
    pipeline: PipelineRef,
    *,
    tenant_id: str,
    input_uri: str,
    model_name: str,
    client_token: str,
    now: datetime,
) -> str:
    """Start one execution for the tenant unless the cap is reached (AtCapacityError)."""
    running = running_executions(sagemaker, pipeline, now=now)
    if running >= pipeline.max_concurrent_runs:
        raise AtCapacityError(
            f"{running} fine-tuning runs in progress; fine_tuning.max_concurrent_runs is "
            f"{pipeline.max_concurrent_runs}"
        )
    response = sagemaker.start_pipeline_execution(
        PipelineName=pipeline.name,
        PipelineExecutionDisplayName=f"tenant-{tenant_id}"[:82],
        PipelineParameters=[
            {"Name": "TenantId", "Value": tenant_id},
            {"Name": "ModelName", "Value": model_name},
            {"Name": "InputDataUri", "Value": input_uri},
        ],
        ClientRequestToken=client_token,
    )
    return str(response["PipelineExecutionArn"])
