"""Deployer Lambda: a registry state change in, the version served in its slot (or retired) out.

The event only says which version changed; the deployer describes it again, so a late "Approved" for a
version that was rejected since is treated as what it is now.
"""

from __future__ import annotations

import json
import os
import time
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import parse

from common.preprod_gate import GATE_PASSED_DETAIL_TYPE
from serving_deployer.core import (
    DeploymentError,
    InferenceComponentTarget,
    ModelPackage,
    MultiModelTarget,
    ServingTarget,
    handle_package,
    package_from_description,
)
from serving_deployer.events import ModelPackageStateChange, PackageVersion, PreprodGatePassed
from serving_deployer.preprod_gate import emit_refusal, prod_refusal, start_gate
from serving_deployer.records import DynamoRecords
from serving_deployer.settings import ServingMode, ServingSettings

logger = Logger(business_unit=os.environ.get("BUSINESS_UNIT", ""))
tracer = Tracer()


@cache
def sagemaker_client() -> Any:
    return boto3.client("sagemaker")


@cache
def serving_target() -> ServingTarget:
    settings = ServingSettings.model_validate_json(os.environ["SERVING_SETTINGS"])
    runtime = boto3.client("sagemaker-runtime")
    common = {
        "runtime": runtime,
        "endpoint_name": os.environ["ENDPOINT_NAME"],
        "bucket": os.environ["MODEL_BUCKET"],
        "prefix": os.environ["MODEL_PREFIX"],
        "test_payload": settings.test_payload,
    }
    if settings.mode is ServingMode.MULTI_MODEL_ENDPOINT:
        return MultiModelTarget(s3=boto3.client("s3"), **common)
    return InferenceComponentTarget(
        s3=boto3.client("s3"),
        sagemaker=sagemaker_client(),
        variant_name=os.environ["VARIANT_NAME"],
        base_component_name=os.environ["BASE_COMPONENT_NAME"],
        lmi=settings.lmi,  # the base component's LoRA limits: adapters are packaged and checked against them
        **common,
    )


@cache
def records() -> DynamoRecords:
    return DynamoRecords(boto3.resource("dynamodb").Table(os.environ["RECORDS_TABLE"]), clock=time.time)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if event.get("detail-type") == GATE_PASSED_DETAIL_TYPE:
        return gate_passed(parse(event=event, model=PreprodGatePassed).detail)
    change = parse(event=event, model=ModelPackageStateChange).detail
    described = sagemaker_client().describe_model_package(ModelPackageName=change.ModelPackageArn)
    try:
        package = package_from_description(described, tenant_groups=tenant_groups())
    except DeploymentError as exc:
        logger.error("registered version refused", extra={"arn": change.ModelPackageArn, "error": str(exc)})
        return {"action": "refused", "error": str(exc)}
    return serve(described, package)


def tenant_groups() -> frozenset[str]:
    return frozenset(json.loads(os.environ.get("TENANT_GROUPS", "[]")))


def gate_passed(named: PackageVersion) -> dict[str, Any]:
    """Prod: preprod's gate passed after this version's approval; serve it now if its record verifies.

    Only an approved business-unit version of a gated stage is considered, and only on its own record:
    `serve` verifies it exactly as for the approval's event, so the event alone can serve nothing."""
    ignored = {
        "action": "ignored",
        "group": named.ModelPackageGroupName,
        "version": named.ModelPackageVersion,
    }
    if not os.environ.get("PREPROD_GATE_KEY_ARN"):
        return {**ignored, "error": "this stage does not check preprod gate records"}
    described = sagemaker_client().describe_model_package(ModelPackageName=named.ModelPackageArn)
    try:
        package = package_from_description(described, tenant_groups=tenant_groups())
    except DeploymentError as exc:
        return {**ignored, "error": str(exc)}
    if package.tenant_id is not None or package.status != "Approved":
        reason = (
            "a tenant version" if package.tenant_id is not None else f"approval status is {package.status}"
        )
        logger.info("passed gate of an unservable version ignored", extra={"arn": package.arn, "why": reason})
        return {**ignored, "error": reason}
    logger.info("preprod gate passed after approval: checking again", extra={"arn": package.arn})
    return serve(described, package)


def serve(described: dict[str, Any], package: ModelPackage) -> dict[str, Any]:
    refused = check_preprod_gate(described, package)
    if refused is not None:
        return refused
    pending = frozenset(json.loads(os.environ.get("PENDING_GROUPS", "[]")))
    outcome = handle_package(
        serving_target(), records(), package, now=int(time.time()), pending_groups=pending
    )
    if outcome.action == "deployed" and package.status == "PendingManualApproval":
        start_preprod_gate(package, outcome.served or {})
    if outcome.action == "rolled_back":
        logger.error("deployment rolled back", extra={"outcome": outcome.__dict__})
    else:
        logger.info("registry change handled", extra={"outcome": outcome.__dict__})
    return {**outcome.__dict__, "slot": list(outcome.slot)}


# ---- business-unit models: the preprod gate (serving_deployer.preprod_gate) -----------------------------


def check_preprod_gate(described: dict[str, Any], package: ModelPackage) -> dict[str, Any] | None:
    """Prod (PREPROD_GATE_KEY_ARN set): an approved business-unit version that did not pass the preprod
    gate for this exact version and checksum is refused: nothing served, the refusal recorded and counted."""
    key_arn = os.environ.get("PREPROD_GATE_KEY_ARN")
    if not key_arn or package.tenant_id is not None or package.status != "Approved":
        return None
    reason = prod_refusal(kms_client(), key_arn, described, package)
    if reason is None:
        return None
    logger.error("approved version refused: preprod gate", extra={"arn": package.arn, "reason": reason})
    records().put_deployment(package, "refused", f"preprod gate: {reason}")
    emit_refusal(os.environ.get("BUSINESS_UNIT", ""), package.group)
    return {
        "action": "refused",
        "error": f"preprod gate: {reason}",
        "group": package.group,
        "version": package.version,
    }


def start_preprod_gate(package: ModelPackage, route: dict[str, str]) -> None:
    """Preprod (GATE_STATE_MACHINE_ARN set): a served business-unit version gets its evaluation run."""
    use_cases = json.loads(os.environ.get("GATE_USE_CASES", "{}"))
    machine = os.environ.get("GATE_STATE_MACHINE_ARN")
    if not machine or package.group not in use_cases:
        return
    name = start_gate(
        stepfunctions_client(),
        machine,
        package,
        use_case=use_cases[package.group],
        endpoint_name=os.environ["ENDPOINT_NAME"],
        route=route,
    )
    logger.info("preprod gate started", extra={"arn": package.arn, "execution": name})


@cache
def kms_client() -> Any:
    return boto3.client("kms")


@cache
def stepfunctions_client() -> Any:
    return boto3.client("stepfunctions")
