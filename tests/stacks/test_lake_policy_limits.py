"""The data lake's policies fit the AWS size limits at 20 business units, and still isolate there.

Builds only the data lake stack (not the platform) for a generated config of 20 business units, as
bench/lake_policy_sizes.py does, in multi-account and in sandbox mode. Sizes are counted as that
script counts them (whitespace-free JSON, the larger of the synthesized and the resolved form).
At 20 business units the lake stack holds more than 500 resources (docs/data-lake.md, Limits): `synth_lake`
lifts CDK's resource check and acknowledges the template validation's `CloudFormation-Validate::F0007` for
that synth only.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench.lake_policy_sizes import (
    BUCKET_POLICY_LIMIT,
    KEY_POLICY_LIMIT,
    ROLE_INLINE_POLICIES_LIMIT,
    lake_config,
    policy_size,
    policy_sizes,
    synth_lake,
)
from common.lake_layout import Zone, tenant_prefix
from stacks.blocks.lake_access import lake_bucket_name
from stacks.settings import PlatformConfig, Stage
from tests.stacks.policy_eval import Request, decide, resolve, secure_context

BUSINESS_UNITS = 20
BU_TAG, STAGE_TAG = "aws:PrincipalTag/BusinessUnit", "aws:PrincipalTag/Stage"


class Lake:
    def __init__(self, config: PlatformConfig) -> None:
        self.config = config
        self.template = synth_lake(config)

    def bucket_statements(self, bucket: str) -> list[dict[str, Any]]:
        for resource in self.template["Resources"].values():
            if resource["Type"] != "AWS::S3::BucketPolicy":
                continue
            bucket_id = resource["Properties"]["Bucket"]["Ref"]
            if self.template["Resources"][bucket_id]["Properties"].get("BucketName") == bucket:
                statements: list[dict[str, Any]] = resolve(
                    resource["Properties"]["PolicyDocument"]["Statement"], self.template
                )
                return statements
        raise KeyError(bucket)

    def key_statements(self) -> list[dict[str, Any]]:
        (key,) = [r for r in self.template["Resources"].values() if r["Type"] == "AWS::KMS::Key"]
        statements: list[dict[str, Any]] = resolve(key["Properties"]["KeyPolicy"]["Statement"], self.template)
        return statements

    def principal(self, business_unit: str, stage: str, **tags: str) -> dict[str, str]:
        """A role of that business unit stage's account, tagged as it is (or as `tags` claim)."""
        account = self.config.environment(self.config.business_unit(business_unit), Stage(stage)).account
        return {
            "account": account,
            BU_TAG: tags.get("claim_bu", business_unit),
            STAGE_TAG: tags.get("claim_stage", stage),
        }

    def s3(self, who: dict[str, str], action: str, bucket: str, key: str) -> str:
        context = secure_context(**{k: v for k, v in who.items() if k != "account"})
        request = Request(who["account"], action, f"arn:aws:s3:::{bucket}/{key}", context)
        return decide(self.bucket_statements(bucket), request)

    def kms(self, who: dict[str, str], action: str, bucket: str, key: str) -> str:
        context = {
            **{k: v for k, v in who.items() if k != "account"},
            "kms:ViaService": f"s3.{self.config.home_region}.amazonaws.com",
            "kms:EncryptionContext:aws:s3:arn": f"arn:aws:s3:::{bucket}/{key}",
        }
        kms_action = "kms:Decrypt" if action == "s3:GetObject" else "kms:GenerateDataKey"
        request = Request(who["account"], kms_action, "arn:aws:kms:eu-west-1:000000000000:key/lake", context)
        return decide(self.key_statements(), request)


@pytest.fixture(scope="module")
def lake() -> Lake:
    return Lake(lake_config(BUSINESS_UNITS))


@pytest.fixture(scope="module")
def sandbox_lake() -> Lake:
    return Lake(lake_config(BUSINESS_UNITS, mode="sandbox"))


@pytest.mark.parametrize("fixture", ["lake", "sandbox_lake"])
def test_every_lake_policy_fits_the_aws_limits_at_20_business_units(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    subject: Lake = request.getfixturevalue(fixture)
    assert len(subject.config.business_units) == BUSINESS_UNITS
    sizes = policy_sizes(subject.template)
    assert sizes.key_policy <= KEY_POLICY_LIMIT, sizes.key_policy
    assert len(sizes.bucket_policies) == len(Zone) + 2  # zones, access logs, query results
    assert {b: s for b, s in sizes.bucket_policies.items() if s > BUCKET_POLICY_LIMIT} == {}
    assert {r: s for r, s in sizes.role_policies.items() if s > ROLE_INLINE_POLICIES_LIMIT} == {}


def test_the_size_count_takes_the_longer_of_the_synthesized_and_the_resolved_form() -> None:
    template: dict[str, Any] = {"Resources": {}}
    synthesized = {"Resource": {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::b/*"]]}}
    assert policy_size(synthesized, template) == len(
        '{"Resource":{"Fn::Join":["",["arn:",{"Ref":"AWS::Partition"},":s3:::b/*"]]}}'
    )
    assert policy_size({"Resource": {"Ref": "AWS::Partition"}}, template) == len(
        '{"Resource":{"Ref":"AWS::Partition"}}'
    )


def tenant_upload(config: PlatformConfig, business_unit: str, stage: str) -> tuple[str, str]:
    return (
        lake_bucket_name(config, Zone.RAW),
        f"{tenant_prefix(business_unit, stage, 'tenant-a')}uploads/u1/train.jsonl",
    )


@pytest.mark.parametrize("fixture", ["lake", "sandbox_lake"])
def test_the_20th_business_units_stages_and_other_business_units_stay_apart(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    subject: Lake = request.getfixturevalue(fixture)
    config, multi_account = subject.config, not subject.config.is_sandbox
    last, first = config.business_units[-1].name, config.business_units[0].name
    bucket, prod_upload = tenant_upload(config, last, "prod")
    owner = subject.principal(last, "prod")
    for action in ("s3:GetObject", "s3:PutObject"):
        assert subject.s3(owner, action, bucket, prod_upload) == "allow"
        if multi_account:
            assert subject.kms(owner, action, bucket, prod_upload) == "allow"
    for who in (
        subject.principal(last, "dev"),
        subject.principal(last, "preprod"),
        subject.principal(first, "prod"),
    ):
        for action in ("s3:GetObject", "s3:PutObject"):
            assert (who[BU_TAG], who[STAGE_TAG], action, subject.s3(who, action, bucket, prod_upload)) == (
                who[BU_TAG],
                who[STAGE_TAG],
                action,
                "deny",
            )
            if multi_account:
                assert subject.kms(who, action, bucket, prod_upload) == "implicit"


def test_at_20_business_units_an_account_cannot_claim_another_stage_or_business_unit(lake: Lake) -> None:
    """The allows follow the principal's tags; the denies tie each account to its own tags."""
    last, first = lake.config.business_units[-1].name, lake.config.business_units[0].name
    bucket, prod_upload = tenant_upload(lake.config, last, "prod")
    forged = [
        lake.principal(last, "dev", claim_stage="prod"),  # dev account, Stage=prod
        lake.principal(
            first, "prod", claim_bu=last
        ),  # another business unit's prod account, BusinessUnit=<last>
    ]
    for who in forged:
        for action in ("s3:GetObject", "s3:PutObject"):
            assert lake.s3(who, action, bucket, prod_upload) == "deny"
            assert lake.kms(who, action, bucket, prod_upload) == "deny"
