"""`business_units[].model_usage` and `monitoring.model_budgets`: defaults, and errors that name the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stacks.settings import ConfigError, parse_config
from tests.stacks.test_config import DEFAULT_RAW


def problems(model_usage: Any, **unit: Any) -> list[str]:
    raw = copy.deepcopy(DEFAULT_RAW)
    raw["business_units"][0]["model_usage"] = model_usage
    raw["business_units"][0].update(unit)
    with pytest.raises(ConfigError) as excinfo:
        parse_config(raw)
    return excinfo.value.problems


def test_defaults_profile_per_stage_logging_on_online_evaluation_off() -> None:
    raw = copy.deepcopy(DEFAULT_RAW)
    raw["business_units"][0].pop("model_usage", None)
    settings = parse_config(raw).business_units[0]
    assert settings.model_usage.inference_profiles == "stage"
    assert settings.model_usage.invocation_logging.enabled and settings.model_usage.invocation_logging.text
    assert settings.model_usage.online_evaluation.sample_rate == 0
    budgets = settings.monitoring.model_budgets
    assert (budgets.dev, budgets.preprod, budgets.prod) == (100, 300, 2000)


def test_online_evaluation_without_a_judge_is_refused_naming_the_field() -> None:
    raw_unit = copy.deepcopy(DEFAULT_RAW)["business_units"][0]
    assert "judge" not in raw_unit.get("evaluation", {})
    [problem] = problems({"online_evaluation": {"sample_rate": 0.1}})
    assert "model_usage.online_evaluation.sample_rate" in problem and "evaluation.judge.model" in problem


@pytest.mark.parametrize(
    ("model_usage", "field"),
    [
        ({"inference_profiles": "tenant"}, "model_usage.inference_profiles"),
        ({"online_evaluation": {"sample_rate": 1.5}}, "model_usage.online_evaluation.sample_rate"),
        ({"online_evaluation": {"stages": ["qa"]}}, "model_usage.online_evaluation.stages"),
        ({"online_evaluation": {"stages": ["prod", "prod"]}}, "model_usage.online_evaluation.stages"),
        ({"online_evaluation": {"low_score_below": 0}}, "model_usage.online_evaluation.low_score_below"),
        ({"invocation_logging": {"audio": True}}, "model_usage.invocation_logging.audio"),
        ({"profiles": "stage"}, "model_usage.profiles"),
    ],
)
def test_bad_values_name_their_field(model_usage: dict[str, Any], field: str) -> None:
    found = problems(model_usage)
    assert any(field in p for p in found), found


@given(rate=st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.000001), st.text(max_size=5)))
def test_any_out_of_range_rate_is_refused(rate: Any) -> None:
    found = problems({"online_evaluation": {"sample_rate": rate}})
    assert any("model_usage.online_evaluation.sample_rate" in p for p in found), found


def test_a_model_budget_must_be_positive() -> None:
    raw = copy.deepcopy(DEFAULT_RAW)
    raw["business_units"][0]["monitoring"] = {"model_budgets": {"prod": 0}}
    with pytest.raises(ConfigError) as excinfo:
        parse_config(raw)
    assert any("monitoring.model_budgets.prod" in p for p in excinfo.value.problems)
