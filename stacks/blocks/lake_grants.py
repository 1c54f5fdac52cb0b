"""Identity-side grants on the data lake for roles in business unit accounts.

Local stand-ins until the data-lake stack's versions land in `stacks/blocks/lake_access.py` (same
names and signatures, so the switch is an import change): `lake_bucket_name` is the lead's
cross-account naming contract, `grant_lake_access` attaches `lake_access_statements` to a role.
The lake key lives in the data lake account and its ARN is unknown at synth time, so KMS use is
limited by the key's alias (`kms:ResourceAliases`) and to calls made through S3 in the lake's region.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Aws
from aws_cdk import aws_iam as iam

from stacks.blocks.lake_access import LakeAccessRequest, lake_access_statements
from stacks.settings import PlatformConfig


def lake_bucket_name(config: PlatformConfig, zone: str) -> str:
    return f"{config.organization.prefix}-lake-{zone.replace('_', '-')}-{config.data_lake_account}-{config.home_region}"


def lake_key_alias(config: PlatformConfig) -> str:
    return f"alias/{config.organization.prefix}/data-lake"


def lake_statements(config: PlatformConfig, request: LakeAccessRequest) -> list[dict[str, Any]]:
    """The IAM statement shapes `grant_lake_access` attaches (plain dicts, for tests and reviews)."""
    statements = lake_access_statements(
        [request],
        bucket_arns={request.zone: f"arn:{Aws.PARTITION}:s3:::{lake_bucket_name(config, request.zone)}"},
        kms_key_arn=f"arn:{Aws.PARTITION}:kms:{config.home_region}:{config.data_lake_account}:key/*",
        kms_via_service=f"s3.{config.home_region}.amazonaws.com",
    )
    for statement in statements:
        if any(action.startswith("kms:") for action in statement["Action"]):
            condition = statement.setdefault("Condition", {})
            condition["ForAnyValue:StringEquals"] = {"kms:ResourceAliases": lake_key_alias(config)}
    return statements


def grant_lake_access(grantee: iam.IGrantable, config: PlatformConfig, request: LakeAccessRequest) -> None:
    for statement in lake_statements(config, request):
        grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement.from_json(statement))
