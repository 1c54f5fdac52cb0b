"""Stand-ins until the data lake stack's `grant_lake_access` / `lake_bucket_name` land on main.

Same names and signatures as in `stacks/blocks/lake_access.py` of the lake branch, so the lead swaps the
import and deletes this module. Statements come from main's pure `lake_access_statements`; the lake key is
reached by alias (its ARN is unknown across accounts at synth time).
"""

from __future__ import annotations

from aws_cdk import Aws
from aws_cdk import aws_iam as iam

from common.lake_layout import Zone
from stacks.blocks.lake_access import LakeAccessRequest, lake_access_statements
from stacks.settings import PlatformConfig


def lake_bucket_name(config: PlatformConfig, zone: Zone) -> str:
    return f"{config.organization.prefix}-lake-{Zone(zone).value.replace('_', '-')}-{config.data_lake_account}-{config.home_region}"


def lake_key_arn_pattern(config: PlatformConfig) -> str:
    return f"arn:{Aws.PARTITION}:kms:{config.home_region}:{config.data_lake_account}:key/*"


def lake_key_condition(config: PlatformConfig) -> dict[str, dict[str, object]]:
    return {
        "ForAnyValue:StringEquals": {"kms:ResourceAliases": f"alias/{config.organization.prefix}/data-lake"},
        "StringEquals": {"kms:ViaService": f"s3.{config.home_region}.amazonaws.com"},
    }


def grant_lake_access(grantee: iam.IGrantable, config: PlatformConfig, request: LakeAccessRequest) -> None:
    statements = lake_access_statements(
        [request],
        bucket_arns={zone: f"arn:{Aws.PARTITION}:s3:::{lake_bucket_name(config, zone)}" for zone in Zone},
        kms_key_arn=lake_key_arn_pattern(config),
    )
    for statement in statements:
        if statement["Resource"] == [lake_key_arn_pattern(config)]:
            statement["Condition"] = lake_key_condition(config)
        grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement.from_json(statement))
