"""Per-model and per-model x category summaries of a run's scored rows."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict, Field

from evaluation.metrics import classification_report
from evaluation.scoring import ScoredRecord
from evaluation.settings import metric_range

Z_95 = 1.959964  # normal approximation; with n >= 30 per group the t correction is below 4 %


class MetricStat(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mean: float
    stderr: float
    ci95_low: float
    ci95_high: float
    n: int


class GroupSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: int
    errors: int
    error_rate: float
    metrics: dict[str, MetricStat] = Field(default_factory=dict)
    per_class: dict[str, dict[str, float]] = Field(default_factory=dict)
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    cost_per_1k_records_usd: float | None = None
    human_review: int = 0
    # Rows that succeeded but got no score at all (no reference, no labels, no judge, no human review yet).
    unscored: int = 0


class Example(BaseModel):
    """One of a model's worst rows, for the report: errors first, then the lowest quality."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    record_id: str
    category: str
    quality: float | None = None  # the row's own quality on a 0..1 scale; None for errors and unscored rows
    error: str | None = None
    output: str | None = None
    judge_justification: str | None = None


class ModelSummary(GroupSummary):
    model: str
    categories: dict[str, GroupSummary] = Field(default_factory=dict)
    worst: list[Example] = Field(default_factory=list)


# A row's own quality, tried in order; judge and human scores (1..10) are mapped onto 0..1.
ROW_QUALITY = ("label_correct", "rougeL", "judge_overall", "human_score")
WORST_EXAMPLES = 5
EXAMPLE_OUTPUT_CHARS = 300


class HumanScore(BaseModel):
    """A reviewer's score (1-10) for one record and model, from the review queue."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    record_id: str
    model: str
    score: float = Field(ge=1, le=10)
    # Written by the review API (evaluation.review_api); the summary only uses the score.
    comment: str | None = None
    reviewer: str | None = None


def merge_human_scores(rows: Sequence[ScoredRecord], scores: Iterable[HumanScore]) -> None:
    """Join reviewers' scores onto the rows; several reviews of one row are averaged."""
    collected: dict[tuple[str, str], list[float]] = defaultdict(list)
    for score in scores:
        collected[(score.model, score.record_id)].append(score.score)
    for row in rows:
        found = collected.get((row.model, row.record_id))
        if found:
            row.human_score = statistics.fmean(found)
            row.metrics["human_score"] = row.human_score


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100), None for no data."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def metric_stat(values: Sequence[float], bounds: tuple[float, float] | None = None) -> MetricStat:
    """Mean, standard error and 95 % interval; the interval is clipped to the metric's range, since a
    normal approximation can reach past it (1.08 for a 0..1 metric) where no value can lie."""
    mean = statistics.fmean(values)
    stderr = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    low, high = mean - Z_95 * stderr, mean + Z_95 * stderr
    if bounds is not None:
        low, high = max(bounds[0], low), min(bounds[1], high)
    return MetricStat(mean=mean, stderr=stderr, ci95_low=low, ci95_high=high, n=len(values))


def row_quality(row: ScoredRecord) -> float | None:
    for name in ROW_QUALITY:
        if name in row.metrics:
            value = row.metrics[name]
            return (value - 1) / 9 if name in ("judge_overall", "human_score") else value
    return None


def worst_examples(rows: Sequence[ScoredRecord], limit: int = WORST_EXAMPLES) -> list[Example]:
    def badness(row: ScoredRecord) -> tuple[int, float, str]:
        quality = row_quality(row)
        rank = 0 if row.error else (1 if quality is not None else 2)
        return rank, quality if quality is not None else 0.0, row.record_id

    def below_full(row: ScoredRecord) -> bool:
        quality = row_quality(row)
        return quality is not None and quality < 1.0

    chosen = sorted((r for r in rows if r.error or below_full(r)), key=badness)
    return [
        Example(
            record_id=r.record_id,
            category=r.category,
            quality=row_quality(r),
            error=r.error,
            output=None if r.output is None else r.output[:EXAMPLE_OUTPUT_CHARS],
            judge_justification=r.judge_justification,
        )
        for r in chosen[:limit]
    ]


def summarize_group(rows: Sequence[ScoredRecord]) -> GroupSummary:
    ok = [r for r in rows if r.error is None]
    values: dict[str, list[float]] = defaultdict(list)
    for row in ok:
        for name, value in row.metrics.items():
            values[name].append(value)
    summary = GroupSummary(
        count=len(rows),
        errors=len(rows) - len(ok),
        error_rate=(len(rows) - len(ok)) / len(rows) if rows else 0.0,
        metrics={name: metric_stat(v, metric_range(name)) for name, v in sorted(values.items())},
        human_review=sum(1 for r in rows if r.human_review),
        unscored=sum(1 for r in ok if not r.metrics),
    )
    pairs = [(r.gold_label, r.predicted_label) for r in ok if r.gold_label and r.predicted_label]
    if pairs:
        report = classification_report(pairs)
        for name, value in report.as_metrics().items():
            summary.metrics[name] = MetricStat(
                mean=value, stderr=0.0, ci95_low=value, ci95_high=value, n=report.count
            )
        summary.per_class = {
            label: {"precision": m.precision, "recall": m.recall, "f1": m.f1, "support": float(m.support)}
            for label, m in report.per_class.items()
        }
    latencies = [r.latency_ms for r in ok if r.latency_ms is not None]
    summary.latency_p50_ms, summary.latency_p95_ms = percentile(latencies, 50), percentile(latencies, 95)
    costs = [r.cost_usd for r in ok if r.cost_usd is not None]
    if costs:
        summary.cost_per_1k_records_usd = statistics.fmean(costs) * 1000
    return summary


def summarize(rows: Iterable[ScoredRecord]) -> list[ModelSummary]:
    by_model: dict[str, list[ScoredRecord]] = defaultdict(list)
    for row in rows:
        by_model[row.model].append(row)
    summaries = []
    for model, model_rows in sorted(by_model.items()):
        by_category: dict[str, list[ScoredRecord]] = defaultdict(list)
        for row in model_rows:
            by_category[row.category].append(row)
        overall = summarize_group(model_rows)
        summaries.append(
            ModelSummary(
                model=model,
                **overall.model_dump(),
                categories={c: summarize_group(r) for c, r in sorted(by_category.items())},
                worst=worst_examples(model_rows),
            )
        )
    return summaries
