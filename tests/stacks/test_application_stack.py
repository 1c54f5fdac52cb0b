"""The application stack: authorizer on every method, WAF where it belongs, config-driven sign-up, ABAC uploads."""

from __future__ import annotations

import json
from typing import Any

import pytest

from common.lake_layout import Zone
from stacks.application_stack import ROUTES, upload_request
from stacks.blocks.lake_access import lake_bucket_name, lake_statements
from stacks.settings import PlatformConfig, Stage, parse_config
from tests.conftest import SynthesizedPlatform
from tests.stacks.policy_eval import Request, decide, resolve, secure_context


def resources(template: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r for r in template["Resources"].values() if r["Type"] == kind]


def one_unit_sandbox(business_unit: dict[str, Any]) -> PlatformConfig:
    """A sandbox config with the one business unit `ops` (use case `qa`) and these sections."""
    return parse_config(
        {
            "organization": {"name": "T", "prefix": "tst", "cost_center": "c"},
            "home_region": "us-east-1",
            "deployment": {"mode": "sandbox", "sandbox_account": "555555555555"},
            "source": {"provider": "codecommit", "repository": "r"},
            "business_units": [{"name": "ops", "cost_center": "c", "use_cases": ["qa"], **business_unit}],
        }
    )


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
    from stacks.guardrail_stack import GuardrailStack
    from stacks.model_profiles_stack import ModelProfilesStack

    config = one_unit_sandbox(
        {
            "application": {
                "sign_up": {
                    "self_sign_up": True,
                    "mfa": "optional",
                    "threat_protection": "audit",
                    "password": {"min_length": 16, "require_symbols": False},
                },
                "waf_in_dev": True,
                "hosted_sign_in": {
                    "callback_urls": ["https://app.example.org/callback", "http://localhost:3000/callback"],
                    "logout_urls": ["https://app.example.org/"],
                    "domain_prefix": "ops-dev-sign-in",
                },
            },
        }
    )
    environment = next(config.environments())
    stage = Stage(App(), "ops-dev")
    baseline = BaselineStack(stage, "Baseline", environment=environment)
    guardrail = GuardrailStack(stage, "Guardrail", config=config, environment=environment, baseline=baseline)
    profiles = ModelProfilesStack(
        stage, "ModelProfiles", config=config, environment=environment, baseline=baseline
    )
    stack = ApplicationStack(
        stage,
        "Application",
        config=config,
        environment=environment,
        key=baseline.key,
        guardrail=guardrail,
        profiles=profiles,
    )
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
    # Issue 16 item 13: authorization code only (the public client uses PKCE), callbacks from the config.
    [client] = template.find_resources("AWS::Cognito::UserPoolClient").values()
    props = client["Properties"]
    assert props["AllowedOAuthFlows"] == ["code"]
    assert props["AllowedOAuthFlowsUserPoolClient"] is True
    assert props["CallbackURLs"] == ["https://app.example.org/callback", "http://localhost:3000/callback"]
    assert props["LogoutURLs"] == ["https://app.example.org/"]
    assert props["GenerateSecret"] is False
    assert props["SupportedIdentityProviders"] == ["COGNITO"]
    template.has_resource_properties("AWS::Cognito::UserPoolDomain", {"Domain": "ops-dev-sign-in"})


def test_without_callback_urls_the_web_client_has_no_oauth_flow(
    default_platform: SynthesizedPlatform,
) -> None:
    """CDK's default client enables the implicit grant with the placeholder https://example.com."""
    for environment in default_platform.config.environments():
        template = default_platform.template(f"{environment.name}-application")
        [client] = resources(template, "AWS::Cognito::UserPoolClient")
        props = client["Properties"]
        assert props.get("AllowedOAuthFlowsUserPoolClient", False) is False
        assert "AllowedOAuthFlows" not in props and "CallbackURLs" not in props
        assert "implicit" not in json.dumps(props) and "example.com" not in json.dumps(props)


@pytest.mark.parametrize(
    ("hosted", "field"),
    [
        ({"callback_urls": ["http://app.example.org/cb"], "domain_prefix": "x"}, "callback_urls"),
        ({"callback_urls": ["https://app.example.org/cb"]}, "domain_prefix"),
        ({"logout_urls": ["https://app.example.org/"]}, "callback_urls"),
    ],
)
def test_hosted_sign_in_config_mistakes_name_the_field(hosted: dict[str, Any], field: str) -> None:
    from pydantic import ValidationError

    from stacks.settings.application import ApplicationSettings

    with pytest.raises(ValidationError, match=field):
        ApplicationSettings.model_validate({"hosted_sign_in": hosted})


def test_upload_policy_is_fenced_by_the_tenant_session_tag(default_config: Any) -> None:
    # grant_lake_access with tenant_from_principal_tag: read and write the tenant's own prefix (the
    # presigned POST pins the key under uploads/); listing needs the read half.
    statements = lake_statements(default_config, upload_request("retail", "prod"))
    text = json.dumps(statements)
    objects = statements[0]
    assert "s3:PutObject" in objects["Action"]
    [resource] = objects["Resource"]
    assert resource.endswith(
        ":s3:::exco-lake-raw-222222222222-eu-west-1/retail/prod/tenant=${aws:PrincipalTag/TenantId}/*"
    )
    listing = statements[1]
    assert listing["Action"] == ["s3:ListBucket"]
    assert listing["Condition"] == {
        "StringLike": {
            "s3:prefix": [
                "retail/prod/tenant=${aws:PrincipalTag/TenantId}/",
                "retail/prod/tenant=${aws:PrincipalTag/TenantId}/*",
            ]
        }
    }
    assert "s3:DeleteObject" not in text
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
    assert "retail/prod/tenant=${aws:PrincipalTag/TenantId}/*" in document


def test_table_is_encrypted_with_the_cmk_and_recoverable(default_platform: SynthesizedPlatform) -> None:
    [table] = resources(default_platform.template("exco-retail-prod-application"), "AWS::DynamoDB::Table")
    props = table["Properties"]
    assert props["SSESpecification"]["SSEType"] == "KMS"
    assert "KMSMasterKeyId" in props["SSESpecification"]
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["DeletionPolicy"] == "Retain"


def test_stage_has_access_logs_tracing_throttling_and_no_keyless_usage_plan(
    default_platform: SynthesizedPlatform,
) -> None:
    template = default_platform.template("exco-retail-prod-application")
    [stage] = resources(template, "AWS::ApiGateway::Stage")
    props = stage["Properties"]
    assert props["TracingEnabled"] is True
    assert "DestinationArn" in props["AccessLogSetting"]
    assert props["MethodSettings"][0]["ThrottlingRateLimit"] == 20
    # A usage plan's quota needs API keys, which Cognito users do not carry: per-tenant limits live in the
    # backend (application.tenant_limits), so no plan pretends to enforce one.
    assert resources(template, "AWS::ApiGateway::UsagePlan") == []
    variables = backend_function(template)["Properties"]["Environment"]["Variables"]
    assert variables["LAKE_STAGE"] == "prod"  # also the catalog alias the backend serves


def test_outputs_only_the_api_url_and_invokes_only_the_environments_endpoints(
    default_platform: SynthesizedPlatform,
) -> None:
    """docs/application.md: the API URL is the only stack output (the front end reads the user pool and
    client ids from the stack's resources); endpoints: `<org>-<bu>-<stage>-*` only, and the table's TTL."""
    template = default_platform.template("exco-retail-prod-application")
    outputs = [name for name in template.get("Outputs", {}) if not name.startswith("ExportsOutput")]
    assert len(outputs) == 1 and outputs[0].startswith("ApiEndpoint")
    invoke = [
        statement
        for statement in backend_statements(template)
        if "sagemaker:InvokeEndpoint" in as_list(statement["Action"])
    ]
    resources_invoked = {r for statement in invoke for r in as_list(resolve(statement["Resource"], template))}
    account = default_platform.config.environment(
        default_platform.config.business_unit("retail"), Stage.PROD
    ).account
    assert resources_invoked == {f"arn:aws:sagemaker:eu-west-1:{account}:endpoint/exco-retail-prod-*"}
    [table] = resources(template, "AWS::DynamoDB::Table")
    assert table["Properties"]["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def test_backend_ships_the_guardrail_and_catalog_packages_it_imports() -> None:
    from stacks.blocks.python_function import asset_excludes

    excludes = asset_excludes("app_backend", ("guardrail", "prompt_catalog"))
    assert {"!app_backend/**", "!guardrail/**", "!prompt_catalog/**", "!common/**"} <= set(excludes)


# ---- the real services the backend uses: guardrail, prompt catalog, fine-tuning, the lake ----------


def backend_function(template: dict[str, Any]) -> dict[str, Any]:
    [function] = [
        r
        for r in resources(template, "AWS::Lambda::Function")
        if "APP_SETTINGS" in r["Properties"].get("Environment", {}).get("Variables", {})
    ]
    return function


def role_policy_statements(template: dict[str, Any], role_ref: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        statement
        for policy in resources(template, "AWS::IAM::Policy")
        if role_ref in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def backend_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    return role_policy_statements(
        template, {"Ref": backend_function(template)["Properties"]["Role"]["Fn::GetAtt"][0]}
    )


def test_lambda_packaged_guardrail_is_invoked_by_name_with_the_guardrail_stacks_settings(
    default_platform: SynthesizedPlatform,
) -> None:
    from stacks.guardrail_stack import settings_env

    config = default_platform.config
    template = default_platform.template("exco-finance-prod-application")
    variables = backend_function(template)["Properties"]["Environment"]["Variables"]
    assert variables["GUARDRAIL_SETTINGS"] == settings_env(
        "finance", config.business_unit("finance").guardrails
    )
    assert "ImportValue" in json.dumps(variables["GUARDRAIL_FUNCTION"])  # the guardrail stack's function
    assert "FILTER_DECISIONS_BUCKET" not in variables  # the guardrail function writes decisions itself
    actions = {a for s in backend_statements(template) for a in as_list(s["Action"])}
    assert "lambda:InvokeFunction" in actions
    assert not {a for a in actions if a.startswith("comprehend:")}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_backend_may_read_the_prompt_catalog_of_the_tooling_account(
    default_platform: SynthesizedPlatform,
) -> None:
    from stacks.blocks.prompt_catalog_access import prompt_catalog_invoke_arns

    template = default_platform.template("exco-retail-prod-application")
    [invoke] = [s for s in backend_statements(template) if s["Action"] == "execute-api:Invoke"]
    assert sorted(invoke["Resource"]) == sorted(prompt_catalog_invoke_arns(default_platform.config))
    assert all(":111111111111:*/prompt-catalog/" in arn for arn in invoke["Resource"])


@pytest.mark.parametrize(
    ("stack", "pipeline"),
    [("exco-retail-prod-application", "exco-retail-prod-fine-tuning"), ("exco-retail-dev-application", None)],
)
def test_fine_tunes_use_the_stages_pipeline_where_it_has_one(
    default_platform: SynthesizedPlatform, stack: str, pipeline: str | None
) -> None:
    template = default_platform.template(stack)
    function = backend_function(template)
    variables = function["Properties"]["Environment"]["Variables"]
    assert variables.get("FINE_TUNING_PIPELINE") == pipeline
    roles = {k: r for k, r in template["Resources"].items() if r["Type"] == "AWS::IAM::Role"}
    managed = json.dumps(
        roles[function["Properties"]["Role"]["Fn::GetAtt"][0]]["Properties"].get("ManagedPolicyArns", [])
    )
    describe = [
        s
        for s in backend_statements(template)
        if "sagemaker:DescribePipelineExecution" in json.dumps(s["Action"])
    ]
    if pipeline is None:
        assert "StartFineTuning" not in managed and describe == []
    else:
        assert "StartFineTuning" in managed  # the fine-tuning stack's start policy, imported
        assert json.dumps(describe[0]["Resource"]).endswith(f':pipeline/{pipeline}/execution/*"]]}}')


def lake_bucket_policy(platform: SynthesizedPlatform, zone: Zone) -> list[dict[str, Any]]:
    template = platform.template(f"{platform.config.organization.prefix}-data-lake")
    name = lake_bucket_name(platform.config, zone)
    for policy in resources(template, "AWS::S3::BucketPolicy"):
        bucket = template["Resources"][policy["Properties"]["Bucket"]["Ref"]]
        if bucket["Properties"].get("BucketName") == name:
            statements: list[dict[str, Any]] = resolve(
                policy["Properties"]["PolicyDocument"]["Statement"], template
            )
            return statements
    raise KeyError(name)


def lake_decision(platform: SynthesizedPlatform, zone: Zone, action: str, key: str, **context: str) -> str:
    config: PlatformConfig = platform.config
    account = config.environment(config.business_unit("retail"), Stage.DEV).account
    request = Request(
        account,
        action,
        f"arn:aws:s3:::{lake_bucket_name(config, zone)}/{key}",
        secure_context(
            **{"aws:PrincipalTag/BusinessUnit": "retail", "aws:PrincipalTag/Stage": "dev", **context}
        ),
    )
    return decide(lake_bucket_policy(platform, zone), request)


@pytest.mark.parametrize("platform_fixture", ["default_platform", "sandbox_platform"])
def test_the_lake_admits_the_applications_roles_for_the_zones_they_use(
    platform_fixture: str, request: pytest.FixtureRequest
) -> None:
    platform: SynthesizedPlatform = request.getfixturevalue(platform_fixture)
    upload = "retail/dev/tenant=t1/uploads/0123/data.jsonl"
    candidate = "retail/dev/evaluation_candidates/support-bot/abc.jsonl"
    rating = "retail/dev/ratings/dt=2024-05-01/model=m/part.jsonl"
    expected = "allow"  # the same statements in both modes: the principal is the account, tag-conditioned
    # A tagged upload session (BusinessUnit from the role, TenantId from the session).
    assert (
        lake_decision(platform, Zone.RAW, "s3:PutObject", upload, **{"aws:PrincipalTag/TenantId": "t1"})
        == expected
    )
    assert lake_decision(platform, Zone.FEEDBACK, "s3:PutObject", candidate) == expected
    assert lake_decision(platform, Zone.FEEDBACK, "s3:PutObject", rating) == expected
    # Never another business unit's prefix; the evaluation datasets stay read-only.
    assert lake_decision(platform, Zone.RAW, "s3:PutObject", "finance/dev/tenant=t1/uploads/x") == "deny"
    assert lake_decision(platform, Zone.RAW, "s3:PutObject", "retail/prod/tenant=t1/uploads/x") == "deny"
    assert (
        lake_decision(platform, Zone.EVALUATION_DATASETS, "s3:PutObject", "retail/shared/x.jsonl") == "deny"
    )


def test_an_upload_session_reaches_only_the_tenant_its_tag_names(
    default_platform: SynthesizedPlatform,
) -> None:
    template = default_platform.template("exco-retail-prod-application")
    [upload_id] = [
        k
        for k, r in template["Resources"].items()
        if k.startswith("TenantUploadRole") and r["Type"] == "AWS::IAM::Role"
    ]
    statements = [
        {**s, "Principal": "*"}
        for s in resolve(role_policy_statements(template, {"Ref": upload_id}), template)
    ]
    bucket = f"arn:aws:s3:::{lake_bucket_name(default_platform.config, Zone.RAW)}"

    def put(key: str) -> str:
        context = secure_context(**{"aws:PrincipalTag/TenantId": "t1"})
        return decide(statements, Request("any", "s3:PutObject", f"{bucket}/{key}", context))

    assert put("retail/prod/tenant=t1/uploads/0123/data.jsonl") == "allow"
    assert put("retail/prod/tenant=t10/uploads/0123/data.jsonl") == "implicit"
    assert put("retail/prod/tenant=t2/uploads/0123/data.jsonl") == "implicit"
    assert put("retail/prod/ratings/x.jsonl") == "implicit"
    assert put("retail/dev/tenant=t1/uploads/0123/data.jsonl") == "implicit"


# ---- a business unit that runs the guardrail in-process: one stage, synthesized once --------------


@pytest.fixture(scope="module")
def in_process_stage(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from stacks.app_factory import create_app
    from stacks.blocks.nag import add_nag_checks, failed_validations
    from stacks.stages import BusinessUnitStage

    config = one_unit_sandbox(
        {
            "guardrails": {
                "packaging": "in_process",
                "input": {"layers": {"bedrock": True}},
                "bedrock_guardrail": {"definition": {"name": "ops-guardrail"}},
            },
        }
    )
    outdir = tmp_path_factory.mktemp("in-process-guardrail")
    app = create_app(outdir=str(outdir))
    environment = config.environment(config.business_unit("ops"), Stage.PROD)
    stage = BusinessUnitStage(app, "OpsProd", config=config, environment=environment)
    add_nag_checks(app)
    assembly = app.synth()
    assert failed_validations(outdir) == []
    artifact = assembly.get_stack_artifact(stage.application.artifact_id)
    return artifact.template


def test_in_process_guardrail_gets_the_guardrail_functions_permissions(
    in_process_stage: dict[str, Any],
) -> None:
    template = in_process_stage
    variables = backend_function(template)["Properties"]["Environment"]["Variables"]
    assert "GUARDRAIL_FUNCTION" not in variables
    assert variables["FILTER_DECISIONS_BUCKET"] == "tst-lake-filter-decisions-555555555555-us-east-1"
    assert "ImportValue" in json.dumps(variables["BEDROCK_GUARDRAIL_ID"])
    statements = backend_statements(template)
    actions = {a for s in statements for a in as_list(s["Action"])}
    assert {
        "comprehend:DetectPiiEntities",
        "comprehend:DetectToxicContent",
        "bedrock:ApplyGuardrail",
    } <= actions
    assert "lambda:InvokeFunction" not in actions
    decisions = [s for s in statements if "s3:PutObject" in as_list(s["Action"])]
    assert any("tst-lake-filter-decisions-" in json.dumps(s["Resource"]) for s in decisions)
