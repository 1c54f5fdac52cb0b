"""Teardown planning: which stacks, in what order, and refusal for stages whose data must stay."""

from __future__ import annotations

import json
import shutil
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


def test_a_sandbox_environment_owns_no_vpc_so_its_teardown_leaves_the_shared_one(
    sandbox_platform: SynthesizedPlatform,
) -> None:
    plan = plan_destroy(sandbox_platform.outdir, business_unit="retail", stage="dev")
    assert plan.stack_names[-1] == "exsb-retail-dev-baseline"
    assert vpc_owner(plan) is None
    assert "exsb-network" not in plan.stack_names


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


# ---- the command: checks first, one synth into its own directory, every destroy on that assembly ------


class FakeClient:
    def __init__(self, account: str | None) -> None:
        self.account = account

    def get_caller_identity(self) -> dict[str, str]:
        if self.account is None:
            from botocore.exceptions import NoCredentialsError

            raise NoCredentialsError()
        return {"Account": self.account}

    def describe_vpcs(self, **_: object) -> dict[str, list[object]]:
        return {"Vpcs": []}

    def get_paginator(self, _: str) -> FakeClient:
        return self

    def paginate(self, **_: object) -> list[dict[str, list[object]]]:
        return [{"logGroups": []}]


class FakeSession:
    def __init__(self, account: str | None) -> None:
        self.account = account

    def client(self, _: str) -> FakeClient:
        return FakeClient(self.account)


def no_aws(_: str) -> FakeSession:
    raise AssertionError("no AWS call expected before this check")


def no_run(command: list[str]) -> int:
    raise AssertionError(f"nothing may run before the checks pass: {command}")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--bu", "retial", "--stage", "dev", "--dry-run"],
            "--bu: no business unit 'retial' in the config (did you mean 'retail'?)",
        ),
        (["--bu", "retail", "--stage", "prod"], "(make: DESTROY_FLAGS=--force-retained)"),
    ],
)
def test_business_unit_and_stage_are_checked_before_credentials_or_synth(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args, run=no_run, session_factory=no_aws) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_forgotten_business_unit_is_a_usage_error_at_once() -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["--stage", "dev"], run=no_run, session_factory=no_aws)
    assert excinfo.value.code == 2


@pytest.mark.parametrize(
    ("account", "message"),
    [(None, "no usable AWS credentials"), ("999999999999", "belong to account 999999999999")],
)
def test_credentials_are_checked_before_the_synth(
    account: str | None, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["--bu", "retail", "--stage", "dev"], run=no_run, session_factory=lambda _: FakeSession(account))
        == 2
    )
    assert message in capsys.readouterr().err


def test_one_synth_into_its_own_directory_and_every_destroy_uses_that_assembly(
    default_platform: SynthesizedPlatform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cdk.out").mkdir()
    (tmp_path / "cdk.out" / "mine.txt").write_text("the user's assembly")
    commands: list[list[str]] = []

    def run(command: list[str]) -> int:
        commands.append(command)
        if command[3] == "synth":
            shutil.copytree(default_platform.outdir, command[command.index("-o") + 1])
        return 0

    status = main(
        ["--bu", "retail", "--stage", "dev"], run=run, session_factory=lambda _: FakeSession("333333333331")
    )
    assert status == 0
    synths = [c for c in commands if c[3] == "synth"]
    destroys = [c for c in commands if c[3] == "destroy"]
    assert len(synths) == 1
    outdir = synths[0][synths[0].index("-o") + 1]
    assert Path(outdir).name == "cdk.out" and Path(outdir).parent != tmp_path
    assert len(destroys) == len(
        [s for s in default_platform.stacks() if s.stack_name.startswith("exco-retail-dev-")]
    )
    assert all(c[c.index("--app") + 1] == outdir for c in destroys)
    assert (tmp_path / "cdk.out" / "mine.txt").read_text() == "the user's assembly"
    assert not Path(outdir).exists()  # the temporary assembly is removed afterwards
