"""Build the service from the function's environment (the stack sets these variables).

APP_SETTINGS (ApplicationSettings JSON), BUSINESS_UNIT, USE_CASE, TABLE_NAME, FEEDBACK_BUCKET (ratings and
evaluation candidates), RAW_BUCKET, UPLOAD_ROLE_ARN, LAKE_STAGE (the stage: its lake prefix and the prompt
catalog alias it serves), GUARDRAIL_SETTINGS (the guardrail stack's JSON) with
GUARDRAIL_FUNCTION (`packaging: lambda`) or, in-process, FILTER_DECISIONS_BUCKET and the optional
BEDROCK_GUARDRAIL_ID / BEDROCK_GUARDRAIL_VERSION. The catalog URL comes from the settings (or
PROMPT_CATALOG_URL): an unreachable catalog answers 503. FINE_TUNING_PIPELINE is set where the stage has
the tenant fine-tuning pipeline (with STAGE, MAX_CONCURRENT_RUNS, MAX_RUNTIME_HOURS and FINE_TUNING_LEASES_TABLE,
the cap's lease slots shared with the upload trigger, and TENANT_USE_CASES, the use cases a request may name
and the default one); without it /fine-tunes
answers 503. MODELS_TABLE is the serving stack's model records table (tenant -> served model), where the
stage serves models.
Cost and quality (docs/cost.md): DEFAULT_MODEL_PROFILE_ARN (the application inference profile the default
Bedrock model is called through), MODEL_PRICE (its dated price, `common.model_pricing.ModelPrice` JSON),
USAGE_QUEUE_URL, and ONLINE_EVALUATION_QUEUE_URL with ONLINE_EVALUATION_SAMPLE_RATE where the stage samples.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from app_backend.catalog import ApiCatalog, signed_get_json
from app_backend.fine_tunes import SageMakerPipeline
from app_backend.quotas import TenantQuotas
from app_backend.service import AppService
from app_backend.settings import ApplicationSettings, DefaultModel
from app_backend.store import AppStore
from app_backend.uploads import TenantUploads, uploads_prefix
from common.fine_tuning_runs import PipelineRef, RunLeases, TenantUseCases
from common.model_gateway import BedrockConverseModel, ModelClient, SageMakerEndpointModel
from common.model_pricing import ModelPrice
from common.model_usage import SqsMessages
from common.prompt_client import PromptClient, urllib_transport

if TYPE_CHECKING:
    from guardrail.client import GuardrailCaller


class S3Candidates:
    """Evaluation-catalog candidates: one JSON-lines object per rating, named by the rating id."""

    def __init__(self, bucket: str, s3: Any) -> None:
        self.bucket = bucket
        self._s3 = s3

    def put(self, key: str, body: str) -> None:
        self._s3.put_object(Bucket=self.bucket, Key=key, Body=body.encode(), ContentType="application/jsonl")


def default_model(settings: DefaultModel, profile_arn: str | None = None) -> ModelClient:
    """The configured model; a Bedrock model through its application inference profile when the stack
    made one (the name stays the model id: usage records and ratings name the model, not the profile)."""
    if settings.provider == "bedrock":
        return BedrockConverseModel(name=settings.name, model_id=profile_arn or settings.model_id or "")
    return SageMakerEndpointModel(
        name=settings.name, endpoint_name=settings.endpoint_name or "", payload_format=settings.payload_format
    )


def tenant_model(item: Mapping[str, Any]) -> ModelClient:
    """The tenant's model as the deployer recorded it: a multi-model target or an adapter component."""
    name = str(item["sk"]).removeprefix("MODEL#")
    return SageMakerEndpointModel(
        name=f"tenant-model-{name}",
        endpoint_name=str(item["endpoint_name"]),
        target_model=item.get("target_model"),
        inference_component=item.get("inference_component"),
        payload_format=item.get("payload_format", "messages"),
    )


def guard_from_env(env: Mapping[str, str]) -> GuardrailCaller:
    """The guardrail as the business unit configured it: its Lambda, or the engine in this process."""
    from guardrail.client import guardrail_client
    from guardrail.engine import GuardrailEngine
    from guardrail.settings import GuardrailSettings

    from common.lake_writer import LakeWriter

    settings = GuardrailSettings.model_validate_json(env.get("GUARDRAIL_SETTINGS", "{}"))
    guardrail_id, version = env.get("BEDROCK_GUARDRAIL_ID"), env.get("BEDROCK_GUARDRAIL_VERSION")
    bedrock_ref = (guardrail_id, version) if guardrail_id and version else None
    decisions = env.get("FILTER_DECISIONS_BUCKET")
    engine = None
    if settings.packaging == "in_process":
        engine = GuardrailEngine(
            settings,
            bedrock_ref=bedrock_ref,
            sink=LakeWriter(decisions, stage=env.get("LAKE_STAGE")) if decisions else None,
        )
    return guardrail_client(
        settings,
        business_unit=env["BUSINESS_UNIT"],
        function_name=env.get("GUARDRAIL_FUNCTION"),
        engine=engine,
    )


def build_service(env: Mapping[str, str] | None = None) -> AppService:
    import boto3

    from common.lake_writer import LakeWriter, retrying_s3_client

    env = os.environ if env is None else env
    settings = ApplicationSettings.model_validate_json(env.get("APP_SETTINGS", "{}"))
    business_unit = env["BUSINESS_UNIT"]
    stage = env["LAKE_STAGE"]
    region = env.get("AWS_REGION", env.get("AWS_DEFAULT_REGION", "us-east-1"))
    transport = urllib_transport()
    catalog_url = settings.prompt_catalog_url or env.get("PROMPT_CATALOG_URL") or "https://catalog.invalid"
    catalog = ApiCatalog(
        PromptClient(catalog_url, region=region, business_unit=business_unit, transport=transport),
        signed_get_json(catalog_url, region=region, transport=transport, business_unit=business_unit),
    )
    s3 = retrying_s3_client()
    pipeline = env.get("FINE_TUNING_PIPELINE")
    dynamodb = boto3.resource("dynamodb")
    table = dynamodb.Table(env["TABLE_NAME"])
    models_table = env.get("MODELS_TABLE")
    profile = env.get("DEFAULT_MODEL_PROFILE_ARN") or None
    sqs = (
        boto3.client("sqs") if env.get("USAGE_QUEUE_URL") or env.get("ONLINE_EVALUATION_QUEUE_URL") else None
    )
    usage_queue, samples_queue = env.get("USAGE_QUEUE_URL"), env.get("ONLINE_EVALUATION_QUEUE_URL")
    return AppService(
        settings=settings,
        business_unit=business_unit,
        use_case=settings.use_case or env["USE_CASE"],
        guard=guard_from_env(env),
        catalog=catalog,
        store=AppStore(table, dynamodb.Table(models_table) if models_table else None),
        default_model=default_model(settings.default_model, profile),
        tenant_model=tenant_model,
        ratings=LakeWriter(env["FEEDBACK_BUCKET"], s3_client=s3, stage=stage),
        candidates=S3Candidates(env["FEEDBACK_BUCKET"], s3),
        stage=stage,
        uploads=TenantUploads(
            bucket=env["RAW_BUCKET"],
            business_unit=business_unit,
            stage=stage,
            role_arn=env["UPLOAD_ROLE_ARN"],
            settings=settings.uploads,
            sts=boto3.client("sts"),
        ),
        fine_tunes=(
            SageMakerPipeline(
                RunLeases(
                    boto3.client("dynamodb"),
                    env["FINE_TUNING_LEASES_TABLE"],
                    PipelineRef(
                        name=pipeline,
                        business_unit=business_unit,
                        stage=stage,
                        max_concurrent_runs=int(env["MAX_CONCURRENT_RUNS"]),
                        max_runtime_hours=int(env["MAX_RUNTIME_HOURS"]),
                        use_cases=TenantUseCases.from_json(env[TenantUseCases.ENV]),
                    ),
                ),
                boto3.client("sagemaker"),
                raw_bucket=env["RAW_BUCKET"],
                uploads_prefix=lambda tenant: uploads_prefix(business_unit, stage, tenant),
            )
            if pipeline
            else None
        ),
        usage=SqsMessages(usage_queue, sqs_client=sqs) if usage_queue else None,
        samples=SqsMessages(samples_queue, sqs_client=sqs) if samples_queue else None,
        sample_rate=float(env.get("ONLINE_EVALUATION_SAMPLE_RATE", "0")) if samples_queue else 0.0,
        model_price=ModelPrice.model_validate_json(env["MODEL_PRICE"]) if env.get("MODEL_PRICE") else None,
        inference_profile=profile,
        quotas=TenantQuotas(table, settings.tenant_limits),
    )
