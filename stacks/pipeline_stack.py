"""CDK Pipelines in the tooling account: one per branch, so a push synthesizes the app once.

Branch -> stage (config `source.branches`): dev -> every business unit's dev environment, test -> every
preprod environment (unit tests first, the evaluation gate after each one), main -> the shared stage
(tooling, data lake, prompt catalog) as its first wave, then every prod environment; each of those waves waits
for its own manual approval. Each pipeline synthesizes the app once per push with `make synth` and the same
config file, updates itself first (self-mutation: a business unit added to the config joins the pipelines
this way, with no manual deploy), then deploys its environments in waves. A wave is one CodePipeline stage
whose business units deploy in parallel; `plan_waves` bounds it by `tooling.pipelines.max_parallel_deployments`
and by CodePipeline's action quota per stage.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import Duration, pipelines
from aws_cdk import Stack as CdkStack
from aws_cdk import Stage as CdkStage
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codecommit as codecommit
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.blocks.encryption import PlatformKey
from stacks.blocks.evaluation_gate import gate_caller_role_name, gate_role_name, state_machine_name
from stacks.blocks.nag import acknowledge, acknowledge_cdk_managed_providers
from stacks.blocks.platform_stack import PlatformStack
from stacks.blocks.prompt_release_step import has_prompt_release, prompt_release_step
from stacks.blocks.retention import retention_for
from stacks.blocks.storage import AccessLogBucket, SecureBucket
from stacks.settings import EnvironmentSpec, PlatformConfig, Stage
from stacks.settings.loader import DEFAULT_CONFIG, REPO_ROOT
from stacks.settings.platform import SourceProvider

# The CodeBuild image's runtimes: the Makefile needs Python >= 3.11 and a Node.js LTS that jsii supports
# (22; Node 20 is past its end of life for jsii). `make` then puts package.json's pinned Node first on PATH.
BUILD_IMAGE = codebuild.LinuxBuildImage.STANDARD_7_0
RUNTIME_VERSIONS = {"python": "3.12", "nodejs": "22"}
GATE_SCRIPT = "tools/evaluation_gate.py"
# Action wildcards of the L2 grant methods CDK Pipelines uses on its artifact bucket and key.
PIPELINE_GRANT_ACTIONS = (
    "s3:Abort*",
    "s3:DeleteObject*",
    "s3:GetBucket*",
    "s3:GetObject*",
    "s3:List*",
    "kms:GenerateDataKey*",
    "kms:ReEncrypt*",
)


def cdk_cli_version() -> str:
    """The CLI version package.json pins, so pipelines deploy with the same CLI as `make synth`."""
    package = json.loads((REPO_ROOT / "package.json").read_text(encoding="utf-8"))
    return str(package["devDependencies"]["aws-cdk"])


def pipeline_config_path(scope: Construct) -> str:
    """The config file this app was synthesized from (`-c config=...`), relative to the repository."""
    given = scope.node.try_get_context("config")
    path = Path(given) if given else DEFAULT_CONFIG
    if path.is_absolute():
        try:
            path = path.relative_to(REPO_ROOT)
        except ValueError:
            raise ValueError(
                f"config: pipelines synthesize from the repository, so {given} must be inside {REPO_ROOT}"
            ) from None
    return path.as_posix()


def evaluation_gate_role_arn(environment: EnvironmentSpec) -> str:
    """This role in the preprod account starts the gate run (created by the evaluation stack)."""
    return f"arn:aws:iam::{environment.account}:role/{gate_role_name(environment)}"


def evaluation_state_machine_arn(environment: EnvironmentSpec) -> str:
    return (
        f"arn:aws:states:{environment.region}:{environment.account}:stateMachine:"
        f"{state_machine_name(environment)}"
    )


def join_as_sub(join: dict[str, Any]) -> dict[str, str]:
    """`Fn::Join ["", ["arn:", {"Ref": "AWS::Partition"}, ...]]` -> `Fn::Sub "arn:${AWS::Partition}..."`."""
    separator, parts = join["Fn::Join"]
    if separator != "" or not all(isinstance(p, str) or set(p) == {"Ref"} for p in parts):
        raise ValueError(f"cannot rewrite {join} as Fn::Sub")
    return {"Fn::Sub": "".join(p if isinstance(p, str) else "${" + p["Ref"] + "}" for p in parts)}


# CodePipeline quota: at most 50 actions in one pipeline stage (a wave is one stage).
MAX_ACTIONS_PER_STAGE = 50
# Actions a wave may hold besides its environments' deployments (the prod approval, preprod unit tests).
WAVE_OWN_ACTIONS = 2
# The main branch pipeline's first wave: the shared stage (tooling, data lake, prompt catalog).
SHARED_WAVE = "shared"


@dataclass(frozen=True)
class Deployment:
    """One stage the pipeline deploys; `environment` is None for the shared stage."""

    stage: CdkStage
    environment: EnvironmentSpec | None

    @property
    def label(self) -> str:
        return self.environment.business_unit.name if self.environment else self.stage.node.id


def stacks_of(stage: CdkStage) -> list[CdkStack]:
    """The stacks CDK Pipelines deploys for `stage`: stacks/stages.py builds each as a direct child of its
    Stage (one jsii call for the children, where a walk of the whole Stage returned every construct)."""
    return [c for c in stage.node.children if isinstance(c, CdkStack)]


def plan_waves(action_counts: Sequence[int], *, max_units: int, max_actions: int) -> list[list[int]]:
    """Indexes of `action_counts` grouped into waves, in order: at most `max_units` per wave and at most
    `max_actions` actions in all. Greedy and in config order, so appending a business unit never moves
    the ones before it to another wave (onboarding changes only the last wave or adds one)."""
    if max_units < 1:
        raise ValueError("max_units must be at least 1")
    waves: list[list[int]] = []
    used = 0
    for index, count in enumerate(action_counts):
        if count > max_actions:
            raise ValueError(
                f"deployment {index} needs {count} pipeline actions; one CodePipeline stage holds {max_actions}"
            )
        if not waves or len(waves[-1]) >= max_units or used + count > max_actions:
            waves.append([])
            used = 0
        waves[-1].append(index)
        used += count
    return waves


class PipelineStack(PlatformStack):
    """One pipeline: `branch` -> `deployments` (all business units of one stage), after `shared` if given.

    The main branch's pipeline takes the shared stage as its first wave: one synth per push to main, and the
    shared grants (registry groups, ECR repositories, lake grants) exist before any prod wave needs them."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PlatformConfig,
        name: str,
        branch: str,
        deployments: Sequence[Deployment],
        stage: Stage,
        shared: Deployment | None = None,
    ) -> None:
        prefix = config.organization.prefix
        super().__init__(
            scope,
            construct_id,
            stack_name=f"{prefix}-{name}-pipeline",
            account=config.tooling_account,
            region=config.home_region,
            description=f"LLMOps CI/CD: branch {branch} deploys {'shared, ' if shared else ''}{name}",
        )
        self.config = config
        self.branch = branch
        self.stage = stage
        self.retention = retention_for(None)
        key = PlatformKey(
            self, "ArtifactKey", alias=f"alias/{prefix}/pipelines/{name}", retention=self.retention
        ).key
        access_logs = AccessLogBucket(self, "AccessLogs", retention=self.retention, expire_after_days=365)
        expiry = Duration.days(config.tooling.pipelines.artifact_expiry_days)
        self.artifact_bucket = SecureBucket(
            self,
            "Artifacts",
            key=key,
            access_logs=access_logs,
            retention=self.retention,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-pipeline-artifacts", expiration=expiry, noncurrent_version_expiration=expiry
                )
            ],
        )
        self.source = self._source(branch)
        self.gate_callers: list[iam.Role] = []
        self.release_callers: list[iam.Role] = []
        self.pipeline = pipelines.CodePipeline(
            self,
            "Pipeline",
            pipeline_name=f"{prefix}-{name}",
            synth=pipelines.ShellStep(
                "Synth",
                input=self.source,
                commands=[f"make synth CONFIG={pipeline_config_path(self)}"],
                primary_output_directory="cdk.out",
            ),
            artifact_bucket=self.artifact_bucket,
            cross_account_keys=True,
            enable_key_rotation=True,
            self_mutation=True,
            cli_version=cdk_cli_version(),
            publish_assets_in_parallel=False,
            code_build_defaults=pipelines.CodeBuildOptions(
                build_environment=codebuild.BuildEnvironment(
                    build_image=BUILD_IMAGE, compute_type=codebuild.ComputeType.SMALL
                ),
                partial_build_spec=codebuild.BuildSpec.from_object(
                    {"phases": {"install": {"runtime-versions": RUNTIME_VERSIONS}}}
                ),
            ),
        )
        # name of each wave -> labels of the deployments in it (tests and docs read the plan from here)
        self.waves: dict[str, list[str]] = {}
        if shared is not None:
            self._add_wave(SHARED_WAVE, [shared], first=False)
        counts = [
            2 * len(stacks_of(d.stage))
            + self._post_action_count(d)
            + has_prompt_release(stage, d.environment)
            for d in deployments
        ]
        plan = plan_waves(
            counts,
            max_units=config.tooling.pipelines.max_parallel_deployments,
            max_actions=MAX_ACTIONS_PER_STAGE - WAVE_OWN_ACTIONS,
        )
        for number, indexes in enumerate(plan, start=1):
            self._add_wave(
                f"{stage.value}-wave-{number}", [deployments[i] for i in indexes], first=number == 1
            )
        self.pipeline.build_pipeline()
        self._role_arns_as_sub()
        self._acknowledge_pipeline_findings()
        acknowledge_cdk_managed_providers(self)

    def _add_wave(self, wave_name: str, members: Sequence[Deployment], *, first: bool) -> None:
        self.waves[wave_name] = [d.label for d in members]
        wave = self.pipeline.add_wave(wave_name, pre=self._wave_pre(wave_name, members, first=first) or None)
        for deployment in members:
            post = [*self._post(deployment), *self._prompt_release(deployment)]
            wave.add_stage(deployment.stage, post=post or None)

    def _wave_pre(
        self, wave_name: str, members: Sequence[Deployment], *, first: bool
    ) -> list[pipelines.Step]:
        """Prod and shared: one manual approval per wave. Preprod: the unit tests before the first wave."""
        if wave_name == SHARED_WAVE:
            return [
                pipelines.ManualApprovalStep(
                    "ApproveDeployment",
                    comment=(
                        "Deploy shared (tooling, data lake, prompt catalog): check the change sets before "
                        "approving; the prod waves follow, each with its own approval"
                    ),
                )
            ]
        if self.stage is Stage.PROD:
            labels = ", ".join(d.label for d in members)
            return [
                pipelines.ManualApprovalStep(
                    "ApproveDeployment",
                    comment=(
                        f"Deploy {wave_name} ({labels}): check the change sets and the preprod evaluation "
                        "before approving"
                    ),
                )
            ]
        if self.stage is Stage.PREPROD and first:
            return [pipelines.ShellStep("UnitTests", input=self.source, commands=["make test"])]
        return []

    def _post_action_count(self, deployment: Deployment) -> int:
        gate = self.stage is Stage.PREPROD and self.config.tooling.pipelines.evaluation_gate
        return 1 if gate and deployment.environment is not None else 0

    def _post(self, deployment: Deployment) -> list[pipelines.Step]:
        """After a preprod environment: its evaluation gate (if enabled)."""
        environment = deployment.environment
        if not self._post_action_count(deployment) or environment is None:
            return []
        settings = self.config.tooling.pipelines
        gate_role = evaluation_gate_role_arn(environment)
        bu = environment.business_unit.name
        caller = iam.Role(
            self,
            f"EvaluationGateCaller-{bu}",
            role_name=gate_caller_role_name(environment),
            assumed_by=iam.ServicePrincipal("codebuild.amazonaws.com"),
            description=f"Runs the evaluation gate of {environment.name} from the pipeline",
        )
        caller.add_to_policy(iam.PolicyStatement(actions=["sts:AssumeRole"], resources=[gate_role]))
        self.gate_callers.append(caller)
        return [
            pipelines.CodeBuildStep(
                f"EvaluationGate-{bu}",
                input=self.source,
                role=caller,
                install_commands=["python -m pip install --quiet $(grep '^boto3==' requirements.txt)"],
                commands=[f"python {GATE_SCRIPT}"],
                env={
                    "GATE_ROLE_ARN": gate_role,
                    "STATE_MACHINE_ARN": evaluation_state_machine_arn(environment),
                    "USE_CASES": ",".join(environment.business_unit.use_cases),
                    "TIMEOUT_SECONDS": str(settings.evaluation_gate_timeout_minutes * 60),
                    "AWS_REGION": environment.region,
                },
                timeout=Duration.minutes(settings.evaluation_gate_timeout_minutes + 10),
            )
        ]

    def _prompt_release(self, deployment: Deployment) -> list[pipelines.Step]:
        """After a prod environment: move its prod prompt aliases (stacks/blocks/prompt_release_step.py)."""
        if deployment.environment is None or not has_prompt_release(self.stage, deployment.environment):
            return []
        caller, step = prompt_release_step(
            self, self.config, deployment.environment, self.source, deployment_id=deployment.stage.node.id
        )
        self.release_callers.append(caller)
        return [step]

    def _role_arns_as_sub(self) -> None:
        """CDK writes action role ARNs as Fn::Join; cfn-lint (E3703) accepts only a string or Fn::Sub there."""
        cfn = self.pipeline.pipeline.node.default_child
        assert isinstance(cfn, codepipeline.CfnPipeline)
        for s_index, stage in enumerate(self.resolve(cfn.stages)):
            for a_index, action in enumerate(stage["actions"]):
                role_arn = action.get("configuration", {}).get("RoleArn")
                if isinstance(role_arn, dict) and "Fn::Join" in role_arn:
                    cfn.add_property_override(
                        f"Stages.{s_index}.Actions.{a_index}.Configuration.RoleArn", join_as_sub(role_arn)
                    )

    def _source(self, branch: str) -> pipelines.CodePipelineSource:
        source = self.config.source
        if source.provider is SourceProvider.CODECOMMIT:
            repository = codecommit.Repository.from_repository_name(self, "Repository", source.repository)
            return pipelines.CodePipelineSource.code_commit(repository, branch)
        assert source.connection_arn is not None  # guaranteed by config validation
        return pipelines.CodePipelineSource.connection(
            source.repository, branch, connection_arn=source.connection_arn
        )

    def _acknowledge_pipeline_findings(self) -> None:
        """cdk-nag findings on the roles CDK Pipelines generates, each with the reason it holds."""
        targets: list[Construct] = [self.pipeline, *self.gate_callers, *self.release_callers]
        bucket = self.resolve(self.get_logical_id(self.artifact_bucket.node.default_child))  # type: ignore[arg-type]
        grant_reason = (
            "CDK Pipelines gives its roles the standard action sets of the L2 grant methods (s3:GetObject*, "
            "kms:ReEncrypt* ...) on this pipeline's own artifact bucket and KMS key, and on nothing else"
        )
        logs = f"arn:<AWS::Partition>:logs:{self.region}:{self.account}:log-group:/aws/codebuild/"
        reports = f"arn:<AWS::Partition>:codebuild:{self.region}:{self.account}:report-group/"
        project_reason = (
            "CodeBuild writes a project's logs and test reports to groups named after the project's generated "
            "name, so the ARN ends in a wildcard; the prefix pins it to this one project"
        )
        findings = {
            **dict.fromkeys(
                [f"Action::{a}" for a in PIPELINE_GRANT_ACTIONS] + [f"Resource::<{bucket}.Arn>/*"],
                grant_reason,
            ),
            f"Resource::{logs}*": (
                "The asset-publishing role is shared by every asset project CDK Pipelines creates; their "
                "names are generated, so CDK scopes logs to /aws/codebuild/* of this account and region"
            ),
            f"Resource::{reports}*": (
                "The asset-publishing role is shared by every asset project CDK Pipelines creates; their "
                "names are generated, so CDK scopes report groups to this account and region"
            ),
            "Resource::*": (
                "Generated by CDK Pipelines: self-mutation calls cloudformation:DescribeStacks and s3:ListBucket "
                "through the CDK CLI, and the asset role starts and watches its CodeBuild builds"
            ),
            f"Resource::arn:*:iam::{self.account}:role/*": (
                "Self-mutation may assume only roles tagged aws-cdk:bootstrap-role (deploy, file and image "
                "publishing) created by cdk bootstrap; the tag condition is in the statement"
            ),
        }
        for project in self.node.find_all():
            if isinstance(project, codebuild.CfnProject):
                project_id = self.resolve(self.get_logical_id(project))
                findings[f"Resource::{logs}<{project_id}>:*"] = project_reason
                findings[f"Resource::{reports}<{project_id}>-*"] = project_reason
        for target in targets:
            for finding, reason in findings.items():
                acknowledge(target, f"AwsSolutions-IAM5[{finding}]", reason)
