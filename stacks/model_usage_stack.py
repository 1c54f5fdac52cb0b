"""Usage records and online evaluation of one business unit in one stage (docs/cost.md).

- Usage: the application backend sends one `UsageRecord` per answered /invoke to an encrypted SQS queue; the
  usage writer function (`model_usage.handler.usage_writer`) appends them in batches to the lake's
  `model_usage` table (model_metadata zone).
- Online evaluation (stages in `model_usage.online_evaluation.stages`, sample rate above 0): sampled
  exchanges go to a second queue; the online judge function (`model_usage.handler.online_judge_handler`)
  scores them with the business unit's evaluation judge through its inference profile, writes
  `evaluation_results` rows, emits the online judge score and sends low scores to the evaluation stack's
  human review queue.
Both queues have a dead-letter queue (monitoring alarms on its depth); both functions report partial batch
failures, so one bad message never blocks or re-runs the others.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from common.lake_layout import LakeScope, Zone
from stacks.baseline_stack import BaselineStack
from stacks.blocks import durations
from stacks.blocks.grants import allow
from stacks.blocks.lake_access import LakeAccess, LakeAccessRequest, grant_lake_access, lake_bucket_name
from stacks.blocks.model_access import SAGEMAKER_INVOKE_ACTIONS, sagemaker_endpoint_arn
from stacks.blocks.nag import acknowledge
from stacks.blocks.platform_stack import EnvironmentStack
from stacks.blocks.python_function import PlatformFunction
from stacks.evaluation_stack import EvaluationStack, acknowledge_wildcards
from stacks.model_profiles_stack import ModelProfilesStack
from stacks.settings import EnvironmentSpec, PlatformConfig

MAX_RECEIVES = 5  # deliveries before a message moves to its dead-letter queue


def online_evaluation_enabled(environment: EnvironmentSpec) -> bool:
    online = environment.business_unit.model_usage.online_evaluation
    return online.sample_rate > 0 and environment.stage.value in online.stages


class ModelUsageStack(EnvironmentStack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PlatformConfig,
        environment: EnvironmentSpec,
        baseline: BaselineStack,
        profiles: ModelProfilesStack,
        evaluation: EvaluationStack,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            environment=environment,
            name="model-usage",
            description=f"LLMOps usage records and online evaluation for {environment.name}",
        )
        self.key = baseline.key
        self.retention = baseline.retention
        self.business_unit = environment.business_unit.name
        self.online_settings = environment.business_unit.model_usage.online_evaluation
        self.dead_letter_queues: dict[str, sqs.Queue] = {}
        self.usage_queue = self._queue("Usage", durations.minutes(2))
        self.usage_writer = self._usage_writer(config)
        self.samples_queue: sqs.Queue | None = None
        self.online_judge: PlatformFunction | None = None
        if online_evaluation_enabled(environment):
            self.samples_queue = self._queue("OnlineSamples", durations.minutes(15))
            self.online_judge = self._online_judge(config, profiles, evaluation)
        CfnOutput(self, "UsageQueueUrl", value=self.usage_queue.queue_url)

    def _queue(self, name: str, visibility: Duration) -> sqs.Queue:
        secure: dict[str, Any] = {
            "encryption": sqs.QueueEncryption.KMS,
            "encryption_master_key": self.key,
            "enforce_ssl": True,
            "retention_period": durations.days(14),
            "removal_policy": self.retention.removal_policy,
        }
        dead_letters = sqs.Queue(self, f"{name}DeadLetters", **secure)
        acknowledge(
            dead_letters,
            "AwsSolutions-SQS3",
            f"This queue is the dead-letter queue of the {name} queue; a dead-letter queue of its own would "
            "only move the same undeliverable messages once more (its depth is alarmed instead)",
        )
        self.dead_letter_queues[name] = dead_letters
        return sqs.Queue(
            self,
            f"{name}Queue",
            visibility_timeout=visibility,
            dead_letter_queue=sqs.DeadLetterQueue(queue=dead_letters, max_receive_count=MAX_RECEIVES),
            **secure,
        )

    def _function(
        self, config: PlatformConfig, construct_id: str, handler: str, description: str, **kwargs: Any
    ) -> PlatformFunction:
        environment = self.environment_spec
        return PlatformFunction(
            self,
            construct_id,
            service="model_usage",
            handler=handler,
            description=description,
            key=self.key,
            log_retention_days=environment.settings.log_retention_days,
            retention=self.retention,
            powertools_layer_version=config.lambda_.powertools_layer_version,
            **kwargs,
        )

    def _usage_writer(self, config: PlatformConfig) -> PlatformFunction:
        function = self._function(
            config,
            "UsageWriter",
            "handler.usage_writer",
            f"Usage records of {self.environment_spec.name} into the lake's model_usage table",
            environment={
                "BUSINESS_UNIT": self.business_unit,
                "LAKE_STAGE": self.environment_spec.stage.value,  # the writer's prefix <bu>/<stage>/
                "USAGE_BUCKET": lake_bucket_name(config, Zone.MODEL_METADATA),
            },
            timeout=durations.seconds(60),
            memory_size=256,
        )
        grant_lake_access(
            function.role,
            config,
            LakeAccessRequest(
                business_unit=self.business_unit,
                stage=LakeScope(self.environment_spec.stage.value),
                zone=Zone.MODEL_METADATA,
                access=LakeAccess.WRITE,
            ),
        )
        # Up to 100 records a minute per object: few, larger lake objects for Athena.
        function.function.add_event_source(
            sources.SqsEventSource(
                self.usage_queue,
                batch_size=100,
                max_batching_window=durations.seconds(60),
                report_batch_item_failures=True,
            )
        )
        return function

    def _online_judge(
        self, config: PlatformConfig, profiles: ModelProfilesStack, evaluation: EvaluationStack
    ) -> PlatformFunction:
        assert self.samples_queue is not None
        settings = evaluation.settings
        judge = settings.judge.model
        if judge is None:  # the config validator already refuses this; kept for type narrowing
            raise ValueError(
                f"business_units[{self.business_unit}].model_usage.online_evaluation.sample_rate: needs evaluation.judge.model"
            )
        function = self._function(
            config,
            "OnlineJudge",
            "handler.online_judge_handler",
            f"Online evaluation of {self.environment_spec.name}: sampled /invoke exchanges to the judge",
            extra_packages=("evaluation",),
            environment={
                "BUSINESS_UNIT": self.business_unit,
                "LAKE_STAGE": self.environment_spec.stage.value,
                # The offline judge settings, its Bedrock model called through the stage's profile.
                "EVALUATION_SETTINGS": profiles.route(settings).model_dump_json(
                    include={"judge": True, "max_attempts": True}
                ),
                "LOW_SCORE_BELOW": str(self.online_settings.low_score_below),
                "LAKE_RESULTS_BUCKET": lake_bucket_name(config, Zone.EVALUATION_RESULTS),
                "REVIEW_QUEUE_URL": evaluation.review_queue.queue_url,
            },
            timeout=durations.minutes(5),
            memory_size=512,
        )
        role = function.role
        wildcards: list[str] = []
        if judge.provider == "bedrock" and judge.model_id:
            wildcards = profiles.grant_invoke(role, judge.model_id)
        elif judge.endpoint_name:
            allow(
                role,
                actions=list(SAGEMAKER_INVOKE_ACTIONS),
                resources=[
                    sagemaker_endpoint_arn(
                        judge.endpoint_name,
                        partition=self.partition_token,
                        region=self.region_name,
                        account=self.account_id,
                    )
                ],
            )
        grant_lake_access(
            role,
            config,
            LakeAccessRequest(
                business_unit=self.business_unit,
                stage=LakeScope(self.environment_spec.stage.value),
                zone=Zone.EVALUATION_RESULTS,
                access=LakeAccess.WRITE,
            ),
        )
        allow(role, actions=["sqs:SendMessage"], resources=[evaluation.review_queue.queue_arn])
        # The review queue is encrypted with the environment key (the same key as these queues).
        allow(role, actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=[self.key.key_arn])
        if wildcards:
            acknowledge_wildcards(
                role,
                wildcards,
                "A cross-region inference profile reaches its one foundation model in the regions it routes "
                "to; the statement only holds with bedrock:InferenceProfileArn = this stage's judge profile",
            )
        function.function.add_event_source(
            sources.SqsEventSource(
                self.samples_queue,
                batch_size=self.online_settings.batch_size,
                report_batch_item_failures=True,
            )
        )
        return function

    def grant_send(self, role: iam.IRole) -> dict[str, str]:
        """Let the application backend queue usage records (and samples); returns its environment."""
        queues = [q for q in (self.usage_queue, self.samples_queue) if q is not None]
        allow(role, actions=["sqs:SendMessage"], resources=[q.queue_arn for q in queues])
        allow(role, actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=[self.key.key_arn])
        environment = {"USAGE_QUEUE_URL": self.usage_queue.queue_url}
        if self.samples_queue is not None:
            environment["ONLINE_EVALUATION_QUEUE_URL"] = self.samples_queue.queue_url
            environment["ONLINE_EVALUATION_SAMPLE_RATE"] = str(self.online_settings.sample_rate)
        return environment
