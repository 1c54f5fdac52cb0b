"""The prompt catalog stack: encrypted table with PITR, IAM on every method, exact callers and environment."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prompt_catalog.access import CallerMap

from stacks.settings.prompt_catalog import PromptCatalogSettings
from tests.conftest import SynthesizedPlatform
from tests.stacks.policy_helpers import access_log_group_id
from tests.stacks.test_prompt_catalog_access import DEFAULT_BUSINESS_UNIT_ACCOUNTS

DEFAULT_STACK = "exco-prompt-catalog"
SANDBOX_STACK = "exsb-prompt-catalog"
KINDS = ("prompts", "chains", "datasets")
ROUTES = {
    ("GET", ""),
    ("POST", ""),
    ("GET", "/{name}"),
    ("POST", "/{name}/versions"),
    ("GET", "/{name}/versions/{version}"),
    ("GET", "/{name}/aliases/{alias}"),
    ("PUT", "/{name}/aliases/{alias}"),
    ("POST", "/{name}/archive"),
    ("POST", "/{name}/render"),
}


def of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == resource_type}


def only(template: dict[str, Any], resource_type: str) -> tuple[str, dict[str, Any]]:
    ((logical_id, resource),) = of_type(template, resource_type).items()
    return logical_id, resource


def function_env(template: dict[str, Any]) -> dict[str, Any]:
    _, function = only(template, "AWS::Lambda::Function")
    variables: dict[str, Any] = function["Properties"]["Environment"]["Variables"]
    return variables


def resource_paths(template: dict[str, Any]) -> dict[str, str]:
    resources = of_type(template, "AWS::ApiGateway::Resource")

    def path(logical_id: str) -> str:
        props = resources[logical_id]["Properties"]
        parent = props["ParentId"]
        head = path(parent["Ref"]) if "Ref" in parent else ""
        return f"{head}/{props['PathPart']}"

    return {logical_id: path(logical_id) for logical_id in resources}


def test_table_is_encrypted_with_the_catalog_key_and_recoverable(
    default_platform: SynthesizedPlatform,
) -> None:
    template = default_platform.template(DEFAULT_STACK)
    key_id, _ = only(template, "AWS::KMS::Key")
    _, alias = only(template, "AWS::KMS::Alias")
    assert alias["Properties"]["AliasName"] == "alias/exco/prompt-catalog"
    _, table = only(template, "AWS::DynamoDB::Table")
    props = table["Properties"]
    assert props["SSESpecification"] == {
        "KMSMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]},
        "SSEEnabled": True,
        "SSEType": "KMS",
    }
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["DeletionProtectionEnabled"] is True
    assert table["DeletionPolicy"] == "Retain"
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    (gsi,) = props["GlobalSecondaryIndexes"]
    assert gsi["IndexName"] == "gsi1"
    assert gsi["Projection"] == {"ProjectionType": "ALL"}


def test_bucket_uses_the_catalog_key_and_logs_to_the_tooling_access_log_bucket(
    default_platform: SynthesizedPlatform,
) -> None:
    template = default_platform.template(DEFAULT_STACK)
    key_id, _ = only(template, "AWS::KMS::Key")
    _, bucket = only(template, "AWS::S3::Bucket")
    (rule,) = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {
        "KMSMasterKeyID": {"Fn::GetAtt": [key_id, "Arn"]},
        "SSEAlgorithm": "aws:kms",
    }
    target = bucket["Properties"]["LoggingConfiguration"]["DestinationBucketName"]
    assert target == {"Fn::ImportValue": target["Fn::ImportValue"]}
    assert target["Fn::ImportValue"].startswith("exco-tooling:ExportsOutputRefAccessLogs")


def test_every_route_exists_and_every_method_requires_iam(default_platform: SynthesizedPlatform) -> None:
    template = default_platform.template(DEFAULT_STACK)
    paths = resource_paths(template)
    methods = of_type(template, "AWS::ApiGateway::Method").values()
    routes = set()
    for method in methods:
        props = method["Properties"]
        assert props["AuthorizationType"] == "AWS_IAM"
        assert props["Integration"]["Type"] == "AWS_PROXY"
        assert "RequestValidatorId" in props
        resource = props["ResourceId"]
        routes.add((props["HttpMethod"], paths[resource["Ref"]] if "Ref" in resource else "/"))
    assert len(methods) == len(routes)
    assert routes == {(m, f"/{kind}{path}") for kind in KINDS for m, path in ROUTES}
    # One API-scoped permission rather than two per method.
    _, permission = only(template, "AWS::Lambda::Permission")
    assert permission["Properties"]["Principal"] == "apigateway.amazonaws.com"


def resource_policy_principals(template: dict[str, Any]) -> list[str]:
    _, api = only(template, "AWS::ApiGateway::RestApi")
    (statement,) = api["Properties"]["Policy"]["Statement"]
    assert (statement["Effect"], statement["Action"], statement["Resource"]) == (
        "Allow",
        "execute-api:Invoke",
        "execute-api:/*",
    )
    principals = statement["Principal"]["AWS"]
    principals = principals if isinstance(principals, list) else [principals]
    return sorted(p["Fn::Join"][1][2].removeprefix(":iam::").removesuffix(":root") for p in principals)


def test_resource_policy_admits_exactly_the_business_unit_accounts(
    default_platform: SynthesizedPlatform, sandbox_platform: SynthesizedPlatform
) -> None:
    assert resource_policy_principals(default_platform.template(DEFAULT_STACK)) == (
        DEFAULT_BUSINESS_UNIT_ACCOUNTS
    )
    assert resource_policy_principals(sandbox_platform.template(SANDBOX_STACK)) == ["555555555555"]


def test_stage_traces_throttles_and_writes_encrypted_access_logs(
    default_platform: SynthesizedPlatform,
) -> None:
    template = default_platform.template(DEFAULT_STACK)
    key_id, _ = only(template, "AWS::KMS::Key")
    _, stage = only(template, "AWS::ApiGateway::Stage")
    props = stage["Properties"]
    assert props["StageName"] == "prompt-catalog"
    assert props["TracingEnabled"] is True
    (settings,) = props["MethodSettings"]
    assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (100, 200)
    assert settings["DataTraceEnabled"] is False
    log_group_id = access_log_group_id(props["AccessLogSetting"]["DestinationArn"])
    log_group = template["Resources"][log_group_id]["Properties"]
    assert log_group["KmsKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert log_group["RetentionInDays"] == 365
    assert "$context.identity.userArn" in props["AccessLogSetting"]["Format"]
    _, validator = only(template, "AWS::ApiGateway::RequestValidator")
    assert validator["Properties"]["ValidateRequestParameters"] is True


def test_function_environment_is_complete(default_platform: SynthesizedPlatform) -> None:
    template = default_platform.template(DEFAULT_STACK)
    table_id, _ = only(template, "AWS::DynamoDB::Table")
    bucket_id, _ = only(template, "AWS::S3::Bucket")
    env = function_env(template)
    assert env["TABLE_NAME"] == {"Ref": table_id}
    assert env["BODY_BUCKET"] == {"Ref": bucket_id}
    # Evaluation datasets live in the lake's evaluation_datasets zone, not in the catalog's bucket.
    assert env["DATASET_BUCKET"] == "exco-lake-evaluation-datasets-222222222222-eu-west-1"
    assert (
        PromptCatalogSettings.model_validate_json(env["PROMPT_CATALOG_SETTINGS"]) == PromptCatalogSettings()
    )
    assert "api_rate_limit" not in env["PROMPT_CATALOG_SETTINGS"]
    assert json.loads(env["CALLER_BUSINESS_UNITS"]) == {
        "finance": [f"arn:aws:sts::44444444444{i}:assumed-role/" for i in (1, 2, 3)],
        "retail": [f"arn:aws:sts::33333333333{i}:assumed-role/" for i in (1, 2, 3)],
    }
    _, function = only(template, "AWS::Lambda::Function")
    assert function["Properties"]["Handler"] == "prompt_catalog.handler.lambda_handler"
    assert function["Properties"]["TracingConfig"] == {"Mode": "Active"}


def test_function_reaches_only_the_table_its_index_and_the_units_prefixes(
    default_platform: SynthesizedPlatform,
) -> None:
    template = default_platform.template(DEFAULT_STACK)
    table_id, _ = only(template, "AWS::DynamoDB::Table")
    bucket_id, _ = only(template, "AWS::S3::Bucket")
    statements = [
        s
        for policy in of_type(template, "AWS::IAM::Policy").values()
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    dynamodb = next(s for s in statements if "dynamodb:Query" in s["Action"])
    assert "dynamodb:DeleteItem" not in dynamodb["Action"]
    assert dynamodb["Resource"][0] == {"Fn::GetAtt": [table_id, "Arn"]}
    assert dynamodb["Resource"][1]["Fn::Join"][1][1] == "/index/gsi1"
    objects = [
        r
        for s in statements
        if set(s["Action"]) == {"s3:GetObject", "s3:PutObject"}
        for r in s["Resource"]
        if isinstance(r, dict) and r["Fn::Join"][1][0] == {"Fn::GetAtt": [bucket_id, "Arn"]}
    ]
    # The function's own objects; the lake's shared datasets only through the dataset promotion role.
    assert sorted(r["Fn::Join"][1][1] for r in objects) == ["/finance/*", "/retail/*"]
    lake_writes = json.dumps([s for s in statements if "s3:PutObject" in s["Action"]])
    assert "exco-lake-evaluation-datasets-222222222222-eu-west-1/retail/shared/" in lake_writes
    roles = of_type(template, "AWS::IAM::Role")
    [(promotion_id, promotion)] = [
        (k, r) for k, r in roles.items() if r["Properties"].get("RoleName") == "exco-dataset-promotion"
    ]
    [function_role] = [k for k in roles if k.startswith("ApiServiceRole") or k.startswith("ApiRole")]
    trust = promotion["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert [t["Principal"]["AWS"] for t in trust] == [{"Fn::GetAtt": [function_role, "Arn"]}]
    assume = [s for s in statements if s["Action"] == "sts:AssumeRole"]
    assert [s["Resource"] for s in assume] == [{"Fn::GetAtt": [promotion_id, "Arn"]}]
    env = function_env(template)
    assert env["DATASET_WRITER_ROLE_ARN"] == {"Fn::GetAtt": [promotion_id, "Arn"]}


def sandbox_roles(platform: SynthesizedPlatform) -> list[tuple[str, str, str, str | None]]:
    """(stack name, business unit tag, logical id, explicit role name) of every IAM role."""
    roles = []
    for stack, template in platform.templates():
        for logical_id, resource in of_type(template, "AWS::IAM::Role").items():
            explicit = resource["Properties"].get("RoleName")
            assert explicit is None or isinstance(explicit, str), (stack.stack_name, logical_id)
            roles.append((stack.stack_name, stack.tags["BusinessUnit"], logical_id, explicit))
    return roles


@pytest.mark.parametrize("stack_part", [None, 25], ids=["full-name", "cut-to-25"])
def test_sandbox_role_names_map_to_their_own_business_unit_only(
    sandbox_platform: SynthesizedPlatform, stack_part: int | None
) -> None:
    callers = CallerMap.model_validate_json(
        function_env(sandbox_platform.template(SANDBOX_STACK))["CALLER_BUSINESS_UNITS"]
    )
    roles = sandbox_roles(sandbox_platform)
    assert {bu for _, bu, _, _ in roles} == {"retail", "finance", "shared"}
    for stack_name, business_unit, logical_id, explicit in roles:
        # CloudFormation names a role `<stack name>-<logical id>-<random>` (stack part cut when too long);
        # platform stacks that name a role start it with the environment name `<prefix>-<bu>-<stage>`.
        role_name = explicit or f"{stack_name[:stack_part]}-{logical_id[:25]}-ABCDEFGHIJKL"
        caller = f"arn:aws:sts::555555555555:assumed-role/{role_name}/session"
        expected = [] if business_unit == "shared" else [business_unit]
        assert callers.business_units_for(caller) == expected, role_name
