"""stacks/blocks/dashboard.py: a dashboard laid out and rendered in Python is the dashboard aws-cdk-lib's L2
`cloudwatch.Dashboard` renders for the same widgets (same logical id, same body, tokens included)."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk import App, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sqs as sqs
from aws_cdk.assertions import Template

from stacks.blocks.alarms import AlarmMetric, ExpressionSpec, MetricSpec
from stacks.blocks.dashboard import Graph, PlatformDashboard, Text, Widget


def _calls(layer: str) -> MetricSpec:
    return MetricSpec("LLMOpsPlatform", "calls", {"service": "guardrail", "layer": layer}, "Sum", 300)


def _rows(queue_name: str) -> list[list[Widget]]:
    """Rows that exercise the layout and every rendering rule the platform's monitoring stacks use."""
    depth = MetricSpec(
        "AWS/SQS", "ApproximateNumberOfMessagesVisible", {"QueueName": queue_name}, "Maximum", 300
    )
    latency = MetricSpec(
        "AWS/SageMaker", "ModelLatency", {"EndpointName": "e", "VariantName": "v"}, "p90", 300
    )
    score = MetricSpec("LLMOpsPlatform", "judge_score_mean", {"model": "m"}, "Average", 86400)
    errors = MetricSpec("LLMOpsPlatform", "errors", {"service": "guardrail", "layer": "pii"}, "sum", 3600)
    rate = ExpressionSpec("100 * e / c", {"e": errors, "c": _calls("pii")}, 300, label="error rate %")
    unlabelled = ExpressionSpec("c1 + c2", {"c1": _calls("pii"), "c2": _calls("toxicity")}, 300)
    return [
        [Text(markdown='# title\nwith `code`, ünïcode and "quotes"', width=24, height=2)],
        [
            Graph(title="queue (token dimension)", left=[depth], width=12),
            Graph(title="p90", left=[latency], width=12),
        ],
        [
            Graph(
                title="daily",
                left=[score, ExpressionSpec("DIFF(s)", {"s": score}, 86400, label="drift")],
                width=24,
            )
        ],
        # three of width 12 wrap onto a second line; the same metric twice is drawn once
        [
            Graph(title="rate", left=[rate, errors], width=12),
            Graph(title="sum", left=[unlabelled], width=12),
            Graph(title="twice", left=[depth, depth], width=12),
        ],
        [Graph(title="default width", left=[]), Graph(title="8", left=[latency], width=8)],
    ]


def _l2_widget(widget: Widget) -> cloudwatch.IWidget:
    if isinstance(widget, Text):
        return cloudwatch.TextWidget(markdown=widget.markdown, width=widget.width, height=widget.height)
    return cloudwatch.GraphWidget(
        title=widget.title, left=[m.metric for m in widget.left], width=widget.width
    )


def _dashboards(stack: Stack) -> dict[str, Any]:
    found: dict[str, Any] = Template.from_stack(stack).find_resources("AWS::CloudWatch::Dashboard")
    return found


def test_the_block_renders_what_the_l2_dashboard_renders() -> None:
    app = App()
    l2_stack, block_stack = Stack(app, "L2"), Stack(app, "Block")
    l2 = cloudwatch.Dashboard(l2_stack, "Dashboard", dashboard_name="d", default_interval=Duration.hours(6))
    block = PlatformDashboard(block_stack, "Dashboard", dashboard_name="d", start="-PT6H")
    for row in _rows(sqs.Queue(l2_stack, "Queue").queue_name):
        l2.add_widgets(*(_l2_widget(w) for w in row))
    for row in _rows(sqs.Queue(block_stack, "Queue").queue_name):
        block.add_widgets(*row)
    from_l2, from_block = _dashboards(l2_stack), _dashboards(block_stack)
    assert len(from_l2) == 1
    assert from_block == from_l2


def test_rows_added_after_construction_are_in_the_body() -> None:
    stack = Stack(App(), "S")
    dashboard = PlatformDashboard(stack, "Dashboard", dashboard_name="d", start="-PT6H")
    dashboard.add_widgets(Text(markdown="later", width=24, height=2))
    (body,) = (r["Properties"]["DashboardBody"] for r in _dashboards(stack).values())
    assert body == '{"start":"-PT6H","widgets":[{"type":"text","width":24,"height":2,"x":0,"y":0,' + (
        '"properties":{"markdown":"later"}}]}'
    )


def test_two_metrics_under_one_id_are_refused() -> None:
    first: AlarmMetric = ExpressionSpec("a", {"a": _calls("pii")}, 300, label="x")
    second: AlarmMetric = ExpressionSpec("a", {"a": _calls("toxicity")}, 300, label="y")
    dashboard = PlatformDashboard(Stack(App(), "S"), "Dashboard", dashboard_name="d", start="-PT6H")
    with pytest.raises(ValueError, match=r"^left: two different metrics share the id 'a'"):
        dashboard.add_widgets(Graph(title="clash", left=[first, second]))
