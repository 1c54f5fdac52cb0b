"""Identity-side access from a business unit account to the data lake zones (CDK part).

Bucket names are deterministic (the lake account's zone buckets are not visible across accounts at synth
time), and the lake key is reached through its alias, so nothing here needs a cross-stack reference.
The data lake stack owns the other half: bucket policies and the key policy that trust these roles.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from constructs import Construct

from common.lake_layout import Zone
from stacks.blocks.lake_access import LakeAccessRequest, lake_access_statements
from stacks.blocks.nag import acknowledge
from stacks.settings import PlatformConfig


def lake_bucket_name(config: PlatformConfig, zone: Zone | str) -> str:
    """The one zone bucket name every account agrees on (cross-account contract)."""
    return (
        f"{config.organization.prefix}-lake-{Zone(zone).value.replace('_', '-')}"
        f"-{config.data_lake_account}-{config.home_region}"
    )


def lake_key_alias(config: PlatformConfig) -> str:
    return f"alias/{config.organization.prefix}/data-lake"


def _lake_key_arns(config: PlatformConfig) -> str:
    return f"arn:{Aws.PARTITION}:kms:{config.home_region}:{config.data_lake_account}:key/*"


def lake_statements(config: PlatformConfig, request: LakeAccessRequest) -> list[dict[str, Any]]:
    """The IAM statement shapes `grant_lake_access` attaches (plain dicts, for tests and reviews)."""
    statements = lake_access_statements(
        [request],
        bucket_arns={request.zone: f"arn:{Aws.PARTITION}:s3:::{lake_bucket_name(config, request.zone)}"},
        kms_key_arn=_lake_key_arns(config),
        kms_via_service=f"s3.{config.home_region}.amazonaws.com",
    )
    for statement in statements:
        if any(action.startswith("kms:") for action in statement["Action"]):
            # The lake key's ARN is unknown here: any key of the lake account, but only the one with its alias.
            condition = statement.setdefault("Condition", {})
            condition["ForAnyValue:StringEquals"] = {"kms:ResourceAliases": lake_key_alias(config)}
    return statements


def grant_lake_access(grantee: iam.IGrantable, config: PlatformConfig, request: LakeAccessRequest) -> None:
    """Add the statements for `request` (its zone, its own prefix only) to `grantee`'s identity policy."""
    for statement in lake_statements(config, request):
        grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement.from_json(statement))
    _acknowledge_prefix_wildcards(grantee, config, request)


def _acknowledge_prefix_wildcards(
    grantee: iam.IGrantable, config: PlatformConfig, request: LakeAccessRequest
) -> None:
    if not isinstance(grantee, Construct):
        return
    bucket = lake_bucket_name(config, request.zone)
    acknowledge(
        grantee,
        f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::{bucket}/{request.prefix}*]",
        f"Objects under the requester's own prefix {request.prefix!r} of the {request.zone.value} zone; "
        "object keys are generated per record batch, so a prefix is the narrowest resource",
    )
    acknowledge(
        grantee,
        f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:kms:{config.home_region}:"
        f"{config.data_lake_account}:key/*]",
        "The data lake key lives in the lake account and its id is unknown at synth time; the statement "
        f"is limited to the key with alias {lake_key_alias(config)} and to calls made through S3",
    )
