"""Deployer Lambda: registry approval / rejection events in, a servable (or retired) model out."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import parse

from serving_deployer.core import (
    InferenceComponentTarget,
    ModelVersion,
    MultiModelTarget,
    ServingTarget,
    handle_change,
)
from serving_deployer.events import ModelPackageStateChange
from serving_deployer.settings import ServingMode, ServingSettings

logger = Logger(business_unit=os.environ.get("BUSINESS_UNIT", ""))
tracer = Tracer()


@cache
def serving_target() -> ServingTarget:
    settings = ServingSettings.model_validate_json(os.environ["SERVING_SETTINGS"])
    runtime = boto3.client("sagemaker-runtime")
    endpoint = os.environ["ENDPOINT_NAME"]
    if settings.mode is ServingMode.MULTI_MODEL_ENDPOINT:
        return MultiModelTarget(
            s3=boto3.client("s3"),
            runtime=runtime,
            endpoint_name=endpoint,
            bucket=os.environ["MODEL_BUCKET"],
            prefix=os.environ["MODEL_PREFIX"],
            test_payload=settings.test_payload,
        )
    return InferenceComponentTarget(
        sagemaker=boto3.client("sagemaker"),
        runtime=runtime,
        endpoint_name=endpoint,
        variant_name=os.environ["VARIANT_NAME"],
        base_component_name=os.environ["BASE_COMPONENT_NAME"],
        test_payload=settings.test_payload,
    )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    change = parse(event=event, model=ModelPackageStateChange).detail
    model = ModelVersion(change.ModelPackageGroupName, change.ModelPackageVersion, change.artifact_url)
    outcome = handle_change(serving_target(), model, change.ModelApprovalStatus)
    if outcome.action == "rolled_back":
        logger.error("deployment rolled back", extra={"outcome": outcome.__dict__})
    else:
        logger.info("registry change handled", extra={"outcome": outcome.__dict__})
    return outcome.__dict__
