"""Whole-app gates: cdk-nag without unacknowledged errors, specific acknowledgements, cfn-lint clean."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Stack, Validations
from aws_cdk import aws_s3 as s3

from stacks.app_factory import create_app
from stacks.blocks.nag import MIN_REASON_LENGTH, acknowledge, add_nag_checks
from tests.conftest import SynthesizedPlatform
from tools.synth_report import CFN_LINT_ERROR_BIT, run_cfn_lint

# Actions that support no resource-level permissions: the only ones allowed with Resource "*".
ACTIONS_WITHOUT_RESOURCE_SCOPE = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    # Not ec2:CreateNetworkInterface / DeleteNetworkInterface / Assign- and UnassignPrivateIpAddresses:
    # they are authorized on network-interface, subnet and security-group ARNs (issue 16 item 15).
    "ec2:DescribeNetworkInterfaces",
    # Comprehend's real-time detection actions list no resource type in the Service Authorization
    # Reference (Amazon Comprehend), so they only accept "*" (guardrail function).
    "comprehend:DetectToxicContent",
    "comprehend:DetectPiiEntities",
    # Step Functions logging to CloudWatch Logs (vended log delivery) and X-Ray sampling.
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    # Bedrock model invocation logging is one setting per account and region (model profiles stack).
    "bedrock:PutModelInvocationLoggingConfiguration",
    "bedrock:DeleteModelInvocationLoggingConfiguration",
    # SageMaker endpoint execution role and the serving deployer (issue 9).
    "ec2:DescribeVpcs",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
    "ecr:GetAuthorizationToken",
    "cloudwatch:PutMetricData",
}


@pytest.mark.parametrize("platform_fixture", ["default_platform", "sandbox_platform"])
def test_nag_report_has_no_unacknowledged_findings(
    platform_fixture: str, request: pytest.FixtureRequest
) -> None:
    platform: SynthesizedPlatform = request.getfixturevalue(platform_fixture)
    report = json.loads((platform.outdir / "validation-report.json").read_text())
    violations = [v for plugin in report["pluginReports"] for v in plugin.get("violations", [])]
    assert violations == []


def test_nag_gate_fails_synth_on_an_unacknowledged_error(tmp_path: Path) -> None:
    app = create_app(outdir=str(tmp_path))
    stack = Stack(app, "Insecure")
    s3.Bucket(stack, "PlainBucket")
    add_nag_checks(app)
    with pytest.raises(Exception, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    rules = {v["ruleName"] for p in report["pluginReports"] for v in p["violations"]}
    assert {"AwsSolutions-S1", "AwsSolutions-S10"} <= rules


def test_vague_acknowledgements_are_refused() -> None:
    app = create_app()
    stack = Stack(app, "S")
    with pytest.raises(ValueError, match="specific reason"):
        acknowledge(stack, "AwsSolutions-S1", "not needed")


def acknowledgements(platform: SynthesizedPlatform) -> list[tuple[str, str, str]]:
    found = []
    for construct in platform.platform.shared.node.scope.node.find_all():  # type: ignore[union-attr]
        for entry in construct.node.metadata:
            if entry.type == Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                for rule, reason in entry.data.items():
                    found.append((construct.node.path, rule, reason))
    return found


def test_every_platform_acknowledgement_states_a_specific_reason(
    default_platform: SynthesizedPlatform,
) -> None:
    ours = [a for a in acknowledgements(default_platform) if "AwsSolutions-" in a[1]]
    assert ours, "the access-log buckets at least carry an S1 acknowledgement"
    for path, rule, reason in ours:
        assert len(reason) >= MIN_REASON_LENGTH, (path, rule)
        assert reason[0].isupper() or reason[0].isdigit() or reason.startswith("CDK"), (path, rule)


# CDK Pipelines generates these two policies (no property narrows them): self-mutation reads stacks and
# lists buckets through the CDK CLI; the asset role starts and watches its own builds. Keyed by logical-id prefix.
CDK_PIPELINES_WILDCARDS = {
    "PipelineUpdatePipelineSelfMutationRoleDefaultPolicy": {"cloudformation:DescribeStacks", "s3:ListBucket"},
    "PipelineAssetsFileRoleDefaultPolicy": {
        "codebuild:BatchGetBuilds",
        "codebuild:StartBuild",
        "codebuild:StopBuild",
    },
}


def wildcard_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    statements = []
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            continue
        generated = next((a for p, a in CDK_PIPELINES_WILDCARDS.items() if logical_id.startswith(p)), set())
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            resources = statement.get("Resource")
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if generated and set(actions) == generated:
                continue
            if resources == "*" or (isinstance(resources, list) and "*" in resources):
                statements.append(statement)
    return statements


@pytest.mark.parametrize("platform_fixture", ["default_platform", "sandbox_platform"])
def test_resource_wildcards_only_for_actions_without_resource_scope(
    platform_fixture: str, request: pytest.FixtureRequest
) -> None:
    platform: SynthesizedPlatform = request.getfixturevalue(platform_fixture)
    for stack, template in platform.templates():
        for statement in wildcard_statements(template):
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert set(actions) <= ACTIONS_WITHOUT_RESOURCE_SCOPE, (stack.stack_name, actions)


@pytest.mark.parametrize("platform_fixture", ["default_platform", "sandbox_platform"])
def test_cfn_lint_reports_no_error(platform_fixture: str, request: pytest.FixtureRequest) -> None:
    platform: SynthesizedPlatform = request.getfixturevalue(platform_fixture)
    templates = [Path(s.template_full_path) for s in platform.stacks()]
    status, output = run_cfn_lint(templates, workers=1)
    assert status & CFN_LINT_ERROR_BIT == 0, output


def test_cfn_lint_gate_detects_an_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.template.json"
    broken.write_text(
        json.dumps({"Resources": {"B": {"Type": "AWS::S3::Bucket", "Properties": {"NoSuch": 1}}}})
    )
    status, output = run_cfn_lint([broken], workers=1)
    assert status & CFN_LINT_ERROR_BIT
    assert "NoSuch" in output


def test_log_retention_check_fails_synth_for_log_groups_without_retention_in_any_stage(
    tmp_path: Path,
) -> None:
    """app.py fails on log groups without retention in any stack: the app's, a nested Stage's, and a Stage
    synthesized before the app (as the pipelines' add_stage does with every business unit's)."""
    from aws_cdk import Stage
    from aws_cdk import aws_logs as logs

    from stacks.app_factory import synth_errors
    from stacks.blocks.log_retention import RULE_ID

    app = create_app(outdir=str(tmp_path))
    stage = Stage(app, "exco-retail-dev")
    logs.LogGroup(Stack(stage, "Inner"), "Kept", retention=logs.RetentionDays.INFINITE)
    early = Stage(app, "exco-retail-prod")
    logs.LogGroup(Stack(early, "Early"), "Kept", retention=logs.RetentionDays.INFINITE)
    early.synth()  # what CDK Pipelines' add_stage does while the platform is composed
    outer = Stack(app, "Outer")
    logs.LogGroup(outer, "Kept", retention=logs.RetentionDays.INFINITE)
    logs.LogGroup(outer, "Bounded", retention=logs.RetentionDays.ONE_WEEK)
    logs.CfnLogGroup(outer, "RawBounded", retention_in_days=30)
    assembly = app.synth()
    errors = sorted(synth_errors(assembly.directory))
    assert [e.split(": ", 1)[0].rsplit("/", 1)[0] for e in errors] == [
        "/Outer",
        "/exco-retail-dev/Inner",
        "/exco-retail-prod/Early",
    ]
    assert [e.split(": ", 1)[0].rsplit("/", 1)[1][:4] for e in errors] == ["Kept"] * 3  # logical ids
    assert all(RULE_ID in e for e in errors)


def test_a_log_group_names_its_construct_path_where_the_template_records_it() -> None:
    from stacks.blocks.log_retention import log_groups_without_retention

    template = {
        "Resources": {
            "Forever": {
                "Type": "AWS::Logs::LogGroup",
                "Metadata": {"aws:cdk:path": "exco-shared/exco-tooling/Forever/Resource"},
            },
            "NoProperties": {"Type": "AWS::Logs::LogGroup"},
            "Kept": {"Type": "AWS::Logs::LogGroup", "Properties": {"RetentionInDays": 7}},
            "Queue": {"Type": "AWS::SQS::Queue"},
        }
    }
    errors = log_groups_without_retention("exco-shared/exco-tooling", template)
    assert [e.split(": ", 1)[0] for e in errors] == [
        "/exco-shared/exco-tooling/Forever/Resource",
        "/exco-shared/exco-tooling/NoProperties",
    ]


@pytest.mark.parametrize("platform_fixture", ["default_platform", "sandbox_platform"])
def test_every_log_group_has_retention(platform_fixture: str, request: pytest.FixtureRequest) -> None:
    platform: SynthesizedPlatform = request.getfixturevalue(platform_fixture)
    groups = [
        (stack.stack_name, logical_id, resource["Properties"].get("RetentionInDays"))
        for stack, template in platform.templates()
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Logs::LogGroup"
    ]
    assert groups
    assert [g for g in groups if not g[2]] == []


def test_gate_reads_nested_stage_violations_from_the_validation_report(tmp_path: Path) -> None:
    # Under the CDK CLI a violation inside a nested Stage lands in the report without failing synth.
    from stacks.blocks.nag import failed_validations
    from tools.synth_report import main as synth_report_main

    report = {
        "version": "55.0.0",
        "title": "Validation Report",
        "pluginReports": [
            {
                "pluginName": "AwsSolutions",
                "conclusion": "failure",
                "violations": [
                    {
                        "ruleName": "AwsSolutions-S10",
                        "description": "TLS not required",
                        "violatingConstructs": [{"constructPath": "retail-dev/Baseline/Bucket/Resource"}],
                    }
                ],
            }
        ],
    }
    (tmp_path / "validation-report.json").write_text(json.dumps(report))
    (tmp_path / "manifest.json").write_text(json.dumps({"version": "55.0.0", "artifacts": {}}))
    assert failed_validations(tmp_path) == [
        "AwsSolutions-S10 at retail-dev/Baseline/Bucket/Resource: TLS not required"
    ]
    assert synth_report_main([str(tmp_path)]) == 1
    report["pluginReports"] = []
    (tmp_path / "validation-report.json").write_text(json.dumps(report))
    assert failed_validations(tmp_path) == []
