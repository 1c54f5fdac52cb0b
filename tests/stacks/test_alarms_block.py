"""stacks/blocks/alarms.py: an alarm built from a Python metric description renders exactly what aws-cdk-lib's
L2 `cloudwatch.Alarm` renders for the same metric (same logical id, same properties), and bad descriptions
are refused with the field named."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk import App, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Template
from hypothesis import given
from hypothesis import strategies as st

from stacks.blocks.alarms import (
    GREATER_OR_EQUAL,
    LESS_THAN,
    AlarmMetric,
    ExpressionSpec,
    MetricSpec,
    platform_alarm,
)

QUEUE_DEPTH = MetricSpec("AWS/SQS", "ApproximateNumberOfMessagesVisible", {"QueueName": "q"}, "Maximum", 300)
LATENCY = MetricSpec("AWS/SageMaker", "ModelLatency", {"VariantName": "v", "EndpointName": "e"}, "p90", 300)
REQUESTS = MetricSpec(
    "LLMOpsPlatform", "requests", {"service": "guardrail", "direction": "input"}, "Sum", 300
)
BLOCKED = MetricSpec("LLMOpsPlatform", "blocked", {"service": "guardrail", "direction": "input"}, "Sum", 300)
SCORE = MetricSpec("LLMOpsPlatform", "judge_score_mean", {"model": "m"}, "Average", 86400)

CASES: dict[str, AlarmMetric] = {
    "Simple": QUEUE_DEPTH,
    "Percentile": LATENCY,
    "LabelledExpression": ExpressionSpec(
        "100 * blocked / requests", {"requests": REQUESTS, "blocked": BLOCKED}, 300, label="block rate %"
    ),
    "UnlabelledExpression": ExpressionSpec(
        "blocked + requests", {"blocked": BLOCKED, "requests": REQUESTS}, 300
    ),
    "DayLongDrift": ExpressionSpec("DIFF(score)", {"score": SCORE}, 86400, label="drift"),
    # the expression's period overrides the period of the metric it uses (as the L2 MathExpression does)
    "PeriodOverride": ExpressionSpec("score * 2", {"score": SCORE}, 300, label="doubled"),
}


def _both_ways(name: str, spec: AlarmMetric, comparison: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The alarm from the L2 in one stack and from `platform_alarm` in another, same construct id."""
    app = App()
    l2_stack, block_stack = Stack(app, "L2"), Stack(app, "Block")
    l2_topic, block_topic = sns.Topic(l2_stack, "Topic"), sns.Topic(block_stack, "Topic")
    operator = {
        GREATER_OR_EQUAL: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        LESS_THAN: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
    }[comparison]
    alarm = cloudwatch.Alarm(
        l2_stack,
        name,
        alarm_description="why it matters",
        metric=spec.metric,
        threshold=2.5,
        evaluation_periods=3,
        datapoints_to_alarm=3,
        comparison_operator=operator,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )
    alarm.add_alarm_action(cw_actions.SnsAction(l2_topic))
    alarm.add_ok_action(cw_actions.SnsAction(l2_topic))
    platform_alarm(
        block_stack,
        name,
        metric=spec,
        description="why it matters",
        threshold=2.5,
        comparison=comparison,
        periods=3,
        actions=[block_topic.topic_arn],
    )

    def alarms(stack: Stack) -> dict[str, Any]:
        found: dict[str, Any] = Template.from_stack(stack).find_resources("AWS::CloudWatch::Alarm")
        return found

    return alarms(l2_stack), alarms(block_stack)


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("comparison", [GREATER_OR_EQUAL, LESS_THAN])
def test_the_block_renders_what_the_l2_alarm_renders(name: str, comparison: str) -> None:
    from_l2, from_block = _both_ways(name, CASES[name], comparison)
    assert len(from_l2) == 1
    assert from_block == from_l2  # logical id, every property, the actions on the topic


def test_the_alarm_keeps_the_l2_construct_path() -> None:
    stack = Stack(App(), "S")
    alarm = platform_alarm(
        stack,
        "QueueDepth",
        metric=QUEUE_DEPTH,
        description="d",
        threshold=1,
        comparison=GREATER_OR_EQUAL,
        periods=1,
        actions=[],
    )
    assert alarm.node.path == "S/QueueDepth/Resource"


def test_a_dashboard_metric_is_created_once_per_spec() -> None:
    spec = MetricSpec("N", "M", {}, "Sum", 300)
    assert spec.metric is spec.metric
    assert spec.metric.period.to_seconds() == Duration.minutes(5).to_seconds()


@given(st.text(min_size=1, max_size=12))
def test_an_unknown_statistic_is_refused_naming_the_field(statistic: str) -> None:
    known = {"average", "maximum", "minimum", "samplecount", "sum"}
    is_percentile = statistic[:1] in "pP" and statistic[1:].replace(".", "", 1).isdigit()
    if statistic.lower() in known or is_percentile:
        return
    with pytest.raises(ValueError, match=r"^statistic: "):
        MetricSpec("N", "M", {}, statistic, 300)


def test_an_expression_must_use_every_metric_it_names() -> None:
    with pytest.raises(ValueError, match=r"^using: \['blocked'\]"):
        ExpressionSpec("100 * requests", {"requests": REQUESTS, "blocked": BLOCKED}, 300)
    with pytest.raises(ValueError, match=r"^using: "):
        ExpressionSpec("1 + 1", {}, 300)
