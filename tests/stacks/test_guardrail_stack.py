"""Guardrail stack: the provisioned Bedrock guardrail, the filter function's environment and exact IAM."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from guardrail.bedrock_policy import guardrail_properties
from guardrail.settings import (
    BedrockGuardrailDefinition,
    GuardrailSettings,
    LocalRules,
)
from guardrail.settings import DirectionSettings as Direction

from stacks.guardrail_stack import MAX_SETTINGS_ENV_BYTES, settings_env
from stacks.settings import ConfigError, PlatformConfig, parse_config
from tests.conftest import SynthesizedPlatform

REPO_ROOT = Path(__file__).resolve().parents[2]
LAKE = "222222222222"
PARTITION = {"Ref": "AWS::Partition"}


def of_type(template: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [r for r in template["Resources"].values() if r["Type"] == resource_type]


def the_function(template: dict[str, Any]) -> dict[str, Any]:
    (function,) = of_type(template, "AWS::Lambda::Function")
    return function["Properties"]


def statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    (policy,) = of_type(template, "AWS::IAM::Policy")
    found: list[dict[str, Any]] = policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def key_import(bu: str, stage: str) -> dict[str, str]:
    return {
        "Fn::ImportValue": f"exco-{bu}-{stage}-baseline:ExportsOutputFnGetAttPlatformKey1C4A1A63Arn1AD0FED1"
    }


def lake_statements(bu: str, stage: str) -> list[dict[str, Any]]:
    return [
        {
            "Action": ["s3:AbortMultipartUpload", "s3:ListMultipartUploadParts", "s3:PutObject"],
            "Effect": "Allow",
            "Resource": {
                "Fn::Join": [
                    "",
                    ["arn:", PARTITION, f":s3:::exco-lake-filter-decisions-{LAKE}-eu-west-1/{bu}/{stage}/*"],
                ]
            },
        },
        {
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Condition": {
                "StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"},
                "ForAnyValue:StringEquals": {"kms:ResourceAliases": ["alias/exco/data-lake"]},
            },
            "Effect": "Allow",
            "Resource": {"Fn::Join": ["", ["arn:", PARTITION, f":kms:eu-west-1:{LAKE}:key/*"]]},
        },
    ]


# Actions without a resource type (Comprehend detection, X-Ray): the only statement with Resource "*".
DETECT_AND_TRACE = {
    "Action": [
        "comprehend:DetectPiiEntities",
        "comprehend:DetectToxicContent",
        "xray:PutTelemetryRecords",
        "xray:PutTraceSegments",
    ],
    "Effect": "Allow",
    "Resource": "*",
}
VPC_DESCRIBE = ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"]
LOGS = {
    "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
    "Effect": "Allow",
    "Resource": {"Fn::GetAtt": ["FilterLogs886BB365", "Arn"]},
}


# ---- the provisioned Bedrock guardrail (finance provisions one in the default config) -------------------


def test_provisioned_guardrail_carries_the_definition_the_environment_name_and_key(
    default_platform: SynthesizedPlatform,
) -> None:
    definition = default_platform.config.business_unit("finance").guardrails.bedrock_guardrail.definition  # type: ignore[union-attr]
    assert definition is not None
    (guardrail,) = of_type(
        default_platform.template("exco-finance-prod-guardrail"), "AWS::Bedrock::Guardrail"
    )
    properties = dict(guardrail["Properties"])
    assert properties.pop("KmsKeyArn") == key_import("finance", "prod")
    assert {t["Key"]: t["Value"] for t in properties.pop("Tags")}["BusinessUnit"] == "finance"
    assert properties == {**guardrail_properties(definition), "Name": "exco-finance-prod-finance-guardrail"}
    assert properties["TopicPolicyConfig"]["TopicsConfig"][0]["Name"] == "Investment advice"
    assert properties["SensitiveInformationPolicyConfig"] == {
        "PiiEntitiesConfig": [
            {"Type": "EMAIL", "Action": "ANONYMIZE"},
            {"Type": "US_SOCIAL_SECURITY_NUMBER", "Action": "BLOCK"},
        ]
    }


def test_a_version_is_published_and_the_function_uses_it(default_platform: SynthesizedPlatform) -> None:
    template = default_platform.template("exco-finance-dev-guardrail")
    (version,) = of_type(template, "AWS::Bedrock::GuardrailVersion")
    assert version["Properties"]["GuardrailIdentifier"] == {"Fn::GetAtt": ["BedrockGuardrail", "GuardrailId"]}
    # The description is create-only: a new digest (new definition) publishes a new version.
    assert version["Properties"]["Description"].startswith("exco-finance-dev definition ")
    variables = the_function(template)["Environment"]["Variables"]
    assert variables["BEDROCK_GUARDRAIL_ID"] == {"Fn::GetAtt": ["BedrockGuardrail", "GuardrailId"]}
    assert variables["BEDROCK_GUARDRAIL_VERSION"] == {"Fn::GetAtt": ["BedrockGuardrailVersion", "Version"]}


def test_guardrail_names_differ_between_environments_of_the_sandbox_account(
    sandbox_platform: SynthesizedPlatform,
) -> None:
    names = [
        r["Properties"]["Name"]
        for stack, template in sandbox_platform.templates()
        for r in of_type(template, "AWS::Bedrock::Guardrail")
    ]
    assert len(names) == len(set(names))


def test_every_business_unit_gets_a_prompt_attack_filter_on_input_by_default(
    default_platform: SynthesizedPlatform,
) -> None:
    # retail configures no guardrail at all: the default definition is provisioned and applied to input.
    template = default_platform.template("exco-retail-prod-guardrail")
    (guardrail,) = of_type(template, "AWS::Bedrock::Guardrail")
    filters = guardrail["Properties"]["ContentPolicyConfig"]["FiltersConfig"]
    assert {"Type": "PROMPT_ATTACK", "InputStrength": "HIGH", "OutputStrength": "NONE"} in filters
    assert guardrail["Properties"]["Name"] == "exco-retail-prod-llmops-guardrail"
    variables = the_function(template)["Environment"]["Variables"]
    assert variables["BEDROCK_GUARDRAIL_VERSION"] == {"Fn::GetAtt": ["BedrockGuardrailVersion", "Version"]}
    settings = GuardrailSettings.model_validate_json(variables["GUARDRAIL_SETTINGS"])
    assert settings.input.layers.bedrock and not settings.output.layers.bedrock


def test_a_business_unit_may_opt_out_of_the_bedrock_guardrail_explicitly() -> None:
    settings = GuardrailSettings.model_validate({"bedrock_guardrail": None})
    assert not settings.input.layers.bedrock and settings.bedrock_guardrail is None
    with pytest.raises(ValueError, match=r"input\.layers\.bedrock: needs bedrock_guardrail"):
        GuardrailSettings.model_validate({"bedrock_guardrail": None, "input": {"layers": {"bedrock": True}}})


# ---- the function ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("bu", ["retail", "finance"])
def test_function_environment_round_trips_the_business_unit_settings(
    default_platform: SynthesizedPlatform, bu: str
) -> None:
    variables = the_function(default_platform.template(f"exco-{bu}-preprod-guardrail"))["Environment"][
        "Variables"
    ]
    settings = default_platform.config.business_unit(bu).guardrails
    assert GuardrailSettings.model_validate_json(variables["GUARDRAIL_SETTINGS"]) == settings
    assert variables["BUSINESS_UNIT"] == bu
    assert variables["FILTER_DECISIONS_BUCKET"] == f"exco-lake-filter-decisions-{LAKE}-eu-west-1"


def test_function_runs_the_guardrail_handler_with_encrypted_environment(
    default_platform: SynthesizedPlatform,
) -> None:
    function = the_function(default_platform.template("exco-retail-dev-guardrail"))
    assert function["Handler"] == "guardrail.handler.lambda_handler"
    assert function["KmsKeyArn"] == key_import("retail", "dev")
    assert function["TracingConfig"] == {"Mode": "Active"}


def test_function_joins_the_vpc_only_where_the_stage_has_interface_endpoints(
    default_platform: SynthesizedPlatform,
) -> None:
    assert "VpcConfig" not in the_function(default_platform.template("exco-retail-dev-guardrail"))
    prod = default_platform.template("exco-retail-prod-guardrail")
    assert len(the_function(prod)["VpcConfig"]["SubnetIds"]) == 2
    (group,) = of_type(prod, "AWS::EC2::SecurityGroup")
    assert [
        (r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in group["Properties"]["SecurityGroupEgress"]
    ] == [("tcp", 443, 443)]
    assert "SecurityGroupIngress" not in group["Properties"]


def endpoint_names(template: dict[str, Any]) -> set[str]:
    return {
        r["Properties"]["ServiceName"].rsplit(".", 1)[-1]
        for r in of_type(template, "AWS::EC2::VPCEndpoint")
        if r["Properties"].get("VpcEndpointType") == "Interface"
    }


def test_the_services_the_function_calls_get_interface_endpoints(
    default_platform: SynthesizedPlatform,
) -> None:
    assert {"comprehend", "xray", "bedrock-runtime"} <= endpoint_names(
        default_platform.template("exco-finance-prod-baseline")
    )
    # every business unit applies its Bedrock guardrail (prompt attacks); dev has no interface endpoints.
    assert "bedrock-runtime" in endpoint_names(default_platform.template("exco-retail-prod-baseline"))
    assert endpoint_names(default_platform.template("exco-finance-dev-baseline")) == set()


# ---- IAM: exact statements ------------------------------------------------------------------------------


def same_statements(found: list[dict[str, Any]], expected: list[dict[str, Any]]) -> bool:
    return sorted(map(json.dumps, found)) == sorted(map(json.dumps, expected))


def apply_own_guardrail(bu: str, stage: str) -> list[dict[str, Any]]:
    return [
        {
            "Action": "bedrock:ApplyGuardrail",
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": ["BedrockGuardrail", "GuardrailArn"]},
        },
        {"Action": "kms:Decrypt", "Effect": "Allow", "Resource": key_import(bu, stage)},
    ]


def network_interface_arn(account: str) -> dict[str, Any]:
    return {"Fn::Join": ["", ["arn:", PARTITION, f":ec2:eu-west-1:{account}:network-interface/*"]]}


def test_finance_function_may_apply_its_own_guardrail_only(default_platform: SynthesizedPlatform) -> None:
    found = statements(default_platform.template("exco-finance-prod-guardrail"))
    create = next(s for s in found if s["Action"] == "ec2:CreateNetworkInterface")
    expected = [
        {**DETECT_AND_TRACE, "Action": sorted([*DETECT_AND_TRACE["Action"], *VPC_DESCRIBE])},
        LOGS,
        create,  # checked in test_filter_role_attaches_only_to_its_own_subnets
        {
            "Action": [
                "ec2:AssignPrivateIpAddresses",
                "ec2:DeleteNetworkInterface",
                "ec2:UnassignPrivateIpAddresses",
            ],
            "Effect": "Allow",
            "Resource": network_interface_arn("444444444443"),
        },
        *apply_own_guardrail("finance", "prod"),
        *lake_statements("finance", "prod"),
    ]
    assert same_statements(found, expected)


def test_dev_function_outside_the_vpc_has_no_network_interface_rights(
    default_platform: SynthesizedPlatform,
) -> None:
    assert same_statements(
        statements(default_platform.template("exco-retail-dev-guardrail")),
        [DETECT_AND_TRACE, LOGS, *apply_own_guardrail("retail", "dev"), *lake_statements("retail", "dev")],
    )


def test_filter_role_attaches_only_to_its_own_subnets(default_platform: SynthesizedPlatform) -> None:
    template = default_platform.template("exco-retail-prod-guardrail")
    (role,) = of_type(template, "AWS::IAM::Role")
    assert (
        "ManagedPolicyArns" not in role["Properties"]
    )  # no AWSLambdaVPCAccessExecutionRole ("*" on every action)
    create = next(s for s in statements(template) if s["Action"] == "ec2:CreateNetworkInterface")
    resources = [json.dumps(r) for r in create["Resource"]]
    subnet_ids = [json.dumps(s) for s in the_function(template)["VpcConfig"]["SubnetIds"]]
    assert json.dumps(network_interface_arn("333333333333")) in resources
    subnets = [r for r in resources if ":ec2:eu-west-1:333333333333:subnet/" in r]
    assert sorted(next(i for i in subnet_ids if i in r) for r in subnets) == sorted(subnet_ids)
    (group,) = [r for r in resources if ":ec2:eu-west-1:333333333333:security-group/" in r]
    assert "FilterSecurityGroup" in group
    assert len(resources) == 1 + len(subnet_ids) + 1


def test_filter_role_acknowledgement_names_exactly_its_wildcard_actions(
    default_platform: SynthesizedPlatform,
) -> None:
    from aws_cdk import Validations

    for stage in ("dev", "prod"):
        template = default_platform.template(f"exco-finance-{stage}-guardrail")
        wildcard = {
            action
            for statement in statements(template)
            if statement["Resource"] == "*"
            for action in statement["Action"]
        }
        app = default_platform.platform.shared.node.scope
        role = next(c for c in app.node.find_all() if c.node.path == f"finance-{stage}/Guardrail/Filter/Role")  # type: ignore[union-attr]
        reasons = [
            reason
            for entry in role.node.metadata
            if entry.type == Validations.ACKNOWLEDGED_RULES_METADATA_KEY
            for rule, reason in entry.data.items()
            if rule.endswith("AwsSolutions-IAM5[Resource::*]")
        ]
        assert reasons, [entry.data for entry in role.node.metadata]
        reason = reasons[-1]
        named = set(reason.split(": ", 1)[1].split(";")[0].split(", "))
        assert named == wildcard, stage


def s3_resources(template: dict[str, Any]) -> list[str]:
    found = []
    for statement in statements(template):
        if any(action.startswith("s3:") for action in statement["Action"]):
            resource = statement["Resource"]
            found.append("".join(p for p in resource["Fn::Join"][1] if isinstance(p, str)))
    return found


@pytest.mark.parametrize("platform_fixture", ["default_platform", "sandbox_platform"])
def test_no_function_reaches_another_business_unit_s_or_stage_s_prefix(
    platform_fixture: str, request: pytest.FixtureRequest
) -> None:
    platform: SynthesizedPlatform = request.getfixturevalue(platform_fixture)
    prefix = platform.config.organization.prefix
    checked = 0
    for stack, template in platform.templates():
        if not stack.stack_name.endswith("-guardrail"):
            continue
        own, stage = stack.tags["BusinessUnit"], stack.tags["Stage"]
        resources = s3_resources(template)
        assert resources == [
            f"arn::s3:::{prefix}-lake-filter-decisions-{platform.config.data_lake_account}-"
            f"{platform.config.home_region}/{own}/{stage}/*"
        ], stack.stack_name
        checked += 1
    assert checked == 6


# ---- config ---------------------------------------------------------------------------------------------


def test_business_unit_without_a_guardrails_section_gets_the_defaults(default_config: PlatformConfig) -> None:
    assert default_config.business_unit("retail").guardrails == GuardrailSettings()
    assert default_config.business_unit("finance").guardrails.input.local_rules.deny_terms == (
        "project-aurora",
    )


def test_a_guardrails_mistake_names_the_field() -> None:
    raw = yaml.safe_load((REPO_ROOT / "config" / "platform.yaml").read_text())
    broken = copy.deepcopy(raw)
    broken["business_units"][0]["guardrails"] = {"input": {"failure_policy": "shrug"}}
    with pytest.raises(ConfigError) as excinfo:
        parse_config(broken)
    assert "business_units[0].guardrails.input.failure_policy: Input should be" in str(excinfo.value)
    assert "fail_closed" in str(excinfo.value)


def test_settings_too_large_for_a_lambda_environment_are_refused_naming_the_field() -> None:
    terms = tuple(f"secret-term-{i:05d}" for i in range(MAX_SETTINGS_ENV_BYTES // 16))
    settings = GuardrailSettings(input=Direction(local_rules=LocalRules(deny_terms=terms)))
    with pytest.raises(ValueError, match=r"^business_units\[retail\]\.guardrails: \d+ bytes"):
        settings_env("retail", settings)


def test_settings_env_leaves_defaults_out_and_round_trips() -> None:
    # The one resolved default kept: input applies the Bedrock guardrail that is provisioned by default.
    assert settings_env("retail", GuardrailSettings()) == '{"input":{"layers":{"bedrock":true}}}'
    assert (
        GuardrailSettings.model_validate_json(settings_env("retail", GuardrailSettings()))
        == GuardrailSettings()
    )
    custom = GuardrailSettings(
        output=Direction(failure_policy="fail_open"),
        bedrock_guardrail={"definition": BedrockGuardrailDefinition(name="x")},  # type: ignore[arg-type]
    )
    assert GuardrailSettings.model_validate_json(settings_env("retail", custom)) == custom
    assert json.loads(settings_env("retail", custom))["output"] == {"failure_policy": "fail_open"}
