"""Tooling (shared services) account: model registry, artifact store, image repositories, registry events.

Everything here is shared by all business units on the same terms (`business_unit_access`): a business
unit's dev account writes, its preprod and prod accounts read, and no other account is named.
"""

from __future__ import annotations

from typing import Any

from constructs import Construct

from stacks.blocks.api_gateway_account import ApiGatewayAccountLogging
from stacks.blocks.business_unit_access import BusinessUnitAccess, business_unit_accesses
from stacks.blocks.encryption import PlatformKey
from stacks.blocks.evaluation_gate import business_unit_gate_use_cases
from stacks.blocks.image_repositories import ImageRepositories
from stacks.blocks.lake_access import (
    KMS_READ_ACTIONS,
    KMS_WRITE_ACTIONS,
    OBJECT_READ_ACTIONS,
    OBJECT_WRITE_ACTIONS,
)
from stacks.blocks.model_registry import ModelRegistry
from stacks.blocks.nag import acknowledge_cdk_managed_providers
from stacks.blocks.platform_stack import PlatformStack
from stacks.blocks.registry_events import RegistryEventForwarding
from stacks.blocks.retention import retention_for
from stacks.blocks.storage import AccessLogBucket, SecureBucket
from stacks.settings import STAGES, PlatformConfig, Stage


def artifact_bucket_name(config: PlatformConfig) -> str:
    """Deterministic, so the key policy can name the bucket without a reference cycle."""
    return f"{config.organization.prefix}-tooling-artifacts-{config.tooling_account}-{config.home_region}"


class ToolingStack(PlatformStack):
    def __init__(self, scope: Construct, construct_id: str, *, config: PlatformConfig) -> None:
        prefix = config.organization.prefix
        super().__init__(
            scope,
            construct_id,
            stack_name=f"{prefix}-tooling",
            account=config.tooling_account,
            region=config.home_region,
            description="LLMOps tooling account: model registry, artifact store, image repositories",
        )
        self.config = config
        self.retention = retention_for(None)
        self.accesses = business_unit_accesses(config)
        self.key = PlatformKey(
            self, "ArtifactKey", alias=f"alias/{prefix}/tooling/artifacts", retention=self.retention
        ).key
        self.access_logs = AccessLogBucket(
            self, "AccessLogs", retention=self.retention, expire_after_days=365
        )
        self.artifact_bucket = SecureBucket(
            self,
            "Artifacts",
            key=self.key,
            access_logs=self.access_logs,
            retention=self.retention,
            bucket_name=artifact_bucket_name(config),
        )
        for access in self.accesses:
            self._share_artifacts(access)
        self.registry = ModelRegistry(
            self,
            "ModelRegistry",
            prefix=prefix,
            accesses=self.accesses,
            use_cases={bu.name: list(bu.use_cases) for bu in config.business_units},
            retention=self.retention,
            # Business units whose preprod gates their own model versions (docs/fine-tuning.md).
            gate_accounts={
                bu.name: config.environment(bu, Stage.PREPROD).account
                for bu in config.business_units
                if business_unit_gate_use_cases(config.environment(bu, Stage.PREPROD))
            },
        )
        # ECR grants itself use of the key when a repository is created; pulls need no key permission.
        self.images = ImageRepositories(
            self,
            "Images",
            prefix=prefix,
            accesses=self.accesses,
            key=self.key,
            settings=config.tooling.images,
            retention=self.retention,
        )
        if not config.is_sandbox:
            self._forward_registry_events()
        # The tooling account's API Gateway logging role (the prompt catalog's API; in sandbox mode every API).
        self.api_gateway_logging = ApiGatewayAccountLogging(
            self, "ApiGatewayLogging", retention=self.retention
        )
        acknowledge_cdk_managed_providers(self)

    def _share_artifacts(self, access: BusinessUnitAccess) -> None:
        """`<bu>/` of the artifact bucket for the business unit's accounts: dev writes, all three read."""
        bucket_arn = f"arn:{self.partition_token}:s3:::{artifact_bucket_name(self.config)}"
        prefix = f"{access.business_unit}/"
        objects = f"{bucket_arn}/{prefix}*"
        self.artifact_bucket.add_to_resource_policy(
            access.statement(
                sid="ListOwnPrefix",
                accounts=access.accounts,
                actions=["s3:ListBucket"],
                resources=[bucket_arn],
                conditions={"StringLike": {"s3:prefix": [prefix, f"{prefix}*"]}},
            )
        )
        self.artifact_bucket.add_to_resource_policy(
            access.statement(
                sid="ReadOwnPrefix",
                accounts=access.accounts,
                actions=OBJECT_READ_ACTIONS,
                resources=[objects],
            )
        )
        self.artifact_bucket.add_to_resource_policy(
            access.statement(
                sid="WriteOwnPrefix",
                accounts=access.writers,
                actions=OBJECT_WRITE_ACTIONS,
                resources=[objects],
            )
        )
        # The key serves only S3 requests for this bucket; the encryption context narrows object-level
        # use to the prefix (with bucket keys on, S3 uses the bucket ARN as context).
        via_s3: dict[str, dict[str, Any]] = {
            "StringEquals": {"kms:ViaService": f"s3.{self.region_name}.amazonaws.com"},
            "StringLike": {"kms:EncryptionContext:aws:s3:arn": [bucket_arn, objects]},
        }
        self.key.add_to_resource_policy(
            access.statement(
                sid="DecryptOwnArtifacts",
                accounts=access.readers,
                actions=KMS_READ_ACTIONS,
                resources=["*"],
                conditions=via_s3,
            )
        )
        self.key.add_to_resource_policy(
            access.statement(
                sid="EncryptOwnArtifacts",
                accounts=access.writers,
                actions=KMS_WRITE_ACTIONS,
                resources=["*"],
                conditions=via_s3,
            )
        )

    def _forward_registry_events(self) -> None:
        for access in self.accesses:
            bu = self.config.business_unit(access.business_unit)
            destinations = [
                (env.account, env.region)
                for env in (self.config.environment(bu, stage) for stage in STAGES)
                if env.stage in (Stage.PREPROD, Stage.PROD)
            ]
            RegistryEventForwarding(
                self,
                f"RegistryEvents-{access.business_unit}",
                business_unit=access.business_unit,
                group_names=self.registry.group_names(access.business_unit),
                destinations=destinations,
            )
