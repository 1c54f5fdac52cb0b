"""Model cost attribution and online evaluation over the synthesized templates (issue 18, docs/cost.md).

Profiles exist per business unit x stage (x use case where asked) and are tagged; every role that invokes a
Bedrock model is scoped to its profiles; invocation logging is configured by a least-privilege custom
resource whose call matches the Bedrock API; usage and online-evaluation queues are wired as documented.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from botocore.validate import validate_parameters

from common import lake_queries
from common.glue_schema import TABLES, GlueColumn, GlueTable, check_query
from common.lake_records import UsageRecord
from stacks.blocks.inference_profiles import (
    ProfileKey,
    application_key,
    application_use_case,
    planned_profiles,
    profile_name,
)
from stacks.model_profiles_stack import INVOCATION_LOG_PREFIX, LOGGING_ACTIONS
from stacks.model_usage_stack import online_evaluation_enabled
from stacks.settings import EnvironmentSpec
from tests.conftest import SynthesizedPlatform

PROFILE_TYPE = "AWS::Bedrock::ApplicationInferenceProfile"


def of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == kind}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def exports_of(platform: SynthesizedPlatform) -> dict[str, tuple[str, Any]]:
    found = {}
    for stack, template in platform.templates():
        for output in template.get("Outputs", {}).values():
            if "Export" in output:
                found[output["Export"]["Name"]] = (stack.stack_name, output["Value"])
    return found


def profile_refs(platform: SynthesizedPlatform) -> dict[str, tuple[str, str]]:
    """Export name of each profile ARN -> (profiles stack, profile logical id)."""
    refs = {}
    for name, (stack, value) in exports_of(platform).items():
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            logical_id, attribute = value["Fn::GetAtt"]
            if attribute == "InferenceProfileArn":
                refs[name] = (stack, logical_id)
    return refs


def profile_of(platform: SynthesizedPlatform, value: Any) -> tuple[str, str] | None:
    """(stack, logical id) of the profile an imported value names, else None."""
    if isinstance(value, dict) and "Fn::ImportValue" in value:
        return profile_refs(platform).get(value["Fn::ImportValue"])
    return None


def profiles_by_key(
    platform: SynthesizedPlatform, env: EnvironmentSpec
) -> dict[ProfileKey, tuple[str, dict]]:
    template = platform.template(f"{env.name}-model-profiles")
    found = {}
    for logical_id, resource in of_type(template, PROFILE_TYPE).items():
        tags = {t["Key"]: t["Value"] for t in resource["Properties"]["Tags"]}
        found[ProfileKey(tags["Model"], tags.get("UseCase"))] = (logical_id, resource["Properties"])
    return found


def bu_stacks(platform: SynthesizedPlatform) -> Iterator[tuple[EnvironmentSpec, str, dict[str, Any]]]:
    """(environment, stack name, template) of every business unit stage's stack."""
    for env in platform.config.environments():
        for stack, template in platform.templates():
            if stack.stack_name.startswith(f"{env.name}-"):
                yield env, stack.stack_name, template


@pytest.mark.parametrize("platform_fixture", ["default_platform", "sandbox_platform"])
def test_each_stage_has_a_tagged_profile_per_model_it_calls(
    platform_fixture: str, request: pytest.FixtureRequest
) -> None:
    platform: SynthesizedPlatform = request.getfixturevalue(platform_fixture)
    names = []
    for env in platform.config.environments():
        profiles = profiles_by_key(platform, env)
        assert sorted(profiles) == sorted(planned_profiles(env.business_unit))
        assert application_key(env.business_unit, application_use_case(env.business_unit)) in profiles
        for key, (_, props) in profiles.items():
            tags = {t["Key"]: t["Value"] for t in props["Tags"]}
            assert tags["BusinessUnit"] == env.business_unit.name and tags["Stage"] == env.stage.value
            assert tags["CostCenter"] == env.business_unit.cost_center
            assert props["InferenceProfileName"] == profile_name(env.name, key)
            assert len(props["InferenceProfileName"]) <= 64
            copy_from = json.dumps(props["ModelSource"]["CopyFrom"])
            if key.model_id.startswith("eu."):
                assert f":{env.account}:inference-profile/{key.model_id}" in copy_from
            else:
                assert f"::foundation-model/{key.model_id}" in copy_from
            names.append((env.account, props["InferenceProfileName"]))
    assert len(names) == len(set(names))  # unique per account, in the sandbox's one account too


def test_profiles_per_use_case_where_the_config_asks(default_platform: SynthesizedPlatform) -> None:
    config = default_platform.config
    finance = config.environment(config.business_unit("finance"), config.environments().__next__().stage)
    keys = set(profiles_by_key(default_platform, finance))
    assert ProfileKey("amazon.nova-lite-v1:0", "report-summarization") in keys  # the application's use case
    assert ProfileKey("eu.anthropic.claude-3-haiku-20240307-v1:0") in keys  # the judge: per stage
    retail = config.environment(config.business_unit("retail"), finance.stage)
    assert set(profiles_by_key(default_platform, retail)) == {ProfileKey("amazon.nova-lite-v1:0")}


@pytest.mark.parametrize("platform_fixture", ["default_platform", "sandbox_platform"])
def test_every_model_invoking_role_is_scoped_to_its_stages_profiles(
    platform_fixture: str, request: pytest.FixtureRequest
) -> None:
    platform: SynthesizedPlatform = request.getfixturevalue(platform_fixture)
    invoking = 0
    for env, stack_name, template in bu_stacks(platform):
        own_profiles = f"{env.name}-model-profiles"
        for policy in of_type(template, "AWS::IAM::Policy").values():
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                actions = as_list(statement["Action"])
                if not any(a.startswith("bedrock:Invoke") or a == "bedrock:*" for a in actions):
                    continue
                assert actions == ["bedrock:InvokeModel"], (stack_name, actions)
                invoking += 1
                condition = statement.get("Condition")
                if condition is None:
                    # Unconditioned: only application inference profiles of the role's own stage.
                    for resource in as_list(statement["Resource"]):
                        owner = profile_of(platform, resource)
                        assert owner is not None and owner[0] == own_profiles, (stack_name, resource)
                else:
                    # The models a profile routes to: only through a profile of the same stage.
                    assert set(condition) == {"StringEquals"}, (stack_name, condition)
                    (profile,) = as_list(condition["StringEquals"]["bedrock:InferenceProfileArn"])
                    owner = profile_of(platform, profile)
                    assert owner is not None and owner[0] == own_profiles, (stack_name, profile)
    # Per stage at least the backend's profile and routed-model statements.
    assert invoking >= 2 * len(list(platform.config.environments()))


def test_the_backend_calls_its_use_case_profile(default_platform: SynthesizedPlatform) -> None:
    for env in default_platform.config.environments():
        template = default_platform.template(f"{env.name}-application")
        functions = of_type(template, "AWS::Lambda::Function")
        (backend,) = [f for k, f in functions.items() if k.startswith("Backend")]
        variables = backend["Properties"]["Environment"]["Variables"]
        stack, logical_id = profile_of(default_platform, variables["DEFAULT_MODEL_PROFILE_ARN"]) or ("", "")
        assert stack == f"{env.name}-model-profiles"
        key = application_key(env.business_unit, application_use_case(env.business_unit))
        assert profiles_by_key(default_platform, env)[key][0] == logical_id  # type: ignore[index]
        price = json.loads(variables["MODEL_PRICE"])
        assert price["price_date"] == "2025-06-01" and price["input_per_1k_tokens_usd"] > 0
        assert "USAGE_QUEUE_URL" in variables
        assert ("ONLINE_EVALUATION_QUEUE_URL" in variables) == online_evaluation_enabled(env)


def _resolved_json(value: Any) -> Any:
    """A JSON string property with tokens (Fn::Join) parsed, each token rendered as '<token>'."""
    if isinstance(value, dict) and "Fn::Join" in value:
        value = "".join(p if isinstance(p, str) else "<token>" for p in value["Fn::Join"][1])
    return json.loads(value)


def test_invocation_logging_call_matches_the_bedrock_api_and_its_policy_is_least_privilege(
    default_platform: SynthesizedPlatform,
) -> None:
    bedrock = botocore.session.get_session().get_service_model("bedrock")
    for env in default_platform.config.environments():
        template = default_platform.template(f"{env.name}-model-profiles")
        (custom,) = of_type(template, "Custom::AWS").values()
        create = _resolved_json(custom["Properties"]["Create"])
        delete = _resolved_json(custom["Properties"]["Delete"])
        assert (create["service"], create["action"]) == ("Bedrock", "PutModelInvocationLoggingConfiguration")
        assert delete["action"] == "DeleteModelInvocationLoggingConfiguration"
        operation = bedrock.operation_model("PutModelInvocationLoggingConfiguration")
        validate_parameters(create["parameters"], operation.input_shape)  # raises on a wrong member name
        config = create["parameters"]["loggingConfig"]
        assert config["s3Config"] == {"bucketName": "<token>", "keyPrefix": INVOCATION_LOG_PREFIX}
        assert config["textDataDeliveryEnabled"] is True
        policies = [
            s
            for p in of_type(template, "AWS::IAM::Policy").values()
            for s in p["Properties"]["PolicyDocument"]["Statement"]
        ]
        assert [sorted(as_list(s["Action"])) for s in policies] == [sorted(LOGGING_ACTIONS)]
        (bucket,) = of_type(template, "AWS::S3::Bucket").values()
        props = bucket["Properties"]
        (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
        expiry = [r for r in props["LifecycleConfiguration"]["Rules"] if r["Id"] == "log-retention"]
        assert expiry[0]["ExpirationInDays"] == env.settings.log_retention_days
        assert props["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"] is True
        (bucket_policy,) = of_type(template, "AWS::S3::BucketPolicy").values()
        statements = bucket_policy["Properties"]["PolicyDocument"]["Statement"]
        (delivery,) = [s for s in statements if s.get("Sid") == "BedrockInvocationLogDelivery"]
        assert (
            delivery["Principal"] == {"Service": "bedrock.amazonaws.com"}
            and delivery["Action"] == "s3:PutObject"
        )
        assert delivery["Condition"]["StringEquals"] == {"aws:SourceAccount": env.account}
        assert f"/{INVOCATION_LOG_PREFIX}/AWSLogs/{env.account}/BedrockModelInvocationLogs/*" in json.dumps(
            delivery["Resource"]
        )
        assert any(s["Effect"] == "Deny" and "aws:SecureTransport" in json.dumps(s) for s in statements)
        baseline = default_platform.template(f"{env.name}-baseline")
        (key,) = of_type(baseline, "AWS::KMS::Key").values()
        (encrypt,) = [
            s
            for s in key["Properties"]["KeyPolicy"]["Statement"]
            if s.get("Sid") == "BedrockInvocationLogEncryption"
        ]
        assert encrypt["Action"] == "kms:GenerateDataKey"
        assert encrypt["Condition"]["StringEquals"] == {"aws:SourceAccount": env.account}


def test_sandbox_stages_leave_the_shared_accounts_logging_setting_alone(
    sandbox_platform: SynthesizedPlatform,
) -> None:
    for env in sandbox_platform.config.environments():
        template = sandbox_platform.template(f"{env.name}-model-profiles")
        assert not of_type(template, "Custom::AWS") and not of_type(template, "AWS::S3::Bucket")


def test_usage_and_online_judge_functions_consume_their_queues_with_partial_failures(
    default_platform: SynthesizedPlatform,
) -> None:
    for env in default_platform.config.environments():
        template = default_platform.template(f"{env.name}-model-usage")
        mappings = [m["Properties"] for m in of_type(template, "AWS::Lambda::EventSourceMapping").values()]
        assert len(mappings) == (2 if online_evaluation_enabled(env) else 1)
        assert all(m["FunctionResponseTypes"] == ["ReportBatchItemFailures"] for m in mappings)
        queues = of_type(template, "AWS::SQS::Queue")
        assert all("KmsMasterKeyId" in q["Properties"] for q in queues.values())
        handlers = {f["Properties"]["Handler"] for f in of_type(template, "AWS::Lambda::Function").values()}
        expected = {"model_usage.handler.usage_writer"}
        if online_evaluation_enabled(env):
            expected.add("model_usage.handler.online_judge_handler")
        assert expected <= handlers
    finance = default_platform.config.business_unit("finance")
    enabled = {
        env.stage.value
        for env in default_platform.config.environments()
        if online_evaluation_enabled(env) and env.business_unit == finance
    }
    assert enabled == {"preprod", "prod"}


def synthesized_tables(platform: SynthesizedPlatform, business_unit: str) -> dict[str, GlueTable]:
    (lake,) = [t for s, t in platform.templates() if s.stack_name.endswith("-data-lake")]
    tables = {}
    for table in of_type(lake, "AWS::Glue::Table").values():
        table_input = table["Properties"]["TableInput"]
        if business_unit not in json.dumps(table["Properties"]["DatabaseName"]):
            continue
        tables[table_input["Name"]] = GlueTable(
            name=table_input["Name"],
            zone=TABLES[table_input["Name"]].zone,
            columns=tuple(
                GlueColumn(c["Name"], c["Type"]) for c in table_input["StorageDescriptor"]["Columns"]
            ),
            partition_keys=tuple(GlueColumn(c["Name"], c["Type"]) for c in table_input["PartitionKeys"]),
        )
    return tables


def test_the_usage_table_and_the_cost_per_tenant_query_match_the_synthesized_glue_columns(
    default_platform: SynthesizedPlatform,
) -> None:
    for bu in ("retail", "finance"):
        tables = synthesized_tables(default_platform, bu)
        usage = tables[UsageRecord.TABLE]
        assert {c.name for c in usage.columns} == set(UsageRecord.model_fields) - {"dt", "model"}
        check_query(lake_queries.MONTHLY_COST_PER_TENANT, tables)
    trimmed = dict(tables)
    trimmed[UsageRecord.TABLE] = GlueTable(
        name=usage.name,
        zone=usage.zone,
        columns=tuple(c for c in usage.columns if c.name != "cost_usd"),
        partition_keys=usage.partition_keys,
    )
    with pytest.raises(Exception, match="cost_usd"):
        check_query(lake_queries.MONTHLY_COST_PER_TENANT, trimmed)
