"""A tenant's version registered `PendingManualApproval` (use case promotion `reviewed`) -> one message on
the stage's human review queue (lambdas/evaluation/review.py), with what a reviewer decides on.

The message carries the binding fields of every review message (`run_id` = the registry group, `record_id` =
`v<version>`, `model` = the tenant id), so GET /reviews/next hands it out and records its claim like any
other; the reviewer answers it with POST /tenant-models/decisions (lambdas/evaluation/review_api.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

KIND = "tenant_model"
PENDING = "PendingManualApproval"
MAX_SAMPLES = 5
MAX_SAMPLE_CHARS = 2000  # keeps a message far below SQS's 256 KiB
_S3_URL = re.compile(r"^s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])/(.+)$")


class NotForReviewError(Exception):
    """The version is not a tenant version awaiting review (any more): nothing is queued."""


@dataclass(frozen=True)
class TenantVersion:
    arn: str
    group: str
    version: int
    tenant_id: str
    model_name: str
    use_case: str
    report_url: str | None


def tenant_version(described: dict[str, Any], *, tenant_groups: frozenset[str]) -> TenantVersion:
    """DescribeModelPackage of a tenant group's version that still waits for review."""
    group = str(described.get("ModelPackageGroupName", ""))
    if group not in tenant_groups:
        raise NotForReviewError(f"{group!r} is not one of this stage's tenant groups")
    if described.get("ModelApprovalStatus") != PENDING:
        raise NotForReviewError(f"approval status is {described.get('ModelApprovalStatus')}")
    metadata = described.get("CustomerMetadataProperties") or {}
    tenant, model_name = metadata.get("TenantId"), metadata.get("ModelName")
    if not (isinstance(tenant, str) and tenant and isinstance(model_name, str) and model_name):
        raise NotForReviewError("CustomerMetadataProperties: TenantId or ModelName missing")
    statistics = ((described.get("ModelMetrics") or {}).get("ModelQuality") or {}).get("Statistics") or {}
    report = statistics.get("S3Uri")
    return TenantVersion(
        arn=str(described["ModelPackageArn"]),
        group=group,
        version=int(described["ModelPackageVersion"]),
        tenant_id=tenant,
        model_name=model_name,
        use_case=group.rpartition("-tenants-")[2],
        report_url=report if isinstance(report, str) else None,
    )


def read_report(s3: Any, url: str | None) -> dict[str, Any]:
    """The pipeline's evaluation.json; {} when the version names none. A read error propagates (retry)."""
    if url is None:
        return {}
    match = _S3_URL.match(url)
    if match is None:
        return {}
    try:
        body = s3.get_object(Bucket=match.group(1), Key=match.group(2))["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return {}
        raise
    try:
        report = json.loads(body)
    except ValueError:
        return {}
    return report if isinstance(report, dict) else {}


def _clip(value: Any) -> str:
    return str(value)[:MAX_SAMPLE_CHARS]


def review_request(
    version: TenantVersion, report: dict[str, Any], *, business_unit: str, stage: str
) -> dict[str, Any]:
    """The review queue message: who, which version, its held-out metrics and sample answers."""
    metrics = {
        str(name): value["value"]
        for name, value in (report.get("metrics") or {}).items()
        if isinstance(value, dict) and isinstance(value.get("value"), int | float)
    }
    samples = [
        {key: _clip(sample.get(key, "")) for key in ("prompt", "output", "reference")}
        for sample in (report.get("samples") or [])[:MAX_SAMPLES]
        if isinstance(sample, dict)
    ]
    return {
        "kind": KIND,
        # The fields every review message is claimed by (review_api.ReviewClaim).
        "run_id": version.group,
        "record_id": f"v{version.version}",
        "model": version.tenant_id,
        "model_package_arn": version.arn,
        "business_unit": business_unit,
        "stage": stage,
        "tenant_id": version.tenant_id,
        "model_name": version.model_name,
        "use_case": version.use_case,
        "version": version.version,
        "metrics": metrics,
        "samples": samples,
        "answer_with": "POST /tenant-models/decisions",
    }
