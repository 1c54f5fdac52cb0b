"""Rank models on weighted quality, speed and cost, and decide the promotion gate."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from evaluation.aggregate import ModelSummary
from evaluation.settings import EvaluationSettings, GateThresholds, SelectionWeights

# Tried in order when quality_metric is "auto": discrete labels, then reference text, then judges.
AUTO_QUALITY = ("f1_macro", "rougeL", "judge_overall", "human_score")


class RankedModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rank: int
    model: str
    score: float
    quality: float | None
    latency_p50_ms: float | None
    cost_per_1k_records_usd: float | None
    quality_norm: float
    speed_norm: float
    cost_norm: float


class Ranking(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    quality_metric: str | None
    weights: SelectionWeights
    models: list[RankedModel]
    explanation: str


def pick_quality_metric(summaries: Sequence[ModelSummary], configured: str) -> str | None:
    if configured != "auto":
        return configured
    present = {name for s in summaries for name in s.metrics}
    return next((name for name in AUTO_QUALITY if name in present), None)


def _normalize(values: Sequence[float | None], higher_is_better: bool) -> list[float]:
    """Min-max to 0..1, best = 1. Equal or missing-everywhere values give everyone 1 (no signal)."""
    known = [v for v in values if v is not None]
    if not known or max(known) == min(known):
        return [1.0 if v is not None or not known else 0.0 for v in values]
    low, high = min(known), max(known)
    out = []
    for v in values:
        if v is None:
            out.append(0.0)  # unknown ranks as the worst, not as the best
        else:
            scaled = (v - low) / (high - low)
            out.append(scaled if higher_is_better else 1 - scaled)
    return out


def rank_models(summaries: Sequence[ModelSummary], settings: EvaluationSettings) -> Ranking:
    metric = pick_quality_metric(summaries, settings.quality_metric)
    w = settings.weights
    quality = [s.metrics[metric].mean if metric and metric in s.metrics else None for s in summaries]
    latency = [s.latency_p50_ms for s in summaries]
    cost = [s.cost_per_1k_records_usd for s in summaries]
    qn, sn, cn = _normalize(quality, True), _normalize(latency, False), _normalize(cost, False)
    scored = sorted(
        zip(summaries, quality, qn, sn, cn, strict=True),
        key=lambda t: (-(w.quality * t[2] + w.speed * t[3] + w.cost * t[4]), t[0].model),
    )
    ranked = [
        RankedModel(
            rank=i,
            model=s.model,
            score=w.quality * q + w.speed * sp + w.cost * c,
            quality=raw,
            latency_p50_ms=s.latency_p50_ms,
            cost_per_1k_records_usd=s.cost_per_1k_records_usd,
            quality_norm=q,
            speed_norm=sp,
            cost_norm=c,
        )
        for i, (s, raw, q, sp, c) in enumerate(scored, start=1)
    ]
    return Ranking(quality_metric=metric, weights=w, models=ranked, explanation=explain(ranked, metric, w))


def explain(ranked: Sequence[RankedModel], metric: str | None, w: SelectionWeights) -> str:
    if not ranked:
        return "No model was scored."
    order = sorted((("quality", w.quality), ("speed", w.speed), ("cost", w.cost)), key=lambda t: -t[1])
    lines = [
        "Weights: "
        + ", ".join(f"{name} {weight:.0%}" for name, weight in order)
        + f"; quality is the mean {metric or '(no quality metric available)'}. Each dimension is scaled"
        " so that the best model gets 1 and the worst 0, then the weighted sum ranks the models."
    ]
    for m in ranked:
        strengths = [
            n
            for n, v in (("quality", m.quality_norm), ("speed", m.speed_norm), ("cost", m.cost_norm))
            if v >= 0.999
        ]
        weak = [
            n
            for n, v in (("quality", m.quality_norm), ("speed", m.speed_norm), ("cost", m.cost_norm))
            if v <= 0.001
        ]
        note = f"best on {', '.join(strengths)}" if strengths else "best on nothing"
        if weak:
            note += f", worst on {', '.join(weak)}"
        lines.append(f"{m.rank}. {m.model}: score {m.score:.3f} ({note}).")
    top = ranked[0]
    if len(ranked) > 1:
        lines.append(f"{top.model} ranks first by {top.score - ranked[1].score:.3f} over {ranked[1].model}.")
    return "\n".join(lines)


class GateCheck(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: str
    observed: float | None
    threshold: float
    passed: bool


class GateResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    passed: bool
    model: str | None
    checks: list[GateCheck]
    reason: str


def evaluate_gate(summaries: Sequence[ModelSummary], ranking: Ranking, gate: GateThresholds) -> GateResult:
    """Pass only when every configured rule holds for the gated model; a missing metric fails."""
    name = gate.model or (ranking.models[0].model if ranking.models else None)
    summary = next((s for s in summaries if s.model == name), None)
    if summary is None:
        return GateResult(passed=False, model=name, checks=[], reason="no results for the gated model")
    checks = [
        GateCheck(
            rule=f"{metric} >= {floor:g}",
            observed=summary.metrics[metric].mean if metric in summary.metrics else None,
            threshold=floor,
            passed=metric in summary.metrics and summary.metrics[metric].mean >= floor,
        )
        for metric, floor in sorted(gate.min_metrics.items())
    ]
    checks.append(
        GateCheck(
            rule=f"error_rate <= {gate.max_error_rate:g}",
            observed=summary.error_rate,
            threshold=gate.max_error_rate,
            passed=summary.error_rate <= gate.max_error_rate,
        )
    )
    for rule, observed, ceiling in (
        ("latency_p95_ms", summary.latency_p95_ms, gate.max_latency_p95_ms),
        ("cost_per_1k_records_usd", summary.cost_per_1k_records_usd, gate.max_cost_per_1k_records_usd),
    ):
        if ceiling is not None:
            checks.append(
                GateCheck(
                    rule=f"{rule} <= {ceiling:g}",
                    observed=observed,
                    threshold=ceiling,
                    passed=observed is not None and observed <= ceiling,
                )
            )
    failed = [c.rule for c in checks if not c.passed]
    reason = "all rules hold" if not failed else "failed: " + "; ".join(failed)
    return GateResult(passed=not failed, model=name, checks=checks, reason=reason)
