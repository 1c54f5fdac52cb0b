"""CI/CD: one pipeline per branch deploying every business unit in bounded waves, so a push synthesizes once;
the shared stage first on main, approval before it and before each prod wave, unit tests before and the
evaluation gate after preprod."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import CfnWaitConditionHandle, Stack
from aws_cdk import Stage as CdkStage
from aws_cdk import aws_s3 as s3
from hypothesis import given
from hypothesis import strategies as st

from stacks.app_factory import create_app
from stacks.blocks.nag import add_nag_checks
from stacks.pipeline_stack import MAX_ACTIONS_PER_STAGE, SHARED_WAVE, Deployment, PipelineStack, plan_waves
from stacks.settings import PlatformConfig, Stage
from tests.conftest import REPO_ROOT, SynthesizedPlatform
from tests.stacks.policy_helpers import flatten, resources_of_type


def pipeline_stages(template: dict[str, Any]) -> list[dict[str, Any]]:
    (pipeline,) = resources_of_type(template, "AWS::CodePipeline::Pipeline").values()
    stages: list[dict[str, Any]] = pipeline["Properties"]["Stages"]
    return stages


def source_branch(template: dict[str, Any]) -> str:
    (action,) = pipeline_stages(template)[0]["Actions"]
    return str(action["Configuration"]["BranchName"])


def deploy_stage(template: dict[str, Any], name: str) -> list[dict[str, Any]]:
    stage = next(s for s in pipeline_stages(template) if s["Name"] == name)
    actions: list[dict[str, Any]] = stage["Actions"]
    return actions


def deploy_actions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Stack name -> its Deploy action, over every wave of the pipeline."""
    return {
        a["Configuration"]["StackName"]: a
        for stage in pipeline_stages(template)
        for a in stage["Actions"]
        if a["ActionTypeId"]["Category"] == "Deploy"
        and a["ActionTypeId"]["Provider"] == "CloudFormation"
        and a["Name"].endswith(".Deploy")
    }


PIPELINE_PREAMBLE = ("Source", "Build", "UpdatePipeline", "Assets")


def wave_stages(template: dict[str, Any], stage: str) -> list[dict[str, Any]]:
    """The CodePipeline stages of the business units' waves: after the preamble and, on main, after the shared
    wave (CDK Pipelines names a wave holding a single environment after that environment's stage)."""
    return [s for s in pipeline_stages(template) if s["Name"] not in (*PIPELINE_PREAMBLE, SHARED_WAVE)]


def test_one_pipeline_per_branch_on_the_configured_branches(default_platform: SynthesizedPlatform) -> None:
    branches = {
        stage: source_branch(default_platform.template(f"exco-{stage}-pipeline"))
        for stage in ("dev", "preprod", "prod")
    }
    assert branches == {"dev": "dev", "preprod": "test", "prod": "main"}
    assert set(default_platform.platform.pipelines) == {"dev", "preprod", "prod"}
    assert [s.stack_name for s in default_platform.stacks() if s.stack_name.endswith("-pipeline")] == [
        "exco-dev-pipeline",
        "exco-preprod-pipeline",
        "exco-prod-pipeline",
    ]


def load_bench() -> Any:
    """bench/platform_synth_bench.py is a script, not a package: load it by path."""
    spec = importlib.util.spec_from_file_location(
        "platform_synth_bench", REPO_ROOT / "bench" / "platform_synth_bench.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs: its dataclasses look their module up in sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("platform_fixture", ["default_platform", "sandbox_platform"])
def test_a_push_to_any_branch_starts_exactly_one_synth(platform_fixture: str, request: Any) -> None:
    """What the bench reports as "CI synths per push", counted from the synthesized pipelines."""
    platform: SynthesizedPlatform = request.getfixturevalue(platform_fixture)
    assert load_bench().synths_per_push(platform.outdir) == {"dev": 1, "test": 1, "main": 1}


@pytest.mark.parametrize("stage", ["dev", "preprod", "prod"])
def test_each_stage_pipeline_deploys_every_business_units_stacks_of_its_stage_in_its_account(
    default_platform: SynthesizedPlatform, stage: str
) -> None:
    every = deploy_actions(default_platform.template(f"exco-{stage}-pipeline"))
    deployed = {n: a for n, a in every.items() if n.startswith(("exco-retail-", "exco-finance-"))}
    # main's pipeline also deploys the shared stage (its first wave); the others deploy business units only
    shared = {"exco-tooling", "exco-data-lake", "exco-prompt-catalog"} if stage == "prod" else set()
    assert set(every) - set(deployed) == shared
    expected = {
        s.stack_name: s.environment.account
        for s in default_platform.stacks()
        if s.stack_name.startswith(("exco-retail-", "exco-finance-")) and f"-{stage}-" in s.stack_name
    }
    assert set(deployed) == set(expected)
    for stack_name, action in deployed.items():
        account = expected[stack_name]
        assert flatten(action["RoleArn"]) == (
            f"arn:aws:iam::{account}:role/cdk-hnb659fds-deploy-role-{account}-eu-west-1"
        ), stack_name


def test_business_units_of_a_wave_deploy_in_parallel(default_platform: SynthesizedPlatform) -> None:
    """Same stack of two business units -> same run order in one CodePipeline stage (a wave)."""
    (wave,) = wave_stages(default_platform.template("exco-dev-pipeline"), "dev")
    orders = {a["Name"]: a["RunOrder"] for a in wave["Actions"]}
    for stack in ("baseline", "guardrail", "application", "monitoring"):
        assert (
            orders[f"retail-dev.exco-retail-dev-{stack}.Deploy"]
            == (orders[f"finance-dev.exco-finance-dev-{stack}.Deploy"])
        )
    assert default_platform.platform.pipelines["dev"].waves == {"dev-wave-1": ["retail", "finance"]}


@pytest.mark.parametrize(
    ("counts", "max_units", "max_actions", "expected"),
    [
        ([16, 16, 16, 16], 3, 48, [[0, 1, 2], [3]]),
        ([16, 16, 16, 16], 10, 40, [[0, 1], [2, 3]]),
        ([5], 1, 48, [[0]]),
        ([], 3, 48, []),
    ],
)
def test_plan_waves_bounds_units_and_actions(
    counts: list[int], max_units: int, max_actions: int, expected: list[list[int]]
) -> None:
    assert plan_waves(counts, max_units=max_units, max_actions=max_actions) == expected


@given(
    counts=st.lists(st.integers(min_value=1, max_value=48), max_size=40),
    extra=st.integers(min_value=1, max_value=48),
    max_units=st.integers(min_value=1, max_value=10),
)
def test_plan_waves_respects_bounds_and_appending_moves_nobody(
    counts: list[int], extra: int, max_units: int
) -> None:
    waves = plan_waves(counts, max_units=max_units, max_actions=48)
    assert [i for wave in waves for i in wave] == list(range(len(counts)))
    assert all(0 < len(w) <= max_units and sum(counts[i] for i in w) <= 48 for w in waves)
    after = plan_waves([*counts, extra], max_units=max_units, max_actions=48)
    # onboarding: the earlier waves keep their members; the new unit joins the last wave or a new one
    assert after[: max(len(waves) - 1, 0)] == waves[:-1]
    assert [i for wave in after for i in wave][-1] == len(counts)


def test_plan_waves_refuses_a_deployment_larger_than_a_stage() -> None:
    with pytest.raises(ValueError, match="needs 60 pipeline actions"):
        plan_waves([60], max_units=3, max_actions=48)


def test_many_business_units_are_split_into_bounded_waves(
    default_config: PlatformConfig, tmp_path: Path
) -> None:
    """Seven business units at three per wave: waves of 3, 3, 1 in config order, every wave within the quota."""
    app = create_app(outdir=str(tmp_path))
    stages = []
    for index in range(7):
        stage = CdkStage(app, f"bu{index}-prod")
        for name in ("A", "B", "C"):
            stack = Stack(stage, name, env={"account": f"77777777777{index}", "region": "eu-west-1"})
            CfnWaitConditionHandle(stack, "Placeholder")
        environment = default_config.environment(default_config.business_units[0], Stage.PROD)
        # one business unit per deployment, as in a real config (each gets its own prompt release step)
        unit = environment.business_unit.model_copy(update={"name": f"bu{index}"})
        stages.append(Deployment(stage, dataclasses.replace(environment, business_unit=unit)))
    pipeline = PipelineStack(
        app, "p", config=default_config, name="prod", branch="main", deployments=stages, stage=Stage.PROD
    )
    assert [len(members) for members in pipeline.waves.values()] == [3, 3, 1]
    template = app.synth().get_stack_by_name(pipeline.stack_name).template
    waves = wave_stages(template, "prod")
    assert len(waves) == 3
    assert all(len(w["Actions"]) <= MAX_ACTIONS_PER_STAGE for w in waves)
    # one approval per wave, before any deployment of that wave
    for wave in waves:
        approvals = [a for a in wave["Actions"] if a["ActionTypeId"]["Category"] == "Approval"]
        deploys = [a for a in wave["Actions"] if a["ActionTypeId"]["Category"] == "Deploy"]
        assert len(approvals) == 1 and approvals[0]["RunOrder"] < min(a["RunOrder"] for a in deploys)


def test_main_deploys_the_shared_stage_first_behind_its_own_approval(
    default_platform: SynthesizedPlatform,
) -> None:
    template = default_platform.template("exco-prod-pipeline")
    assert source_branch(template) == "main"
    names = [s["Name"] for s in pipeline_stages(template)]
    # the shared wave right after the preamble, before every prod wave
    assert names[: len(PIPELINE_PREAMBLE) + 1] == [*PIPELINE_PREAMBLE, SHARED_WAVE]
    assert names.index(SHARED_WAVE) < min(names.index(w["Name"]) for w in wave_stages(template, "prod"))
    actions = {a["Name"]: a for a in deploy_stage(template, SHARED_WAVE)}
    deployed = {n for n, a in actions.items() if a["ActionTypeId"]["Category"] == "Deploy"}
    assert {n.removesuffix(".Deploy") for n in deployed if n.endswith(".Deploy")} == {
        "exco-tooling",
        "exco-data-lake",
        "exco-prompt-catalog",
    }
    approval = actions["ApproveDeployment"]
    assert approval["ActionTypeId"]["Category"] == "Approval"
    assert approval["RunOrder"] < min(actions[n]["RunOrder"] for n in deployed)
    assert "tooling, data lake, prompt catalog" in approval["Configuration"]["CustomData"]
    # no business unit deploys in the shared wave, and nothing of the shared stage deploys in a prod wave
    assert not any(n.startswith(("retail-", "finance-")) for n in actions)
    for wave in wave_stages(template, "prod"):
        assert not any(a["Name"].startswith("exco-") for a in wave["Actions"])
    assert default_platform.platform.pipelines["prod"].waves == {
        SHARED_WAVE: ["shared"],
        "prod-wave-1": ["retail", "finance"],
    }


def test_pipelines_mutate_themselves_and_use_cross_account_keys(
    default_platform: SynthesizedPlatform,
) -> None:
    template = default_platform.template("exco-dev-pipeline")
    assert "UpdatePipeline" in [s["Name"] for s in pipeline_stages(template)]
    (pipeline,) = resources_of_type(template, "AWS::CodePipeline::Pipeline").values()
    assert pipeline["Properties"]["Name"] == "exco-dev"
    assert pipeline["Properties"]["ArtifactStore"]["EncryptionKey"]["Type"] == "KMS"
    (key,) = resources_of_type(template, "AWS::KMS::Key").values()
    assert key["Properties"]["EnableKeyRotation"] is True


def test_prod_waits_for_a_manual_approval_per_wave_before_any_deployment(
    default_platform: SynthesizedPlatform,
) -> None:
    (wave,) = wave_stages(default_platform.template("exco-prod-pipeline"), "prod")
    approvals = [a for a in wave["Actions"] if a["ActionTypeId"]["Category"] == "Approval"]
    deployments = [a for a in wave["Actions"] if a["ActionTypeId"]["Category"] == "Deploy"]
    assert len(approvals) == 1 and deployments
    assert approvals[0]["RunOrder"] < min(a["RunOrder"] for a in deployments)
    assert "retail, finance" in approvals[0]["Configuration"]["CustomData"]


@pytest.mark.parametrize("stage", ["dev", "preprod"])
def test_dev_and_preprod_deploy_without_approval(default_platform: SynthesizedPlatform, stage: str) -> None:
    for wave in wave_stages(default_platform.template(f"exco-{stage}-pipeline"), stage):
        assert [a for a in wave["Actions"] if a["ActionTypeId"]["Category"] == "Approval"] == []


def test_preprod_runs_unit_tests_first_and_each_business_units_gate_after_its_deployment(
    default_platform: SynthesizedPlatform,
) -> None:
    template = default_platform.template("exco-preprod-pipeline")
    (wave,) = wave_stages(template, "preprod")
    actions = {a["Name"]: a for a in wave["Actions"]}
    deploys = [a for a in actions.values() if a["ActionTypeId"]["Category"] == "Deploy"]
    assert actions["UnitTests"]["RunOrder"] < min(a["RunOrder"] for a in deploys)
    for bu in ("retail", "finance"):
        own_last = max(a["RunOrder"] for n, a in actions.items() if n.startswith(f"{bu}-preprod.exco-"))
        assert actions[f"{bu}-preprod.EvaluationGate-{bu}"]["RunOrder"] > own_last
    projects = resources_of_type(template, "AWS::CodeBuild::Project")
    gates = [p for p in projects.values() if "evaluation_gate.py" in p["Properties"]["Source"]["BuildSpec"]]
    assert len(gates) == 2
    env = {
        v["Name"]: v["Value"]
        for p in gates
        for v in p["Properties"]["Environment"]["EnvironmentVariables"]
        if any(
            e["Value"] == "report-summarization"
            for e in p["Properties"]["Environment"]["EnvironmentVariables"]
        )
    }
    assert env["GATE_ROLE_ARN"] == "arn:aws:iam::444444444442:role/exco-finance-preprod-evaluation-gate"
    assert env["STATE_MACHINE_ARN"] == (
        "arn:aws:states:eu-west-1:444444444442:stateMachine:exco-finance-preprod-evaluation"
    )
    assert any("make test" in p["Properties"]["Source"]["BuildSpec"] for p in projects.values())
    callers = {
        r["Properties"].get("RoleName"): r
        for r in resources_of_type(template, "AWS::IAM::Role").values()
        if str(r["Properties"].get("RoleName", "")).endswith("-gate-caller")
    }
    assert set(callers) == {
        "exco-pipeline-retail-preprod-gate-caller",
        "exco-pipeline-finance-preprod-gate-caller",
    }
    caller = callers["exco-pipeline-finance-preprod-gate-caller"]
    assert caller["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "codebuild.amazonaws.com"
    }


def test_sandbox_pipelines_use_codecommit(sandbox_platform: SynthesizedPlatform) -> None:
    stages = pipeline_stages(sandbox_platform.template("exsb-prod-pipeline"))
    (action,) = stages[0]["Actions"]
    assert action["ActionTypeId"]["Provider"] == "CodeCommit"
    assert action["Configuration"]["RepositoryName"] == "llmops-platform"
    assert action["Configuration"]["BranchName"] == "main"


def test_stages_deployed_by_pipelines_are_still_checked_by_cdk_nag(
    default_config: PlatformConfig, tmp_path: Path
) -> None:
    """Pipelines synthesize their stage early; an insecure resource there must still fail the app's synth."""
    app = create_app(outdir=str(tmp_path))
    stage = CdkStage(app, "insecure")
    s3.Bucket(Stack(stage, "Plain", env={"account": "333333333331", "region": "eu-west-1"}), "PlainBucket")
    PipelineStack(
        app,
        "p",
        config=default_config,
        name="insecure",
        branch="dev",
        deployments=[
            Deployment(stage, default_config.environment(default_config.business_units[0], Stage.DEV))
        ],
        stage=Stage.DEV,
    )
    add_nag_checks(app)
    with pytest.raises(Exception, match="ValidationFailed"):
        app.synth()
