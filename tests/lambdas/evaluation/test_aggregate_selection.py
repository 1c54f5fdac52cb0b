import math
import re

import pytest
from evaluation.aggregate import HumanScore, merge_human_scores, metric_stat, percentile, summarize
from evaluation.report import render_report
from evaluation.scoring import ScoredRecord
from evaluation.selection import evaluate_gate, rank_models
from evaluation.settings import GateThresholds

from .fakes import make_settings


def row(model, rid, *, category="default", error=None, latency=100.0, cost=0.001, **metrics):
    return ScoredRecord(
        run_id="r",
        record_id=rid,
        model=model,
        category=category,
        metrics=metrics,
        latency_ms=latency,
        cost_usd=cost,
        error=error,
    )


def test_metric_stat_by_hand():
    stat = metric_stat([1.0, 0.0, 1.0, 0.0])
    # sample stdev of {1,0,1,0} = sqrt(1/3); stderr = sqrt(1/3)/2
    assert stat.mean == 0.5
    assert stat.stderr == pytest.approx(math.sqrt(1 / 3) / 2)
    assert stat.ci95_low == pytest.approx(0.5 - 1.959964 * math.sqrt(1 / 3) / 2)
    assert metric_stat([3.0]).stderr == 0.0


def test_percentile_interpolates():
    assert percentile(list(range(1, 101)), 50) == pytest.approx(50.5)
    assert percentile([10.0, 20.0], 95) == pytest.approx(19.5)
    assert percentile([], 50) is None


def test_summary_per_model_and_category_with_errors_and_costs():
    rows = [
        row("a", "1", category="x", rougeL=1.0, latency=100, cost=0.002),
        row("a", "2", category="y", rougeL=0.5, latency=300, cost=0.004),
        row("a", "3", category="y", error="model: boom", latency=None, cost=None),
    ]
    (summary,) = summarize(rows)
    assert (summary.count, summary.errors) == (3, 1)
    assert summary.error_rate == pytest.approx(1 / 3)
    assert summary.metrics["rougeL"].mean == 0.75 and summary.metrics["rougeL"].n == 2
    assert summary.latency_p50_ms == 200
    assert summary.cost_per_1k_records_usd == pytest.approx(3.0)
    assert summary.categories["y"].errors == 1 and summary.categories["x"].metrics["rougeL"].mean == 1.0


def test_classification_metrics_in_summary():
    rows = [
        ScoredRecord(run_id="r", record_id=str(i), model="m", gold_label=g, predicted_label=p)
        for i, (g, p) in enumerate([("pos", "pos"), ("neg", "unknown"), ("neg", "neg")])
    ]
    (summary,) = summarize(rows)
    assert summary.metrics["accuracy"].mean == pytest.approx(2 / 3)
    assert summary.per_class["neg"]["recall"] == 0.5


def test_ranking_follows_weights_and_explains():
    rows = [
        row("cheap", "1", rougeL=0.7, latency=900, cost=0.001),
        row("precise", "1", rougeL=0.9, latency=300, cost=0.010),
    ]
    summaries = summarize(rows)
    cost_first = rank_models(summaries, make_settings(weights={"quality": 0.3, "speed": 0.2, "cost": 0.5}))
    assert [m.model for m in cost_first.models] == ["cheap", "precise"]
    assert cost_first.models[0].score == pytest.approx(0.5)
    assert "cheap ranks first by" in cost_first.explanation and "rougeL" in cost_first.explanation
    quality_first = rank_models(summaries, make_settings(weights={"quality": 0.6, "speed": 0.2, "cost": 0.2}))
    assert quality_first.models[0].model == "precise" and quality_first.models[0].score == pytest.approx(0.8)


def test_gate_rules():
    summaries = summarize([row("m", "1", rougeL=0.8, latency=100), row("m", "2", error="x")])
    ranking = rank_models(summaries, make_settings())
    passed = evaluate_gate(
        summaries, ranking, GateThresholds(min_metrics={"rougeL": 0.7}, max_error_rate=0.5)
    )
    assert passed.passed and passed.model == "m"
    failed = evaluate_gate(summaries, ranking, GateThresholds(min_metrics={"rougeL": 0.9, "bleu": 0.1}))
    assert not failed.passed
    assert {c.rule for c in failed.checks if not c.passed} == {
        "rougeL >= 0.9",
        "bleu >= 0.1",
        "error_rate <= 0.05",
    }


def test_merge_human_scores_averages_reviews():
    rows = [row("m", "1")]
    merge_human_scores(
        rows, [HumanScore(record_id="1", model="m", score=6), HumanScore(record_id="1", model="m", score=9)]
    )
    assert rows[0].human_score == 7.5 and rows[0].metrics["human_score"] == 7.5


def test_report_is_self_contained_and_escapes():
    summaries = summarize([row("<script>", "1", rougeL=0.5), row("b", "1", rougeL=0.7)])
    html = render_report("t", summaries, rank_models(summaries, make_settings()))
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<svg" in html and html.count("<rect") >= 6
    assert not re.search(r"(src|href)=", html)
