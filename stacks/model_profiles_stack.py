"""Model cost attribution of one business unit in one stage: Bedrock application inference profiles and
Bedrock model invocation logging.

Profiles (`stacks.blocks.inference_profiles`): one per Bedrock model the stage calls (application default
model, evaluation candidates, judge), per use case for the application where `model_usage.inference_profiles`
is `use_case`; tagged BusinessUnit / Stage / CostCenter (/ UseCase). Other stacks call models through
`profile_arn` and get IAM through `grant_invoke`, which scopes a role to the profiles it uses.

Invocation logging is an account-and-region setting with no CloudFormation resource: a custom resource
calls PutModelInvocationLoggingConfiguration (and Delete on stack deletion) to deliver logs into this
stage's invocation-log bucket (environment CMK, TLS only, private, expiring after the stage's
`log_retention_days`). In sandbox mode every stage shares one account, so no stage owns the setting and
none configures it.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, CfnTag
from aws_cdk import aws_bedrock as bedrock
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import custom_resources as cr
from constructs import Construct

from stacks.baseline_stack import BaselineStack
from stacks.blocks import durations
from stacks.blocks.grants import allow
from stacks.blocks.inference_profiles import (
    PROFILE_CONDITION_KEY,
    ProfileKey,
    copy_from_arn,
    planned_profiles,
    profile_name,
    routed_resources,
)
from stacks.blocks.logs import encrypted_log_group
from stacks.blocks.nag import acknowledge
from stacks.blocks.platform_stack import EnvironmentStack
from stacks.blocks.storage import SecureBucket
from stacks.settings import EnvironmentSpec, PlatformConfig
from stacks.settings.evaluation import CandidateModel, EvaluationSettings

INVOCATION_LOG_PREFIX = "bedrock"
# The singleton function aws-cdk-lib creates for every AwsCustomResource of a stack.
AWS_CUSTOM_RESOURCE_PROVIDER = "AWS679f53fac002430cb0da5b7982bd2287"
LOGGING_ACTIONS = (
    "bedrock:PutModelInvocationLoggingConfiguration",
    "bedrock:DeleteModelInvocationLoggingConfiguration",
)


def invocation_log_prefix(account: str) -> str:
    """Where Bedrock writes: `<key prefix>/AWSLogs/<account>/BedrockModelInvocationLogs/...`."""
    return f"{INVOCATION_LOG_PREFIX}/AWSLogs/{account}/BedrockModelInvocationLogs/"


class ModelProfilesStack(EnvironmentStack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PlatformConfig,
        environment: EnvironmentSpec,
        baseline: BaselineStack,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            environment=environment,
            name="model-profiles",
            description=f"LLMOps model cost attribution for {environment.name}: inference profiles, invocation logs",
        )
        bu = environment.business_unit
        self.settings = bu.model_usage
        self.profiles: dict[ProfileKey, bedrock.CfnApplicationInferenceProfile] = {}
        for index, key in enumerate(planned_profiles(bu)):
            self.profiles[key] = self._profile(index, key)
        self.invocation_logs: s3.Bucket | None = None
        if self.settings.invocation_logging.enabled and not config.is_sandbox:
            self.invocation_logs = self._invocation_logging(baseline)

    # ---- profiles ------------------------------------------------------------------------------------

    def _profile(self, index: int, key: ProfileKey) -> bedrock.CfnApplicationInferenceProfile:
        env = self.environment_spec
        tags = {
            "BusinessUnit": env.business_unit.name,
            "Stage": env.stage.value,
            "CostCenter": env.business_unit.cost_center,
            "Model": key.model_id,
        }
        if key.use_case:
            tags["UseCase"] = key.use_case
        profile = bedrock.CfnApplicationInferenceProfile(
            self,
            f"Profile{index}",
            inference_profile_name=profile_name(env.name, key),
            description=f"{key.model_id} for {env.name}"
            + (f" use case {key.use_case}" if key.use_case else ""),
            model_source=bedrock.CfnApplicationInferenceProfile.InferenceProfileModelSourceProperty(
                copy_from=copy_from_arn(
                    key.model_id,
                    partition=self.partition_token,
                    region=self.region_name,
                    account=self.account_id,
                )
            ),
            tags=[CfnTag(key=k, value=v) for k, v in sorted(tags.items())],
        )
        CfnOutput(self, f"Profile{index}Arn", value=profile.attr_inference_profile_arn)
        return profile

    def profile_arn(self, model_id: str, use_case: str | None = None) -> str:
        """The profile of `model_id` (for `use_case` where profiles are per use case and it has one)."""
        profile = self.profiles.get(ProfileKey(model_id, use_case)) or self.profiles.get(ProfileKey(model_id))
        if profile is None:
            raise KeyError(f"no inference profile for {model_id!r}; planned: {sorted(self.profiles)}")
        return profile.attr_inference_profile_arn

    def grant_invoke(self, role: iam.IRole, model_id: str, use_case: str | None = None) -> list[str]:
        """Let `role` call `model_id` through its profile only; returns the wildcard ARNs granted (cdk-nag)."""
        arn = self.profile_arn(model_id, use_case)
        allow(role, actions=["bedrock:InvokeModel"], resources=[arn])
        routed = routed_resources(
            model_id, partition=self.partition_token, region=self.region_name, account=self.account_id
        )
        allow(
            role,
            actions=["bedrock:InvokeModel"],
            resources=routed,
            conditions={"StringEquals": {PROFILE_CONDITION_KEY: arn}},
        )
        return [r for r in routed if "*" in r]

    def route(self, settings: EvaluationSettings) -> EvaluationSettings:
        """The same settings with every Bedrock candidate and the judge called through its profile."""

        def routed(model: CandidateModel) -> CandidateModel:
            if model.provider != "bedrock" or not model.model_id:
                return model
            return model.model_copy(update={"model_id": self.profile_arn(model.model_id)})

        update: dict[str, Any] = {"candidates": [routed(c) for c in settings.candidates]}
        if settings.judge.model is not None:
            update["judge"] = settings.judge.model_copy(update={"model": routed(settings.judge.model)})
        return settings.model_copy(update=update)

    # ---- invocation logging --------------------------------------------------------------------------

    def _invocation_logging(self, baseline: BaselineStack) -> s3.Bucket:
        env = self.environment_spec
        days = env.settings.log_retention_days
        bucket = SecureBucket(
            self,
            "InvocationLogs",
            key=baseline.key,
            access_logs=baseline.access_logs,
            retention=baseline.retention,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="log-retention",
                    expiration=durations.days(days),
                    noncurrent_version_expiration=durations.days(1),
                )
            ],
        )
        source = {
            "StringEquals": {"aws:SourceAccount": self.account_id},
            "ArnLike": {
                "aws:SourceArn": f"arn:{self.partition_token}:bedrock:{self.region_name}:{self.account_id}:*"
            },
        }
        bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="BedrockInvocationLogDelivery",
                principals=[iam.ServicePrincipal("bedrock.amazonaws.com")],
                actions=["s3:PutObject"],
                resources=[bucket.arn_for_objects(f"{invocation_log_prefix(self.account_id)}*")],
                conditions=source,
            )
        )
        baseline.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="BedrockInvocationLogEncryption",
                principals=[iam.ServicePrincipal("bedrock.amazonaws.com")],
                actions=["kms:GenerateDataKey"],
                resources=["*"],
                conditions=source,
            )
        )
        logging = self.settings.invocation_logging
        config: dict[str, Any] = {
            "s3Config": {"bucketName": bucket.bucket_name, "keyPrefix": INVOCATION_LOG_PREFIX},
            "textDataDeliveryEnabled": logging.text,
            "imageDataDeliveryEnabled": logging.image,
            "embeddingDataDeliveryEnabled": logging.embedding,
        }
        if logging.video:  # newer API member: sent only when asked for
            config["videoDataDeliveryEnabled"] = True
        put = cr.AwsSdkCall(
            service="Bedrock",
            action="PutModelInvocationLoggingConfiguration",
            parameters={"loggingConfig": config},
            physical_resource_id=cr.PhysicalResourceId.of(f"{env.name}-model-invocation-logging"),
        )
        resource = cr.AwsCustomResource(
            self,
            "InvocationLogging",
            on_create=put,
            on_update=put,
            on_delete=cr.AwsSdkCall(service="Bedrock", action="DeleteModelInvocationLoggingConfiguration"),
            policy=cr.AwsCustomResourcePolicy.from_statements(
                [iam.PolicyStatement(actions=list(LOGGING_ACTIONS), resources=["*"])]
            ),
            install_latest_aws_sdk=False,
            log_group=encrypted_log_group(
                self,
                "InvocationLoggingProviderLogs",
                key=baseline.key,
                retention_days=days,
                retention=baseline.retention,
            ),
            timeout=durations.minutes(2),
        )
        resource.node.add_dependency(bucket.policy or bucket)
        provider = self.node.try_find_child(AWS_CUSTOM_RESOURCE_PROVIDER)
        if provider is not None:
            acknowledge(
                provider,
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSLambdaBasicExecutionRole]",
                "CDK's AwsCustomResource provider; aws-cdk-lib gives its role AWSLambdaBasicExecutionRole (logs "
                "only) and offers no property to replace it; its call permissions are the two actions below",
            )
        self.invocation_logging_call = put
        acknowledge(
            self,
            "AwsSolutions-IAM5[Resource::*]",
            "PutModelInvocationLoggingConfiguration and DeleteModelInvocationLoggingConfiguration act on the "
            "account's one logging setting and support no resource-level permissions; the custom resource's "
            "policy holds exactly these two actions",
        )
        CfnOutput(self, "InvocationLogBucket", value=bucket.bucket_name)
        return bucket
