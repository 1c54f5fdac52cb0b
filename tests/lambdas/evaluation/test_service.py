import json
from datetime import UTC, datetime

import pytest
from evaluation import service
from evaluation.store import S3ResultStore

from common.evaluation_dataset import EvaluationRecord, dump_records
from common.lake_records import EvaluationResultRecord
from common.model_gateway import ModelThrottledError

from .conftest import BUCKET
from .fakes import ScriptedModel, make_settings


class ListSink:
    def __init__(self, written):
        self.written, self.buffer = written, []

    def append(self, record):
        self.buffer.append(record)

    def flush(self):
        self.written.extend(self.buffer)
        keys = [f"key-{len(self.written)}"] if self.buffer else []
        self.buffer = []
        return keys


def make_runtime(s3, models, settings=None):
    written: list = []
    rt = service.Runtime(
        settings=settings or make_settings(batch_workers=1),
        business_unit="retail",
        store=S3ResultStore(BUCKET, "retail/evaluation_runs", s3_client=s3),
        sink_factory=lambda: ListSink(written),
        now=lambda: datetime(2026, 11, 26, tzinfo=UTC),
        sleep=lambda _s: None,
    )
    rt.models_for = lambda outputs: models  # type: ignore[method-assign]
    return rt, written


def keys(s3):
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []))


RECORDS = [
    EvaluationRecord(id="r1", input="Sentiment: great", labels=["positive"], category="sentiment"),
    EvaluationRecord(id="r2", input="Sentiment: awful", labels=["negative"], category="sentiment"),
    EvaluationRecord(id="r3", input="UK PM in 2023?", reference_output="Rishi Sunak", category="qa"),
]


def batch_event(records, run_id="run-1"):
    return {
        "Items": [json.loads(r.model_dump_json(exclude_defaults=True)) for r in records],
        "BatchInput": {"run_id": run_id, "use_case": "support", "labels": ["negative", "positive"]},
    }


def test_prepare_strict_rejects_and_writes_nothing(s3):
    s3.put_object(Bucket=BUCKET, Key="in/data.jsonl", Body=dump_records(RECORDS) + "{broken\n")
    rt, _ = make_runtime(s3, [])
    event = {"run_id": "run-1", "use_case": "support", "dataset": {"bucket": BUCKET, "key": "in/data.jsonl"}}
    with pytest.raises(service.DatasetRejectedError, match="line 4: not valid JSON"):
        service.prepare(event, rt)
    assert keys(s3) == ["in/data.jsonl"]


def test_prepare_lenient_writes_clean_copy_and_line_errors(s3):
    s3.put_object(Bucket=BUCKET, Key="in/data.jsonl", Body="{broken\n" + dump_records(RECORDS))
    rt, _ = make_runtime(s3, [], make_settings(strict_dataset=False, concurrency_limit=8, batch_workers=4))
    event = {"run_id": "run-1", "use_case": "support", "dataset": {"bucket": BUCKET, "key": "in/data.jsonl"}}
    out = service.prepare(event, rt)
    assert (out["records"], out["skipped_lines"], out["labels"]) == (3, 1, ["negative", "positive"])
    assert out["max_concurrency"] == 2
    clean = s3.get_object(Bucket=BUCKET, Key=out["dataset"]["key"])["Body"].read().decode()
    assert clean == dump_records(RECORDS)
    errors = json.loads(
        s3.get_object(Bucket=BUCKET, Key="retail/evaluation_runs/run-1/dataset_errors.json")["Body"].read()
    )
    assert errors[0]["line"] == 1


def test_gate_run_without_dataset_reads_the_latest_catalog_version_and_names_it(s3):
    # The pipeline's gate step names no dataset: the catalog dataset named after the use case, in the lake.
    for version, records in ((1, RECORDS[:1]), (2, RECORDS), (10, RECORDS[1:])):
        key = f"retail/shared/datasets/support/{version}/dataset.jsonl"
        s3.put_object(Bucket=BUCKET, Key=key, Body=dump_records(records))
    rt, _ = make_runtime(s3, [])
    rt.default_dataset_bucket = BUCKET
    event = {"run_id": "gate-1", "use_case": "support", "gate": True, "commit": "0123456789ab"}
    out = service.prepare(event, rt)
    assert out["records"] == 2 and out["dataset_version"] == {"name": "support", "version": 10}  # 10 > 2
    assert out["dataset"]["key"] == "retail/evaluation_runs/gate-1/dataset.jsonl"
    pinned = service.prepare({**event, "run_id": "gate-2", "dataset": {"name": "support", "version": 2}}, rt)
    assert pinned["records"] == 3 and pinned["dataset_version"] == {"name": "support", "version": 2}


def test_a_dataset_version_that_does_not_exist_is_rejected_by_name(s3):
    rt, _ = make_runtime(s3, [])
    rt.default_dataset_bucket = BUCKET
    with pytest.raises(service.DatasetRejectedError, match="no version of dataset 'support'"):
        service.prepare({"run_id": "gate-1", "use_case": "support", "gate": True}, rt)
    with pytest.raises(service.DatasetRejectedError, match=r"support/3/dataset\.jsonl does not exist"):
        service.prepare({"run_id": "r", "use_case": "x", "dataset": {"name": "support", "version": 3}}, rt)
    assert keys(s3) == []


def test_gate_run_without_dataset_or_default_bucket_names_the_field(s3):
    rt, _ = make_runtime(s3, [])
    with pytest.raises(service.InvalidEventError, match=r"^dataset: a catalog dataset needs"):
        service.prepare({"run_id": "gate-1", "use_case": "support", "gate": True}, rt)
    assert keys(s3) == []


def test_score_batch_retry_reuses_successes_and_redoes_failures(s3):
    state = {"throttle": True}

    def answer(request):
        if "awful" in request.prompt and state["throttle"]:
            return ModelThrottledError("busy")
        return {"r1": "positive", "r2": "negative", "r3": "Rishi Sunak"}[request.record_id]

    model = ScriptedModel("fm1", fn=answer)
    rt, _ = make_runtime(s3, [model], make_settings(batch_workers=1, max_attempts=2))
    first = service.score_batch(batch_event(RECORDS), rt)
    assert first == {"rows": 3, "errors": 1}
    calls_after_first = len(model.calls)  # r1, r2 twice (throttled), r3

    state["throttle"] = False
    second = service.score_batch(batch_event(RECORDS), rt)
    assert second == {"rows": 3, "errors": 0}
    assert [c.record_id for c in model.calls[calls_after_first:]] == ["r2"]  # only the failure again
    third = service.score_batch(batch_event(RECORDS), rt)
    assert third == second and len(model.calls) == calls_after_first + 1
    batches = [k for k in keys(s3) if "/batches/" in k]
    assert len(batches) == 1
    rows = list(rt.store.iter_results("run-1"))
    assert sorted(r.record_id for r in rows) == ["r1", "r2", "r3"]


def test_summarize_writes_summary_report_and_lake_rows_once_then_gate(s3):
    good = ScriptedModel(
        "good", fn=lambda r: {"r1": "positive", "r2": "negative", "r3": "Rishi Sunak"}[r.record_id]
    )
    bad = ScriptedModel("bad", fn=lambda r: "no idea", latency_ms=5.0)
    settings = make_settings(batch_workers=2, gate={"min_metrics": {"f1_macro": 0.9}})
    rt, written = make_runtime(s3, [good, bad], settings)
    service.score_batch(batch_event(RECORDS[:2]), rt)
    service.score_batch(batch_event(RECORDS[2:]), rt)
    out = service.summarize_run({"run_id": "run-1", "use_case": "support"}, rt)
    assert out["records"] == 6 and out["leaderboard"][0]["model"] == "good"
    assert len(written) == 6 and all(isinstance(r, EvaluationResultRecord) for r in written)
    assert {r.partition()["dt"] for r in written} == {"2026-11-26"}
    service.summarize_run({"run_id": "run-1", "use_case": "support"}, rt)
    assert len(written) == 6  # a retried summary does not append again
    report = s3.get_object(Bucket=BUCKET, Key=out["report"]["key"])["Body"].read().decode()
    assert "<svg" in report and "http://" not in report.replace('xmlns="http://www.w3.org/2000/svg"', "")

    gate = service.gate_run({"run_id": "run-1", "use_case": "support"}, rt)
    assert gate["passed"] is True and gate["model"] == "good"
    strict_gate = make_settings(
        gate={"min_metrics": {"f1_macro": 0.9}, "model": None, "max_latency_p95_ms": 1.0}
    )
    rt2, _ = make_runtime(s3, [], strict_gate)
    failed = service.gate_run({"run_id": "run-1", "use_case": "support"}, rt2)
    assert failed["passed"] is False and "latency_p95_ms" in failed["reason"]


def test_gate_without_summary_is_a_named_client_error(s3):
    rt, _ = make_runtime(s3, [])
    with pytest.raises(service.InvalidEventError, match="run_id: no summary"):
        service.gate_run({"run_id": "nope", "use_case": "support"}, rt)


def test_human_scores_join_the_results(s3):
    model = ScriptedModel("fm1", ["A story."])
    settings = make_settings(human_review={"enabled": True, "sample_rate": 1.0})
    rt, written = make_runtime(s3, [model], settings)
    records = [EvaluationRecord(id="s1", input="Tell a story")]
    service.score_batch(batch_event(records), rt)
    s3.put_object(
        Bucket=BUCKET,
        Key="retail/evaluation_runs/run-1/reviews/alice.jsonl",
        Body='{"record_id": "s1", "model": "fm1", "score": 7}\n'
        '{"record_id": "s1", "model": "fm1", "score": 9}\n',
    )
    out = service.summarize_run({"run_id": "run-1", "use_case": "support"}, rt)
    assert out["human_review"] == 1
    assert written[0].human_score == 8.0


def test_summaries_emit_mean_judge_score_per_judged_model(capsys):
    from evaluation.aggregate import MetricStat, ModelSummary

    def summary(model: str, metrics: dict[str, float]) -> ModelSummary:
        stats = {k: MetricStat(mean=v, stderr=0, ci95_low=v, ci95_high=v, n=3) for k, v in metrics.items()}
        return ModelSummary(model=model, count=3, errors=0, error_rate=0.0, metrics=stats)

    service.emit_judge_scores(
        [summary("haiku", {"judge_overall": 7.5, "rougeL": 0.4}), summary("labels", {"f1_macro": 0.9})],
        "retail",
    )
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    (blob,) = blobs
    assert blob["judge_score_mean"] == [7.5] and blob["model"] == "haiku"
    assert blob["business_unit"] == "retail" and blob["service"] == "evaluation"
    assert blob["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "LLMOpsPlatform"
    assert blob["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["business_unit", "model", "service"]]


def test_records_of_failed_map_batches_count_as_errors_and_fail_the_gate(s3):
    s3.put_object(Bucket=BUCKET, Key="in/data.jsonl", Body=dump_records(RECORDS))
    model = ScriptedModel("fm1", fn=lambda r: {"r1": "positive", "r2": "negative"}[r.record_id])
    rt, written = make_runtime(s3, [model], make_settings(gate={"max_error_rate": 0.1}))
    event = {"run_id": "run-1", "use_case": "support", "dataset": {"bucket": BUCKET, "key": "in/data.jsonl"}}
    assert service.prepare(event, rt)["records"] == 3
    service.score_batch(batch_event(RECORDS[:2]), rt)  # the batch holding r3 failed in the map
    out = service.summarize_run({"run_id": "run-1", "use_case": "support"}, rt)
    assert (out["records"], out["errors"]) == (3, 1)
    missing = [r for r in written if r.record_id == "r3"]
    assert len(missing) == 1 and missing[0].error.startswith("missing:")
    gate = service.gate_run({"run_id": "run-1", "use_case": "support"}, rt)
    assert gate["passed"] is False
    error_check = next(c for c in gate["checks"] if c["rule"].startswith("error_rate"))
    assert error_check["observed"] == pytest.approx(1 / 3)
