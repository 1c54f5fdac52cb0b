"""Issue 14 item 5: the ranking rules, as properties over arbitrary summaries."""

from evaluation.aggregate import MetricStat, ModelSummary
from evaluation.selection import DIMENSIONS, rank_models
from hypothesis import given, settings
from hypothesis import strategies as st

from .fakes import make_settings

maybe = st.none() | st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
latency = st.none() | st.floats(min_value=1.0, max_value=10_000.0, allow_nan=False)
cost = st.none() | st.floats(min_value=0.0, max_value=50.0, allow_nan=False)
weights = st.sampled_from(
    [
        {"quality": 0.35, "speed": 0.15, "cost": 0.5},
        {"quality": 1.0, "speed": 0.0, "cost": 0.0},
        {"quality": 0.2, "speed": 0.7, "cost": 0.1},
    ]
)


@st.composite
def summaries(draw):
    count = draw(st.integers(min_value=1, max_value=6))
    out = []
    for i in range(count):
        quality = draw(maybe)
        errors = draw(st.integers(min_value=0, max_value=10))
        metrics = (
            {}
            if quality is None
            else {"rougeL": MetricStat(mean=quality, stderr=0, ci95_low=quality, ci95_high=quality, n=10)}
        )
        out.append(
            ModelSummary(
                model=f"m{i}",
                count=10,
                errors=errors,
                error_rate=errors / 10,
                metrics=metrics,
                latency_p50_ms=draw(latency),
                cost_per_1k_records_usd=draw(cost),
            )
        )
    return out


def ranked(models, w):
    return rank_models(
        models, make_settings(weights=w, gate={"min_metrics": {"rougeL": 0.5}, "max_error_rate": 0.2})
    )


@settings(max_examples=300, deadline=None)
@given(models=summaries(), w=weights)
def test_a_model_that_fails_the_gate_is_never_ranked_above_one_that_passes(models, w):
    ranking = ranked(models, w)
    passed = [m.gate_passed for m in ranking.models]
    assert passed == sorted(passed, reverse=True)  # every pass before every fail
    for m, s in ((m, next(s for s in models if s.model == m.model)) for m in ranking.models):
        quality_ok = "rougeL" in s.metrics and s.metrics["rougeL"].mean >= 0.5
        assert m.gate_passed == (quality_ok and s.error_rate <= 0.2)


@settings(max_examples=300, deadline=None)
@given(models=summaries(), w=weights)
def test_a_dimension_without_data_gets_no_credit_and_is_shown_missing(models, w):
    ranking = ranked(models, w)
    for m in ranking.models:
        s = next(s for s in models if s.model == m.model)
        raw = {
            "quality": s.metrics.get("rougeL"),
            "speed": s.latency_p50_ms,
            "cost": s.cost_per_1k_records_usd,
        }
        for dimension in DIMENSIONS:
            norm = getattr(m, f"{dimension}_norm")
            assert (norm is None) == (raw[dimension] is None)
            if norm is None:
                assert dimension in m.missing and "no data for" in ranking.explanation
        expected = sum(w[d] * (getattr(m, f"{d}_norm") or 0.0) for d in DIMENSIONS)
        assert abs(m.score - expected) < 1e-9
        assert 0.0 <= m.score <= 1.0 + 1e-9


@settings(max_examples=200, deadline=None)
@given(models=summaries(), w=weights)
def test_nobody_is_best_on_a_dimension_nobody_has_data_for(models, w):
    for s in models:
        s.latency_p50_ms = None
        s.cost_per_1k_records_usd = None
    ranking = ranked(models, w)
    for line in ranking.explanation.splitlines()[1:]:
        if "best on" in line:
            best = line.split("best on ", 1)[1].split(")")[0].split(";")[0]
            assert "speed" not in best and "cost" not in best, line
    assert all(m.score <= w["quality"] + 1e-9 for m in ranking.models)


@settings(max_examples=200, deadline=None)
@given(models=summaries(), w=weights)
def test_ranks_are_dense_and_ordered_by_gate_then_score(models, w):
    ranking = ranked(models, w)
    assert [m.rank for m in ranking.models] == list(range(1, len(models) + 1))
    keys = [(not m.gate_passed, -m.score) for m in ranking.models]
    assert keys == sorted(keys)


def test_every_record_errored_is_not_a_perfect_score():
    broken = ModelSummary(model="broken", count=5, errors=5, error_rate=1.0)
    ranking = ranked([broken], {"quality": 0.35, "speed": 0.15, "cost": 0.5})
    [m] = ranking.models
    assert m.score == 0.0 and m.missing == ["quality", "speed", "cost"] and not m.gate_passed
    assert "No model passes the gate." in ranking.explanation
