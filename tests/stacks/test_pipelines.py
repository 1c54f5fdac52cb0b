"""CI/CD: three pipelines per business unit on the right branches, approval before prod, checks after preprod."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Stack
from aws_cdk import Stage as CdkStage
from aws_cdk import aws_s3 as s3

from stacks.app_factory import create_app
from stacks.blocks.nag import add_nag_checks
from stacks.pipeline_stack import PipelineStack
from stacks.settings import PlatformConfig, Stage
from tests.conftest import SynthesizedPlatform
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


@pytest.mark.parametrize("bu", ["retail", "finance"])
def test_each_business_unit_gets_three_pipelines_on_the_configured_branches(
    default_platform: SynthesizedPlatform, bu: str
) -> None:
    branches = {
        stage: source_branch(default_platform.template(f"exco-{bu}-{stage}-pipeline"))
        for stage in ("dev", "preprod", "prod")
    }
    assert branches == {"dev": "dev", "preprod": "test", "prod": "main"}
    assert {k[0] for k in default_platform.platform.pipelines if isinstance(k, tuple)} == {
        "retail",
        "finance",
    }


def test_shared_pipeline_deploys_tooling_and_data_lake_off_main(
    default_platform: SynthesizedPlatform,
) -> None:
    template = default_platform.template("exco-shared-pipeline")
    assert source_branch(template) == "main"
    names = {a["Name"] for a in deploy_stage(template, "shared")}
    assert {"exco-tooling.Deploy", "exco-data-lake.Deploy", "ApproveDeployment"} <= names


def test_pipelines_mutate_themselves_and_use_cross_account_keys(
    default_platform: SynthesizedPlatform,
) -> None:
    template = default_platform.template("exco-retail-dev-pipeline")
    assert "UpdatePipeline" in [s["Name"] for s in pipeline_stages(template)]
    (pipeline,) = resources_of_type(template, "AWS::CodePipeline::Pipeline").values()
    assert pipeline["Properties"]["Name"] == "exco-retail-dev"
    assert pipeline["Properties"]["ArtifactStore"]["EncryptionKey"]["Type"] == "KMS"
    (key,) = resources_of_type(template, "AWS::KMS::Key").values()
    assert key["Properties"]["EnableKeyRotation"] is True
    deploy_roles = {
        flatten(a["RoleArn"])
        for a in deploy_stage(template, "retail-dev")
        if a["ActionTypeId"]["Category"] == "Deploy"
    }
    assert deploy_roles == {"arn:aws:iam::333333333331:role/cdk-hnb659fds-deploy-role-333333333331-eu-west-1"}


@pytest.mark.parametrize("bu", ["retail", "finance"])
def test_prod_waits_for_a_manual_approval_before_any_deployment(
    default_platform: SynthesizedPlatform, bu: str
) -> None:
    actions = deploy_stage(default_platform.template(f"exco-{bu}-prod-pipeline"), f"{bu}-prod")
    approvals = [a for a in actions if a["ActionTypeId"]["Category"] == "Approval"]
    deployments = [a for a in actions if a["ActionTypeId"]["Category"] == "Deploy"]
    assert len(approvals) == 1 and deployments
    assert approvals[0]["RunOrder"] < min(a["RunOrder"] for a in deployments)


@pytest.mark.parametrize("stage", ["dev", "preprod"])
def test_dev_and_preprod_deploy_without_approval(default_platform: SynthesizedPlatform, stage: str) -> None:
    actions = deploy_stage(default_platform.template(f"exco-retail-{stage}-pipeline"), f"retail-{stage}")
    assert [a for a in actions if a["ActionTypeId"]["Category"] == "Approval"] == []


def test_preprod_runs_unit_tests_then_the_evaluation_gate_after_deployment(
    default_platform: SynthesizedPlatform,
) -> None:
    template = default_platform.template("exco-finance-preprod-pipeline")
    actions = {a["Name"]: a for a in deploy_stage(template, "finance-preprod")}
    last_deploy = max(a["RunOrder"] for a in actions.values() if a["ActionTypeId"]["Category"] == "Deploy")
    assert last_deploy < actions["UnitTests"]["RunOrder"] < actions["EvaluationGate"]["RunOrder"]
    projects = resources_of_type(template, "AWS::CodeBuild::Project")
    gate = next(
        p for p in projects.values() if "evaluation_gate.py" in p["Properties"]["Source"]["BuildSpec"]
    )
    env = {v["Name"]: v["Value"] for v in gate["Properties"]["Environment"]["EnvironmentVariables"]}
    assert env["GATE_ROLE_ARN"] == "arn:aws:iam::444444444442:role/exco-finance-preprod-evaluation-gate"
    assert env["STATE_MACHINE_ARN"] == (
        "arn:aws:states:eu-west-1:444444444442:stateMachine:exco-finance-preprod-evaluation"
    )
    assert env["USE_CASES"] == "report-summarization"
    assert any("make test" in p["Properties"]["Source"]["BuildSpec"] for p in projects.values())
    caller = next(
        r
        for r in resources_of_type(template, "AWS::IAM::Role").values()
        if r["Properties"].get("RoleName") == "exco-finance-preprod-eval-gate-caller"
    )
    assert caller["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "codebuild.amazonaws.com"
    }


def test_sandbox_pipelines_use_codecommit(sandbox_platform: SynthesizedPlatform) -> None:
    stages = pipeline_stages(sandbox_platform.template("exsb-retail-prod-pipeline"))
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
        deploys=stage,
        environment=default_config.environment(default_config.business_units[0], Stage.DEV),
    )
    add_nag_checks(app)
    with pytest.raises(Exception, match="ValidationFailed"):
        app.synth()
