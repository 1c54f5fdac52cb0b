"""Start the fine-tuning pipeline for the tenant whose upload reached the raw zone.

Keys look like `<business_unit>/<stage>/tenant=<tenant_id>/<file>.jsonl` (the stage this trigger runs in);
anything else, another stage's upload included, is ignored (not an error: the rule may see other uploads
of the business unit).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from common.lake_layout import LakeLayoutError, check_tenant_id, stage_prefix, tenant_prefix


@dataclass(frozen=True)
class Upload:
    bucket: str
    key: str


def tenant_of(key: str, business_unit: str, stage: str) -> str | None:
    match = re.match(rf"^{re.escape(stage_prefix(business_unit, stage))}tenant=([^/]+)/.+\.jsonl$", key)
    if match is None:
        return None
    try:
        return check_tenant_id(match.group(1))
    except LakeLayoutError:
        return None


def start_pipeline(
    sagemaker: Any, *, pipeline_name: str, business_unit: str, stage: str, upload: Upload
) -> str | None:
    """Start one execution for the upload's tenant; returns its ARN, or None when the key is not a tenant
    upload of this stage."""
    tenant = tenant_of(upload.key, business_unit, stage)
    if tenant is None:
        return None
    response = sagemaker.start_pipeline_execution(
        PipelineName=pipeline_name,
        PipelineExecutionDisplayName=f"tenant-{tenant}"[:82],
        PipelineParameters=[
            {"Name": "TenantId", "Value": tenant},
            {
                "Name": "InputDataUri",
                "Value": f"s3://{upload.bucket}/{tenant_prefix(business_unit, stage, tenant)}",
            },
        ],
        # EventBridge delivers at least once: the same upload starts one execution.
        ClientRequestToken=hashlib.sha256(f"{upload.bucket}/{upload.key}".encode()).hexdigest(),
    )
    return str(response["PipelineExecutionArn"])
