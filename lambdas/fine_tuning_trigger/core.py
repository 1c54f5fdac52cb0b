"""Start the stage's fine-tuning pipeline for the tenant whose upload reached the raw zone, within the cap.

Keys look like `<business_unit>/<stage>/tenant=<tenant_id>/uploads/<id>/<file>.jsonl` (the lake layout);
anything else starts nothing (the rule only forwards the stage's tenant prefix, but a key that is not a
tenant's JSON-lines upload is no training data). The business unit's cap on concurrent runs
(`fine_tuning.max_concurrent_runs`) is checked before each start: an upload that finds the cap reached waits
in the queue and is tried again later, so nothing is lost.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from common.fine_tuning_runs import AtCapacityError, PipelineRef, start_for_tenant
from common.lake_layout import LakeLayoutError, check_tenant_id, stage_prefix, tenant_prefix

__all__ = ["AtCapacityError", "PipelineRef", "Upload", "start_pipeline", "tenant_of", "uploads_prefix"]

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


def start_pipeline(sagemaker: Any, pipeline: PipelineRef, upload: Upload, *, now: datetime) -> str | None:
    """The upload's tenant gets one execution; None when the key is not a tenant's training upload."""
    tenant = tenant_of(upload.key, pipeline.business_unit, pipeline.stage)
    if tenant is None:
        return None
    return start_for_tenant(
        sagemaker,
        pipeline,
        tenant_id=tenant,
        input_uri=f"s3://{upload.bucket}/{uploads_prefix(pipeline.business_unit, pipeline.stage, tenant)}",
        model_name=DEFAULT_MODEL_NAME,
        # EventBridge and SQS deliver at least once: the same upload starts one execution.
        client_token=hashlib.sha256(f"{upload.bucket}/{upload.key}".encode()).hexdigest(),
        now=now,
    )
