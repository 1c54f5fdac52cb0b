"""Observability and cost control of one business unit in one stage.

One encrypted SNS topic receives every alarm and the budget alerts (email / HTTPS subscriptions from
`business_units[].monitoring`). One dashboard shows what the stage runs: every PlatformFunction and state
machine found in the stage's stacks, the serving endpoint where there is one, the foundation-model quality
signals (guardrail rates, judge score and its drift, low ratings) and, once added, the app's REST API.
Plain aws_cloudwatch (not cdk-monitoring-constructs): see docs/monitoring.md for the measurement.

Later services are one call each: `monitor_stack(stack)` discovers functions / state machines / endpoints /
REST APIs, or `add_api(api)`, `add_function(label, fn)` name them explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_budgets as budgets
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct
from serving_deployer.preprod_gate import REFUSAL_METRIC

from common import quality_metrics as qm
from stacks.baseline_stack import BaselineStack
from stacks.blocks.alarm_topic import Publisher, alarm_topic
from stacks.blocks.alarms import (
    GREATER_OR_EQUAL,
    LESS_THAN,
    AlarmMetric,
    ExpressionSpec,
    MetricSpec,
    platform_alarm,
)
from stacks.blocks.dashboard import Graph, PlatformDashboard, Text
from stacks.blocks.platform_stack import EnvironmentStack
from stacks.blocks.python_function import DEFAULT_TIMEOUT, PlatformFunction
from stacks.fine_tuning_stack import FineTuningStack
from stacks.model_usage_stack import ModelUsageStack
from stacks.serving_stack import VARIANT_NAME, ServingStack
from stacks.settings import EnvironmentSpec

# periods in seconds: metrics, alarms and the dashboard are plain data (stacks/blocks/alarms.py, dashboard.py)
FIVE_MINUTES = 300
ONE_HOUR = 3600
ONE_DAY = 86400
GT = GREATER_OR_EQUAL
LT = LESS_THAN
DIRECTIONS = ("input", "output")
FINDINGS_LAYERS = ("toxicity", "pii")  # findings rate per direction is shown for these layers


def dashboard_name(environment: EnvironmentSpec) -> str:
    return f"{environment.name}-platform"


def budget_name(environment: EnvironmentSpec) -> str:
    return f"{environment.name}-monthly"


def model_budget_name(environment: EnvironmentSpec) -> str:
    return f"{environment.name}-model-spend"


# Cost Explorer's name of the service every Bedrock model call is billed under.
BEDROCK_SERVICE = "Amazon Bedrock"


class MonitoringStack(EnvironmentStack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        environment: EnvironmentSpec,
        baseline: BaselineStack,
        shared_account: bool = False,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            environment=environment,
            name="monitoring",
            description=f"LLMOps monitoring for {environment.name}: alarm topic, dashboard, alarms, budget",
        )
        self.settings = environment.business_unit.monitoring
        # Sandbox mode: every environment shares one account, so only cost allocation tags tell them apart.
        self.shared_account = shared_account
        self.thresholds = self.settings.alarms
        self.alarms: list[cloudwatch.CfnAlarm] = []
        self.topic = self._topic(baseline)
        # every alarm notifies the topic: its ARN token read once (each read is a jsii round trip)
        self._alarm_actions = [self.topic.topic_arn]
        self.dashboard = PlatformDashboard(
            self, "Dashboard", dashboard_name=dashboard_name(environment), start="-PT6H"
        )
        self.dashboard.add_widgets(
            Text(
                markdown=f"# {environment.name}\nAlarms notify SNS topic `{environment.name}-alarms`.",
                width=24,
                height=2,
            )
        )
        self._guardrail_signals()
        self._evaluation_signals()
        self._rating_signals()
        self.budget = self._budget()
        self.model_budget = self._model_budget()

    # ---- topic and budget --------------------------------------------------------------------------

    def _topic(self, baseline: BaselineStack) -> sns.Topic:
        # The topic uses the baseline CMK: CloudWatch alarms and AWS Budgets must be able to use it.
        partition, region, account = self.partition_token, self.region_name, self.account_id
        return alarm_topic(
            self,
            "AlarmTopic",
            topic_name=f"{self.environment_spec.name}-alarms",
            display_name=f"{self.environment_spec.name} alarms",
            key=baseline.key,
            key_sid="AllowAlarmAndBudgetNotifications",
            account=account,
            publishers=[
                Publisher(
                    "CloudWatchAlarmsPublish",
                    "cloudwatch.amazonaws.com",
                    f"arn:{partition}:cloudwatch:{region}:{account}:alarm:*",
                ),
                Publisher("BudgetsPublish", "budgets.amazonaws.com", f"arn:{partition}:budgets::{account}:*"),
            ],
            emails=self.settings.emails,
            https_endpoints=[str(url) for url in self.settings.https_endpoints],
        )

    def _alerts(self) -> list[budgets.CfnBudget.NotificationWithSubscribersProperty]:
        """Actual and forecast alerts to this business unit stage's own topic."""
        subscriber = budgets.CfnBudget.SubscriberProperty(
            subscription_type="SNS", address=self.topic.topic_arn
        )
        return [
            budgets.CfnBudget.NotificationWithSubscribersProperty(
                notification=budgets.CfnBudget.NotificationProperty(
                    notification_type=kind,
                    comparison_operator="GREATER_THAN",
                    threshold=percent,
                    threshold_type="PERCENTAGE",
                ),
                subscribers=[subscriber],
            )
            for kind, percent in (
                ("ACTUAL", self.settings.budget_actual_percent),
                ("FORECASTED", self.settings.budget_forecast_percent),
            )
        ]

    def _tag_filters(self) -> list[budgets.CfnBudget.ExpressionProperty]:
        """BusinessUnit and Stage cost allocation tags (activate them in the payer account once)."""
        env = self.environment_spec
        return [
            budgets.CfnBudget.ExpressionProperty(
                tags=budgets.CfnBudget.TagValuesProperty(key=key, values=[value], match_options=["EQUALS"])
            )
            for key, value in (("BusinessUnit", env.business_unit.name), ("Stage", env.stage.value))
        ]

    def _budget(self) -> budgets.CfnBudget:
        """All spend of the stage. With an account of its own that is the account's spend, so untaggable
        usage (on-demand model tokens, Comprehend calls) counts too; in the shared sandbox account only
        tagged resources (the inference profiles among them) can be told apart."""
        env = self.environment_spec
        if self.shared_account:
            scope = budgets.CfnBudget.ExpressionProperty(and_=self._tag_filters())
        else:
            scope = budgets.CfnBudget.ExpressionProperty(
                dimensions=budgets.CfnBudget.ExpressionDimensionValuesProperty(
                    key="LINKED_ACCOUNT", values=[env.account], match_options=["EQUALS"]
                )
            )
        budget = budgets.CfnBudget(
            self,
            "Budget",
            budget=budgets.CfnBudget.BudgetDataProperty(
                budget_name=budget_name(env),  # budgets are account-wide: the name carries BU and stage
                budget_type="COST",
                time_unit="MONTHLY",
                budget_limit=budgets.CfnBudget.SpendProperty(
                    amount=self.settings.budgets.of(env.stage.value), unit="USD"
                ),
                filter_expression=scope,
            ),
            notifications_with_subscribers=self._alerts(),
        )
        budget.node.add_dependency(self.topic)  # the topic policy must exist before Budgets validates it
        return budget

    def _model_budget(self) -> budgets.CfnBudget:
        """Model spend of the stage: Amazon Bedrock usage carrying the stage's tags, which every model call
        of the platform has because it goes through the stage's tagged application inference profiles."""
        env = self.environment_spec
        bedrock = budgets.CfnBudget.ExpressionProperty(
            dimensions=budgets.CfnBudget.ExpressionDimensionValuesProperty(
                key="SERVICE", values=[BEDROCK_SERVICE], match_options=["EQUALS"]
            )
        )
        budget = budgets.CfnBudget(
            self,
            "ModelSpendBudget",
            budget=budgets.CfnBudget.BudgetDataProperty(
                budget_name=model_budget_name(env),
                budget_type="COST",
                time_unit="MONTHLY",
                budget_limit=budgets.CfnBudget.SpendProperty(
                    amount=self.settings.model_budgets.of(env.stage.value), unit="USD"
                ),
                filter_expression=budgets.CfnBudget.ExpressionProperty(and_=[bedrock, *self._tag_filters()]),
            ),
            notifications_with_subscribers=self._alerts(),
        )
        budget.node.add_dependency(self.topic)
        return budget

    # ---- alarms --------------------------------------------------------------------------------------

    def add_alarm(
        self,
        construct_id: str,
        description: str,
        metric: AlarmMetric,
        threshold: float,
        comparison: str = GT,
        periods: int = 2,
    ) -> cloudwatch.CfnAlarm:
        """Every alarm of this stack notifies the topic (a test checks every alarm has an action)."""
        alarm = platform_alarm(
            self,
            construct_id,
            metric=metric,
            description=f"{self.environment_spec.name}: {description}",
            threshold=threshold,
            comparison=comparison,
            periods=periods,
            actions=self._alarm_actions,
        )
        self.alarms.append(alarm)
        return alarm

    # ---- services ----------------------------------------------------------------------------------

    def monitor_stack(self, stack: Stack) -> None:
        """Discover what `stack` runs and add it: Python functions, state machines, REST APIs, endpoints."""
        stack_node = stack.node
        # read once per stack, not once per function: each read is a jsii round trip
        stack_path = stack_node.path + "/"
        stack_label = stack.stack_name.removeprefix(self.environment_spec.name + "-")
        for node in stack_node.find_all():
            if isinstance(node, PlatformFunction):
                label = node.node.path.removeprefix(stack_path)
                self.add_function(f"{stack_label} {label}", node.function)
            elif isinstance(node, sfn.StateMachine):
                self.add_state_machine(node)
            elif isinstance(node, apigw.RestApi):
                self.add_api(node)
        if isinstance(stack, ServingStack):
            self.add_endpoint(stack)
            self.add_gate_refusals(stack)
        if isinstance(stack, ModelUsageStack):
            self.add_model_usage(stack)
        if isinstance(stack, FineTuningStack):  # uploads, events and run ends that could not be handled
            self.add_dead_letters(stack.dead_letter_queues)

    def add_model_usage(self, usage: ModelUsageStack) -> None:
        """Dead letters of the usage and sample queues, usage records the backend could not queue, and the
        online judge score with its day-to-day drift (the same bounds as offline runs)."""
        t = self.thresholds
        self.add_dead_letters(usage.dead_letter_queues)
        failures = self._quality_metric(qm.DELIVERY_FAILURES, qm.APP_SERVICE, kind="usage")
        self.add_alarm(
            "UsageDeliveryFailures", "usage records the app backend could not queue", failures, 1, periods=1
        )
        if usage.online_judge is None:
            return
        model = self.environment_spec.business_unit.application.default_model.name
        score = self._quality_metric(
            qm.JUDGE_SCORE_MEAN, qm.ONLINE_EVALUATION_SERVICE, ONE_DAY, "Average", model=model
        )
        drift = ExpressionSpec(
            "DIFF(online_score)", {"online_score": score}, ONE_DAY, label=f"{model} online drift"
        )
        self.dashboard.add_widgets(
            Graph(title="Online judge score of production answers (1-10)", left=[score], width=12),
            Graph(title="Online judge score change per day", left=[drift], width=12),
        )
        self.add_alarm(
            "OnlineJudgeScore",
            f"{model} online judge score below the minimum",
            score,
            t.min_judge_score,
            LT,
            periods=1,
        )
        self.add_alarm(
            "OnlineJudgeScoreDrop",
            f"{model} online judge score fell from one day to the next",
            drift,
            -t.max_judge_score_drop,
            LT,
            periods=1,
        )

    def add_dead_letters(self, queues: Mapping[str, sqs.IQueue]) -> None:
        """One alarm per dead-letter queue: a single message there is work that was not done."""
        for name, queue in queues.items():
            depth = MetricSpec(
                "AWS/SQS",
                "ApproximateNumberOfMessagesVisible",
                {"QueueName": queue.queue_name},
                "Maximum",
                FIVE_MINUTES,
            )
            self.add_alarm(
                f"{name}DeadLetters", f"{name} messages that could not be processed", depth, 1, periods=1
            )

    def add_function(self, label: str, function: lambda_.Function) -> None:
        t = self.thresholds
        timeout = (function.timeout or DEFAULT_TIMEOUT).to_milliseconds()
        dimensions = {"FunctionName": function.function_name}

        def metric(name: str, statistic: str) -> MetricSpec:
            return MetricSpec("AWS/Lambda", name, dimensions, statistic, FIVE_MINUTES)

        errors, throttles = metric("Errors", "Sum"), metric("Throttles", "Sum")
        duration, invocations = metric("Duration", "p99"), metric("Invocations", "Sum")
        self.dashboard.add_widgets(
            Graph(
                title=f"{label}: invocations, errors, throttles",
                left=[invocations, errors, throttles],
                width=12,
            ),
            Graph(title=f"{label}: duration p99 (ms)", left=[duration], width=12),
        )
        scope_id = label.title().replace(" ", "").replace("/", "").replace("-", "")
        self.add_alarm(f"{scope_id}Errors", f"{label} errors", errors, t.lambda_errors_per_5_minutes)
        self.add_alarm(
            f"{scope_id}Throttles", f"{label} throttles", throttles, t.lambda_throttles_per_5_minutes
        )
        self.add_alarm(
            f"{scope_id}Duration",
            f"{label} p99 duration near its timeout",
            duration,
            timeout * t.lambda_duration_p99_percent_of_timeout / 100,
        )

    def add_state_machine(self, machine: sfn.StateMachine) -> None:
        dimensions = {"StateMachineArn": machine.state_machine_arn}
        started, succeeded, failed, timed_out = (
            MetricSpec("AWS/States", name, dimensions, "Sum", FIVE_MINUTES)
            for name in ("ExecutionsStarted", "ExecutionsSucceeded", "ExecutionsFailed", "ExecutionsTimedOut")
        )
        self.dashboard.add_widgets(
            Graph(
                title="Evaluation state machine: executions",
                left=[started, succeeded, failed, timed_out],
                width=24,
            )
        )
        failures = ExpressionSpec(
            "failed + timed_out", {"failed": failed, "timed_out": timed_out}, FIVE_MINUTES
        )
        self.add_alarm(
            f"{machine.node.id}Failures",
            "evaluation executions failed or timed out",
            failures,
            self.thresholds.evaluation_failed_executions,
            periods=1,
        )

    def add_api(self, api: apigw.RestApi) -> None:
        """The app backend's REST API: latency and 4xx / 5xx (call this or pass its stack to monitor_stack)."""
        dimensions = {"ApiName": api.rest_api_name}
        count, client, server, latency = (
            MetricSpec("AWS/ApiGateway", name, dimensions, statistic, FIVE_MINUTES)
            for name, statistic in (
                ("Count", "Sum"),
                ("4XXError", "Sum"),
                ("5XXError", "Sum"),
                ("Latency", "p90"),
            )
        )
        name = api.node.id
        self.dashboard.add_widgets(
            Graph(
                title=f"API {name}: requests, 4xx, 5xx",
                left=[count, client, server],
                width=12,
            ),
            Graph(title=f"API {name}: latency p90 (ms)", left=[latency], width=12),
        )
        self.add_alarm(
            f"Api{name}ServerErrors",
            f"API {name} 5xx",
            server,
            self.thresholds.lambda_errors_per_5_minutes,
        )

    def add_endpoint(self, serving: ServingStack) -> None:
        """Serving endpoint: invocations, latency, GPU utilization and memory, errors; alarms from serving.alarms."""
        dims = {"EndpointName": serving.endpoint_name, "VariantName": VARIANT_NAME}

        def metric(name: str, statistic: str, namespace: str = "AWS/SageMaker") -> MetricSpec:
            return MetricSpec(namespace, name, dims, statistic, FIVE_MINUTES)

        instance_ns = "/aws/sagemaker/Endpoints"
        errors = metric("Invocation5XXErrors", "Sum")
        latency = metric("ModelLatency", "p90")  # microseconds
        gpu_memory = metric("GPUMemoryUtilization", "Average", instance_ns)
        self.dashboard.add_widgets(
            Graph(
                title=f"Endpoint {serving.endpoint_name}: invocations and model errors",
                left=[
                    metric("Invocations", "Sum"),
                    errors,
                    metric("Invocation4XXErrors", "Sum"),
                ],
                width=8,
            ),
            Graph(title="Endpoint model latency p90 (us)", left=[latency], width=8),
            Graph(
                title="Endpoint GPU utilization / memory (%)",
                left=[metric("GPUUtilization", "Average", instance_ns), gpu_memory],
                width=8,
            ),
        )
        limits = serving.settings.alarms
        self.add_alarm("EndpointErrors", "model invocation 5XX errors", errors, limits.errors_per_5_minutes)
        self.add_alarm(
            "EndpointLatency", "p90 model latency above the bound", latency, limits.latency_p90_ms * 1000
        )
        self.add_alarm(
            "EndpointGpuMemory",
            "GPU memory utilization above the bound",
            gpu_memory,
            limits.gpu_memory_percent,
        )

    def add_gate_refusals(self, serving: ServingStack) -> None:
        """Prod refused an approved business-unit version that has no passing preprod gate record.

        One alarm per gated group: the deployer's metric (lambdas/serving_deployer/preprod_gate.py) carries the
        business unit, the group and Powertools' service dimension, and an alarm must name all three.
        """
        for group in serving.gate_checked_groups:
            refusals = MetricSpec(
                qm.NAMESPACE,
                REFUSAL_METRIC,
                {
                    "BusinessUnit": self.environment_spec.business_unit.name,
                    "ModelPackageGroup": group,
                    "service": "serving_deployer",
                },
                "Sum",
                FIVE_MINUTES,
            )
            self.add_alarm(
                f"PreprodGateRefusals{group.removeprefix(self.environment_spec.org_prefix + '-')}",
                f"an approved version of {group} was refused: it did not pass the preprod gate",
                refusals,
                1,
                GT,
                periods=1,
            )

    # ---- foundation-model quality signals (emitted by the services, see common.quality_metrics) -------

    def _quality_metric(
        self, name: str, service: str, period: int = FIVE_MINUTES, statistic: str = "Sum", **dims: str
    ) -> MetricSpec:
        dimensions = {**dims, "business_unit": self.environment_spec.business_unit.name, "service": service}
        return MetricSpec(qm.NAMESPACE, name, dimensions, statistic, period)

    def _guardrail_signals(self) -> None:
        t = self.thresholds
        guardrails = self.environment_spec.business_unit.guardrails
        rates: list[AlarmMetric] = []
        findings: list[AlarmMetric] = []
        for direction in DIRECTIONS:
            switches = getattr(guardrails, direction).layers
            layers = [
                name for name in ("toxicity", "pii", "bedrock", "local_rules") if getattr(switches, name)
            ]
            if not layers:
                continue
            per_request = {
                f"requests_{direction}": self._quality_metric(
                    qm.GUARDRAIL_REQUESTS, qm.GUARDRAIL_SERVICE, direction=direction
                ),
                f"blocked_{direction}": self._quality_metric(
                    qm.GUARDRAIL_BLOCKED, qm.GUARDRAIL_SERVICE, direction=direction
                ),
            }
            block_rate = ExpressionSpec(
                f"100 * blocked_{direction} / requests_{direction}",
                per_request,
                FIVE_MINUTES,
                label=f"{direction} block rate %",
            )
            # Errors and calls summed over the layers that run in this direction.
            layer_metrics = {
                f"{kind}_{direction}_{index}": self._quality_metric(
                    kind, qm.GUARDRAIL_SERVICE, direction=direction, layer=layer
                )
                for index, layer in enumerate(layers)
                for kind in ("calls", "errors")
            }
            errors_sum = " + ".join(f"errors_{direction}_{i}" for i in range(len(layers)))
            calls_sum = " + ".join(f"calls_{direction}_{i}" for i in range(len(layers)))
            error_rate = ExpressionSpec(
                f"100 * ({errors_sum}) / ({calls_sum})",
                layer_metrics,
                FIVE_MINUTES,
                label=f"{direction} layer error rate %",
            )
            rates += [block_rate, error_rate]
            title = direction.title()
            self.add_alarm(
                f"Guardrail{title}BlockRate",
                f"guardrail {direction} block rate",
                block_rate,
                t.guardrail_block_rate_percent,
            )
            self.add_alarm(
                f"Guardrail{title}ErrorRate",
                f"guardrail {direction} layer error rate",
                error_rate,
                t.guardrail_error_rate_percent,
            )
            for layer in FINDINGS_LAYERS:
                if layer in layers:
                    findings_rate = ExpressionSpec(
                        f"100 * findings_{layer}_{direction} / calls_{layer}_{direction}",
                        {
                            f"findings_{layer}_{direction}": self._quality_metric(
                                "findings", qm.GUARDRAIL_SERVICE, direction=direction, layer=layer
                            ),
                            f"calls_{layer}_{direction}": self._quality_metric(
                                "calls", qm.GUARDRAIL_SERVICE, direction=direction, layer=layer
                            ),
                        },
                        FIVE_MINUTES,
                        label=f"{layer} findings % ({direction})",
                    )
                    findings.append(findings_rate)
        self.dashboard.add_widgets(
            Graph(title="Guardrail block and error rate per direction (%)", left=rates, width=12),
            Graph(title="Toxicity and PII findings rate (%)", left=findings, width=12),
        )

    def _evaluation_signals(self) -> None:
        t = self.thresholds
        scores: list[AlarmMetric] = []
        drifts: list[AlarmMetric] = []
        for index, candidate in enumerate(self.environment_spec.business_unit.evaluation.candidates):
            score = self._quality_metric(
                qm.JUDGE_SCORE_MEAN, qm.EVALUATION_SERVICE, ONE_DAY, "Average", model=candidate.name
            )
            # DIFF: this run's daily mean minus the previous one; a fall beyond the bound alarms.
            drift = ExpressionSpec(
                f"DIFF(score_{index})", {f"score_{index}": score}, ONE_DAY, label=f"{candidate.name} drift"
            )
            scores.append(score)
            drifts.append(drift)
            self.add_alarm(
                f"JudgeScore{index}",
                f"{candidate.name} mean judge score below the minimum",
                score,
                t.min_judge_score,
                LT,
                periods=1,
            )
            self.add_alarm(
                f"JudgeScoreDrop{index}",
                f"{candidate.name} judge score fell between runs",
                drift,
                -t.max_judge_score_drop,
                LT,
                periods=1,
            )
        if scores:
            self.dashboard.add_widgets(
                Graph(title="Mean judge score per model (1-10)", left=scores, width=12),
                Graph(title="Judge score change between runs", left=drifts, width=12),
            )

    def _rating_signals(self) -> None:
        share = ExpressionSpec(
            "100 * low / ratings",
            {
                "low": self._quality_metric(qm.LOW_RATINGS, qm.APP_SERVICE, ONE_HOUR),
                "ratings": self._quality_metric(qm.RATINGS, qm.APP_SERVICE, ONE_HOUR),
            },
            ONE_HOUR,
            label="low ratings %",
        )
        self.dashboard.add_widgets(Graph(title="Share of low end-user ratings (%)", left=[share], width=24))
        self.add_alarm(
            "LowRatingShare", "share of low end-user ratings", share, self.thresholds.low_rating_percent
        )


def monitor_stage(monitoring: MonitoringStack, stacks: Sequence[Stack]) -> None:
    for stack in stacks:
        monitoring.monitor_stack(stack)
