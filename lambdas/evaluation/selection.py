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
    # 0..1 per dimension, best = 1; None = no data for this model: no credit, shown as missing.
    quality_norm: float | None
    speed_norm: float | None
    cost_norm: float | None
    gate_passed: bool = True
    gate_reason: str = ""

    @property
    def missing(self) -> list[str]:
        return [name for name in DIMENSIONS if getattr(self, f"{name}_norm") is None]


class Ranking(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    quality_metric: str | None
    weights: SelectionWeights
    models: list[RankedModel]
    explanation: str


DIMENSIONS = ("quality", "speed", "cost")


def pick_quality_metric(summaries: Sequence[ModelSummary], configured: str) -> str | None:
    if configured != "auto":
        return configured
    present = {name for s in summaries for name in s.metrics}
    return next((name for name in AUTO_QUALITY if name in present), None)


def _normalize(values: Sequence[float | None], higher_is_better: bool) -> list[float | None]:
    """Min-max to 0..1, best = 1. A value without data stays None (no credit); equal values all get 1."""
    known = [v for v in values if v is not None]
    if not known:
        return [None for _ in values]
    low, high = min(known), max(known)
    out: list[float | None] = []
    for v in values:
        if v is None:
            out.append(None)
        elif high == low:
            out.append(1.0)
        else:
            scaled = (v - low) / (high - low)
            out.append(scaled if higher_is_better else 1 - scaled)
    return out


def weighted_score(
    w: SelectionWeights, quality: float | None, speed: float | None, cost: float | None
) -> float:
    """Sum of weight x normalized value over the dimensions with data; a missing one adds nothing."""
    return w.quality * (quality or 0.0) + w.speed * (speed or 0.0) + w.cost * (cost or 0.0)


def rank_models(summaries: Sequence[ModelSummary], settings: EvaluationSettings) -> Ranking:
    """Rank by the weighted score, but every model that passes the gate before any that fails it."""
    metric = pick_quality_metric(summaries, settings.quality_metric)
    w = settings.weights
    quality = [s.metrics[metric].mean if metric and metric in s.metrics else None for s in summaries]
    latency = [s.latency_p50_ms for s in summaries]
    cost = [s.cost_per_1k_records_usd for s in summaries]
    qn, sn, cn = _normalize(quality, True), _normalize(latency, False), _normalize(cost, False)
    gates = [gate_checks(s, settings.gate) for s in summaries]
    scored = sorted(
        zip(summaries, quality, qn, sn, cn, gates, strict=True),
        key=lambda t: (not _passed(t[5]), -weighted_score(w, t[2], t[3], t[4]), t[0].model),
    )
    ranked = [
        RankedModel(
            rank=i,
            model=s.model,
            score=weighted_score(w, q, sp, c),
            quality=raw,
            latency_p50_ms=s.latency_p50_ms,
            cost_per_1k_records_usd=s.cost_per_1k_records_usd,
            quality_norm=q,
            speed_norm=sp,
            cost_norm=c,
            gate_passed=_passed(checks),
            gate_reason=_reason(checks),
        )
        for i, (s, raw, q, sp, c, checks) in enumerate(scored, start=1)
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
        " so that the best model gets 1 and the worst 0; a dimension without data gets no credit. Models"
        " that pass the gate rank before models that fail it, then the weighted sum ranks them."
    ]
    for m in ranked:
        norms = [(n, getattr(m, f"{n}_norm")) for n in DIMENSIONS]
        strengths = [n for n, v in norms if v is not None and v >= 0.999]
        weak = [n for n, v in norms if v is not None and v <= 0.001]
        note = f"best on {', '.join(strengths)}" if strengths else "best on nothing"
        if weak:
            note += f", worst on {', '.join(weak)}"
        if m.missing:
            note += f"; no data for {', '.join(m.missing)}"
        if not m.gate_passed:
            note += f"; fails the gate ({m.gate_reason})"
        lines.append(f"{m.rank}. {m.model}: score {m.score:.3f} ({note}).")
    top = ranked[0]
    if len(ranked) > 1:
        lines.append(f"{top.model} ranks first by {top.score - ranked[1].score:.3f} over {ranked[1].model}.")
    if not top.gate_passed:
        lines.append("No model passes the gate.")
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


def gate_checks(summary: ModelSummary, gate: GateThresholds) -> list[GateCheck]:
    """Every configured rule for one model; a missing metric fails its rule."""
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
            passed=summary.count > 0 and summary.error_rate <= gate.max_error_rate,
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
    return checks


def _passed(checks: Sequence[GateCheck]) -> bool:
    return all(c.passed for c in checks)


def _reason(checks: Sequence[GateCheck]) -> str:
    failed = [c.rule for c in checks if not c.passed]
    return "all rules hold" if not failed else "failed: " + "; ".join(failed)


def evaluate_gate(summaries: Sequence[ModelSummary], ranking: Ranking, gate: GateThresholds) -> GateResult:
    """Pass only when every configured rule holds for the gated model (gate.model, else the top-ranked)."""
    name = gate.model or (ranking.models[0].model if ranking.models else None)
    summary = next((s for s in summaries if s.model == name), None)
    if summary is None:
        return GateResult(passed=False, model=name, checks=[], reason="no results for the gated model")
    checks = gate_checks(summary, gate)
    return GateResult(passed=_passed(checks), model=name, checks=checks, reason=_reason(checks))
