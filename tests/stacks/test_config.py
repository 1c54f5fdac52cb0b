"""Every config mistake fails before synth, with one message that names the field and what is allowed."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from stacks.settings import ConfigError, PlatformConfig, Stage, load_config, parse_config

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RAW: dict[str, Any] = yaml.safe_load((REPO_ROOT / "config" / "platform.yaml").read_text())
SANDBOX_RAW: dict[str, Any] = yaml.safe_load((REPO_ROOT / "config" / "sandbox.yaml").read_text())


@pytest.fixture
def raw() -> dict[str, Any]:
    return copy.deepcopy(DEFAULT_RAW)


def problems_of(raw: Any) -> list[str]:
    with pytest.raises(ConfigError) as excinfo:
        parse_config(raw)
    return excinfo.value.problems


def test_default_config_describes_two_business_units_in_seven_accounts() -> None:
    config = load_config()
    assert [bu.name for bu in config.business_units] == ["retail", "finance"]
    accounts = {env.account for env in config.environments()} | {
        config.tooling_account,
        config.data_lake_account,
    }
    assert len(accounts) == 8
    assert config.environment(config.business_unit("retail"), Stage.PROD).account == "333333333333"


def test_sandbox_config_puts_every_role_in_one_account() -> None:
    config = load_config("config/sandbox.yaml")
    assert config.is_sandbox
    assert {env.account for env in config.environments()} == {"555555555555"}
    assert config.tooling_account == config.data_lake_account == "555555555555"


def test_valid_config_round_trips(raw: dict[str, Any]) -> None:
    config = parse_config(raw)
    # Explicit nulls are meaningful (`business_unit_models_stage: null` = no business-unit models), so the
    # dump keeps them: dropping them would load back the defaults instead.
    dumped = config.model_dump(mode="json", by_alias=True)
    assert parse_config(dumped) == config


def test_partial_stage_override_keeps_that_stages_defaults(raw: dict[str, Any]) -> None:
    raw["stages"] = {"dev": {"interface_endpoints": True}}
    config = parse_config(raw)
    assert config.stages.dev.interface_endpoints is True
    assert config.stages.dev.vpc_cidr == "10.10.0.0/16"
    assert config.stages.prod.log_retention_days == 365


@pytest.mark.parametrize("bad", ["12345678901", "1234567890123", "12345678901a", "", "abcdefghijkl"])
def test_malformed_account_id_names_the_field(raw: dict[str, Any], bad: str) -> None:
    raw["accounts"]["tooling"] = bad
    (problem,) = problems_of(raw)
    assert problem.startswith("accounts.tooling: ")
    assert "12 digits" in problem


def test_unquoted_account_id_is_rejected_with_the_reason(raw: dict[str, Any]) -> None:
    raw["business_units"][0]["accounts"]["dev"] = 12345678901
    (problem,) = problems_of(raw)
    assert problem.startswith("business_units[0].accounts.dev: ")
    assert "quoted" in problem


def test_duplicate_business_unit_names_are_rejected(raw: dict[str, Any]) -> None:
    raw["business_units"][1]["name"] = "retail"
    (problem,) = problems_of(raw)
    assert problem == "business_units: duplicate name(s) retail; each name must be unique"


def test_account_reused_across_environments_is_rejected(raw: dict[str, Any]) -> None:
    raw["business_units"][1]["accounts"]["prod"] = raw["business_units"][0]["accounts"]["dev"]
    (problem,) = problems_of(raw)
    assert problem.startswith("business_units[1].accounts.prod: account 333333333331 is already used by")
    assert "business_units[0].accounts.dev" in problem
    assert "sandbox" in problem


def test_business_unit_account_equal_to_tooling_is_rejected(raw: dict[str, Any]) -> None:
    raw["business_units"][0]["accounts"]["dev"] = raw["accounts"]["tooling"]
    (problem,) = problems_of(raw)
    assert problem.startswith(
        "business_units[0].accounts.dev: account 111111111111 is already used by accounts.tooling"
    )


def test_unknown_stage_is_rejected_with_the_allowed_stages(raw: dict[str, Any]) -> None:
    raw["business_units"][0]["accounts"]["qa"] = "999999999999"
    (problem,) = problems_of(raw)
    assert problem == "business_units[0].accounts.qa: unknown key; allowed keys: dev, preprod, prod"


def test_unknown_stage_in_stage_settings_is_rejected(raw: dict[str, Any]) -> None:
    raw["stages"]["staging"] = {"interface_endpoints": True}
    (problem,) = problems_of(raw)
    assert problem.startswith("stages.staging: unknown key")
    assert "dev, preprod, prod" in problem


@pytest.mark.parametrize("field_path", ["home_region", "business_units.0.region"])
def test_unknown_region_says_what_a_region_code_is(raw: dict[str, Any], field_path: str) -> None:
    target: Any = raw
    *parents, leaf = field_path.split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[leaf] = "eu-middle-9"
    (problem,) = problems_of(raw)
    expected_path = field_path.replace(".0.", "[0].")
    assert problem.startswith(f"{expected_path}: unknown region 'eu-middle-9'; write an AWS region code")
    assert "stacks/settings/regions.py" in problem


@pytest.mark.parametrize("section", ["organization", "home_region", "source", "business_units"])
def test_missing_required_section_is_named(raw: dict[str, Any], section: str) -> None:
    del raw[section]
    assert problems_of(raw) == [f"{section}: required but missing"]


def test_missing_accounts_section_in_multi_account_mode(raw: dict[str, Any]) -> None:
    del raw["accounts"]
    (problem,) = problems_of(raw)
    assert problem.startswith("accounts: required in multi_account mode")


def test_typo_in_a_key_is_rejected_with_a_suggestion(raw: dict[str, Any]) -> None:
    raw["business_units"][0]["use_case"] = raw["business_units"][0].pop("use_cases")
    problems = problems_of(raw)
    assert (
        "business_units[0].use_case: unknown key (did you mean 'use_cases'?); "
        "allowed keys: name, cost_center, region, accounts, use_cases, guardrails, evaluation, serving, "
        "fine_tuning, application, monitoring, model_usage"
    ) in problems
    assert "business_units[0].use_cases: required but missing" in problems


def test_unknown_top_level_key_is_rejected(raw: dict[str, Any]) -> None:
    raw["lambdas"] = {"powertools_layer_version": 3}
    (problem,) = problems_of(raw)
    assert problem.startswith("lambdas: unknown key (did you mean 'lambda'?)")


def test_sandbox_mode_requires_its_account() -> None:
    raw = copy.deepcopy(SANDBOX_RAW)
    del raw["deployment"]["sandbox_account"]
    assert problems_of(raw) == ["deployment.sandbox_account: required when mode is 'sandbox'"]


def test_sandbox_mode_rejects_per_environment_accounts(raw: dict[str, Any]) -> None:
    raw["deployment"] = {"mode": "sandbox", "sandbox_account": "555555555555"}
    (problem,) = problems_of(raw)
    assert problem.startswith("accounts: remove this section in sandbox mode")


def test_unknown_deployment_mode_lists_the_modes(raw: dict[str, Any]) -> None:
    raw["deployment"]["mode"] = "single"
    (problem,) = problems_of(raw)
    assert problem.startswith("deployment.mode: Input should be 'multi_account' or 'sandbox'")


def test_hosted_source_needs_a_connection(raw: dict[str, Any]) -> None:
    del raw["source"]["connection_arn"]
    (problem,) = problems_of(raw)
    assert problem == "source.connection_arn: required for provider 'github' (a CodeConnections ARN)"


@pytest.mark.parametrize(
    ("cidr", "reason"),
    [("10.0.0.0/8", "between /16 and /22"), ("8.8.0.0/16", "private"), ("10.0.0/16", "CIDR")],
)
def test_bad_vpc_cidr_is_rejected(raw: dict[str, Any], cidr: str, reason: str) -> None:
    raw["stages"]["prod"]["vpc_cidr"] = cidr
    (problem,) = problems_of(raw)
    assert problem.startswith("stages.prod.vpc_cidr: ")
    assert reason in problem


def test_log_retention_must_be_a_cloudwatch_value(raw: dict[str, Any]) -> None:
    raw["stages"]["dev"]["log_retention_days"] = 31
    (problem,) = problems_of(raw)
    assert problem.startswith("stages.dev.log_retention_days: 31 is not a CloudWatch Logs retention")


def test_duplicate_use_cases_are_rejected(raw: dict[str, Any]) -> None:
    raw["business_units"][0]["use_cases"] = ["qa", "qa"]
    (problem,) = problems_of(raw)
    assert problem == "business_units[0].use_cases: listed more than once: qa"


def test_non_mapping_file_is_rejected() -> None:
    assert problems_of(["not", "a", "mapping"]) == [
        "(top level): the file must hold a YAML mapping with the platform settings at its top level"
    ]


def test_missing_file_and_bad_yaml_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("organization: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_config_is_immutable() -> None:
    config = load_config()
    with pytest.raises(Exception, match="frozen"):
        config.business_units[0].name = "changed"


@given(st.text(max_size=16))
def test_any_tooling_account_string_is_accepted_only_if_twelve_digits(value: str) -> None:
    raw = copy.deepcopy(DEFAULT_RAW)
    raw["accounts"]["tooling"] = value
    is_valid = len(value) == 12 and value.isdigit() and value.isascii()
    try:
        config = parse_config(raw)
    except ConfigError as error:
        assert not is_valid or value in {
            # A valid id may still collide with another role's account.
            raw["accounts"]["data_lake"],
            *(acc for bu in raw["business_units"] for acc in bu["accounts"].values()),
        }
        assert all(p.startswith("accounts.tooling: ") for p in error.problems)
    else:
        assert is_valid
        assert isinstance(config, PlatformConfig)
        assert config.tooling_account == value


def test_evaluation_section_defaults_and_names_a_bad_field(raw: dict[str, Any]) -> None:
    from stacks.settings.evaluation import EvaluationSettings

    # retail's sample entry sets a gate floor (its config has no judge); without the section, the defaults.
    assert raw["business_units"][0].pop("evaluation") == {"gate": {"min_metrics": {"token_f1": 0.5}}}
    assert parse_config(raw).business_units[0].evaluation == EvaluationSettings()
    raw["business_units"][0]["evaluation"] = {"weights": {"quality": 0.9, "speed": 0.9, "cost": 0.9}}
    assert any(p.startswith("business_units[0].evaluation.weights") for p in problems_of(raw))
