"""Data lake account: one encrypted bucket per zone, all access-logged and retained."""

from __future__ import annotations

from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.blocks.encryption import PlatformKey
from stacks.blocks.nag import acknowledge_cdk_managed_providers
from stacks.blocks.platform_stack import PlatformStack
from stacks.blocks.retention import retention_for
from stacks.blocks.storage import AccessLogBucket, SecureBucket
from stacks.settings import PlatformConfig

ZONES = (
    "raw",
    "curated",
    "prompt_catalog",
    "evaluation_datasets",
    "evaluation_results",
    "feedback",
    "filter_decisions",
    "model_metadata",
)


class DataLakeStack(PlatformStack):
    def __init__(self, scope: Construct, construct_id: str, *, config: PlatformConfig) -> None:
        prefix = config.organization.prefix
        super().__init__(
            scope,
            construct_id,
            stack_name=f"{prefix}-data-lake",
            account=config.data_lake_account,
            region=config.home_region,
            description="LLMOps data lake: zoned, encrypted S3 storage",
        )
        self.config = config
        self.retention = retention_for(None)
        self.key = PlatformKey(
            self, "LakeKey", alias=f"alias/{prefix}/data-lake", retention=self.retention
        ).key
        self.access_logs = AccessLogBucket(
            self, "AccessLogs", retention=self.retention, expire_after_days=365
        )
        self.zone_buckets: dict[str, s3.Bucket] = {
            zone: SecureBucket(
                self,
                "".join(part.title() for part in zone.split("_")) + "Zone",
                key=self.key,
                access_logs=self.access_logs,
                retention=self.retention,
            )
            for zone in ZONES
        }
        acknowledge_cdk_managed_providers(self)
