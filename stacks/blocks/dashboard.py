"""A CloudWatch dashboard whose body is laid out and rendered in Python from the metric specs of alarms.py.

Why not the L2 `cloudwatch.Dashboard`: every graph of it needs an L2 `Metric` per metric line, a
`MathExpression` per expression and a `GraphWidget`, each a jsii round trip, and a monitoring stack draws about
a hundred lines. Here the widgets are plain data; the body is rendered once, when the app synthesizes (so
widgets added after construction are included), and passed through `Stack.to_json_string` so that tokens
(function names, the region) become CloudFormation expressions exactly as the L2 renders them.

The rendering follows aws-cdk-lib's (2.275): rows of widgets stacked in one column, a row wrapping at 24
units; a graph's metrics listed as its `MetricSet` lists them (each top-level metric, then the metrics an
expression uses, hidden, under their ids; a metric met twice is listed once); `period` only where it is not
300 seconds, `stat` only where it is not Average. `tests/stacks/test_dashboard_block.py` compares the result
with the L2's for the same widgets.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aws_cdk import Aws
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from stacks.blocks.alarms import AlarmMetric, ExpressionSpec, MetricSpec

GRID_WIDTH = 24
DEFAULT_PERIOD = 300
REGION = Aws.REGION  # a static property read (a round trip): once


@dataclass(frozen=True)
class Graph:
    """A time series graph of metrics on the left axis."""

    title: str
    left: Sequence[AlarmMetric]
    width: int = 6
    height: int = 6


@dataclass(frozen=True)
class Text:
    markdown: str
    width: int = 6
    height: int = 2


Widget = Graph | Text


def _metric_key(metric: AlarmMetric) -> tuple[Any, ...]:
    if isinstance(metric, MetricSpec):
        dimensions = tuple(sorted(metric.dimensions.items()))
        return (
            "metric",
            metric.namespace,
            metric.metric_name,
            dimensions,
            metric.statistic,
            metric.period_seconds,
        )
    using = tuple((name, _metric_key(spec)) for name, spec in metric.using.items())
    return ("expression", metric.expression, using, metric.period_seconds, metric.label)


@dataclass
class _Entry:
    metric: AlarmMetric
    on_left_axis: bool = False
    id: str | None = None


def _metric_entries(metrics: Sequence[AlarmMetric]) -> list[_Entry]:
    """The lines of one graph, deduplicated as aws-cdk-lib's MetricSet does."""
    entries: list[_Entry] = []
    by_key: dict[tuple[Any, ...], _Entry] = {}
    by_id: dict[str, _Entry] = {}

    def add(metric: AlarmMetric, top_level: bool, metric_id: str | None) -> None:
        key = _metric_key(metric)
        entry = by_id.get(metric_id) if metric_id else None
        if entry is not None and _metric_key(entry.metric) != key:
            raise ValueError(f"left: two different metrics share the id {metric_id!r} in one graph")
        if entry is None:
            entry = by_key.get(key)
            if entry is not None and entry.id and metric_id:
                entry = None
        if entry is None:
            entry = _Entry(metric)
            entries.append(entry)
            by_key[key] = entry
        if not entry.id and metric_id:
            entry.id = metric_id
            by_id[metric_id] = entry
        entry.on_left_axis = entry.on_left_axis or top_level
        if isinstance(metric, ExpressionSpec):
            for name, used in metric.using.items():
                add(used, False, name)

    for metric in metrics:
        add(metric, True, None)
    return entries


def _metric_line(entry: _Entry) -> list[Any]:
    metric = entry.metric
    line: list[Any] = []
    options: dict[str, Any] = {}
    if isinstance(metric, ExpressionSpec):  # always a graph's own line: expressions use plain metrics only
        # the L2 labels an unlabelled expression line with its toString(): the expression itself
        options["label"] = metric.label if metric.label is not None else metric.expression
        options["expression"] = metric.expression
        if metric.period_seconds != DEFAULT_PERIOD:
            options["period"] = metric.period_seconds
    else:
        line += [metric.namespace, metric.metric_name]
        for name in sorted(metric.dimensions):
            line += [name, metric.dimensions[name]]
        if entry.id:
            options["id"] = entry.id
        if not entry.on_left_axis:
            options["visible"] = False
        if metric.period_seconds != DEFAULT_PERIOD:
            options["period"] = metric.period_seconds
        statistic = metric.rendered_statistic
        if statistic != "Average":
            options["stat"] = statistic
    if options:
        line.append(options)
    return line


def _widget_json(widget: Widget, x: int, y: int) -> dict[str, Any]:
    placed: dict[str, Any] = {
        "type": "text" if isinstance(widget, Text) else "metric",
        "width": widget.width,
        "height": widget.height,
        "x": x,
        "y": y,
    }
    if isinstance(widget, Text):
        placed["properties"] = {"markdown": widget.markdown}
        return placed
    properties: dict[str, Any] = {"view": "timeSeries", "title": widget.title, "region": REGION}
    lines = [_metric_line(entry) for entry in _metric_entries(widget.left)]
    if lines:
        properties["metrics"] = lines
    properties["yAxis"] = {}
    placed["properties"] = properties
    return placed


def _row_json(widgets: Sequence[Widget], top: int) -> tuple[list[dict[str, Any]], int]:
    """Place one row's widgets from the left, wrapping at the grid width; returns them and the row height."""
    placed: list[dict[str, Any]] = []
    x = y = height = 0
    for widget in widgets:
        if x + widget.width > GRID_WIDTH:
            y, x = height, 0
        placed.append(_widget_json(widget, x, top + y))
        height = max(height, y + widget.height)
        x += widget.width
    return placed, height


def dashboard_body(rows: Sequence[Sequence[Widget]], *, start: str) -> dict[str, Any]:
    """The dashboard body for `rows` (each one `add_widgets` call), before tokens are resolved."""
    widgets: list[dict[str, Any]] = []
    top = 0
    for row in rows:
        placed, height = _row_json(row, top)
        widgets += placed
        top += height
    return {"start": start, "widgets": widgets}


@dataclass
class PlatformDashboard:
    """`add_widgets(*widgets)` adds one row, as the L2's does; the body is rendered at synthesis."""

    scope: Construct
    construct_id: str
    dashboard_name: str
    start: str  # e.g. "-PT6H": the default time range
    rows: list[tuple[Widget, ...]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # The holder keeps the L2's construct path `<id>/Resource`, so the logical id stays the same.
        holder = Construct(self.scope, self.construct_id)
        self.resource = cloudwatch.CfnDashboard(
            holder, "Resource", dashboard_name=self.dashboard_name, dashboard_body=self.render()
        )

    def add_widgets(self, *widgets: Widget) -> None:
        if widgets:
            self.rows.append(widgets)
            self.resource.dashboard_body = self.render()  # one round trip per row

    def render(self) -> str:
        """The body as JSON text; tokens stay in it as token strings and become an Fn::Join at synthesis."""
        return json.dumps(
            dashboard_body(self.rows, start=self.start), separators=(",", ":"), ensure_ascii=False
        )
