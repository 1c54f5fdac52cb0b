"""`make cost`'s model spend: figures from the dated price table, and bad arguments exit 2 naming the option."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.model_pricing import load_price_table
from stacks.settings import load_config
from tools import model_cost


def test_rows_are_tokens_times_the_dated_price_plus_the_sampled_judge() -> None:
    rows = model_cost.cost_rows(None, [100_000], 600, 300)
    prices = load_price_table()
    config = load_config()
    for row in rows:
        bu = config.business_unit(row.business_unit)
        price = prices.price_of(bu.application.default_model.model_id or "")
        assert price is not None
        assert row.application_usd == pytest.approx(
            100_000 * (600 * price.input_per_1k_tokens_usd + 300 * price.output_per_1k_tokens_usd) / 1000
        )
        rate = bu.model_usage.online_evaluation.sample_rate
        assert row.judged_requests == round(100_000 * rate)
    finance = next(r for r in rows if r.business_unit == "finance")
    judge = prices.price_of("eu.anthropic.claude-3-haiku-20240307-v1:0")
    assert judge is not None and finance.judged_requests == 5_000
    judge_in = 600 + 300 + model_cost.JUDGE_RUBRIC_TOKENS
    expected = (
        5_000
        * (
            judge_in * judge.input_per_1k_tokens_usd
            + model_cost.JUDGE_OUTPUT_TOKENS * judge.output_per_1k_tokens_usd
        )
        / 1000
    )
    assert finance.judge_usd == pytest.approx(expected)
    assert finance.total_usd == pytest.approx(finance.application_usd + expected)  # type: ignore[operator]


def test_the_table_prints_the_price_date(capsys: pytest.CaptureFixture[str]) -> None:
    assert model_cost.main(["--requests", "1000"]) == 0
    out = capsys.readouterr().out
    assert f"of {load_price_table().price_date.isoformat()}" in out
    assert "retail | amazon.nova-lite-v1:0 | 1,000 |" in out


def test_a_model_without_a_price_is_shown_as_unknown_not_free() -> None:
    row = model_cost.ModelCostRow("x", "m", 10, None, None, 0, 0.0)
    assert row.total_usd is None and model_cost._usd(None).startswith("n/a")


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--requests", "ten"], "--requests"),
        (["--requests", "-5"], "--requests"),
        (["--input-tokens", "1,2"], "--input-tokens"),
        (["--output-tokens", ""], "--output-tokens"),
    ],
)
def test_bad_arguments_exit_2_naming_the_option(
    argv: list[str], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert model_cost.main(argv) == 2
    assert capsys.readouterr().err.startswith(f"error: {option}:")


def _whole_numbers(text: str) -> bool:
    try:
        return all(int(part) >= 0 for part in text.split(","))
    except ValueError:
        return False


@given(text=st.text(max_size=12).filter(lambda t: not _whole_numbers(t)))
def test_any_non_numeric_request_volume_exits_2(text: str) -> None:
    assert model_cost.main([f"--requests={text}"]) == 2
