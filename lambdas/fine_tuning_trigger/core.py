"""Start the stage's fine-tuning pipeline for the tenant whose upload reached the raw zone, within the cap.

Keys look like `<business_unit>/<stage>/tenant=<tenant_id>/uploads/<id>/<file>.jsonl` (the lake layout);
an upload trains the business unit's default use case (the key names none; POST /fine-tunes picks another);
anything else starts nothing (the rule only forwards the stage's tenant prefix, but a key that is not a
tenant's JSON-lines upload is no training data). The business unit's cap on concurrent runs
(`fine_tuning.max_concurrent_runs`) is a lease slot taken before each start (common/fine_tuning_runs.py, shared
with POST /fine-tunes): an upload that finds every slot taken waits in the queue and is tried again later, so
nothing is lost; the run's end frees its slot (`release_ended_run`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from common.fine_tuning_runs import (
    AtCapacityError,
    PipelineRef,
    RunLeases,
    SlotLostError,
    TenantUseCases,
    start_for_tenant,
)
from common.lake_layout import LakeLayoutError, check_tenant_id, stage_prefix, tenant_prefix

__all__ = [
    "AtCapacityError",
    "PipelineRef",
    "RunLeases",
    "SlotLostError",
    "TenantUseCases",
    "Upload",
    "release_ended_run",
    "start_pipeline",
    "tenant_of",
    "uploads_prefix",
]

DEFAULT_MODEL_NAME = "personal"


@dataclass(frozen=True)
class Upload:
    bucket: str
    key: str


def uploads_prefix(business_unit: str, stage: str, tenant_id: str) -> str:
    """Where the app's presigned uploads of one tenant land (app_backend/uploads.py, the lake layout)."""
    return f"{tenant_prefix(business_unit, stage, tenant_id)}uploads/"


def tenant_of(key: str, business_unit: str, stage: str) -> str | None:
    pattern = rf"^{re.escape(stage_prefix(business_unit, stage))}tenant=([^/]+)/uploads/.+\.jsonl$"
    match = re.match(pattern, key)
    if match is None:
        return None
    try:
        return check_tenant_id(match.group(1))
    except LakeLayoutError:
        return None


def start_pipeline(sagemaker: Any, leases: RunLeases, upload: Upload, *, now: datetime) -> str | None:
    """The upload's tenant gets one execution; None when the key is not a tenant's training upload."""
    pipeline = leases.pipeline
    tenant = tenant_of(upload.key, pipeline.business_unit, pipeline.stage)
    if tenant is None:
        return None
    return start_for_tenant(
        sagemaker,
        leases,
        tenant_id=tenant,
        input_uri=f"s3://{upload.bucket}/{uploads_prefix(pipeline.business_unit, pipeline.stage, tenant)}",
        model_name=DEFAULT_MODEL_NAME,
        # EventBridge and SQS deliver at least once: the same upload starts one execution.
        client_token=hashlib.sha256(f"{upload.bucket}/{upload.key}".encode()).hexdigest(),
        now=now,
    )


# Statuses of "SageMaker Model Building Pipeline Execution Status Change" after which a run holds no slot.
ENDED_STATUSES = ("Succeeded", "Failed", "Stopped")


def release_ended_run(
    leases: RunLeases, *, pipeline_arn: str, execution_arn: str, status: str, now: datetime
) -> int:
    """Free the slot of an execution of this pipeline that ended; other pipelines' events free nothing."""
    # SageMaker writes pipeline names in lower case in its ARNs.
    if status not in ENDED_STATUSES or not pipeline_arn.lower().endswith(
        f":pipeline/{leases.pipeline.name.lower()}"
    ):
        return 0
    if not execution_arn.startswith(f"{pipeline_arn}/execution/"):
        return 0
    return leases.release(execution_arn, now=now)
