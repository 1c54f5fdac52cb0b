"""Teardown planning: which stacks, in what order, and refusal for stages whose data must stay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import SynthesizedPlatform
from tools.destroy_environment import (
    RefusedError,
    dev_buckets_without_auto_delete,
    main,
    plan_destroy,
    vpc_owner,
)


def test_dev_plan_holds_every_stack_of_the_stage_dependents_first(
    default_platform: SynthesizedPlatform,
) -> None:
    plan = plan_destroy(default_platform.outdir, business_unit="retail", stage="dev")
    expected = {
        s.stack_name
        for s in default_platform.stacks()
        if s.stack_name.startswith("exco-retail-dev-") and not s.stack_name.endswith("-pipeline")
    }
    assert set(plan.stack_names) == expected and len(plan.stack_names) == len(expected)
    position = {name: index for index, name in enumerate(plan.stack_names)}
    for stack in plan.stacks:
        for dependency in stack.dependencies:
            (needed,) = [s for s in plan.stacks if s.artifact_id == dependency]
            assert position[stack.stack_name] < position[needed.stack_name]
    assert plan.stack_names[-1] == "exco-retail-dev-baseline"
    assert position["exco-retail-dev-monitoring"] < position["exco-retail-dev-guardrail"]
    owner = vpc_owner(plan)
    assert owner is not None and owner.stack_name == "exco-retail-dev-baseline"


def test_every_dev_bucket_empties_itself_before_deletion(default_platform: SynthesizedPlatform) -> None:
    for bu in ("retail", "finance"):
        plan = plan_destroy(default_platform.outdir, business_unit=bu, stage="dev")
        assert dev_buckets_without_auto_delete(plan) == []


def test_prod_buckets_are_not_emptied_which_the_check_reports(default_platform: SynthesizedPlatform) -> None:
    plan = plan_destroy(default_platform.outdir, business_unit="retail", stage="prod", force_retained=True)
    assert dev_buckets_without_auto_delete(plan)  # retained: nothing auto-empties prod buckets


@pytest.mark.parametrize("stage", ["preprod", "prod"])
def test_refuses_preprod_and_prod_without_the_override(
    default_platform: SynthesizedPlatform, stage: str
) -> None:
    with pytest.raises(RefusedError, match="--force-retained"):
        plan_destroy(default_platform.outdir, business_unit="retail", stage=stage)
    assert main(["--bu", "retail", "--stage", stage, "--assembly", str(default_platform.outdir)]) == 2


def test_unknown_business_unit_names_the_synthesized_stages(default_platform: SynthesizedPlatform) -> None:
    with pytest.raises(RefusedError, match="retail-dev"):
        plan_destroy(default_platform.outdir, business_unit="hr", stage="dev")


def test_dry_run_prints_the_order_and_touches_nothing(
    default_platform: SynthesizedPlatform, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--bu", "finance", "--stage", "dev", "--assembly", str(default_platform.outdir), "--dry-run"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("destroy finance-dev, in this order: ") and out.rstrip().endswith(
        "exco-finance-dev-baseline"
    )


def test_a_dependency_cycle_is_refused(tmp_path: Path) -> None:
    stage = tmp_path / "assembly-x-dev"
    stage.mkdir()

    def stack(name: str, needs: str) -> dict[str, object]:
        return {
            "type": "aws:cloudformation:stack",
            "environment": "aws://111111111111/eu-west-1",
            "properties": {"templateFile": f"{name}.json", "stackName": name},
            "dependencies": [needs],
        }

    manifest = {"artifacts": {"a": stack("a", "b"), "b": stack("b", "a")}}
    (stage / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(RefusedError, match="cycle"):
        plan_destroy(tmp_path, business_unit="x", stage="dev")
