"""Valid sample lake records; tests override one field at a time."""

from datetime import UTC, datetime

from common.lake_records import EvaluationResultRecord, FilterDecisionRecord, Finding, RatingRecord

BUCKET = "lake-evaluation-results"


def evaluation_result(record_id="r1", model_id="anthropic.claude-3:0", day=1, **overrides):
    values = {
        "business_unit": "finance",
        "model_id": model_id,
        "event_time": datetime(2024, 5, day, 12, 30, tzinfo=UTC),
        "run_id": "run-1",
        "record_id": record_id,
        "use_case": "summarize",
        "metrics": {"rouge_l": 0.42},
        "judge_score": 4.0,
    }
    return EvaluationResultRecord(**(values | overrides))


def rating(rating_id="g1", **overrides):
    values = {
        "business_unit": "finance",
        "model_id": "m1",
        "event_time": datetime(2024, 5, 1, 8, tzinfo=UTC),
        "rating_id": rating_id,
        "request_id": "req-1",
        "tenant_id": "tenant-a",
        "use_case": "summarize",
        "rating_type": "stars",
        "value": 2,
    }
    return RatingRecord(**(values | overrides))


def filter_decision(decision_id="d1", **overrides):
    values = {
        "business_unit": "finance",
        "model_id": "m1",
        "event_time": datetime(2024, 5, 1, 8, tzinfo=UTC),
        "decision_id": decision_id,
        "request_id": "req-1",
        "direction": "input",
        "action": "block",
        "findings": [Finding(layer="comprehend", type="TOXICITY", score=0.93)],
        "layer_latency_ms": {"comprehend": 41.5},
    }
    return FilterDecisionRecord(**(values | overrides))
