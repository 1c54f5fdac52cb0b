"""Queue of raw-zone uploads (S3 "Object Created" events via EventBridge -> SQS) -> pipeline executions.

`lambda_handler`: each SQS message is one EventBridge event. A message whose upload found the cap reached, whose start
failed, or whose start outlived its slot's reservation (that execution is stopped), is reported as a batch item failure: SQS offers it again after the visibility timeout, and after
`maxReceiveCount` tries it moves to the dead-letter queue, never dropped.
`release_handler`: a pipeline execution ended (EventBridge) -> its cap slot is freed.
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
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fine_tuning_trigger.core import (
    AtCapacityError,
    PipelineRef,
    RunLeases,
    SlotLostError,
    TenantUseCases,
    Upload,
    release_ended_run,
    start_pipeline,
)

logger = Logger(business_unit=os.environ.get("BUSINESS_UNIT", ""))
tracer = Tracer()


@cache
def sagemaker_client() -> Any:
    return boto3.client("sagemaker")


@cache
def dynamodb_client() -> Any:
    return boto3.client("dynamodb")


def leases_from_env() -> RunLeases:
    pipeline = PipelineRef(
        name=os.environ["PIPELINE_NAME"],
        business_unit=os.environ["BUSINESS_UNIT"],
        stage=os.environ["STAGE"],
        max_concurrent_runs=int(os.environ["MAX_CONCURRENT_RUNS"]),
        max_runtime_hours=int(os.environ["MAX_RUNTIME_HOURS"]),
        use_cases=TenantUseCases.from_json(os.environ[TenantUseCases.ENV]),
    )
    return RunLeases(dynamodb_client(), os.environ["RUN_LEASES_TABLE"], pipeline)


def handle_message(body: str, leases: RunLeases, sagemaker: Any, now: datetime) -> str | None:
    detail = parse(event=json.loads(body), model=S3EventNotificationEventBridgeModel).detail
    return start_pipeline(sagemaker, leases, Upload(detail.bucket.name, detail.object.key), now=now)


def handle_records(records: list[dict[str, Any]], leases: RunLeases, sagemaker: Any) -> list[dict[str, str]]:
    """The batch item failures: messages to offer again (cap reached, bad body, start failed)."""
    failures = []
    for record in records:
        message_id = record["messageId"]
        try:
            execution = handle_message(record["body"], leases, sagemaker, datetime.now(UTC))
            logger.info("upload handled", extra={"message_id": message_id, "execution": execution})
        except SlotLostError as exc:
            # Rare by design (the reservation outlasts this function's timeout): worth a warning.
            logger.warning(
                "start outlived its reservation, execution stopped; the upload waits",
                extra={"message_id": message_id, "reason": str(exc)},
            )
            failures.append({"itemIdentifier": message_id})
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
    failures = handle_records(event.get("Records", []), leases_from_env(), sagemaker_client())
    return {"batchItemFailures": failures}


class ExecutionStatusDetail(BaseModel):
    """The fields of "SageMaker Model Building Pipeline Execution Status Change" the release reads."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    pipeline_arn: str = Field(alias="pipelineArn", min_length=1)
    execution_arn: str = Field(alias="pipelineExecutionArn", min_length=1)
    status: str = Field(alias="currentPipelineExecutionStatus", min_length=1)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def release_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    detail = ExecutionStatusDetail.model_validate(event.get("detail") or {})
    freed = release_ended_run(
        leases_from_env(),
        pipeline_arn=detail.pipeline_arn,
        execution_arn=detail.execution_arn,
        status=detail.status,
        now=datetime.now(UTC),
    )
    logger.info(
        "run ended", extra={"execution": detail.execution_arn, "status": detail.status, "freed": freed}
    )
    return {"freed": freed}
