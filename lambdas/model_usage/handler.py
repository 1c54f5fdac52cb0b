"""SQS entry points of the usage writer and the online judge; the work is in `model_usage.core`.

Environment: BUSINESS_UNIT; write_usage: USAGE_BUCKET (the lake's model_metadata zone); judge_samples:
EVALUATION_SETTINGS (the business unit's evaluation settings, judge routed through its inference profile),
LOW_SCORE_BELOW, LAKE_RESULTS_BUCKET (the lake's evaluation_results zone), REVIEW_QUEUE_URL (optional).
Both functions use ReportBatchItemFailures: the answer lists the messages to deliver again.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger

from model_usage.core import OnlineJudge, sqs_records, write_usage

logger = Logger(business_unit=os.environ.get("BUSINESS_UNIT", ""))


@lru_cache(maxsize=1)
def online_judge() -> OnlineJudge:
    from evaluation.models import build_judge
    from evaluation.review import SqsReviewQueue
    from evaluation.settings import EvaluationSettings

    from common.lake_layout import Zone
    from common.lake_writer import LakeWriter

    settings = EvaluationSettings.model_validate_json(os.environ.get("EVALUATION_SETTINGS", "{}"))
    judge = build_judge(settings)
    if judge is None:
        raise RuntimeError(
            "EVALUATION_SETTINGS: judge.model is not set; the stack requires it for online evaluation"
        )
    review_queue = os.environ.get("REVIEW_QUEUE_URL")
    return OnlineJudge(
        business_unit=os.environ["BUSINESS_UNIT"],
        judge=judge,
        settings=settings.judge,
        low_score_below=float(os.environ["LOW_SCORE_BELOW"]),
        sink=LakeWriter(os.environ["LAKE_RESULTS_BUCKET"], zone=Zone.EVALUATION_RESULTS),
        review_queue=SqsReviewQueue(review_queue) if review_queue else None,
        max_attempts=settings.max_attempts,
    )


@logger.inject_lambda_context
def usage_writer(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from common.lake_layout import Zone
    from common.lake_writer import LakeWriter

    # A fresh writer per invocation: a failed flush must not leave records buffered for the next batch.
    sink = LakeWriter(os.environ["USAGE_BUCKET"], zone=Zone.MODEL_METADATA)
    return write_usage(sqs_records(event), business_unit=os.environ["BUSINESS_UNIT"], sink=sink)


@logger.inject_lambda_context
def online_judge_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return online_judge().handle(sqs_records(event))
