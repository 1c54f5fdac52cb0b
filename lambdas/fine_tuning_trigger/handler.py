"""Queue of raw-zone uploads (S3 "Object Created" events via EventBridge -> SQS) -> pipeline executions.

Each SQS message is one EventBridge event. A message whose upload found the cap reached, or whose start
failed, is reported as a batch item failure: SQS offers it again after the visibility timeout, and after
`maxReceiveCount` tries it moves to the dead-letter queue, never dropped.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel
from botocore.exceptions import ClientError
from pydantic import ValidationError

from fine_tuning_trigger.core import AtCapacityError, PipelineRef, Upload, start_pipeline

logger = Logger(business_unit=os.environ.get("BUSINESS_UNIT", ""))
tracer = Tracer()


@cache
def sagemaker_client() -> Any:
    return boto3.client("sagemaker")


def pipeline_from_env() -> PipelineRef:
    return PipelineRef(
        name=os.environ["PIPELINE_NAME"],
        business_unit=os.environ["BUSINESS_UNIT"],
        stage=os.environ["STAGE"],
        max_concurrent_runs=int(os.environ["MAX_CONCURRENT_RUNS"]),
        max_runtime_hours=int(os.environ["MAX_RUNTIME_HOURS"]),
    )


def handle_message(body: str, pipeline: PipelineRef, sagemaker: Any, now: datetime) -> str | None:
    detail = parse(event=json.loads(body), model=S3EventNotificationEventBridgeModel).detail
    return start_pipeline(sagemaker, pipeline, Upload(detail.bucket.name, detail.object.key), now=now)


def handle_records(
    records: list[dict[str, Any]], pipeline: PipelineRef, sagemaker: Any
) -> list[dict[str, str]]:
    """The batch item failures: messages to offer again (cap reached, bad body, start failed)."""
    failures = []
    for record in records:
        message_id = record["messageId"]
        try:
            execution = handle_message(record["body"], pipeline, sagemaker, datetime.now(UTC))
            logger.info("upload handled", extra={"message_id": message_id, "execution": execution})
        except AtCapacityError as exc:
            logger.info("cap reached, the upload waits", extra={"message_id": message_id, "reason": str(exc)})
            failures.append({"itemIdentifier": message_id})
        except (ValidationError, ValueError, ClientError) as exc:
            logger.error("upload not started", extra={"message_id": message_id, "error": str(exc)})
            failures.append({"itemIdentifier": message_id})
    return failures


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    failures = handle_records(event.get("Records", []), pipeline_from_env(), sagemaker_client())
    return {"batchItemFailures": failures}
