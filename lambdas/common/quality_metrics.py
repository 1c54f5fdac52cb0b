"""The quality-signal metric contract between the services that emit and the monitoring stack that alarms.

Services emit these as CloudWatch embedded metric format (Powertools `EphemeralMetrics`), so each blob
carries exactly the dimensions below (plus `service`) and nothing is called at run time. The monitoring
stack builds its widgets and alarms from the same names, so the two sides cannot drift apart.
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

NAMESPACE = "LLMOpsPlatform"  # PlatformFunction sets POWERTOOLS_METRICS_NAMESPACE to this

# Guardrail (lambdas/guardrail/records.py): per layer {layer, direction, business_unit, service}.
GUARDRAIL_SERVICE = "guardrail"
GUARDRAIL_LAYER_METRICS = ("calls", "blocks", "findings", "errors", "latency")
# ... and per request {direction, business_unit, service}.
GUARDRAIL_REQUESTS = "requests"
GUARDRAIL_BLOCKED = "blocked"

# Evaluation summarize: one value per model and run {business_unit, model, service}.
EVALUATION_SERVICE = "evaluation"
JUDGE_SCORE_MEAN = "judge_score_mean"

# App backend (end-user ratings): {business_unit, service}; `low_ratings` counts stars at or below
# LOW_STARS_MAX and thumbs down (value 0) of RatingRecord.
APP_SERVICE = "app"
RATINGS = "ratings"
LOW_RATINGS = "low_ratings"
LOW_STARS_MAX = 2


def emit_judge_score(business_unit: str, model: str, mean_score: float, namespace: str = NAMESPACE) -> None:
    metrics = EphemeralMetrics(namespace=namespace, service=EVALUATION_SERVICE)
    metrics.add_dimension("business_unit", business_unit)
    metrics.add_dimension("model", model)
    metrics.add_metric(JUDGE_SCORE_MEAN, MetricUnit.NoUnit, mean_score)
    metrics.flush_metrics()


def is_low_rating(rating_type: str, value: int) -> bool:
    return value <= LOW_STARS_MAX if rating_type == "stars" else value == 0


def emit_rating(business_unit: str, rating_type: str, value: int, namespace: str = NAMESPACE) -> None:
    """What the app backend calls once per stored end-user rating (RatingRecord.rating_type / value)."""
    metrics = EphemeralMetrics(namespace=namespace, service=APP_SERVICE)
    metrics.add_dimension("business_unit", business_unit)
    metrics.add_metric(RATINGS, MetricUnit.Count, 1)
    metrics.add_metric(LOW_RATINGS, MetricUnit.Count, int(is_low_rating(rating_type, value)))
    metrics.flush_metrics()


# App backend (docs/cost.md): a usage record or online-evaluation sample it could not queue
# {business_unit, kind, service}; the monitoring stack alarms on any usage delivery failure.
DELIVERY_FAILURES = "delivery_failures"

# Online evaluation (lambdas/model_usage): one judge score per sampled production exchange
# {business_unit, model, service}; the daily average feeds the online judge score and drift alarms.
ONLINE_EVALUATION_SERVICE = "online_evaluation"


def emit_delivery_failure(business_unit: str, kind: str, namespace: str = NAMESPACE) -> None:
    metrics = EphemeralMetrics(namespace=namespace, service=APP_SERVICE)
    metrics.add_dimension("business_unit", business_unit)
    metrics.add_dimension("kind", kind)
    metrics.add_metric(DELIVERY_FAILURES, MetricUnit.Count, 1)
    metrics.flush_metrics()


def emit_online_judge_score(business_unit: str, model: str, score: float, namespace: str = NAMESPACE) -> None:
    metrics = EphemeralMetrics(namespace=namespace, service=ONLINE_EVALUATION_SERVICE)
    metrics.add_dimension("business_unit", business_unit)
    metrics.add_dimension("model", model)
    metrics.add_metric(JUDGE_SCORE_MEAN, MetricUnit.NoUnit, score)
    metrics.flush_metrics()
