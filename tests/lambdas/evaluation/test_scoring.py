from evaluation.prompts import PinnedPrompt, PinnedPrompts
from evaluation.scoring import (
    ScoringContext,
    sampled_for_review,
    score_record,
    score_records,
)
from prompt_catalog.models import PromptContent

from common.evaluation_dataset import EvaluationRecord

from .fakes import ScriptedModel, make_settings, verdict

PRICED = {
    "name": "fm",
    "provider": "bedrock",
    "model_id": "x",
    "price_per_1k_input_tokens_usd": 1.0,
    "price_per_1k_output_tokens_usd": 2.0,
}


def context(judge=None, **settings):
    return ScoringContext(
        run_id="run",
        settings=make_settings(candidates=[PRICED], **settings),
        judge=judge,
        sleep=lambda _s: None,
    )


def test_unlabeled_record_is_judged_and_priced():
    judge = ScriptedModel("judge", [verdict(4)])
    row = score_record(
        EvaluationRecord(id="s1", input="Tell a story"),
        ScriptedModel("fm", ["Once..."]),
        context(judge, human_review={"enabled": True, "below_judge_score": 5, "sample_rate": 0}),
    )
    assert row.error is None and row.judge_score == 4.0 and row.judge_justification == "Scored 4."
    assert row.metrics["judge_overall"] == 4.0
    assert row.cost_usd == (10 * 1.0 + 5 * 2.0) / 1000
    assert row.human_review is True  # below the threshold


def test_human_review_is_off_by_default_so_low_scores_flag_nothing():
    """README, "Evaluation engine": rows reach the review queue only with human_review.enabled."""
    row = score_record(
        EvaluationRecord(id="s1", input="Tell a story"),
        ScriptedModel("fm", ["Once..."]),
        context(ScriptedModel("judge", [verdict(1)])),
    )
    assert row.judge_score == 1.0 and row.human_review is False


def test_unparseable_judge_becomes_an_error_on_that_record_only():
    judge = ScriptedModel("judge", ["not json"])
    data = [
        EvaluationRecord(id="s1", input="story"),
        EvaluationRecord(id="q1", input="2+2", reference_output="4"),
    ]
    rows = score_records(data, [ScriptedModel("fm", ["4"])], context(judge), workers=2)
    assert rows[0].error is not None and rows[0].error.startswith("judge: ")
    assert rows[1].error is None and rows[1].metrics["exact_match"] == 1.0
    assert len(judge.calls) == 2  # one retry, then the error


def test_prompt_ref_records_are_rendered_from_the_catalog():
    model = ScriptedModel("fm", ["positive"])
    record = EvaluationRecord(
        id="p1", prompt_ref="sentiment@2", variables={"text": "great"}, labels=["positive"]
    )
    ctx = context()
    # A jinja2 template (filter and condition): the catalog's own renderer, not str.format.
    content = PromptContent(
        template="Classify{% if text|length > 3 %} carefully{% endif %}: {{ text | upper }}",
        variables=[{"name": "text"}],
    )
    ctx.prompts = PinnedPrompts({"sentiment@2": PinnedPrompt("sentiment@2", "sentiment", 2, content)})
    row = score_record(record, model, ctx)
    assert model.calls[0].prompt == "Classify carefully: GREAT" and row.predicted_label == "positive"
    wrong = EvaluationRecord(id="p2", prompt_ref="sentiment@2", variables={"txt": "x"}, labels=["positive"])
    error = score_record(wrong, model, ctx).error or ""
    assert error.startswith("prompt: sentiment@2 (version 2): variables.") and len(model.calls) == 1
    ctx.prompts = None
    assert "no prompt catalog" in (score_record(record, model, ctx).error or "")


def test_review_sample_is_stable_and_near_the_rate():
    picks = [sampled_for_review("run", f"r{i}", "m", 0.1) for i in range(2000)]
    assert picks == [sampled_for_review("run", f"r{i}", "m", 0.1) for i in range(2000)]
    assert 150 < sum(picks) < 250
