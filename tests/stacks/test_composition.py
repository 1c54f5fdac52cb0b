"""The app composes exactly the expected stacks, in the expected accounts, with tags and retention right."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tests.conftest import SynthesizedPlatform

COST_TAGS = ("BusinessUnit", "Stage", "CostCenter")


def stack_locations(platform: SynthesizedPlatform) -> dict[str, tuple[str, str]]:
    return {s.stack_name: (s.environment.account, s.environment.region) for s in platform.stacks()}


def test_default_config_synthesizes_exactly_the_expected_stacks(
    default_platform: SynthesizedPlatform,
) -> None:
    expected = {
        "exco-tooling": ("111111111111", "eu-west-1"),
        "exco-data-lake": ("222222222222", "eu-west-1"),
        "exco-prompt-catalog": ("111111111111", "eu-west-1"),
        # one pipeline per branch (stage), whatever the number of business units
        "exco-dev-pipeline": ("111111111111", "eu-west-1"),
        "exco-preprod-pipeline": ("111111111111", "eu-west-1"),
        "exco-prod-pipeline": ("111111111111", "eu-west-1"),
    }
    for bu, accounts in {
        "retail": ("333333333331", "333333333332", "333333333333"),
        "finance": ("444444444441", "444444444442", "444444444443"),
    }.items():
        for stage, account in zip(("dev", "preprod", "prod"), accounts, strict=True):
            expected[f"exco-{bu}-{stage}-baseline"] = (account, "eu-west-1")
            expected[f"exco-{bu}-{stage}-guardrail"] = (account, "eu-west-1")
            expected[f"exco-{bu}-{stage}-evaluation"] = (account, "eu-west-1")
            expected[f"exco-{bu}-{stage}-monitoring"] = (account, "eu-west-1")
            expected[f"exco-{bu}-{stage}-model-profiles"] = (account, "eu-west-1")
            expected[f"exco-{bu}-{stage}-model-usage"] = (account, "eu-west-1")
            if stage != "dev":
                expected[f"exco-{bu}-{stage}-registry-events"] = (account, "eu-west-1")
            if stage != "dev":
                expected[f"exco-{bu}-{stage}-serving"] = (account, "eu-west-1")
            # retail: business-unit models train in dev, tenants fine-tune in preprod and prod, where they
            # live. finance fine-tunes nothing (fine_tuning.stages: [], no business-unit models).
            if bu == "retail":
                expected[f"exco-{bu}-{stage}-fine-tuning"] = (account, "eu-west-1")
            expected[f"exco-{bu}-{stage}-application"] = (account, "eu-west-1")
    assert stack_locations(default_platform) == expected


def test_sandbox_config_synthesizes_every_stack_into_one_account_without_collisions(
    sandbox_platform: SynthesizedPlatform,
) -> None:
    locations = stack_locations(sandbox_platform)
    assert {account for account, _ in locations.values()} == {"555555555555"}
    assert set(locations) == {
        "exsb-tooling",
        "exsb-data-lake",
        "exsb-prompt-catalog",
        "exsb-network",  # the one VPC every sandbox environment shares
        *(f"exsb-{stage}-pipeline" for stage in ("dev", "preprod", "prod")),
        *(
            f"exsb-{bu}-{stage}-{stack}"
            for bu in ("retail", "finance")
            for stage in ("dev", "preprod", "prod")
            for stack in (
                "baseline",
                "guardrail",
                "evaluation",
                "application",
                "monitoring",
                "model-profiles",
                "model-usage",
            )
        ),
        *(f"exsb-{bu}-{stage}-serving" for bu in ("retail", "finance") for stage in ("preprod", "prod")),
        *(
            f"exsb-{bu}-{stage}-fine-tuning"
            for bu in ("retail", "finance")
            for stage in ("dev", "preprod", "prod")
        ),
    }


def explicit_physical_names(platform: SynthesizedPlatform) -> Counter[tuple[str, str]]:
    """Names a person chose (KMS aliases, explicit bucket/role/function names): they must be unique per account."""
    name_properties = {
        "AWS::KMS::Alias": "AliasName",
        "AWS::S3::Bucket": "BucketName",
        "AWS::IAM::Role": "RoleName",
        "AWS::Lambda::Function": "FunctionName",
        "AWS::Logs::LogGroup": "LogGroupName",
        "AWS::DynamoDB::Table": "TableName",
        "AWS::SageMaker::ModelPackageGroup": "ModelPackageGroupName",
        "AWS::ECR::Repository": "RepositoryName",
        "AWS::CodePipeline::Pipeline": "Name",
        "AWS::Bedrock::Guardrail": "Name",
        "AWS::Cognito::UserPool": "UserPoolName",
        "AWS::ApiGateway::RestApi": "Name",
        "AWS::WAFv2::WebACL": "Name",
        "AWS::CloudWatch::Dashboard": "DashboardName",
        "AWS::SNS::Topic": "TopicName",
    }
    names: Counter[tuple[str, str]] = Counter()
    for stack, template in platform.templates():
        for resource in template["Resources"].values():
            prop = name_properties.get(resource["Type"])
            value = resource.get("Properties", {}).get(prop) if prop else None
            if isinstance(value, str):
                names[(stack.environment.account, f"{resource['Type']}:{value}")] += 1
    return names


@pytest.mark.parametrize("platform_fixture", ["default_platform", "sandbox_platform"])
def test_explicit_names_never_collide_within_an_account(
    platform_fixture: str, request: pytest.FixtureRequest
) -> None:
    platform: SynthesizedPlatform = request.getfixturevalue(platform_fixture)
    names = explicit_physical_names(platform)
    assert names, "expected at least the KMS aliases"
    assert [name for name, count in names.items() if count > 1] == []


def tags_of(resource: dict[str, Any]) -> dict[str, str] | None:
    tags = resource.get("Properties", {}).get("Tags")
    if isinstance(tags, list):
        return {t["Key"]: t["Value"] for t in tags}
    if isinstance(tags, dict):
        return tags
    return None


def test_every_tagged_resource_carries_the_cost_allocation_tags(
    default_platform: SynthesizedPlatform,
) -> None:
    checked = 0
    for stack, template in default_platform.templates():
        stack_tags = stack.tags
        assert {k: stack_tags[k] for k in COST_TAGS}, stack.stack_name
        for logical_id, resource in template["Resources"].items():
            tags = tags_of(resource)
            if tags is None:
                continue
            checked += 1
            assert {k: tags.get(k) for k in COST_TAGS} == {k: stack_tags[k] for k in COST_TAGS}, logical_id
    assert checked > 50


def test_tags_name_the_business_unit_stage_and_cost_center(default_platform: SynthesizedPlatform) -> None:
    tags = {s.stack_name: s.tags for s in default_platform.stacks()}
    assert tags["exco-finance-preprod-baseline"] == {
        "BusinessUnit": "finance",
        "Stage": "preprod",
        "CostCenter": "CC-2001",
    }
    assert tags["exco-tooling"] == {"BusinessUnit": "shared", "Stage": "shared", "CostCenter": "CC-PLATFORM"}


def test_core_taggable_resources_are_tagged(default_platform: SynthesizedPlatform) -> None:
    template = default_platform.template("exco-retail-prod-baseline")
    for resource_type in (
        "AWS::S3::Bucket",
        "AWS::KMS::Key",
        "AWS::EC2::VPC",
        "AWS::EC2::Subnet",
        "AWS::Logs::LogGroup",
    ):
        resources = [r for r in template["Resources"].values() if r["Type"] == resource_type]
        assert resources, resource_type
        assert all(tags_of(r) and tags_of(r)["Stage"] == "prod" for r in resources), resource_type  # type: ignore[index]


STATEFUL_TYPES = ("AWS::S3::Bucket", "AWS::KMS::Key", "AWS::Logs::LogGroup")


@pytest.mark.parametrize(
    ("stack_name", "expected_policy", "auto_delete"),
    [
        ("exco-retail-dev-baseline", "Delete", True),
        ("exco-retail-preprod-baseline", "Retain", False),
        ("exco-retail-prod-baseline", "Retain", False),
        ("exco-retail-dev-evaluation", "Delete", True),
        ("exco-finance-preprod-evaluation", "Retain", False),
        ("exco-tooling", "Retain", False),
        ("exco-data-lake", "Retain", False),
        ("exco-prompt-catalog", "Retain", False),
    ],
)
def test_removal_policy_follows_the_stage(
    default_platform: SynthesizedPlatform, stack_name: str, expected_policy: str, auto_delete: bool
) -> None:
    resources = default_platform.template(stack_name)["Resources"].values()
    stateful = [r for r in resources if r["Type"] in STATEFUL_TYPES]
    assert stateful
    assert {r.get("DeletionPolicy") for r in stateful} == {expected_policy}
    auto_deleters = [r for r in resources if r["Type"] == "Custom::S3AutoDeleteObjects"]
    buckets = [r for r in resources if r["Type"] == "AWS::S3::Bucket"]
    assert len(auto_deleters) == (len(buckets) if auto_delete else 0)


@pytest.mark.parametrize("platform_fixture", ["default_platform", "sandbox_platform"])
def test_api_gateway_account_singleton_is_set_once_per_account_and_region(
    platform_fixture: str, request: pytest.FixtureRequest
) -> None:
    platform: SynthesizedPlatform = request.getfixturevalue(platform_fixture)
    owners: Counter[tuple[str, str]] = Counter()
    apis: set[tuple[str, str]] = set()
    for stack, template in platform.templates():
        where = (stack.environment.account, stack.environment.region)
        types = [r["Type"] for r in template["Resources"].values()]
        owners[where] += types.count("AWS::ApiGateway::Account")
        if "AWS::ApiGateway::RestApi" in types:
            apis.add(where)
    assert apis
    # Every account with a REST API has exactly one owner of the logging role; none has two.
    assert {where: owners[where] for where in apis} == dict.fromkeys(apis, 1)
    assert max(owners.values()) == 1
