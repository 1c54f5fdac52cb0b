"""Whole-config validation in the loader: reserved names, collisions, name lengths, GPU types per region,
names and choices explained in words with a suggestion, and random broken configs answered in one line each."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stacks.settings import ConfigError, parse_config, validation
from stacks.settings.validation import NAME_LIMITS, NameLimit
from tools import check_config

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RAW: dict[str, Any] = yaml.safe_load((REPO_ROOT / "config" / "platform.yaml").read_text())
# A problem line names a field first: a dotted path with [index] and ['odd key'] parts, then ": ".
_FIRST = r"([A-Za-z_][A-Za-z0-9_-]*|\[(?:'[^\n]*?'|\"[^\n]*?\")\])"
_SEGMENT = r"(\.[A-Za-z_][A-Za-z0-9_-]*|\[\d+\]|\[(?:'[^\n]*?'|\"[^\n]*?\")\])"
PROBLEM_LINE = re.compile(rf"^  - (\(top level\)|config|{_FIRST}{_SEGMENT}*): \S")


@pytest.fixture
def raw() -> dict[str, Any]:
    return copy.deepcopy(DEFAULT_RAW)


def problems_of(raw: Any) -> list[str]:
    with pytest.raises(ConfigError) as excinfo:
        parse_config(raw)
    return excinfo.value.problems


def new_bu(name: str, digit: str, use_cases: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "cost_center": "CC-9",
        "accounts": {s: f"{digit * 11}{i}" for i, s in enumerate(("dev", "preprod", "prod"), start=1)},
        "use_cases": use_cases,
    }


@pytest.mark.parametrize("name", ["shared", "tooling", "prod"])
def test_reserved_business_unit_names_are_refused_with_the_reason(raw: dict[str, Any], name: str) -> None:
    raw["business_units"][1]["name"] = name
    (problem,) = problems_of(raw)
    assert problem.startswith(f"business_units[1].name: '{name}' is reserved (")


def test_registry_group_collision_across_business_units_is_one_line(raw: dict[str, Any]) -> None:
    raw["business_units"][0]["use_cases"] = ["eu-qa"]
    raw["business_units"].append(new_bu("retail-eu", "7", ["qa"]))
    (problem,) = problems_of(raw)
    assert problem.startswith(
        "business_units[2].use_cases[0]: model package group exco-retail-eu-qa is also the group of "
        "business_units[0].use_cases[0]"
    )


def test_environment_names_that_start_another_are_refused(raw: dict[str, Any]) -> None:
    raw["business_units"].append(new_bu("retail-dev", "7", ["qa"]))
    (problem,) = problems_of(raw)
    assert problem.startswith(
        "business_units[2].name: environment exco-retail-dev-dev begins with environment"
    )


def test_mistyped_gpu_instance_type_gets_a_suggestion(raw: dict[str, Any]) -> None:
    raw["business_units"][0]["serving"]["instance_type"] = "ml.g5.2xlage"
    (problem,) = problems_of(raw)
    assert problem.startswith(
        "business_units[0].serving.instance_type: ml.g5.2xlage is not a GPU instance type in the catalog "
        "(did you mean 'ml.g5.2xlarge'?); offered in eu-west-1: "
    )


def test_gpu_type_not_offered_in_the_region_is_named(raw: dict[str, Any]) -> None:
    raw["business_units"][0]["region"] = "eu-west-2"
    raw["business_units"][0]["fine_tuning"]["training_instance_type"] = "ml.g6.xlarge"
    (problem,) = problems_of(raw)
    assert problem.startswith(
        "business_units[0].fine_tuning.training_instance_type: ml.g6.xlarge is not offered"
    )


def test_region_without_a_gpu_list_names_the_default_sections_and_the_way_out(raw: dict[str, Any]) -> None:
    bu = raw["business_units"][1]
    bu["region"] = "ca-central-1"
    bu.pop("serving", None)  # sections the user never wrote: both run by default
    bu.pop("fine_tuning", None)
    problems = problems_of(raw)
    assert [p.split(":")[0] for p in problems] == [
        "business_units[1].serving",
        "business_units[1].fine_tuning",
    ]
    assert "by default when the section is not written" in problems[0]
    assert "`serving: {stages: []}`" in problems[0]
    bu["serving"] = {"stages": []}
    bu["fine_tuning"] = {"stages": []}
    assert parse_config(raw).business_units[1].region == "ca-central-1"


def test_mistyped_region_gets_a_suggestion_not_a_list(raw: dict[str, Any]) -> None:
    raw["home_region"] = "eu-west-l"
    (problem,) = problems_of(raw)
    assert problem.startswith("home_region: unknown region 'eu-west-l' (did you mean 'eu-west-1'?)")
    assert "us-east-1" not in problem


@pytest.mark.parametrize(
    ("path", "value", "words"),
    [
        (("business_units", 0, "name"), "Retail", "2-16 characters: lowercase letters, digits and hyphens"),
        (("business_units", 0, "use_cases", 0), "qa-", "not ending with a hyphen"),
        (("organization", "prefix"), "ex-co", "2-10 characters: lowercase letters and digits"),
    ],
)
def test_names_are_explained_in_words(
    raw: dict[str, Any], path: tuple[Any, ...], value: str, words: str
) -> None:
    target: Any = raw
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    (problem,) = problems_of(raw)
    assert words in problem and "^[" not in problem


def test_mistyped_choice_gets_a_suggestion(raw: dict[str, Any]) -> None:
    raw["business_units"][0]["serving"]["stages"] = ["preprod", "prd"]
    (problem,) = problems_of(raw)
    assert problem.startswith("business_units[0].serving.stages[1]: ")
    assert "(did you mean 'prod'?)" in problem


def test_application_use_case_must_be_one_of_the_business_units(raw: dict[str, Any]) -> None:
    raw["business_units"][0]["application"] = {"use_case": "product-q"}
    (problem,) = problems_of(raw)
    assert problem.startswith("business_units[0].application.use_case: 'product-q' is not one of")
    assert "(did you mean 'product-qa'?)" in problem


def test_name_length_rules_use_the_names_the_stacks_build(raw: dict[str, Any]) -> None:
    from common.lake_layout import Zone
    from stacks.blocks.evaluation_gate import gate_caller_role_name
    from stacks.blocks.lake_access import lake_bucket_name
    from stacks.settings import Stage
    from stacks.tooling_stack import artifact_bucket_name

    config = parse_config(raw)
    rules = {rule.names: rule for rule in NAME_LIMITS}
    lake = next(r for r in rules.values() if r.names is validation._lake_buckets)
    assert {name for _, name in lake.names(config)} == {lake_bucket_name(config, z) for z in Zone}
    artifact = next(r for r in rules.values() if r.names is validation._artifact_bucket)
    assert [name for _, name in artifact.names(config)] == [artifact_bucket_name(config)]
    callers = next(r for r in rules.values() if r.names is validation._gate_callers)
    assert {name for _, name in callers.names(config)} == {
        gate_caller_role_name(config.environment(bu, stage))
        for bu in config.business_units
        for stage in Stage
    }


def test_a_name_over_its_limit_is_one_line_naming_the_field(
    raw: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        validation, "NAME_LIMITS", (NameLimit("IAM role name", 20, validation._per_environment("-x")),)
    )
    assert problems_of(raw) == [
        "business_units[0].name: makes the IAM role name exco-retail-preprod-x (21 characters; the limit is "
        "20); shorten organization.prefix or this name",
        "business_units[1].name: makes the IAM role name exco-finance-preprod-x (22 characters; the limit is "
        "20); shorten organization.prefix or this name",
    ]


# ---- random broken configs: exit code 2, no traceback, every line names a field --------------------

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**13), max_value=10**13),
    st.text(max_size=20),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(min_size=1, max_size=8), st.integers(), max_size=2),
)


def paths_of(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths_of(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths_of(value, (*prefix, index))
    return found


PATHS = paths_of(DEFAULT_RAW)


@st.composite
def broken_configs(draw: st.DrawFn) -> dict[str, Any]:
    raw = copy.deepcopy(DEFAULT_RAW)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(PATHS))
        parent: Any = raw
        try:
            for part in path[:-1]:
                parent = parent[part]
            action = draw(st.sampled_from(["replace", "delete", "unknown-key"]))
            if action == "replace":
                parent[path[-1]] = draw(JUNK)
            elif action == "delete" and isinstance(parent, dict):
                del parent[path[-1]]
            elif isinstance(parent, dict):
                parent[draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12))] = 1
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced this path's parent
    return raw


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=broken_configs())
def test_random_broken_configs_exit_2_with_one_field_per_line(
    raw: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(raw))
    capsys.readouterr()
    try:
        status = check_config.main([str(path)])
    except SystemExit as exit_:
        status = exit_.code  # type: ignore[assignment]
    _out, err = capsys.readouterr()
    if status == 0:  # the mutation happened to be valid (e.g. a key replaced by an allowed value)
        parse_config(raw)
        return
    assert status == 2
    assert "Traceback" not in err
    head, *lines = err.rstrip("\n").split("\n")
    assert head.startswith("invalid platform config ")
    assert lines
    for line in lines:
        assert PROBLEM_LINE.match(line), line


def test_app_exits_2_before_any_construct_on_a_broken_config(tmp_path: Path) -> None:
    raw = copy.deepcopy(DEFAULT_RAW)
    raw["business_units"][1]["name"] = "shared"
    raw["home_region"] = "eu-west-l"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = subprocess.run(
        [sys.executable, "app.py"],
        cwd=REPO_ROOT,
        env={
            "CDK_CONTEXT_JSON": f'{{"config": "{path}"}}',
            "PATH": "/usr/bin:/bin",
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
            "CDK_OUTDIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    head, *lines = result.stderr.rstrip("\n").split("\n")
    assert head.startswith("invalid platform config ")
    assert lines == [
        "  - home_region: unknown region 'eu-west-l' (did you mean 'eu-west-1'?); write an AWS region code such "
        "as eu-west-1 (the accepted ones: stacks/settings/regions.py)"
    ]
