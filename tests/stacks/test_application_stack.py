"""The application stack: authorizer on every method, WAF where it belongs, config-driven sign-up, ABAC uploads."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stacks.application_stack import ROUTES, upload_policy_statements
from stacks.settings import parse_config
from tests.conftest import SynthesizedPlatform


def resources(template: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r for r in template["Resources"].values() if r["Type"] == kind]


def test_every_method_requires_the_cognito_authorizer(default_platform: SynthesizedPlatform) -> None:
    template = default_platform.template("exco-retail-prod-application")
    methods = resources(template, "AWS::ApiGateway::Method")
    [authorizer_id] = [
        k for k, r in template["Resources"].items() if r["Type"] == "AWS::ApiGateway::Authorizer"
    ]

    assert len(methods) == sum(len(m) for _, m in ROUTES) == 7
    for method in methods:
        assert method["Properties"]["AuthorizationType"] == "COGNITO_USER_POOLS"
        assert method["Properties"]["AuthorizerId"] == {"Ref": authorizer_id}
        assert "RequestValidatorId" in method["Properties"]
    [authorizer] = resources(template, "AWS::ApiGateway::Authorizer")
    assert authorizer["Properties"]["Type"] == "COGNITO_USER_POOLS"


@pytest.mark.parametrize(
    ("stack", "has_waf"),
    [
        ("exco-retail-dev-application", False),
        ("exco-retail-preprod-application", True),
        ("exco-retail-prod-application", True),
        ("exco-finance-prod-application", True),
    ],
)
def test_waf_is_associated_in_preprod_and_prod_only(
    default_platform: SynthesizedPlatform, stack: str, has_waf: bool
) -> None:
    template = default_platform.template(stack)
    associations = resources(template, "AWS::WAFv2::WebACLAssociation")
    assert len(associations) == int(has_waf)
    if has_waf:
        [acl] = resources(template, "AWS::WAFv2::WebACL")
        groups = {r["Statement"]["ManagedRuleGroupStatement"]["Name"] for r in acl["Properties"]["Rules"]}
        assert "AWSManagedRulesCommonRuleSet" in groups
        assert acl["Properties"]["Scope"] == "REGIONAL"


def test_user_pool_follows_the_default_config(default_platform: SynthesizedPlatform) -> None:
    [pool] = resources(default_platform.template("exco-retail-prod-application"), "AWS::Cognito::UserPool")
    props = pool["Properties"]
    assert props["MfaConfiguration"] == "ON"
    assert props["Policies"]["PasswordPolicy"]["MinimumLength"] == 12
    assert props["Policies"]["PasswordPolicy"]["RequireSymbols"] is True
    assert props["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    assert props["UserPoolTier"] == "PLUS"
    assert props["UserPoolAddOns"]["AdvancedSecurityMode"] == "ENFORCED"
    assert props["UserPoolName"] == "exco-retail-prod-end-users"


def test_user_pool_settings_come_from_the_business_units_config() -> None:
    """Synthesizes one stack of a small config (not the whole app) with non-default sign-up settings."""
    from aws_cdk import App, Stage
    from aws_cdk.assertions import Template

    from stacks.application_stack import ApplicationStack
    from stacks.baseline_stack import BaselineStack

    config = parse_config(
        {
            "organization": {"name": "T", "prefix": "tst", "cost_center": "c"},
            "home_region": "us-east-1",
            "deployment": {"mode": "sandbox", "sandbox_account": "555555555555"},
            "source": {"provider": "codecommit", "repository": "r"},
            "business_units": [
                {
                    "name": "ops",
                    "cost_center": "c",
                    "use_cases": ["qa"],
                    "application": {
                        "sign_up": {
                            "self_sign_up": True,
                            "mfa": "optional",
                            "threat_protection": "audit",
                            "password": {"min_length": 16, "require_symbols": False},
                        },
                        "waf_in_dev": True,
                    },
                }
            ],
        }
    )
    environment = next(config.environments())
    stage = Stage(App(), "ops-dev")
    baseline = BaselineStack(stage, "Baseline", environment=environment)
    stack = ApplicationStack(stage, "Application", config=config, environment=environment, key=baseline.key)
    template = Template.from_stack(stack)

    template.has_resource_properties(
        "AWS::Cognito::UserPool",
        {
            "MfaConfiguration": "OPTIONAL",
            "AdminCreateUserConfig": {"AllowAdminCreateUserOnly": False},
            "Policies": {"PasswordPolicy": {"MinimumLength": 16, "RequireSymbols": False}},
            "UserPoolAddOns": {"AdvancedSecurityMode": "AUDIT"},
        },
    )
    template.resource_count_is("AWS::WAFv2::WebACLAssociation", 1)  # waf_in_dev: true


def test_upload_policy_is_fenced_by_the_tenant_session_tag(default_config: Any) -> None:
    statements = upload_policy_statements(default_config, "retail")
    text = json.dumps(statements)
    put = statements[0]
    assert put["Action"] == ["s3:PutObject"]
    resources = put["Resource"]
    assert isinstance(resources, list)
    [resource] = resources
    assert resource.endswith(
        ":s3:::exco-lake-raw-222222222222-eu-west-1/retail/tenant=${aws:PrincipalTag/TenantId}/uploads/*"
    )
    listing = statements[1]
    assert listing["Condition"] == {
        "StringLike": {
            "s3:prefix": [
                "retail/tenant=${aws:PrincipalTag/TenantId}/uploads/",
                "retail/tenant=${aws:PrincipalTag/TenantId}/uploads/*",
            ]
        }
    }
    assert "s3:GetObject" not in text and "s3:DeleteObject" not in text
    assert "alias/exco/data-lake" in text


def test_upload_role_trusts_only_tagged_sessions_of_the_backend(
    default_platform: SynthesizedPlatform,
) -> None:
    template = default_platform.template("exco-retail-prod-application")
    roles = {k: r for k, r in template["Resources"].items() if r["Type"] == "AWS::IAM::Role"}
    [upload_id] = [k for k in roles if k.startswith("TenantUploadRole")]
    trust = roles[upload_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    allow = [s for s in trust if s["Effect"] == "Allow"]
    deny = [s for s in trust if s["Effect"] == "Deny"]
    assert {a for s in allow for a in s["Action"]} == {"sts:AssumeRole", "sts:TagSession"}
    assert deny[0]["Condition"] == {"Null": {"aws:RequestTag/TenantId": "true"}}
    assert "Backend" in json.dumps(allow[0]["Principal"])
    policies = [
        r
        for r in template["Resources"].values()
        if r["Type"] == "AWS::IAM::Policy" and {"Ref": upload_id} in r["Properties"]["Roles"]
    ]
    document = json.dumps([p["Properties"]["PolicyDocument"] for p in policies])
    assert "tenant=${aws:PrincipalTag/TenantId}/uploads/*" in document


def test_table_is_encrypted_with_the_cmk_and_recoverable(default_platform: SynthesizedPlatform) -> None:
    [table] = resources(default_platform.template("exco-retail-prod-application"), "AWS::DynamoDB::Table")
    props = table["Properties"]
    assert props["SSESpecification"]["SSEType"] == "KMS"
    assert "KMSMasterKeyId" in props["SSESpecification"]
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["DeletionPolicy"] == "Retain"


def test_stage_has_access_logs_tracing_throttling_and_a_usage_plan(
    default_platform: SynthesizedPlatform,
) -> None:
    template = default_platform.template("exco-retail-prod-application")
    [stage] = resources(template, "AWS::ApiGateway::Stage")
    props = stage["Properties"]
    assert props["TracingEnabled"] is True
    assert "DestinationArn" in props["AccessLogSetting"]
    assert props["MethodSettings"][0]["ThrottlingRateLimit"] == 20
    [plan] = resources(template, "AWS::ApiGateway::UsagePlan")
    assert plan["Properties"]["Quota"] == {"Limit": 10000, "Period": "DAY"}


def test_backend_ships_the_guardrail_and_catalog_packages_it_imports() -> None:
    from stacks.blocks.python_function import asset_excludes

    excludes = asset_excludes("app_backend", ("guardrail", "prompt_catalog"))
    assert {"!app_backend/**", "!guardrail/**", "!prompt_catalog/**", "!common/**"} <= set(excludes)
