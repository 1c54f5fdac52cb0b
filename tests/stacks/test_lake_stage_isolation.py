"""Issue 16 item 1: the stage is part of the data lake's access boundary.

Evaluated on the synthesized bucket and key policies with tests/stacks/policy_eval.py: a business unit's
dev and preprod roles cannot read or write its prod tenants' uploads, ratings or filter decisions; prod
cannot write dev; another business unit reaches neither; in sandbox mode (one account) the principal
tags alone separate the stages; every stage reads `<bu>/shared/` but only the promotion role writes it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from common.lake_layout import Zone, partition_prefix, shared_dataset_key, tenant_prefix
from stacks.blocks.lake_access import dataset_promotion_role_arn, lake_bucket_name
from stacks.settings import PlatformConfig, Stage
from tests.conftest import SynthesizedPlatform
from tests.stacks.policy_eval import Request, as_list, decide, resolve, secure_context

BU_TAG = "aws:PrincipalTag/BusinessUnit"
STAGE_TAG = "aws:PrincipalTag/Stage"
READ, WRITE = "s3:GetObject", "s3:PutObject"


def lake_template(platform: SynthesizedPlatform) -> dict[str, Any]:
    return platform.template(f"{platform.config.organization.prefix}-data-lake")


def bucket_statements(platform: SynthesizedPlatform, bucket: str) -> list[dict[str, Any]]:
    template = lake_template(platform)
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::S3::BucketPolicy":
            continue
        bucket_id = resource["Properties"]["Bucket"]["Ref"]
        if template["Resources"][bucket_id]["Properties"].get("BucketName") == bucket:
            statements: list[dict[str, Any]] = resolve(
                resource["Properties"]["PolicyDocument"]["Statement"], template
            )
            return statements
    raise KeyError(bucket)


def key_statements(platform: SynthesizedPlatform) -> list[dict[str, Any]]:
    template = lake_template(platform)
    (key,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::KMS::Key"]
    statements: list[dict[str, Any]] = resolve(key["Properties"]["KeyPolicy"]["Statement"], template)
    return statements


def account(config: PlatformConfig, business_unit: str, stage: str) -> str:
    return config.environment(config.business_unit(business_unit), Stage(stage)).account


def principal(config: PlatformConfig, business_unit: str, stage: str) -> dict[str, str]:
    """A role a business unit stage creates: its account, its BusinessUnit and Stage tags."""
    return {
        "account": account(config, business_unit, stage),
        BU_TAG: business_unit,
        STAGE_TAG: stage,
        "aws:PrincipalArn": f"arn:aws:iam::{account(config, business_unit, stage)}:role/{business_unit}-{stage}-x",
    }


def s3_decision(
    platform: SynthesizedPlatform, who: dict[str, str], action: str, bucket: str, key: str
) -> str:
    context = secure_context(**{k: v for k, v in who.items() if k != "account"})
    request = Request(who["account"], action, f"arn:aws:s3:::{bucket}/{key}", context)
    return decide(bucket_statements(platform, bucket), request)


def key_decision(
    platform: SynthesizedPlatform, who: dict[str, str], action: str, bucket: str, key: str
) -> str:
    """What the lake key's policy says to S3 using the key for `who` on object `key` (no bucket key)."""
    context = {
        **{k: v for k, v in who.items() if k != "account"},
        "kms:ViaService": f"s3.{platform.config.home_region}.amazonaws.com",
        "kms:EncryptionContext:aws:s3:arn": f"arn:aws:s3:::{bucket}/{key}",
    }
    kms_action = "kms:Decrypt" if action == READ else "kms:GenerateDataKey"
    request = Request(who["account"], kms_action, "arn:aws:kms:eu-west-1:000000000000:key/lake", context)
    return decide(key_statements(platform), request)


def prod_data(config: PlatformConfig, business_unit: str, stage: str = "prod") -> list[tuple[str, str]]:
    """(bucket, key) of a stage's tenant upload, rating and filter decision, keys from the layout."""
    day = "2026-11-26"
    return [
        (
            lake_bucket_name(config, Zone.RAW),
            f"{tenant_prefix(business_unit, stage, 'tenant-a')}uploads/u1/train.jsonl",
        ),
        (
            lake_bucket_name(config, Zone.FEEDBACK),
            f"{partition_prefix(business_unit, stage, 'ratings', day, 'm1')}part-1.jsonl",
        ),
        (
            lake_bucket_name(config, Zone.FILTER_DECISIONS),
            f"{partition_prefix(business_unit, stage, 'filter_decisions', day, 'm1')}part-1.jsonl",
        ),
    ]


PLATFORMS = ["default_platform", "sandbox_platform"]


@pytest.mark.parametrize("platform_fixture", PLATFORMS)
def test_each_stage_reads_and_writes_its_own_tenant_data(
    platform_fixture: str, request: pytest.FixtureRequest
) -> None:
    platform: SynthesizedPlatform = request.getfixturevalue(platform_fixture)
    for stage in ("dev", "preprod", "prod"):
        who = principal(platform.config, "retail", stage)
        for bucket, key in prod_data(platform.config, "retail", stage):
            for action in (READ, WRITE):
                assert (stage, key, action, s3_decision(platform, who, action, bucket, key)) == (
                    stage,
                    key,
                    action,
                    "allow",
                )
                if not platform.config.is_sandbox:
                    assert key_decision(platform, who, action, bucket, key) == "allow"


@pytest.mark.parametrize("platform_fixture", PLATFORMS)
@pytest.mark.parametrize("stage", ["dev", "preprod"])
@pytest.mark.parametrize("action", [READ, WRITE, "s3:DeleteObject"])
def test_dev_and_preprod_cannot_reach_prod_tenant_data(
    platform_fixture: str, stage: str, action: str, request: pytest.FixtureRequest
) -> None:
    platform: SynthesizedPlatform = request.getfixturevalue(platform_fixture)
    who = principal(platform.config, "retail", stage)
    for bucket, key in prod_data(platform.config, "retail"):
        assert (key, s3_decision(platform, who, action, bucket, key)) == (key, "deny")
        if not platform.config.is_sandbox and action != "s3:DeleteObject":
            # And the key refuses to decrypt or encrypt a prod object for them.
            assert (key, key_decision(platform, who, action, bucket, key)) == (key, "implicit")


@pytest.mark.parametrize("platform_fixture", PLATFORMS)
def test_prod_cannot_write_dev(platform_fixture: str, request: pytest.FixtureRequest) -> None:
    platform: SynthesizedPlatform = request.getfixturevalue(platform_fixture)
    who = principal(platform.config, "retail", "prod")
    for bucket, key in prod_data(platform.config, "retail", "dev"):
        assert s3_decision(platform, who, WRITE, bucket, key) == "deny"
        if not platform.config.is_sandbox:
            assert key_decision(platform, who, WRITE, bucket, key) == "implicit"


@pytest.mark.parametrize("platform_fixture", PLATFORMS)
@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_another_business_unit_reaches_neither_stage(
    platform_fixture: str, stage: str, request: pytest.FixtureRequest
) -> None:
    platform: SynthesizedPlatform = request.getfixturevalue(platform_fixture)
    for other_stage in ("dev", "prod"):
        who = principal(platform.config, "finance", other_stage)
        for bucket, key in prod_data(platform.config, "retail", stage):
            for action in (READ, WRITE):
                assert s3_decision(platform, who, action, bucket, key) == "deny"
                if not platform.config.is_sandbox:
                    assert key_decision(platform, who, action, bucket, key) == "implicit"


@pytest.mark.parametrize("platform_fixture", PLATFORMS)
def test_a_business_unit_role_without_a_stage_tag_is_denied(
    platform_fixture: str, request: pytest.FixtureRequest
) -> None:
    platform: SynthesizedPlatform = request.getfixturevalue(platform_fixture)
    who = principal(platform.config, "retail", "prod")
    del who[STAGE_TAG]
    for bucket, key in prod_data(platform.config, "retail"):
        assert s3_decision(platform, who, READ, bucket, key) == "deny"


@pytest.mark.parametrize("platform_fixture", PLATFORMS)
def test_every_stage_reads_the_shared_datasets_and_none_writes_them(
    platform_fixture: str, request: pytest.FixtureRequest
) -> None:
    platform: SynthesizedPlatform = request.getfixturevalue(platform_fixture)
    bucket = lake_bucket_name(platform.config, Zone.EVALUATION_DATASETS)
    key = shared_dataset_key("retail", "faq", "v1")
    for stage in ("dev", "preprod", "prod"):
        who = principal(platform.config, "retail", stage)
        assert s3_decision(platform, who, READ, bucket, key) == "allow"
        for action in (WRITE, "s3:DeleteObject", "s3:PutObjectTagging"):
            assert (stage, action, s3_decision(platform, who, action, bucket, key)) == (stage, action, "deny")
        if not platform.config.is_sandbox:
            assert key_decision(platform, who, READ, bucket, key) == "allow"
            assert key_decision(platform, who, WRITE, bucket, key) == "implicit"
    # Another business unit does not read retail's shared data.
    assert s3_decision(platform, principal(platform.config, "finance", "prod"), READ, bucket, key) == "deny"


@pytest.mark.parametrize("platform_fixture", PLATFORMS)
def test_only_the_promotion_role_writes_the_shared_datasets(
    platform_fixture: str, request: pytest.FixtureRequest
) -> None:
    platform: SynthesizedPlatform = request.getfixturevalue(platform_fixture)
    config = platform.config
    bucket = lake_bucket_name(config, Zone.EVALUATION_DATASETS)
    key = shared_dataset_key("retail", "faq", "v2")
    role_arn = dataset_promotion_role_arn(config, partition="aws")
    catalog = {
        "account": config.tooling_account,
        BU_TAG: "shared",
        STAGE_TAG: "shared",
        "aws:PrincipalArn": role_arn,
    }
    assert s3_decision(platform, catalog, WRITE, bucket, key) == "allow"
    assert s3_decision(platform, catalog, READ, bucket, key) == "allow"
    # Another tooling role (same account, same tags) is denied: the writer is pinned by ARN.
    other = {**catalog, "aws:PrincipalArn": f"arn:aws:iam::{config.tooling_account}:role/exco-something-else"}
    assert s3_decision(platform, other, WRITE, bucket, key) == "deny"
    # The promotion role writes nowhere else: not a stage's prefix, not another zone's shared prefix.
    assert s3_decision(platform, catalog, WRITE, bucket, "retail/prod/datasets/x.jsonl") != "allow"
    feedback = lake_bucket_name(config, Zone.FEEDBACK)
    assert s3_decision(platform, catalog, WRITE, feedback, "retail/shared/x.jsonl") != "allow"
    if not config.is_sandbox:
        assert key_decision(platform, catalog, WRITE, bucket, key) == "allow"
        assert key_decision(platform, other, WRITE, bucket, key) == "implicit"
        assert key_decision(platform, catalog, WRITE, bucket, "retail/prod/x.jsonl") == "implicit"


@pytest.mark.parametrize("platform_fixture", PLATFORMS)
def test_every_role_a_business_unit_stage_creates_carries_its_stage_tag(
    platform_fixture: str, request: pytest.FixtureRequest
) -> None:
    """The fence keys on the Stage tag: a role without it would be locked out, one with a wrong one let in."""
    platform: SynthesizedPlatform = request.getfixturevalue(platform_fixture)
    checked = 0
    for stack, template in platform.templates():
        business_unit, stage = stack.tags.get("BusinessUnit"), stack.tags.get("Stage")
        if business_unit in (None, "shared"):
            continue
        for logical_id, resource in template["Resources"].items():
            if resource["Type"] != "AWS::IAM::Role":
                continue
            tags = {t["Key"]: t["Value"] for t in resource["Properties"].get("Tags", [])}
            assert (stack.stack_name, logical_id, tags.get("BusinessUnit"), tags.get("Stage")) == (
                stack.stack_name,
                logical_id,
                business_unit,
                stage,
            )
            checked += 1
    assert checked > 20


# ---- the audit trail of the promotion path --------------------------------------------------------


def test_a_trail_records_every_write_to_the_shared_prefixes(default_platform: SynthesizedPlatform) -> None:
    template = lake_template(default_platform)
    config = default_platform.config
    (trail,) = [
        r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::CloudTrail::Trail"
    ]
    trail = resolve(trail, template)
    datasets = lake_bucket_name(config, Zone.EVALUATION_DATASETS)
    (selector,) = trail["EventSelectors"]
    assert selector["ReadWriteType"] == "WriteOnly"
    assert selector["IncludeManagementEvents"] is False
    (resources,) = selector["DataResources"]
    assert resources["Type"] == "AWS::S3::Object"
    assert sorted(resources["Values"]) == sorted(
        f"arn:aws:s3:::{datasets}/{bu.name}/shared/" for bu in config.business_units
    )
    assert trail["EnableLogFileValidation"] is True
    assert trail["S3KeyPrefix"] == "audit/shared-writes"
    # The trail's bucket admits CloudTrail's deliveries under the trail's prefix.
    trail_id = next(k for k, r in template["Resources"].items() if r["Type"] == "AWS::CloudTrail::Trail")
    bucket_ref = template["Resources"][trail_id]["Properties"]["S3BucketName"]
    (policy,) = [
        r["Properties"]["PolicyDocument"]["Statement"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == bucket_ref
    ]
    delivery = [
        s
        for s in policy
        if s.get("Principal") == {"Service": "cloudtrail.amazonaws.com"} and s["Action"] == "s3:PutObject"
    ]
    assert delivery
    assert all("/audit/shared-writes/AWSLogs/" in json.dumps(s["Resource"]) for s in delivery)


def test_the_upload_role_accepts_no_session_tag_but_the_tenant(default_platform: SynthesizedPlatform) -> None:
    """A session tag Stage=prod would override the role's own Stage tag and pass the lake's fence."""
    checked = 0
    for stack, template in default_platform.templates():
        for logical_id, resource in template["Resources"].items():
            if resource["Type"] != "AWS::IAM::Role" or not logical_id.startswith("TenantUploadRole"):
                continue
            trust = resource["Properties"]["AssumeRolePolicyDocument"]["Statement"]
            denies = [s for s in trust if s["Effect"] == "Deny" and "aws:TagKeys" in str(s.get("Condition"))]
            assert [d["Condition"] for d in denies] == [
                {"ForAnyValue:StringNotEquals": {"aws:TagKeys": ["TenantId"]}}
            ], stack.stack_name
            checked += 1
    assert checked >= 2


# ---- the promotion role's identity side (the consumer's catalog calls this helper) ----------------


def test_grant_dataset_promotion_gives_the_named_role_the_shared_prefixes_only(
    default_config: PlatformConfig,
) -> None:
    from aws_cdk import Environment, Stack
    from aws_cdk import aws_iam as iam

    from stacks.app_factory import create_app
    from stacks.blocks.lake_access import dataset_promotion_role_name, grant_dataset_promotion
    from stacks.blocks.nag import add_nag_checks

    app = create_app()
    stack = Stack(
        app,
        "Catalog",
        env=Environment(account=default_config.tooling_account, region=default_config.home_region),
    )
    role = iam.Role(
        stack,
        "Promotion",
        role_name=dataset_promotion_role_name(default_config),
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
    )
    grant_dataset_promotion(role, default_config)
    add_nag_checks(app)
    template = app.synth().get_stack_by_name("Catalog").template  # raises on an unacknowledged nag finding
    (policy,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::IAM::Policy"]
    statements = resolve(policy["Properties"]["PolicyDocument"]["Statement"], template)
    datasets = lake_bucket_name(default_config, Zone.EVALUATION_DATASETS)
    objects = sorted(r for s in statements if "s3:PutObject" in s["Action"] for r in as_list(s["Resource"]))
    assert objects == sorted(
        f"arn:aws:s3:::{datasets}/{bu.name}/shared/*" for bu in default_config.business_units
    )
    assert "s3:DeleteObject" not in json.dumps(statements)

    wrong = iam.Role(
        stack, "Other", role_name="exco-other", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com")
    )
    with pytest.raises(
        ValueError, match=r"^role_name: the dataset promotion role must be named 'exco-dataset-promotion'"
    ):
        grant_dataset_promotion(wrong, default_config)


# AWS limits: a bucket policy may hold 20 KB, a key policy 32 KB (whitespace does not count).
BUCKET_POLICY_LIMIT, KEY_POLICY_LIMIT = 20 * 1024, 32 * 1024


@pytest.mark.parametrize("platform_fixture", PLATFORMS)
def test_the_per_stage_policies_fit_the_aws_size_limits(
    platform_fixture: str, request: pytest.FixtureRequest
) -> None:
    """Per-stage statements multiply with business units x stages (docs/data-lake.md, "Limits")."""
    platform: SynthesizedPlatform = request.getfixturevalue(platform_fixture)
    template = lake_template(platform)
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::S3::BucketPolicy":
            document, limit = resource["Properties"]["PolicyDocument"], BUCKET_POLICY_LIMIT
        elif resource["Type"] == "AWS::KMS::Key":
            document, limit = resource["Properties"]["KeyPolicy"], KEY_POLICY_LIMIT
        else:
            continue
        size = len(json.dumps(resolve(document, template), separators=(",", ":")))
        assert (logical_id, size <= limit) == (logical_id, True), size
