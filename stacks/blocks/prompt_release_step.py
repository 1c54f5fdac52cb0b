"""The prod pipeline's prompt release step: after a business unit's prod deployment, move its `prod`
aliases in the prompt catalog to the versions of the release manifest (tools/release_prompts.py).

The step's CodeBuild role (`prompt_release_caller_role_name`, tooling account) may assume exactly the
unit's prod release role and read the catalog stack's outputs (its URL); the prod release role trusts
exactly this role (stacks/blocks/prompt_catalog_access.py), so prod aliases move from the prod deployment
and from nowhere else.
"""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from aws_cdk import pipelines
from constructs import Construct

from stacks.blocks import durations
from stacks.blocks.grants import allow
from stacks.blocks.nag import acknowledge
from stacks.blocks.prompt_catalog_access import (
    PARTITION,
    catalog_stack_name,
    prompt_release_caller_role_name,
    prompt_release_role_arn,
)
from stacks.settings import EnvironmentSpec, PlatformConfig, Stage

RELEASE_MODULE = "tools.release_prompts"
RELEASE_MANIFEST = "config/prompt_releases.json"
STEP_TIMEOUT = durations.minutes(15)


def has_prompt_release(stage: Stage | None, environment: EnvironmentSpec | None) -> bool:
    """Only a business unit's prod deployment releases prompts (dev and preprod move their own aliases)."""
    return stage is Stage.PROD and environment is not None


def catalog_stack_arn(config: PlatformConfig) -> str:
    return (
        f"arn:{PARTITION}:cloudformation:{config.home_region}:{config.tooling_account}:"
        f"stack/{catalog_stack_name(config)}/*"
    )


def prompt_release_step(
    scope: Construct,
    config: PlatformConfig,
    environment: EnvironmentSpec,
    source: pipelines.IFileSetProducer,
    *,
    deployment_id: str,
) -> tuple[iam.Role, pipelines.CodeBuildStep]:
    """The step and its role (returned so the pipeline can acknowledge the grants CDK Pipelines adds);
    `deployment_id` (the deployed stage's construct id) keeps the role's construct id unique."""
    bu = environment.business_unit.name
    release_role = prompt_release_role_arn(environment)
    caller = iam.Role(
        scope,
        f"PromptReleaseCaller-{deployment_id}",
        role_name=prompt_release_caller_role_name(environment),
        assumed_by=iam.ServicePrincipal("codebuild.amazonaws.com"),
        description=f"Moves the prod prompt aliases of {bu} from the prod pipeline",
    )
    allow(caller, actions=["sts:AssumeRole"], resources=[release_role])
    allow(caller, actions=["cloudformation:DescribeStacks"], resources=[catalog_stack_arn(config)])
    acknowledge(
        caller,
        f"AwsSolutions-IAM5[Resource::{catalog_stack_arn(config)}]",
        "A stack ARN ends in the stack's generated id; the name pins the prompt catalog stack of this "
        "account and region, and DescribeStacks only reads its outputs (the API URL)",
    )
    step = pipelines.CodeBuildStep(
        f"PromptRelease-{bu}",
        input=source,
        role=caller,
        install_commands=["python -m pip install --quiet $(grep -E '^(boto3|pydantic)==' requirements.txt)"],
        commands=[f"python -m {RELEASE_MODULE}"],
        env={
            "BUSINESS_UNIT": bu,
            "RELEASE_ROLE_ARN": release_role,
            "CATALOG_STACK": catalog_stack_name(config),
            "RELEASE_MANIFEST": RELEASE_MANIFEST,
            "AWS_REGION": config.home_region,
        },
        timeout=STEP_TIMEOUT,
    )
    return caller, step
