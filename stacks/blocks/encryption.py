"""Customer-managed KMS keys: one per environment, rotated, usable by CloudWatch Logs in that account."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from stacks.blocks import durations
from stacks.blocks.retention import DataRetention


class PlatformKey(Construct):
    """A rotated CMK for everything an environment stores (buckets, logs, tables, queues, volumes)."""

    def __init__(self, scope: Construct, construct_id: str, *, alias: str, retention: DataRetention) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.key = kms.Key(
            self,
            "Key",
            alias=alias,
            description=f"Encrypts data at rest for {alias.removeprefix('alias/')}",
            enable_key_rotation=True,
            removal_policy=retention.removal_policy,
            # Dev keys go quickly; kept keys get the maximum window to undo a mistaken deletion.
            pending_window=durations.days(30 if retention.retains else 7),
        )
        # Encrypted log groups: the Logs service uses the key only for log groups of this account and region.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchLogsInThisAccount",
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                actions=[
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:Describe*",
                ],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": (
                            f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:log-group:*"
                        )
                    }
                },
            )
        )
