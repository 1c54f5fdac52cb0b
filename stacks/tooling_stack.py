"""Tooling (shared services) account: the artifact store and its key, shared with business unit accounts."""

from __future__ import annotations

from constructs import Construct

from stacks.blocks.encryption import PlatformKey
from stacks.blocks.nag import acknowledge_cdk_managed_providers
from stacks.blocks.platform_stack import PlatformStack
from stacks.blocks.retention import retention_for
from stacks.blocks.storage import AccessLogBucket, SecureBucket
from stacks.settings import PlatformConfig


class ToolingStack(PlatformStack):
    def __init__(self, scope: Construct, construct_id: str, *, config: PlatformConfig) -> None:
        prefix = config.organization.prefix
        super().__init__(
            scope,
            construct_id,
            stack_name=f"{prefix}-tooling",
            account=config.tooling_account,
            region=config.home_region,
            description="LLMOps tooling account: artifact store and its KMS key",
        )
        self.config = config
        self.retention = retention_for(None)
        self.key = PlatformKey(
            self, "ArtifactKey", alias=f"alias/{prefix}/tooling/artifacts", retention=self.retention
        ).key
        self.access_logs = AccessLogBucket(
            self, "AccessLogs", retention=self.retention, expire_after_days=365
        )
        self.artifact_bucket = SecureBucket(
            self, "Artifacts", key=self.key, access_logs=self.access_logs, retention=self.retention
        )
        acknowledge_cdk_managed_providers(self)
