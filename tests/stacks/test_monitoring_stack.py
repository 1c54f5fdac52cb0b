"""Monitoring stacks: the dashboard covers what each stage runs, every alarm acts, budgets match the config.

The expected services are derived from the synthesized stacks of the same stage (not a hard-coded list), so
a new function or endpoint that is not monitored fails here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from stacks.settings import STAGES, EnvironmentSpec
from tests.conftest import SynthesizedPlatform


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: r.get("Properties", {})
        for logical_id, r in template["Resources"].items()
        if r["Type"] == kind
    }


def environments(platform: SynthesizedPlatform) -> Iterator[EnvironmentSpec]:
    yield from platform.config.environments()


def stage_stacks(platform: SynthesizedPlatform, env: EnvironmentSpec) -> dict[str, dict[str, Any]]:
    prefix = f"{env.name}-"
    return {
        s.stack_name: s.template
        for s in platform.stacks()
        if s.stack_name.startswith(prefix) and not s.stack_name.endswith(("-pipeline", "-monitoring"))
    }


def exports_of(platform: SynthesizedPlatform) -> dict[str, tuple[str, Any]]:
    """Export name -> (stack name, exported value) over the whole assembly."""
    found = {}
    for stack, template in platform.templates():
        for output in template.get("Outputs", {}).values():
            if "Export" in output:
                found[output["Export"]["Name"]] = (stack.stack_name, output["Value"])
    return found


def dashboard_references(platform: SynthesizedPlatform, env: EnvironmentSpec) -> tuple[str, set[Any]]:
    """The dashboard body's literal text and the values it imports from other stacks."""
    template = platform.template(f"{env.name}-monitoring")
    (dashboard,) = resources(template, "AWS::CloudWatch::Dashboard").values()
    parts = dashboard["DashboardBody"]["Fn::Join"][1]
    text = "".join(p for p in parts if isinstance(p, str))
    exports = exports_of(platform)
    imported = {
        json.dumps(exports[p["Fn::ImportValue"]], sort_keys=True)
        for p in parts
        if isinstance(p, dict) and "Fn::ImportValue" in p
    }
    return text, imported


@pytest.mark.parametrize("config_name", ["default_platform", "sandbox_platform"])
def test_every_stage_dashboard_covers_the_functions_state_machines_and_endpoints_of_that_stage(
    config_name: str, request: pytest.FixtureRequest
) -> None:
    platform: SynthesizedPlatform = request.getfixturevalue(config_name)
    for env in environments(platform):
        text, imported = dashboard_references(platform, env)
        expected_imports = set()
        endpoints = set()
        for stack_name, template in stage_stacks(platform, env).items():
            for logical_id, props in resources(template, "AWS::Lambda::Function").items():
                if "POWERTOOLS_SERVICE_NAME" in props.get("Environment", {}).get("Variables", {}):
                    expected_imports.add(json.dumps((stack_name, {"Ref": logical_id}), sort_keys=True))
            for logical_id in resources(template, "AWS::StepFunctions::StateMachine"):
                # Step Functions metrics are keyed by the state machine ARN (Ref)
                expected_imports.add(json.dumps((stack_name, {"Ref": logical_id}), sort_keys=True))
            endpoints |= {p["EndpointName"] for p in resources(template, "AWS::SageMaker::Endpoint").values()}
        assert expected_imports, env.name  # every stage runs at least the guardrail and evaluation
        missing = expected_imports - imported
        assert not missing, f"{env.name}: dashboard misses {missing}"
        for endpoint in endpoints:
            assert f'"EndpointName","{endpoint}"' in text
            assert '"GPUUtilization"' in text and '"GPUMemoryUtilization"' in text
        assert ('"GPUUtilization"' in text) is bool(endpoints)


def test_every_alarm_of_every_stack_has_an_action(default_platform: SynthesizedPlatform) -> None:
    alarms = 0
    for stack, template in default_platform.templates():
        for logical_id, props in resources(template, "AWS::CloudWatch::Alarm").items():
            alarms += 1
            assert props.get("AlarmActions"), f"{stack.stack_name}/{logical_id} has no alarm action"
    assert alarms > 0


def test_monitoring_alarms_notify_the_stage_topic_encrypted_with_the_baseline_key(
    default_platform: SynthesizedPlatform,
) -> None:
    template = default_platform.template("exco-retail-prod-monitoring")
    ((topic_id, topic),) = resources(template, "AWS::SNS::Topic").items()
    assert topic["TopicName"] == "exco-retail-prod-alarms"
    assert "Fn::ImportValue" in topic["KmsMasterKeyId"]
    alarms = resources(template, "AWS::CloudWatch::Alarm").values()
    assert all(a["AlarmActions"] == [{"Ref": topic_id}] for a in alarms)
    # serving alarms moved here from the serving stack, thresholds from serving.alarms
    by_metric = {a.get("MetricName"): a for a in alarms}
    assert by_metric["ModelLatency"]["Threshold"] == 3_000_000  # microseconds
    assert by_metric["GPUMemoryUtilization"]["Namespace"] == "/aws/sagemaker/Endpoints"
    assert not resources(default_platform.template("exco-retail-prod-serving"), "AWS::SNS::Topic")


def test_topic_policy_and_key_policy_let_cloudwatch_and_budgets_publish(
    default_platform: SynthesizedPlatform,
) -> None:
    template = default_platform.template("exco-finance-dev-monitoring")
    (policy,) = resources(template, "AWS::SNS::TopicPolicy").values()
    publishers = {
        s["Principal"]["Service"]
        for s in policy["PolicyDocument"]["Statement"]
        if s["Action"] == "sns:Publish" and s["Effect"] == "Allow"
    }
    assert publishers == {"cloudwatch.amazonaws.com", "budgets.amazonaws.com"}
    (key,) = resources(default_platform.template("exco-finance-dev-baseline"), "AWS::KMS::Key").values()
    (grant,) = [
        s for s in key["KeyPolicy"]["Statement"] if s.get("Sid") == "AllowAlarmAndBudgetNotifications"
    ]
    assert sorted(grant["Principal"]["Service"]) == ["budgets.amazonaws.com", "cloudwatch.amazonaws.com"]
    assert set(grant["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    assert grant["Condition"] == {"StringEquals": {"aws:SourceAccount": "444444444441"}}


@pytest.mark.parametrize("config_name", ["default_platform", "sandbox_platform"])
def test_one_budget_per_business_unit_and_stage_with_the_configured_amount_and_thresholds(
    config_name: str, request: pytest.FixtureRequest
) -> None:
    platform: SynthesizedPlatform = request.getfixturevalue(config_name)
    names = []
    for env in environments(platform):
        template = platform.template(f"{env.name}-monitoring")
        budgets = {b["Budget"]["BudgetName"]: b for b in resources(template, "AWS::Budgets::Budget").values()}
        assert set(budgets) == {f"{env.name}-monthly", f"{env.name}-model-spend"}
        settings = env.business_unit.monitoring
        names += list(budgets)
        stage_tags = [
            {"Tags": {"Key": "BusinessUnit", "Values": [env.business_unit.name], "MatchOptions": ["EQUALS"]}},
            {"Tags": {"Key": "Stage", "Values": [env.stage.value], "MatchOptions": ["EQUALS"]}},
        ]
        # All spend of the stage: its own account (untaggable model tokens and Comprehend calls count too);
        # the sandbox's one account tells stages apart by tags only.
        stage = budgets[f"{env.name}-monthly"]["Budget"]
        assert stage["BudgetLimit"] == {"Amount": settings.budgets.of(env.stage.value), "Unit": "USD"}
        if platform.config.is_sandbox:
            assert stage["FilterExpression"] == {"And": stage_tags}
        else:
            assert stage["FilterExpression"] == {
                "Dimensions": {"Key": "LINKED_ACCOUNT", "Values": [env.account], "MatchOptions": ["EQUALS"]}
            }
        # Model spend: Amazon Bedrock usage tagged with the stage (its inference profiles carry the tags).
        model = budgets[f"{env.name}-model-spend"]["Budget"]
        assert model["BudgetLimit"] == {"Amount": settings.model_budgets.of(env.stage.value), "Unit": "USD"}
        assert model["FilterExpression"] == {
            "And": [
                {"Dimensions": {"Key": "SERVICE", "Values": ["Amazon Bedrock"], "MatchOptions": ["EQUALS"]}},
                *stage_tags,
            ]
        }
        topic = next(iter(resources(template, "AWS::SNS::Topic")))
        for budget in budgets.values():
            data = budget["Budget"]
            assert data["TimeUnit"] == "MONTHLY" and data["BudgetType"] == "COST"
            notes = {
                n["Notification"]["NotificationType"]: n["Notification"]["Threshold"]
                for n in budget["NotificationsWithSubscribers"]
            }
            assert notes == {"ACTUAL": 80, "FORECASTED": 100}
            # Alerts go to this business unit stage's own topic, nobody else's.
            assert all(
                n["Subscribers"] == [{"SubscriptionType": "SNS", "Address": {"Ref": topic}}]
                for n in budget["NotificationsWithSubscribers"]
            )
    assert len(names) == len(set(names)) == 2 * len(platform.config.business_units) * len(STAGES)


def test_quality_signals_use_the_emitted_metric_contract(default_platform: SynthesizedPlatform) -> None:
    template = default_platform.template("exco-retail-preprod-monitoring")
    alarms = list(resources(template, "AWS::CloudWatch::Alarm").values())
    expressions = {q["Expression"] for a in alarms for q in a.get("Metrics", []) if "Expression" in q}
    assert "100 * blocked_input / requests_input" in expressions
    assert "100 * low / ratings" in expressions
    assert any(e.startswith("100 * (errors_input_0") for e in expressions)
    text, _ = dashboard_references(
        default_platform,
        default_platform.config.environment(default_platform.config.business_unit("retail"), STAGES[1]),
    )
    assert "100 * findings_pii_input / calls_pii_input" in text
    assert '"LLMOpsPlatform"' in text


def test_prod_alarms_on_each_refused_approval_with_the_metric_the_deployer_emits(
    default_platform: SynthesizedPlatform, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deployer's EMF line and the alarm name the same namespace, metric and all three dimensions."""
    from serving_deployer.preprod_gate import emit_refusal

    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "serving_deployer")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "LLMOpsPlatform")
    emit_refusal("retail", "exco-retail-product-qa")
    emitted = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    (declared,) = emitted["_aws"]["CloudWatchMetrics"]
    emitted_dimensions = {name: emitted[name] for name in declared["Dimensions"][0]}

    def refusal_alarms(stack_name: str) -> list[dict[str, Any]]:
        template = default_platform.template(stack_name)
        return [
            a
            for a in resources(template, "AWS::CloudWatch::Alarm").values()
            if a.get("MetricName") == declared["Metrics"][0]["Name"]
        ]

    prod = refusal_alarms("exco-retail-prod-monitoring")
    matching = [
        a
        for a in prod
        if a["Namespace"] == declared["Namespace"]
        and {d["Name"]: d["Value"] for d in a["Dimensions"]} == emitted_dimensions
    ]
    assert len(matching) == 1, prod
    (alarm,) = matching
    assert alarm["Threshold"] == 1 and alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["AlarmActions"], "the alarm must notify the stage's topic"
    # One alarm per gated group of retail; none where no gate is checked (preprod, dev, finance: no BU models).
    config = default_platform.config
    assert len(prod) == len(config.business_unit("retail").use_cases)
    for stack_name in (
        "exco-retail-preprod-monitoring",
        "exco-retail-dev-monitoring",
        "exco-finance-prod-monitoring",
    ):
        assert refusal_alarms(stack_name) == [], stack_name
