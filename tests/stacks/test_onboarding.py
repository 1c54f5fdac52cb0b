"""Onboarding: one more business unit in the config adds only its own resources; nothing else changes."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from stacks.settings import PlatformConfig, parse_config
from tests.conftest import REPO_ROOT, SynthesizedPlatform, synthesize

NEW_BU = {
    "name": "legal",
    "cost_center": "CC-3001",
    "accounts": {"dev": "666666666661", "preprod": "666666666662", "prod": "666666666663"},
    "use_cases": ["contract-review"],
}
NEW_STACKS = {
    *(
        f"exco-legal-{stage}-{stack}"
        for stage in ("dev", "preprod", "prod")
        for stack in ("baseline", "guardrail", "evaluation", "pipeline", "application", "monitoring")
    ),
    *(f"exco-legal-{stage}-fine-tuning" for stage in ("dev", "preprod", "prod")),
    "exco-legal-preprod-serving",
    "exco-legal-prod-serving",
    "exco-legal-preprod-registry-events",
    "exco-legal-prod-registry-events",
}
# Shared resources whose policies gain the new business unit's statements (same logical id, more statements):
# bucket and key policies, and the Lake Formation location role that reads every business unit's prefixes.
SHARED_POLICY_HOLDERS = {
    "AWS::S3::BucketPolicy",
    "AWS::KMS::Key",
    "AWS::IAM::Policy",
    "AWS::ApiGateway::RestApi",
    "AWS::ApiGateway::Stage",  # points at the new deployment of the changed API
    "AWS::Lambda::Function",  # the prompt catalog's caller map (environment)
    "AWS::CloudTrail::Trail",  # the data lake's audit of <bu>/shared/ writes gains the new prefix
}


@pytest.fixture(scope="module")
def onboarded(tmp_path_factory: pytest.TempPathFactory) -> SynthesizedPlatform:
    raw = yaml.safe_load((REPO_ROOT / "config" / "platform.yaml").read_text())
    raw["business_units"].append(NEW_BU)
    config: PlatformConfig = parse_config(raw)
    return synthesize(config, tmp_path_factory.mktemp("onboarded-cdk-out"))


def resources(template: dict[str, Any]) -> dict[str, str]:
    # An API Gateway deployment's logical id hashes the API; a changed resource policy replaces it by design.
    return {
        logical_id: r["Type"]
        for logical_id, r in template["Resources"].items()
        if r["Type"] != "AWS::ApiGateway::Deployment"
    }


def test_only_the_new_business_units_stacks_appear(
    default_platform: SynthesizedPlatform, onboarded: SynthesizedPlatform
) -> None:
    before = {s.stack_name for s in default_platform.stacks()}
    after = {s.stack_name for s in onboarded.stacks()}
    assert after - before == NEW_STACKS
    assert before <= after


SHARED_STACKS = ("exco-tooling", "exco-data-lake", "exco-prompt-catalog")


def test_every_existing_business_unit_stack_is_unchanged(
    default_platform: SynthesizedPlatform, onboarded: SynthesizedPlatform
) -> None:
    compared = 0
    for stack in default_platform.stacks():
        if stack.stack_name in SHARED_STACKS:
            continue
        assert onboarded.template(stack.stack_name) == stack.template, stack.stack_name
        compared += 1
    assert compared == len(default_platform.stacks()) - len(SHARED_STACKS)


@pytest.mark.parametrize(
    ("stack_name", "added_types"),
    [
        (
            "exco-tooling",
            [
                "AWS::ECR::Repository",
                "AWS::Events::Rule",
                "AWS::IAM::Policy",
                "AWS::IAM::Role",
                "AWS::SageMaker::ModelPackageGroup",
            ],
        ),
        (
            "exco-data-lake",
            [
                "AWS::Events::Rule",  # the new business unit's tenant uploads, forwarded to its stages
                "AWS::Glue::Database",
                "AWS::Glue::Table",
                "AWS::IAM::Policy",
                "AWS::IAM::Role",
                "AWS::LakeFormation::DataCellsFilter",  # one per table and stage of the new business unit
                "AWS::LakeFormation::PrincipalPermissions",
            ],
        ),
        # The catalog adds nothing: its API policy and caller map gain the new business unit.
        ("exco-prompt-catalog", []),
    ],
)
def test_shared_stacks_gain_only_the_new_business_units_resources(
    default_platform: SynthesizedPlatform,
    onboarded: SynthesizedPlatform,
    stack_name: str,
    added_types: list[str],
) -> None:
    before_template = default_platform.template(stack_name)
    after_template = onboarded.template(stack_name)
    before, after = resources(before_template), resources(after_template)
    added = {k: t for k, t in after.items() if k not in before}
    assert set(before) <= set(after)
    assert all("legal" in logical_id.lower() for logical_id in added), added
    assert sorted(set(added.values())) == added_types
    changed = {before[k] for k in before if before_template["Resources"][k] != after_template["Resources"][k]}
    assert changed <= SHARED_POLICY_HOLDERS, changed
