"""Raw-zone upload (S3 "Object Created" via EventBridge) -> fine-tuning pipeline execution for that tenant."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel

from fine_tuning_trigger.core import Upload, start_pipeline

logger = Logger(business_unit=os.environ.get("BUSINESS_UNIT", ""))
tracer = Tracer()


@cache
def sagemaker_client() -> Any:
    return boto3.client("sagemaker")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    detail = parse(event=event, model=S3EventNotificationEventBridgeModel).detail
    upload = Upload(bucket=detail.bucket.name, key=detail.object.key)
    execution = start_pipeline(
        sagemaker_client(),
        pipeline_name=os.environ["PIPELINE_NAME"],
        business_unit=os.environ["BUSINESS_UNIT"],
        stage=os.environ["LAKE_STAGE"],
        upload=upload,
    )
    logger.info("raw upload handled", extra={"key": upload.key, "execution": execution})
    return {"execution": execution}
