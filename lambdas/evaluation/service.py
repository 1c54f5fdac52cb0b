"""The four steps of an evaluation run, as the state machine calls them.

    prepare      find the dataset (a catalog dataset version in the lake, or an S3 location), validate it
                 (line numbers), pin every catalog prompt it refers to, write the clean copy the map reads
    score_batch  one ItemBatcher batch: score records x models, store the batch idempotently
    summarize    de-duplicate, merge human scores, aggregate, rank, write summary, report, lake rows
    gate         pass / fail from the stored summary and the configured thresholds
    complete_reviews  (scheduled) a run whose review queue share is drained or whose deadline passed:
                 summary recomputed with the human scores, which go to the lake's human_reviews table

Every step takes a `Runtime` holding its clients, so tests inject moto / Stubber clients.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.evaluation_dataset import (
    DatasetLineError,
    EvaluationRecord,
    dataset_version_key,
    dataset_version_prefix,
    dump_records,
    read_records,
)
from common.lake_records import HumanReviewRecord, SafeId
from common.model_gateway import ModelClient, PrecomputedModel, load_precomputed
from common.quality_metrics import emit_judge_score
from evaluation.aggregate import HumanScore, ModelSummary, merge_human_scores, summarize
from evaluation.candidate import RunCandidate
from evaluation.engine import add_missing_rows, deduplicate, label_set, run_batch
from evaluation.lake import RecordSink, write_results
from evaluation.models import build_candidates, build_judge, build_model
from evaluation.prompts import PinnedPrompts, PromptFetcher, PromptResolutionError
from evaluation.report import render_report
from evaluation.scoring import ScoredRecord, ScoringContext
from evaluation.selection import GateResult, Ranking, evaluate_gate, rank_models
from evaluation.settings import EvaluationSettings, GateThresholds
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


DatasetName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,63}$")]


class DatasetRef(_Event):
    """A catalog dataset: `<bu>/shared/datasets/<name>/<version>/dataset.jsonl` in the lake; no version =
    the latest one (the run records which)."""

    name: DatasetName
    version: Annotated[int, Field(ge=1, strict=True)] | None = None


class PrepareEvent(_Event):
    run_id: SafeId
    use_case: SafeId
    # Absent for CI gate runs: the latest version of the catalog dataset named after the use case.
    dataset: DatasetRef | S3Location | None = None
    outputs: S3Location | None = None
    gate: bool = False  # the execution input's flag for the CI gate; the state machine reads it, not prepare
    commit: Annotated[str, Field(min_length=1, max_length=64)] | None = None  # set by the pipeline's gate
    # A model package version served in this stage (evaluation.candidate): the run scores it alone.
    candidate: RunCandidate | None = None


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
    prompt_fetcher: Callable[[], PromptFetcher] | None = None  # the catalog API (common.prompt_client)
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    sleep: Callable[[float], None] | None = None
    _precomputed: dict[str, dict[str, PrecomputedModel]] = field(default_factory=dict)
    _prompts: dict[str, PinnedPrompts | None] = field(default_factory=dict)
    _candidates: dict[str, RunCandidate | None] = field(default_factory=dict)

    def dataset_location(self, ref: DatasetRef) -> tuple[S3Location, int]:
        """Where a catalog dataset version lives in the lake, and which version that is."""
        if not self.default_dataset_bucket:
            raise InvalidEventError(
                "dataset: a catalog dataset needs DEFAULT_DATASET_BUCKET (the lake's zone)"
            )
        version = ref.version or self.latest_dataset_version(ref.name)
        key = dataset_version_key(self.business_unit, ref.name, version)
        return S3Location(bucket=self.default_dataset_bucket, key=key), version

    def latest_dataset_version(self, name: str) -> int:
        pages = self.store.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.default_dataset_bucket,
            Prefix=dataset_version_prefix(self.business_unit, name),
            Delimiter="/",
        )
        versions = [
            int(folder)
            for page in pages
            for common in page.get("CommonPrefixes", [])
            if (folder := common["Prefix"].rstrip("/").rsplit("/", 1)[-1]).isdigit()
        ]
        if not versions:
            raise DatasetRejectedError(f"dataset: the catalog has no version of dataset {name!r} in the lake")
        return max(versions)

    def prompts_for(self, run_id: str) -> PinnedPrompts | None:
        """The catalog prompts prepare pinned for this run (cached per run in a warm container)."""
        if run_id not in self._prompts:
            text = self.store.get_text(self.key(run_id, "prompts.json"))
            self._prompts[run_id] = None if text is None else PinnedPrompts.from_json(text)
        return self._prompts[run_id]

    def key(self, run_id: str, name: str) -> str:
        return f"{self.store.run_prefix(run_id)}{name}"

    def read_lines(self, where: S3Location) -> Iterator[str]:
        body = self.store.s3.get_object(Bucket=where.bucket, Key=where.key)["Body"]
        for line in body.iter_lines():
            yield line.decode("utf-8", errors="replace")

    def run_candidate(self, run_id: str) -> RunCandidate | None:
        """The per-run candidate prepare recorded for this run (cached per run in a warm container)."""
        if run_id not in self._candidates:
            stored = _run_record(self, run_id).get("candidate")
            self._candidates[run_id] = None if stored is None else RunCandidate.model_validate(stored)
        return self._candidates[run_id]

    def gate_thresholds(self, run_id: str) -> GateThresholds:
        """The configured gate; a run with a candidate gates that candidate, whatever ranks first."""
        candidate = self.run_candidate(run_id)
        if candidate is None:
            return self.settings.gate
        return self.settings.gate.model_copy(update={"model": candidate.name})

    def run_models(self, run_id: str, outputs: S3Location | None) -> list[ModelClient]:
        """What a batch of this run calls: the run's own candidate, else the configured or precomputed ones."""
        candidate = self.run_candidate(run_id)
        if candidate is not None:
            return [build_model(candidate.as_model(), **self.clients)]
        return self.models_for(outputs)

    def models_for(self, outputs: S3Location | None) -> list[ModelClient]:
        if outputs is None:
            return build_candidates(self.settings, **self.clients)
        cache_key = f"{outputs.bucket}/{outputs.key}"
        if cache_key not in self._precomputed:  # warm containers reuse the parsed file
            self._precomputed[cache_key] = load_precomputed(self.read_lines(outputs))
        return list(self._precomputed[cache_key].values())


def prepare(event: object, rt: Runtime) -> dict[str, Any]:
    ev: PrepareEvent = parse_event(PrepareEvent, event)
    if ev.candidate is not None and ev.outputs is not None:
        raise InvalidEventError(
            "candidate: a run with precomputed outputs calls no model; send one of the two"
        )
    errors: list[DatasetLineError] = []
    dataset_version: dict[str, Any] | None = None
    if isinstance(ev.dataset, S3Location):
        dataset = ev.dataset
    else:
        ref = ev.dataset or DatasetRef(name=ev.use_case)
        dataset, version = rt.dataset_location(ref)
        dataset_version = {"name": ref.name, "version": version}
    try:
        records = list(read_records(rt.read_lines(dataset), strict=False, errors=errors))
    except rt.store.s3.exceptions.NoSuchKey:
        raise DatasetRejectedError(f"dataset: s3://{dataset.bucket}/{dataset.key} does not exist") from None
    described = [f"line {e.line_number}: {e.message}" for e in errors[:MAX_REPORTED_LINE_ERRORS]]
    if errors and rt.settings.strict_dataset:
        raise DatasetRejectedError(f"{len(errors)} malformed line(s): " + " | ".join(described))
    if not records:
        raise DatasetRejectedError("the dataset has no valid record")
    prompts = _pin_prompts(rt, records)
    unknown_ids = _unknown_output_ids(rt, ev.outputs, records)
    clean_key = rt.key(ev.run_id, "dataset.jsonl")
    rt.store.put_text(clean_key, dump_records(records), "application/x-ndjson")
    if prompts is not None:
        rt.store.put_text(rt.key(ev.run_id, "prompts.json"), prompts.to_json(), "application/json")
    if errors:
        rows = [{"line": e.line_number, "error": e.message} for e in errors]
        rt.store.put_text(rt.key(ev.run_id, "dataset_errors.json"), json.dumps(rows), "application/json")
    run = {
        "dataset": dataset_version or {"bucket": dataset.bucket, "key": dataset.key},
        "prompt_versions": {} if prompts is None else prompts.versions(),
        "unknown_output_ids": unknown_ids,
        "skipped_lines": len(errors),
    }
    if ev.candidate is not None:
        run["candidate"] = ev.candidate.model_dump()
    rt.store.put_text(rt.key(ev.run_id, "run.json"), json.dumps(run), "application/json")
    return {
        "run_id": ev.run_id,
        "use_case": ev.use_case,
        "dataset": {"bucket": rt.store.bucket, "key": clean_key},
        "dataset_version": dataset_version,
        "prompt_versions": run["prompt_versions"],
        "outputs": ev.outputs.model_dump() if ev.outputs else None,
        "labels": label_set(records),
        "records": len(records),
        "skipped_lines": len(errors),
        "skipped_examples": described[:10],
        "unknown_output_ids": len(unknown_ids),
        "batch_size": rt.settings.batch_size,
        "max_concurrency": rt.settings.map_max_concurrency,
    }


def _pin_prompts(rt: Runtime, records: list[EvaluationRecord]) -> PinnedPrompts | None:
    """Resolve every catalog prompt of the dataset once for the whole run (None when it uses none)."""
    refs = {r.prompt_ref for r in records if r.prompt_ref is not None}
    if not refs:
        return None
    if rt.prompt_fetcher is None:
        raise DatasetRejectedError(
            f"prompt_ref: {len(refs)} catalog prompt(s) referenced but evaluation.prompt_catalog_url is not set"
        )
    try:
        return PinnedPrompts.resolve(rt.prompt_fetcher(), refs)
    except PromptResolutionError as exc:
        raise DatasetRejectedError(str(exc)) from None


def _unknown_output_ids(
    rt: Runtime, outputs: S3Location | None, records: list[EvaluationRecord]
) -> list[str]:
    """Precomputed outputs whose id is in no dataset record: counted and reported, never silently dropped."""
    if outputs is None:
        return []
    ids = {r.id for r in records}
    try:
        models = rt.models_for(outputs)
    except ValueError as exc:
        raise DatasetRejectedError(f"outputs: {exc}") from None
    return sorted({i for m in models if isinstance(m, PrecomputedModel) for i in m.outputs if i not in ids})


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
        prompts=rt.prompts_for(inp.run_id),
        sleep=rt.sleep,
        label_set=inp.labels,
    )
    rows = run_batch(
        records, rt.run_models(inp.run_id, inp.outputs), ctx, rt.store, workers=rt.settings.workers_per_batch
    )
    return {"rows": len(rows), "errors": sum(1 for r in rows if r.error)}


def summarize_run(event: object, rt: Runtime) -> dict[str, Any]:
    ev: RunEvent = parse_event(RunEvent, event)
    records = _prepared_records(rt, ev.run_id)
    rows = deduplicate(rt.store.iter_results(ev.run_id))
    if records is not None:  # count records of failed map batches as errors
        rows = add_missing_rows(
            rows, records, run_id=ev.run_id, models=_configured_models(rows, rt, ev.run_id)
        )
    merge_human_scores(rows, _human_scores(rt, ev.run_id))
    summaries = summarize(rows)
    ranking = rank_models(summaries, rt.settings)
    gate = evaluate_gate(summaries, ranking, rt.gate_thresholds(ev.run_id))
    summary_key = rt.key(ev.run_id, "summary.json")
    flagged = sum(1 for r in rows if r.human_review)
    if (
        rt.review_queue is not None
        and flagged
        and rt.store.get_text(rt.key(ev.run_id, "review_sent")) is None
    ):
        rt.review_queue.submit(rows, {r.id: r for r in records or []})
        _open_review(rt, ev.run_id, ev.use_case, rows)
        rt.store.put_text(rt.key(ev.run_id, "review_sent"), str(flagged), "text/plain")
    run = _run_record(rt, ev.run_id)
    human = _human_completion(rt, ev.run_id)
    document = {
        "run_id": ev.run_id,
        "use_case": ev.use_case,
        **run,
        "human_review": human,
        "models": [s.model_dump(mode="json") for s in summaries],
        "ranking": ranking.model_dump(mode="json"),
    }
    rt.store.put_text(summary_key, json.dumps(document), "application/json")
    report_key = rt.key(ev.run_id, "report.html")
    html = render_report(
        f"Evaluation {ev.run_id} ({ev.use_case})", summaries, ranking, gate, run_info=run_info(run, human)
    )
    rt.store.put_text(report_key, html, "text/html")

    marker = rt.key(ev.run_id, "lake_keys.json")
    if rt.store.get_text(marker) is None:  # a retried summary does not append the rows twice
        keys = write_results(
            rows, rt.sink_factory(), business_unit=rt.business_unit, use_case=ev.use_case, event_time=rt.now()
        )
        rt.store.put_text(marker, json.dumps(keys), "application/json")
        emit_judge_scores(summaries, rt.business_unit)  # once per run, like the lake rows
    return {
        "run_id": ev.run_id,
        "dataset_version": run.get("dataset") if "name" in run.get("dataset", {}) else None,
        "prompt_versions": run.get("prompt_versions", {}),
        "summary": {"bucket": rt.store.bucket, "key": summary_key},
        "report": {"bucket": rt.store.bucket, "key": report_key},
        "leaderboard": [{"model": m.model, "score": round(m.score, 4)} for m in ranking.models],
        "records": len(rows),
        "errors": sum(1 for r in rows if r.error),
        "human_review": flagged,
        # A gate run waits for its human review (the state machine loops while this is true).
        "review_open": human is not None and human["state"] == "open",
    }


def _run_record(rt: Runtime, run_id: str) -> dict[str, Any]:
    """What prepare recorded: dataset (name and version, or location), pinned prompt versions, counts."""
    text = rt.store.get_text(rt.key(run_id, "run.json"))
    return {} if text is None else dict(json.loads(text))


def run_info(run: dict[str, Any], human: dict[str, Any] | None) -> dict[str, str]:
    info: dict[str, str] = {}
    dataset = run.get("dataset") or {}
    if "name" in dataset:
        info["dataset"] = f"{dataset['name']} version {dataset['version']}"
    elif dataset:
        info["dataset"] = f"s3://{dataset['bucket']}/{dataset['key']}"
    for ref, version in (run.get("prompt_versions") or {}).items():
        info[f"prompt {ref}"] = f"version {version}"
    if run.get("unknown_output_ids"):
        ids = run["unknown_output_ids"]
        info["outputs with unknown ids"] = f"{len(ids)} ignored: {', '.join(ids[:10])}"
    if run.get("skipped_lines"):
        info["skipped dataset lines"] = str(run["skipped_lines"])
    if human:
        info["human review"] = (
            f"{human['state']}: {human['reviewed']} of {human['expected']} flagged rows reviewed"
            + (f" ({human['completed_by']})" if human.get("completed_by") else "")
        )
    return info


# ---- human review completion ------------------------------------------------------------------------


def _open_key(rt: Runtime, run_id: str) -> str:
    return f"{rt.store.prefix}/_open_reviews/{run_id}.json"


def _open_review(rt: Runtime, run_id: str, use_case: str, rows: list[ScoredRecord]) -> None:
    """Register the run's flagged rows and deadline; complete_reviews closes it (drained or deadline)."""
    expected = sorted({(r.model, r.record_id) for r in rows if r.human_review and r.error is None})
    deadline = rt.now() + timedelta(hours=rt.settings.human_review.deadline_hours)
    state = {"run_id": run_id, "use_case": use_case, "expected": expected, "deadline": deadline.isoformat()}
    rt.store.put_text(rt.key(run_id, "review_state.json"), json.dumps(state), "application/json")
    rt.store.put_text(_open_key(rt, run_id), json.dumps(state), "application/json")


def _human_completion(rt: Runtime, run_id: str) -> dict[str, Any] | None:
    text = rt.store.get_text(rt.key(run_id, "review_state.json"))
    if text is None:
        return None
    state = json.loads(text)
    reviewed = {(s.model, s.record_id) for s in _human_scores(rt, run_id)}
    expected = {tuple(pair) for pair in state["expected"]}
    return {
        "state": "complete" if state.get("completed_by") else "open",
        "expected": len(expected),
        "reviewed": len(expected & reviewed),
        "deadline": state["deadline"],
        "completed_by": state.get("completed_by"),
    }


def complete_reviews(event: object, rt: Runtime) -> dict[str, Any]:
    """Close every open human review whose flagged rows all have a score (drained) or whose deadline
    passed: recompute the summary with the human scores and write them to the lake's human_reviews table.
    Scheduled; idempotent (a run is closed once, its marker removed last)."""
    completed: list[dict[str, str]] = []
    pages = rt.store.s3.get_paginator("list_objects_v2").paginate(
        Bucket=rt.store.bucket, Prefix=f"{rt.store.prefix}/_open_reviews/"
    )
    for page in pages:
        for item in page.get("Contents", []):
            state = json.loads(rt.store.get_text(item["Key"]) or "{}")
            if not state:
                continue
            reason = _completion_reason(rt, state)
            if reason is not None:
                close_review(rt, state, reason)
                completed.append({"run_id": state["run_id"], "completed_by": reason})
    return {"completed": completed}


def _completion_reason(rt: Runtime, state: dict[str, Any]) -> str | None:
    reviewed = {(s.model, s.record_id) for s in _human_scores(rt, state["run_id"])}
    if {tuple(pair) for pair in state["expected"]} <= reviewed:
        return "drained"
    if rt.now() >= datetime.fromisoformat(state["deadline"]):
        return "deadline"
    return None


def close_review(rt: Runtime, state: dict[str, Any], reason: str) -> list[str]:
    run_id, use_case = state["run_id"], state["use_case"]
    rt.store.put_text(
        rt.key(run_id, "review_state.json"), json.dumps({**state, "completed_by": reason}), "application/json"
    )
    summarize_run({"run_id": run_id, "use_case": use_case}, rt)  # the summary and report, human scores joined
    categories = {r.id: r.category for r in _prepared_records(rt, run_id) or []}
    sink = rt.sink_factory()
    now = rt.now()
    for score in _human_scores(rt, run_id):
        sink.append(
            HumanReviewRecord(
                business_unit=rt.business_unit,
                model_id=score.model,
                event_time=now,
                run_id=run_id,
                record_id=score.record_id,
                use_case=use_case,
                category=categories.get(score.record_id),
                reviewer=score.reviewer or "unknown",
                score=score.score,
                comment=score.comment,
                completed_by=reason,  # type: ignore[arg-type]
            )
        )
    keys = sink.flush()
    rt.store.s3.delete_object(Bucket=rt.store.bucket, Key=_open_key(rt, run_id))
    return keys


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


def _configured_models(rows: list[ScoredRecord], rt: Runtime, run_id: str) -> list[str]:
    """Candidates from the config (or the run's own candidate), so a model whose every batch failed still
    counts; precomputed runs name their models in the outputs file, so only the models seen in rows count."""
    names = _run_models(rt, run_id)
    return [] if any(row.model not in names for row in rows) else sorted(names)


def _run_models(rt: Runtime, run_id: str) -> set[str]:
    candidate = rt.run_candidate(run_id)
    return {candidate.name} if candidate is not None else {c.name for c in rt.settings.candidates}


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
    result: GateResult = evaluate_gate(summaries, ranking, rt.gate_thresholds(ev.run_id))
    candidate = rt.run_candidate(ev.run_id)
    # The gate names the exact dataset version (and prompt versions) it judged, and the version it gated.
    return {
        **result.model_dump(mode="json"),
        "dataset": document.get("dataset"),
        "prompt_versions": document.get("prompt_versions", {}),
        "candidate": None if candidate is None else candidate.model_dump(),
    }
