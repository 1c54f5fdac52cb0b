"""The four steps of an evaluation run, as the state machine calls them.

    prepare      validate the S3 dataset (line numbers), write the clean copy the Distributed Map reads
    score_batch  one ItemBatcher batch: score records x models, store the batch idempotently
    summarize    de-duplicate, merge human scores, aggregate, rank, write summary, report, lake rows
    gate         pass / fail from the stored summary and the configured thresholds

Every step takes a `Runtime` holding its clients, so tests inject moto / Stubber clients.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.evaluation_dataset import DatasetLineError, EvaluationRecord, dump_records, read_records
from common.lake_layout import shared_prefix
from common.lake_records import SafeId
from common.model_gateway import ModelClient, PrecomputedModel, load_precomputed
from common.quality_metrics import emit_judge_score
from evaluation.aggregate import HumanScore, ModelSummary, merge_human_scores, summarize
from evaluation.engine import add_missing_rows, deduplicate, label_set, run_batch
from evaluation.lake import RecordSink, write_results
from evaluation.models import build_candidates, build_judge
from evaluation.report import render_report
from evaluation.scoring import ScoredRecord, ScoringContext
from evaluation.selection import GateResult, Ranking, evaluate_gate, rank_models
from evaluation.settings import EvaluationSettings
from evaluation.store import S3ResultStore

MAX_REPORTED_LINE_ERRORS = 50


class InvalidEventError(ValueError):
    """The event does not match the step's schema; the message names the field."""


class DatasetRejectedError(ValueError):
    """Strict mode: the dataset has malformed lines; nothing was written."""


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class S3Location(_Event):
    bucket: Annotated[str, Field(min_length=3, max_length=63)]
    key: Annotated[str, Field(min_length=1, max_length=1024)]


class PrepareEvent(_Event):
    run_id: SafeId
    use_case: SafeId
    # Absent for CI gate runs: the use case's gate dataset in the lake is read (Runtime.default_dataset).
    dataset: S3Location | None = None
    outputs: S3Location | None = None
    gate: bool = False  # the execution input's flag for the CI gate; the state machine reads it, not prepare
    commit: Annotated[str, Field(min_length=1, max_length=64)] | None = None  # set by the pipeline's gate


class BatchInput(_Event):
    run_id: SafeId
    use_case: SafeId
    labels: list[str] = Field(default_factory=list)
    outputs: S3Location | None = None


class BatchEvent(_Event):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    items: Annotated[list[dict[str, Any]], Field(alias="Items", min_length=1, max_length=1000)]
    batch_input: BatchInput = Field(alias="BatchInput")


class RunEvent(_Event):
    run_id: SafeId
    use_case: SafeId


def parse_event(model: type[Any], event: object) -> Any:
    try:
        return model.model_validate(event)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'event'}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise InvalidEventError(problems) from None


@dataclass
class Runtime:
    settings: EvaluationSettings
    business_unit: str
    store: S3ResultStore
    sink_factory: Callable[[], RecordSink]
    clients: dict[str, Any] = field(default_factory=dict)  # bedrock=..., sagemaker=...
    review_queue: Any = None  # SqsReviewQueue or None
    default_dataset_bucket: str | None = None  # the lake's evaluation_datasets zone
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    sleep: Callable[[float], None] | None = None
    _precomputed: dict[str, dict[str, PrecomputedModel]] = field(default_factory=dict)

    def default_dataset(self, use_case: str) -> S3Location:
        """The use case's gate dataset, `<business unit>/shared/gate/<use case>.jsonl` in the lake: curated
        data every stage of the business unit reads and only the promotion path writes."""
        if not self.default_dataset_bucket:
            raise InvalidEventError("dataset: required (this function has no default dataset bucket)")
        return S3Location(
            bucket=self.default_dataset_bucket,
            key=f"{shared_prefix(self.business_unit)}gate/{use_case}.jsonl",
        )

    def key(self, run_id: str, name: str) -> str:
        return f"{self.store.run_prefix(run_id)}{name}"

    def read_lines(self, where: S3Location) -> Iterator[str]:
        body = self.store.s3.get_object(Bucket=where.bucket, Key=where.key)["Body"]
        for line in body.iter_lines():
            yield line.decode("utf-8", errors="replace")

    def models_for(self, outputs: S3Location | None) -> list[ModelClient]:
        if outputs is None:
            return build_candidates(self.settings, **self.clients)
        cache_key = f"{outputs.bucket}/{outputs.key}"
        if cache_key not in self._precomputed:  # warm containers reuse the parsed file
            self._precomputed[cache_key] = load_precomputed(self.read_lines(outputs))
        return list(self._precomputed[cache_key].values())


def prepare(event: object, rt: Runtime) -> dict[str, Any]:
    ev: PrepareEvent = parse_event(PrepareEvent, event)
    errors: list[DatasetLineError] = []
    dataset = ev.dataset or rt.default_dataset(ev.use_case)
    records = list(read_records(rt.read_lines(dataset), strict=False, errors=errors))
    described = [f"line {e.line_number}: {e.message}" for e in errors[:MAX_REPORTED_LINE_ERRORS]]
    if errors and rt.settings.strict_dataset:
        raise DatasetRejectedError(f"{len(errors)} malformed line(s): " + " | ".join(described))
    if not records:
        raise DatasetRejectedError("the dataset has no valid record")
    clean_key = rt.key(ev.run_id, "dataset.jsonl")
    rt.store.put_text(clean_key, dump_records(records), "application/x-ndjson")
    if errors:
        rows = [{"line": e.line_number, "error": e.message} for e in errors]
        rt.store.put_text(rt.key(ev.run_id, "dataset_errors.json"), json.dumps(rows), "application/json")
    return {
        "run_id": ev.run_id,
        "use_case": ev.use_case,
        "dataset": {"bucket": rt.store.bucket, "key": clean_key},
        "outputs": ev.outputs.model_dump() if ev.outputs else None,
        "labels": label_set(records),
        "records": len(records),
        "skipped_lines": len(errors),
        "skipped_examples": described[:10],
        "batch_size": rt.settings.batch_size,
        "max_concurrency": rt.settings.map_max_concurrency,
    }


def score_batch(event: object, rt: Runtime) -> dict[str, Any]:
    ev: BatchEvent = parse_event(BatchEvent, event)
    records = []
    for index, item in enumerate(ev.items):
        try:
            records.append(EvaluationRecord.model_validate(item))
        except ValidationError as exc:
            field_name = ".".join(str(p) for p in exc.errors()[0]["loc"]) or "record"
            raise InvalidEventError(f"Items.{index}.{field_name}: {exc.errors()[0]['msg']}") from None
    inp = ev.batch_input
    ctx = ScoringContext(
        run_id=inp.run_id,
        settings=rt.settings,
        judge=build_judge(rt.settings, **rt.clients),
        sleep=rt.sleep,
        label_set=inp.labels,
    )
    rows = run_batch(
        records, rt.models_for(inp.outputs), ctx, rt.store, workers=rt.settings.workers_per_batch
    )
    return {"rows": len(rows), "errors": sum(1 for r in rows if r.error)}


def summarize_run(event: object, rt: Runtime) -> dict[str, Any]:
    ev: RunEvent = parse_event(RunEvent, event)
    records = _prepared_records(rt, ev.run_id)
    rows = deduplicate(rt.store.iter_results(ev.run_id))
    if records is not None:  # count records of failed map batches as errors
        rows = add_missing_rows(rows, records, run_id=ev.run_id, models=_configured_models(rows, rt))
    merge_human_scores(rows, _human_scores(rt, ev.run_id))
    summaries = summarize(rows)
    ranking = rank_models(summaries, rt.settings)
    gate = evaluate_gate(summaries, ranking, rt.settings.gate)
    summary_key = rt.key(ev.run_id, "summary.json")
    document = {
        "run_id": ev.run_id,
        "use_case": ev.use_case,
        "models": [s.model_dump(mode="json") for s in summaries],
        "ranking": ranking.model_dump(mode="json"),
    }
    rt.store.put_text(summary_key, json.dumps(document), "application/json")
    report_key = rt.key(ev.run_id, "report.html")
    html = render_report(f"Evaluation {ev.run_id} ({ev.use_case})", summaries, ranking, gate)
    rt.store.put_text(report_key, html, "text/html")

    marker = rt.key(ev.run_id, "lake_keys.json")
    if rt.store.get_text(marker) is None:  # a retried summary does not append the rows twice
        keys = write_results(
            rows, rt.sink_factory(), business_unit=rt.business_unit, use_case=ev.use_case, event_time=rt.now()
        )
        rt.store.put_text(marker, json.dumps(keys), "application/json")
        emit_judge_scores(summaries, rt.business_unit)  # once per run, like the lake rows
    flagged = sum(1 for r in rows if r.human_review)
    if (
        rt.review_queue is not None
        and flagged
        and rt.store.get_text(rt.key(ev.run_id, "review_sent")) is None
    ):
        rt.review_queue.submit(rows, {r.id: r for r in records or []})
        rt.store.put_text(rt.key(ev.run_id, "review_sent"), str(flagged), "text/plain")
    return {
        "run_id": ev.run_id,
        "summary": {"bucket": rt.store.bucket, "key": summary_key},
        "report": {"bucket": rt.store.bucket, "key": report_key},
        "leaderboard": [{"model": m.model, "score": round(m.score, 4)} for m in ranking.models],
        "records": len(rows),
        "errors": sum(1 for r in rows if r.error),
        "human_review": flagged,
    }


def emit_judge_scores(summaries: list[ModelSummary], business_unit: str) -> None:
    """Mean judge score per model as EMF (common.quality_metrics): the monitoring stack alarms on it."""
    for summary in summaries:
        judged = summary.metrics.get("judge_overall")
        if judged is not None:
            emit_judge_score(business_unit, summary.model, judged.mean)


def _prepared_records(rt: Runtime, run_id: str) -> list[EvaluationRecord] | None:
    """Prepare's clean dataset: every record the run had to score (None when summarize runs without prepare)."""
    dataset = rt.store.get_text(rt.key(run_id, "dataset.jsonl"))
    return None if dataset is None else list(read_records(dataset.splitlines()))


def _configured_models(rows: list[ScoredRecord], rt: Runtime) -> list[str]:
    """Candidates from the config, so a model whose every batch failed still counts; precomputed runs
    name their models in the outputs file, so only the models seen in rows count there."""
    return [] if _precomputed_run(rows, rt) else [c.name for c in rt.settings.candidates]


def _precomputed_run(rows: list[ScoredRecord], rt: Runtime) -> bool:
    names = {c.name for c in rt.settings.candidates}
    return any(row.model not in names for row in rows)


def _human_scores(rt: Runtime, run_id: str) -> Iterator[HumanScore]:
    pages = rt.store.s3.get_paginator("list_objects_v2").paginate(
        Bucket=rt.store.bucket, Prefix=rt.key(run_id, "reviews/")
    )
    for page in pages:
        for item in page.get("Contents", []):
            text = rt.store.get_text(item["Key"]) or ""
            for line in text.splitlines():
                if line.strip():
                    yield HumanScore.model_validate_json(line)


def gate_run(event: object, rt: Runtime) -> dict[str, Any]:
    ev: RunEvent = parse_event(RunEvent, event)
    text = rt.store.get_text(rt.key(ev.run_id, "summary.json"))
    if text is None:
        raise InvalidEventError(f"run_id: no summary for run {ev.run_id!r}; run summarize first")
    document = json.loads(text)
    summaries = [ModelSummary.model_validate(m) for m in document["models"]]
    ranking = Ranking.model_validate(document["ranking"])
    result: GateResult = evaluate_gate(summaries, ranking, rt.settings.gate)
    return result.model_dump(mode="json")
