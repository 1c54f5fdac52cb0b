"""Lambda entry points for the evaluation state machine; the work is in `evaluation.service`.

Environment: EVALUATION_SETTINGS (EvaluationSettings JSON), RESULTS_BUCKET (the run's working
bucket), LAKE_RESULTS_BUCKET (the data lake's evaluation_results zone, read by summarize only),
BUSINESS_UNIT, REVIEW_QUEUE_URL (optional), DEFAULT_DATASET_BUCKET (the lake's evaluation_datasets zone,
prepare). Catalog prompts are fetched from `prompt_catalog_url` of the settings, signed with the function's
role. A bad event raises InvalidEventError, whose name the state machine
catches; nothing is written for it.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger

from evaluation import service
from evaluation.settings import EvaluationSettings
from evaluation.store import S3ResultStore

logger = Logger(business_unit=os.environ.get("BUSINESS_UNIT", ""))


@lru_cache(maxsize=1)
def runtime() -> service.Runtime:
    settings = EvaluationSettings.model_validate_json(os.environ.get("EVALUATION_SETTINGS", "{}"))
    business_unit = os.environ["BUSINESS_UNIT"]
    bucket = os.environ["RESULTS_BUCKET"]

    def lake_sink() -> Any:
        from common.lake_layout import Zone
        from common.lake_writer import LakeWriter

        lake_bucket = os.environ.get("LAKE_RESULTS_BUCKET")
        if not lake_bucket:
            raise RuntimeError("LAKE_RESULTS_BUCKET: not set; the evaluation stack sets it on summarize")
        # No KMS key id: the lake bucket's default encryption (the lake's CMK) applies across accounts.
        return LakeWriter(lake_bucket, zone=Zone.EVALUATION_RESULTS)

    queue = None
    if os.environ.get("REVIEW_QUEUE_URL"):
        from evaluation.review import SqsReviewQueue

        queue = SqsReviewQueue(os.environ["REVIEW_QUEUE_URL"])

    def prompt_fetcher() -> Any:
        from common.prompt_client import PromptClient

        assert settings.prompt_catalog_url is not None  # service.prepare asks only when it is set
        return PromptClient(
            settings.prompt_catalog_url, region=os.environ["AWS_REGION"], business_unit=business_unit
        )

    return service.Runtime(
        settings=settings,
        business_unit=business_unit,
        store=S3ResultStore(bucket, f"{business_unit}/evaluation_runs"),
        sink_factory=lake_sink,
        review_queue=queue,
        default_dataset_bucket=os.environ.get("DEFAULT_DATASET_BUCKET"),
        prompt_fetcher=prompt_fetcher if settings.prompt_catalog_url else None,
    )


@logger.inject_lambda_context
def prepare(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return service.prepare(event, runtime())


@logger.inject_lambda_context
def score_batch(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return service.score_batch(event, runtime())


@logger.inject_lambda_context
def summarize(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return service.summarize_run(event, runtime())


@logger.inject_lambda_context
def gate(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return service.gate_run(event, runtime())


@logger.inject_lambda_context
def complete_reviews(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Scheduled: closes runs whose human review is drained or past its deadline."""
    return service.complete_reviews(event, runtime())


@logger.inject_lambda_context
def review_api(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The human review API behind API Gateway (evaluation.review_api)."""
    from evaluation.review_api import app

    return app.resolve(event, context)


@logger.inject_lambda_context
def record_gate(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A business-unit gate run ended: its result on the model package version (evaluation.gate_record)."""
    import boto3  # imported here, like the other entry points' clients: tests never build them

    from evaluation.gate_record import record_gate as record

    outcome = record(
        event,
        sfn=boto3.client("stepfunctions"),
        sagemaker=boto3.client("sagemaker"),
        kms=boto3.client("kms"),
        key_id=os.environ["GATE_KEY_ARN"],
        groups=frozenset(json.loads(os.environ["GATE_GROUPS"])),
        events=boto3.client("events"),
        source=os.environ.get("GATE_PASSED_SOURCE"),
    )
    log = logger.error if outcome.result == "failed" else logger.info
    log("preprod gate run handled", extra={"outcome": outcome.__dict__})
    return dict(outcome.__dict__)
