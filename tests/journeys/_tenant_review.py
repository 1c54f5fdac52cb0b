"""A tenant version as the pipeline's Register step leaves it (moto): group, metadata, evaluation report."""

from __future__ import annotations

import hashlib
import json
from typing import Any

REPORT = {
    "metrics": {"token_f1": {"value": 0.71}, "exact_match": {"value": 0.4}},
    "artifact": {"sha256": "0" * 64},
    "samples": [{"prompt": "Which size fits?", "output": "Size M fits.", "reference": "M"}],
}


def register_tenant_version(
    sagemaker: Any,
    s3: Any,
    *,
    group: str,
    bucket: str,
    tenant: str,
    artifact_key: str,
    artifact: bytes,
    business_unit: str = "retail",
    status: str = "PendingManualApproval",
    report: dict[str, Any] | None = None,
) -> str:
    """Register one version of `tenant` in `group` (created if missing); returns its ARN."""
    if not sagemaker.list_model_package_groups(NameContains=group)["ModelPackageGroupSummaryList"]:
        sagemaker.create_model_package_group(ModelPackageGroupName=group)
    s3.put_object(Bucket=bucket, Key=artifact_key, Body=artifact)
    report_key = f"{business_unit}/tenant={tenant}/exec-{tenant}/evaluate/evaluation/evaluation.json"
    s3.put_object(Bucket=bucket, Key=report_key, Body=json.dumps(report or REPORT).encode())
    return str(
        sagemaker.create_model_package(
            ModelPackageGroupName=group,
            ModelApprovalStatus=status,
            InferenceSpecification={
                "Containers": [
                    {
                        "Image": "123.dkr.ecr.eu-west-1.amazonaws.com/lmi:1",
                        "ModelDataUrl": f"s3://{bucket}/{artifact_key}",
                    }
                ],
                "SupportedContentTypes": ["application/json"],
                "SupportedResponseMIMETypes": ["application/json"],
            },
            ModelMetrics={
                "ModelQuality": {
                    "Statistics": {"ContentType": "application/json", "S3Uri": f"s3://{bucket}/{report_key}"}
                }
            },
            CustomerMetadataProperties={
                "BusinessUnit": business_unit,
                "Stage": "prod",
                "TenantId": tenant,
                "ModelName": "personal",
                "ArtifactSha256": hashlib.sha256(artifact).hexdigest(),
            },
        )["ModelPackageArn"]
    )
