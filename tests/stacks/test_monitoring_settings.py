"""Monitoring settings: defaults for a business unit without the section, errors that name the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from stacks.settings import ConfigError, parse_config
from tests.stacks.test_config import DEFAULT_RAW


def problems(monitoring: dict[str, Any]) -> list[str]:
    raw = copy.deepcopy(DEFAULT_RAW)
    raw["business_units"][0]["monitoring"] = monitoring
    with pytest.raises(ConfigError) as excinfo:
        parse_config(raw)
    return excinfo.value.problems


def test_defaults_apply_when_the_section_is_absent() -> None:
    config = parse_config(copy.deepcopy(DEFAULT_RAW))
    settings = config.business_units[1].monitoring
    assert (settings.budgets.dev, settings.budgets.preprod, settings.budgets.prod) == (500, 1000, 5000)
    assert settings.budget_actual_percent == 80 and settings.budget_forecast_percent == 100
    assert settings.emails == [] and settings.alarms.min_judge_score == 6


def test_configured_values_are_kept() -> None:
    raw = copy.deepcopy(DEFAULT_RAW)
    raw["business_units"][0]["monitoring"] = {
        "emails": ["ops@example.com"],
        "https_endpoints": ["https://hooks.example.com/x"],
        "budgets": {"dev": 50},
    }
    settings = parse_config(raw).business_units[0].monitoring
    assert settings.budgets.of("dev") == 50 and settings.budgets.of("prod") == 5000
    assert [str(u) for u in settings.https_endpoints] == ["https://hooks.example.com/x"]


@pytest.mark.parametrize(
    ("monitoring", "field", "says"),
    [
        ({"budgets": {"dev": 0}}, "monitoring.budgets.dev", "greater than 0"),
        ({"budgets": {"qa": 10}}, "monitoring.budgets.qa", "unknown key"),
        ({"emails": ["not-an-address"]}, "monitoring.emails[0]", "pattern"),
        ({"https_endpoints": ["http://hooks.example.com"]}, "monitoring.https_endpoints", "https://"),
        ({"emails": ["a@example.com", "a@example.com"]}, "monitoring.emails", "more than once"),
        (
            {"alarms": {"min_judge_score": 11}},
            "monitoring.alarms.min_judge_score",
            "less than or equal to 10",
        ),
        ({"budget_actual_percent": 0}, "monitoring.budget_actual_percent", "greater than 0"),
    ],
)
def test_errors_name_the_field_and_what_is_allowed(monitoring: dict[str, Any], field: str, says: str) -> None:
    found = problems(monitoring)
    assert any(p.startswith(f"business_units[0].{field}") and says in p for p in found), found
