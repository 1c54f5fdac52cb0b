"""Tooling account: every resource policy names exactly the intended business unit's accounts."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from stacks.blocks.model_registry import MAX_GROUP_NAME_LENGTH, model_package_group_name
from tests.conftest import SynthesizedPlatform
from tests.stacks.policy_eval import Request, decide
from tests.stacks.policy_helpers import as_list, flatten, principal_accounts, resources_of_type

RETAIL = {"dev": "333333333331", "preprod": "333333333332", "prod": "333333333333"}
FINANCE = {"dev": "444444444441", "preprod": "444444444442", "prod": "444444444443"}
TAG_CONDITION = "aws:PrincipalTag/BusinessUnit"


def statements_by_sid(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    statements = {s["Sid"]: s for s in document["Statement"] if "Sid" in s}
    assert len(statements) == len([s for s in document["Statement"] if "Sid" in s]), "duplicate Sid"
    return statements


def groups(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        r["Properties"]["ModelPackageGroupName"]: r["Properties"]
        for r in resources_of_type(template, "AWS::SageMaker::ModelPackageGroup").values()
    }


def test_one_model_package_group_per_business_unit_and_use_case(
    default_platform: SynthesizedPlatform,
) -> None:
    template = default_platform.template("exco-tooling")
    assert set(groups(template)) == {
        "exco-retail-product-qa",
        "exco-retail-review-summarization",
        "exco-finance-report-summarization",
    }
    assert {
        r.get("DeletionPolicy")
        for r in resources_of_type(template, "AWS::SageMaker::ModelPackageGroup").values()
    } == {"Retain"}


@pytest.mark.parametrize(
    ("group", "accounts", "other"),
    [
        ("exco-retail-product-qa", RETAIL, FINANCE),
        ("exco-retail-review-summarization", RETAIL, FINANCE),
        ("exco-finance-report-summarization", FINANCE, RETAIL),
    ],
)
def test_group_policy_lets_dev_register_and_preprod_prod_deploy_and_nobody_else(
    default_platform: SynthesizedPlatform, group: str, accounts: dict[str, str], other: dict[str, str]
) -> None:
    policy = flatten(groups(default_platform.template("exco-tooling"))[group]["ModelPackageGroupPolicy"])
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    register = next(s for sid, s in by_sid.items() if sid.endswith("RegisterFromDev"))
    deploy = next(s for sid, s in by_sid.items() if sid.endswith("DeployToPreprodAndProd"))
    assert principal_accounts(register) == {accounts["dev"]}
    assert principal_accounts(deploy) == {accounts["preprod"], accounts["prod"]}
    assert "sagemaker:CreateModelPackage" in register["Action"]
    assert "sagemaker:CreateModelPackage" not in deploy["Action"]
    assert "sagemaker:CreateModel" in deploy["Action"]
    # Updating a version: preprod's gate recorder only (record or Rejected, where the business unit trains its
    # own models); approving: denied to every principal but the business unit's approver role.
    updates = [s for s in policy["Statement"] if any("UpdateModelPackage" in a for a in as_list(s["Action"]))]
    deny = next(s for sid, s in by_sid.items() if sid.endswith("OnlyTheApproverApproves"))
    assert deny["Effect"] == "Deny" and deny["Principal"] == {"AWS": "*"}
    assert sorted(deny["Action"]) == ["sagemaker:CreateModelPackage", "sagemaker:UpdateModelPackage"]
    assert set(deny["Resource"]) == set(register["Resource"])
    bu = group.split("-")[1]
    assert deny["Condition"] == {
        "StringEquals": {"sagemaker:ModelApprovalStatus": "Approved"},
        "ArnNotEquals": {"aws:PrincipalArn": f"arn:aws:iam::111111111111:role/exco-model-approver-{bu}"},
    }
    gate = [s for s in updates if s is not deny]
    if bu == "retail":
        (record,) = gate
        assert principal_accounts(record) == {accounts["preprod"]}
        assert record["Condition"] == {"StringEqualsIfExists": {"sagemaker:ModelApprovalStatus": "Rejected"}}
    else:
        assert gate == []  # finance trains no business-unit models: nothing updates its versions
    assert set(register["Resource"]) == {
        f"arn:aws:sagemaker:eu-west-1:111111111111:model-package-group/{group}",
        f"arn:aws:sagemaker:eu-west-1:111111111111:model-package/{group}/*",
    }
    allows = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
    named = set().union(*(principal_accounts(s) for s in allows))
    assert named.isdisjoint(other.values())


def test_second_business_unit_accounts_are_absent_from_the_firsts_policies(
    default_platform: SynthesizedPlatform,
) -> None:
    template = default_platform.template("exco-tooling")
    policies = [
        *(flatten(p["ModelPackageGroupPolicy"]) for n, p in groups(template).items() if "-retail-" in n),
        *(
            flatten(r["Properties"]["RepositoryPolicyText"])
            for r in resources_of_type(template, "AWS::ECR::Repository").values()
            if "/retail/" in r["Properties"]["RepositoryName"]
        ),
    ]
    assert len(policies) == 4
    for policy in policies:
        allows = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
        named = set().union(*(principal_accounts(s) for s in allows))
        assert named == set(RETAIL.values())


def test_image_repositories_scan_are_immutable_encrypted_expiring_and_pull_only(
    default_platform: SynthesizedPlatform,
) -> None:
    repositories = {
        r["Properties"]["RepositoryName"]: r["Properties"]
        for r in resources_of_type(default_platform.template("exco-tooling"), "AWS::ECR::Repository").values()
    }
    assert set(repositories) == {
        f"exco/{bu}/{kind}" for bu in ("retail", "finance") for kind in ("training", "inference")
    }
    for name, props in repositories.items():
        assert props["ImageScanningConfiguration"] == {"ScanOnPush": True}
        assert props["ImageTagMutability"] == "IMMUTABLE"
        assert props["EncryptionConfiguration"]["EncryptionType"] == "KMS"
        rules = json.loads(props["LifecyclePolicy"]["LifecyclePolicyText"])["rules"]
        assert [r["selection"]["tagStatus"] for r in rules] == ["untagged", "any"]
        assert rules[0]["selection"]["countNumber"] == 7
        assert rules[1]["selection"]["countNumber"] == 30
        (statement,) = props["RepositoryPolicyText"]["Statement"]
        assert sorted(statement["Action"]) == [
            "ecr:BatchCheckLayerAvailability",
            "ecr:BatchGetImage",
            "ecr:GetDownloadUrlForLayer",
        ]
        expected = RETAIL if "/retail/" in name else FINANCE
        assert principal_accounts(statement) == set(expected.values())


def artifact_statements(platform: SynthesizedPlatform, stack: str) -> dict[str, dict[str, Any]]:
    (policy,) = [
        r
        for r in resources_of_type(platform.template(stack), "AWS::S3::BucketPolicy").values()
        if "Artifacts" in r["Properties"]["Bucket"]["Ref"]
    ]
    return statements_by_sid(flatten(policy["Properties"]["PolicyDocument"]))


def test_artifact_bucket_gives_each_business_unit_only_its_prefix(
    default_platform: SynthesizedPlatform,
) -> None:
    statements = artifact_statements(default_platform, "exco-tooling")
    bucket = "arn:aws:s3:::exco-tooling-artifacts-111111111111-eu-west-1"
    write = statements["RetailWriteOwnPrefix"]
    assert principal_accounts(write) == {RETAIL["dev"]}
    assert write["Resource"] == f"{bucket}/retail/*"
    read = statements["FinanceReadOwnPrefix"]
    assert principal_accounts(read) == set(FINANCE.values())
    assert read["Resource"] == f"{bucket}/finance/*"
    listing = statements["RetailListOwnPrefix"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["retail/", "retail/*"]}}
    assert "FinanceWriteOwnPrefix" in statements and principal_accounts(
        statements["FinanceWriteOwnPrefix"]
    ) == {FINANCE["dev"]}


def test_artifact_key_is_usable_only_through_s3_for_the_own_prefix(
    default_platform: SynthesizedPlatform,
) -> None:
    (key,) = resources_of_type(default_platform.template("exco-tooling"), "AWS::KMS::Key").values()
    statements = statements_by_sid(flatten(key["Properties"]["KeyPolicy"]))
    decrypt = statements["FinanceDecryptOwnArtifacts"]
    assert principal_accounts(decrypt) == {FINANCE["preprod"], FINANCE["prod"]}
    assert decrypt["Condition"]["StringEquals"] == {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}
    bucket = "arn:aws:s3:::exco-tooling-artifacts-111111111111-eu-west-1"
    assert decrypt["Condition"]["StringLike"] == {
        "kms:EncryptionContext:aws:s3:arn": [bucket, f"{bucket}/finance/*"]
    }
    assert principal_accounts(statements["RetailEncryptOwnArtifacts"]) == {RETAIL["dev"]}


def test_registry_events_go_to_the_business_units_preprod_and_prod_buses(
    default_platform: SynthesizedPlatform,
) -> None:
    rules = resources_of_type(default_platform.template("exco-tooling"), "AWS::Events::Rule")
    by_groups = {
        tuple(r["Properties"]["EventPattern"]["detail"]["ModelPackageGroupName"]): flatten(
            r["Properties"]["Targets"]
        )
        for r in rules.values()
    }
    assert set(by_groups) == {
        ("exco-retail-product-qa", "exco-retail-review-summarization"),
        ("exco-finance-report-summarization",),
    }
    assert {t["Arn"] for t in by_groups[("exco-finance-report-summarization",)]} == {
        f"arn:aws:events:eu-west-1:{FINANCE[s]}:event-bus/default" for s in ("preprod", "prod")
    }
    receiver = default_platform.template("exco-retail-prod-registry-events")
    policies = {
        p["Properties"]["StatementId"]: flatten(p["Properties"]["Statement"])
        for p in resources_of_type(receiver, "AWS::Events::EventBusPolicy").values()
    }
    # The registry's events come from the tooling account only; the other statement admits the business
    # unit's own preprod account for its "Preprod Gate Passed" announcements (test_gate_passed_routing.py).
    assert set(policies) == {"exco-model-registry-events", "exco-model-registry-events-preprod-gate"}
    statement = policies["exco-model-registry-events"]
    assert principal_accounts(statement) == {"111111111111"}
    assert statement["Resource"] == f"arn:aws:events:eu-west-1:{RETAIL['prod']}:event-bus/default"
    assert principal_accounts(policies["exco-model-registry-events-preprod-gate"]) == {RETAIL["preprod"]}


def test_sandbox_policies_collapse_to_one_account_and_require_the_business_unit_tag(
    sandbox_platform: SynthesizedPlatform,
) -> None:
    template = sandbox_platform.template("exsb-tooling")
    for name, props in groups(template).items():
        for statement in flatten(props["ModelPackageGroupPolicy"])["Statement"]:
            if statement["Effect"] == "Deny":  # only the approver role approves, in sandbox mode too
                assert statement["Condition"]["ArnNotEquals"]["aws:PrincipalArn"].startswith(
                    "arn:aws:iam::555555555555:role/exsb-model-approver-"
                )
                continue
            assert principal_accounts(statement) == {"555555555555"}
            assert statement["Condition"]["StringEquals"][TAG_CONDITION] == name.split("-")[1]
    statements = artifact_statements(sandbox_platform, "exsb-tooling")
    assert statements["FinanceReadOwnPrefix"]["Condition"]["StringEquals"] == {TAG_CONDITION: "finance"}
    # same-account event bus targets are refused by EventBridge: nothing is forwarded in sandbox mode
    assert resources_of_type(template, "AWS::Events::Rule") == {}


def test_group_names_fit_sagemaker_limit_for_the_longest_names_the_config_allows() -> None:
    longest = model_package_group_name("a" * 10, "b" * 16, "c" * 32)
    assert len(longest) <= MAX_GROUP_NAME_LENGTH


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"sagemaker:ModelApprovalStatus": "Approved"}, "deny"),
        ({"sagemaker:ModelApprovalStatus": "PendingManualApproval"}, "allow"),
        ({}, "allow"),
    ],  # omitted: the registry registers PendingManualApproval
)
def test_dev_registers_into_the_central_group_only_as_waiting_for_the_approver(
    default_platform: SynthesizedPlatform, status: dict[str, str], expected: str
) -> None:
    """The group's own policy holds whatever dev's pipeline definition or job role says: a version created
    Approved would skip the preprod gate and the approver."""
    group = "exco-retail-product-qa"
    policy = flatten(groups(default_platform.template("exco-tooling"))[group]["ModelPackageGroupPolicy"])
    request = Request(
        account=RETAIL["dev"],
        action="sagemaker:CreateModelPackage",
        resource=f"arn:aws:sagemaker:eu-west-1:111111111111:model-package/{group}/3",
        context={"aws:PrincipalArn": f"arn:aws:iam::{RETAIL['dev']}:role/any-dev-role", **status},
    )
    assert decide(policy["Statement"], request) == expected
    # Another business unit's dev account is never allowed, Approved or not.
    other = decide(policy["Statement"], replace(request, account=FINANCE["dev"]))
    assert other == ("deny" if expected == "deny" else "implicit")
