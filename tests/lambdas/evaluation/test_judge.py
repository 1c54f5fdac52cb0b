import pytest
from evaluation.judge import JUDGE_PROMPT, JudgeError, judge_answer, parse_verdict

from .fakes import ScriptedModel, verdict


def test_parse_verdict_tolerates_fences_and_prose():
    parsed = parse_verdict("Here you go:\n```json\n" + verdict(8) + "\n```")
    assert parsed.overall == 8 and parsed.justification == "Scored 8."


@pytest.mark.parametrize(
    "text", ["no json here", '{"overall": 8}', verdict(11), verdict(7, justification="")]
)
def test_parse_verdict_rejects_answers_off_the_rubric(text):
    with pytest.raises(ValueError):
        parse_verdict(text)


def test_unparseable_answer_is_retried_then_accepted():
    judge = ScriptedModel("judge", ["I think it is fine.", verdict(9)])
    result = judge_answer(judge, "What if?", "Ships go around Africa.", max_parse_attempts=2)
    assert result.overall_mean == 9.0
    assert len(judge.calls) == 2
    assert "What if?" in judge.calls[0].prompt and "Ships go around Africa." in judge.calls[0].prompt


def test_judge_error_after_all_attempts():
    judge = ScriptedModel("judge", ["garbage"])
    with pytest.raises(JudgeError, match="after 3 attempts"):
        judge_answer(judge, "q", "a", max_parse_attempts=3)
    assert len(judge.calls) == 3


def test_samples_report_mean_and_spread():
    judge = ScriptedModel("judge", [verdict(6), verdict(8), verdict(10)])
    result = judge_answer(judge, "q", "a", samples=3)
    metrics = result.as_metrics()
    assert metrics["judge_overall"] == 8.0
    assert metrics["judge_overall_stdev"] == pytest.approx(2.0)
    assert all(call.temperature > 0 for call in judge.calls)


def test_prompt_names_every_rubric_item():
    for item in ("helpfulness", "relevance", "accuracy", "level_of_detail", "overall", "justification"):
        assert item in JUDGE_PROMPT
