"""Registry event ("SageMaker Model Package State Change", a tenant group, PendingManualApproval) -> the
version described again (it may have been decided since) -> one message on the human review queue."""

from __future__ import annotations

import json
import os
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from pydantic import BaseModel, ConfigDict, Field

from tenant_review.core import NotForReviewError, read_report, review_request, tenant_version

logger = Logger(business_unit=os.environ.get("BUSINESS_UNIT", ""))
tracer = Tracer()


@cache
def clients() -> tuple[Any, Any, Any]:
    return boto3.client("sagemaker"), boto3.client("s3"), boto3.client("sqs")


class StateChange(BaseModel):
    model_config = ConfigDict(extra="ignore")

    ModelPackageArn: str = Field(min_length=1)


def queue_for_review(
    arn: str, sagemaker: Any, s3: Any, sqs: Any, env: dict[str, str]
) -> dict[str, Any] | None:
    """The message sent, or None when the version needs no review (any more)."""
    described = sagemaker.describe_model_package(ModelPackageName=arn)
    try:
        version = tenant_version(described, tenant_groups=frozenset(json.loads(env["TENANT_GROUPS"])))
    except NotForReviewError as exc:
        logger.info("not queued for review", extra={"arn": arn, "reason": str(exc)})
        return None
    message = review_request(
        version,
        read_report(s3, version.report_url),
        business_unit=env["BUSINESS_UNIT"],
        stage=env["STAGE"],
    )
    sqs.send_message(QueueUrl=env["REVIEW_QUEUE_URL"], MessageBody=json.dumps(message))
    return message


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    change = StateChange.model_validate(event.get("detail") or {})
    sagemaker, s3, sqs = clients()
    message = queue_for_review(change.ModelPackageArn, sagemaker, s3, sqs, dict(os.environ))
    if message is not None:
        logger.info(
            "queued for review", extra={"arn": change.ModelPackageArn, "tenant": message["tenant_id"]}
        )
    return {"queued": message is not None}
