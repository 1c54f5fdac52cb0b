"""Scoring one dataset record against one model: call, measure, compare, judge.

Failures stay on the record (`error`), never fail the batch: a run of 100,000 records reports the
few that went wrong and scores the rest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from common.evaluation_dataset import EvaluationRecord
from common.model_gateway import (
    ModelClient,
    ModelError,
    ModelRequest,
    ModelResponse,
    PrecomputedModel,
    invoke_with_retry,
)
from evaluation.judge import JudgeError, judge_answer
from evaluation.metrics import match_label, text_metrics
from evaluation.settings import EvaluationSettings


class ScoredRecord(BaseModel):
    """One record x one model, as the engine stores it between batches and the summary."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    record_id: str
    model: str
    category: str = "default"
    output: str | None = None
    gold_label: str | None = None
    predicted_label: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    judge_score: float | None = None
    judge_justification: str | None = None
    human_review: bool = False
    human_score: float | None = None
    latency_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    error: str | None = None


class PromptResolver(Protocol):
    """Renders a catalog prompt (`name@version` or `name:alias`) with a record's variables."""

    def render(self, prompt_ref: str, variables: Mapping[str, object]) -> str: ...


@dataclass
class ScoringContext:
    run_id: str
    settings: EvaluationSettings
    judge: ModelClient | None = None
    prompts: PromptResolver | None = None
    sleep: Callable[[float], None] | None = None
    label_set: Sequence[str] = field(default_factory=tuple)

    def call(self, model: ModelClient, request: ModelRequest) -> ModelResponse:
        if self.sleep is None:
            return invoke_with_retry(model, request, max_attempts=self.settings.max_attempts)
        return invoke_with_retry(model, request, max_attempts=self.settings.max_attempts, sleep=self.sleep)


def sampled_for_review(run_id: str, record_id: str, model: str, rate: float) -> bool:
    """A stable coin flip, so that a retried batch picks the same records."""
    digest = hashlib.sha256(f"{run_id}/{record_id}/{model}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def prompt_text(record: EvaluationRecord, prompts: PromptResolver | None) -> str:
    if record.input is not None:
        return record.input
    if prompts is None:
        raise KeyError(f"record uses prompt_ref {record.prompt_ref!r} but no prompt catalog was given")
    assert record.prompt_ref is not None  # the record schema guarantees one of the two
    return prompts.render(record.prompt_ref, record.variables)


def score_record(record: EvaluationRecord, model: ModelClient, ctx: ScoringContext) -> ScoredRecord:
    row = ScoredRecord(run_id=ctx.run_id, record_id=record.id, model=model.name, category=record.category)
    try:
        prompt = prompt_text(record, ctx.prompts)
    except (KeyError, ValueError, IndexError) as exc:
        row.error = f"prompt: {exc}"
        return row
    try:
        response = ctx.call(model, ModelRequest(prompt=prompt, record_id=record.id))
    except ModelError as exc:
        row.error = f"model: {exc}"
        return row
    row.output = response.text
    # A precomputed output was not timed here: no latency rather than a flattering 0 ms.
    row.latency_ms = None if isinstance(model, PrecomputedModel) else response.latency_ms
    row.input_tokens, row.output_tokens = response.input_tokens, response.output_tokens
    candidate = ctx.settings.candidate(model.name)
    if candidate is not None:
        row.cost_usd = candidate.cost_usd(response.input_tokens, response.output_tokens)

    if record.labels:
        row.gold_label = record.labels[0]
        row.predicted_label = match_label(response.text, ctx.label_set or record.labels)
        row.metrics["label_correct"] = float(row.predicted_label in record.labels)
    if record.reference_output is not None:
        row.metrics.update(text_metrics(response.text, record.reference_output))
    if ctx.judge is not None and (not record.is_labeled or ctx.settings.judge.judge_references):
        _judge(row, prompt, response.text, ctx, reference=record.reference_output)
    review = ctx.settings.human_review
    if review.enabled:
        low = row.judge_score is not None and row.judge_score < review.below_judge_score
        row.human_review = low or sampled_for_review(ctx.run_id, record.id, model.name, review.sample_rate)
    return row


def _judge(
    row: ScoredRecord, question: str, answer: str, ctx: ScoringContext, *, reference: str | None = None
) -> None:
    assert ctx.judge is not None
    try:
        result = judge_answer(
            ctx.judge,
            question,
            answer,
            samples=ctx.settings.judge.samples,
            max_parse_attempts=ctx.settings.judge.max_parse_attempts,
            call=ctx.call,
            reference=reference,
        )
    except (JudgeError, ModelError) as exc:
        row.error = f"judge: {exc}"
        return
    row.metrics.update(result.as_metrics())
    row.judge_score = result.overall_mean
    row.judge_justification = result.justification


def score_records(
    records: Sequence[EvaluationRecord],
    models: Sequence[ModelClient],
    ctx: ScoringContext,
    *,
    workers: int = 1,
    on_done: Callable[[ScoredRecord], None] | None = None,
) -> list[ScoredRecord]:
    """Score every record against every model, `workers` model calls at a time, in input order."""
    jobs = [(record, model) for record in records for model in models]
    if workers <= 1:
        results = []
        for record, model in jobs:
            results.append(score_record(record, model, ctx))
            if on_done:
                on_done(results[-1])
        return results
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(score_record, record, model, ctx) for record, model in jobs]
        results = []
        for future in futures:
            results.append(future.result())
            if on_done:
                on_done(results[-1])
        return results
