"""CloudWatch metrics described in Python, and alarms rendered from them straight into an L1 `CfnAlarm`.

Why not the L2 `cloudwatch.Alarm`: each one costs three jsii round trips (the alarm, its alarm action, its OK
action) plus Node work to render its metric when the app synthesizes, and a platform has hundreds (six per
Python function). `platform_alarm` writes the same `AWS::CloudWatch::Alarm` properties the L2 writes, under
the same construct path (`<id>/Resource`, so the logical id does not change), in two round trips.

A `MetricSpec` / `ExpressionSpec` is plain data that alarms and dashboards (dashboard.py) read in Python;
`.metric` gives the equivalent L2 for code that needs one (created on first use). The rendering follows
aws-cdk-lib's `Alarm`
(dimensions sorted by name; simple statistics as `Statistic`, percentiles as `ExtendedStatistic`; a math
expression as `Metrics` with the expression first, id `expr_1`, then its metrics under their own ids).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from stacks.blocks import durations

# CloudFormation's spellings (the jsii enums carry their member names, not these values).
GREATER_OR_EQUAL = "GreaterThanOrEqualToThreshold"
LESS_THAN = "LessThanThreshold"
NOT_BREACHING = "notBreaching"

_SIMPLE_STATISTICS = {name.lower(): name for name in ("Average", "Maximum", "Minimum", "SampleCount", "Sum")}
_PERCENTILE = re.compile(r"^p(\d{1,2}(\.\d+)?|100)$", re.IGNORECASE)


def _statistic_fields(statistic: str) -> tuple[str, str]:
    """("statistic" | "extended_statistic", normalized value), as aws-cdk-lib's `parseStatisticToFields`."""
    simple = _SIMPLE_STATISTICS.get(statistic.lower())
    if simple is not None:
        return "statistic", simple
    if _PERCENTILE.match(statistic):
        return "extended_statistic", statistic.lower()
    raise ValueError(
        f"statistic: {statistic!r} is not one of {', '.join(_SIMPLE_STATISTICS.values())} or pNN"
    )


@dataclass(frozen=True)
class MetricSpec:
    """One CloudWatch metric (namespace, name, dimensions, statistic, period in seconds)."""

    namespace: str
    metric_name: str
    dimensions: Mapping[str, str]
    statistic: str
    period_seconds: int

    def __post_init__(self) -> None:
        _statistic_fields(self.statistic)  # refuse an unknown statistic when the spec is written

    @cached_property
    def metric(self) -> cloudwatch.Metric:
        """The equivalent L2 metric (created on first use)."""
        return cloudwatch.Metric(
            namespace=self.namespace,
            metric_name=self.metric_name,
            dimensions_map=dict(self.dimensions),
            statistic=self.statistic,
            period=durations.seconds(self.period_seconds),
        )

    @property
    def rendered_statistic(self) -> str:
        """The statistic as aws-cdk-lib normalizes it ("sum" -> "Sum", "P99" -> "p99")."""
        return _statistic_fields(self.statistic)[1]

    def _dimensions(self) -> list[cloudwatch.CfnAlarm.DimensionProperty] | None:
        dimensions = [
            cloudwatch.CfnAlarm.DimensionProperty(name=name, value=self.dimensions[name])
            for name in sorted(self.dimensions)
        ]
        return dimensions or None

    def alarm_properties(self) -> dict[str, Any]:
        """The alarm's own metric fields (a plain metric with no label: the L2's single-metric form)."""
        kind, statistic = _statistic_fields(self.statistic)
        properties: dict[str, Any] = {
            "namespace": self.namespace,
            "metric_name": self.metric_name,
            "period": self.period_seconds,
            kind: statistic,
        }
        dimensions = self._dimensions()
        if dimensions:
            properties["dimensions"] = dimensions
        return properties

    def data_query(self, query_id: str) -> cloudwatch.CfnAlarm.MetricDataQueryProperty:
        """This metric as one entry of an alarm's `Metrics` (a metric an expression uses)."""
        metric = cloudwatch.CfnAlarm.MetricProperty(
            metric_name=self.metric_name, namespace=self.namespace, dimensions=self._dimensions()
        )
        stat = cloudwatch.CfnAlarm.MetricStatProperty(
            metric=metric, period=self.period_seconds, stat=self.rendered_statistic
        )
        return cloudwatch.CfnAlarm.MetricDataQueryProperty(id=query_id, metric_stat=stat, return_data=False)


@dataclass(frozen=True)
class ExpressionSpec:
    """A metric math expression over named plain metrics."""

    expression: str
    using: Mapping[str, MetricSpec]
    period_seconds: int
    label: str | None = None

    def __post_init__(self) -> None:
        # The L2 MathExpression warns about ids the expression does not use; refuse them outright here.
        words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", self.expression))
        unused = [name for name in self.using if name not in words]
        if unused or not self.using:
            raise ValueError(f"using: {unused or 'no metrics'} not used in expression {self.expression!r}")
        # As the L2 MathExpression does: the expression's period applies to every metric it uses.
        periodic = {
            name: replace(spec, period_seconds=self.period_seconds) for name, spec in self.using.items()
        }
        object.__setattr__(self, "using", periodic)

    @cached_property
    def metric(self) -> cloudwatch.MathExpression:
        """The equivalent L2 expression (created on first use)."""
        return cloudwatch.MathExpression(
            expression=self.expression,
            using_metrics={name: spec.metric for name, spec in self.using.items()},
            label=self.label,
            period=durations.seconds(self.period_seconds),
        )

    def alarm_properties(self) -> dict[str, Any]:
        top = cloudwatch.CfnAlarm.MetricDataQueryProperty(
            expression=self.expression, id="expr_1", label=self.label, return_data=True
        )
        return {"metrics": [top, *(spec.data_query(name) for name, spec in self.using.items())]}


AlarmMetric = MetricSpec | ExpressionSpec


def platform_alarm(
    scope: Construct,
    construct_id: str,
    *,
    metric: AlarmMetric,
    description: str,
    threshold: float,
    comparison: str,
    periods: int,
    actions: Sequence[str],
) -> cloudwatch.CfnAlarm:
    """An alarm that notifies `actions` (ARNs) on alarm and on OK; missing data does not breach."""
    # The holder keeps the L2's construct path `<id>/Resource`, so the logical id stays the same.
    holder = Construct(scope, construct_id)
    return cloudwatch.CfnAlarm(
        holder,
        "Resource",
        alarm_description=description,
        comparison_operator=comparison,
        threshold=threshold,
        datapoints_to_alarm=periods,
        evaluation_periods=periods,
        treat_missing_data=NOT_BREACHING,
        alarm_actions=list(actions),
        ok_actions=list(actions),
        **metric.alarm_properties(),
    )
