"""The evaluation engine of one business unit in one stage: Lambdas, the state machine, storage, review queue.

State machine contract (docs/evaluation.md, docs/evaluation-stack.md): prepare -> Distributed Map of
score_batch over the clean JSON-lines dataset -> summarize -> gate when the input says `"gate": true`.
A failed gate fails the execution (error `EvaluationGateFailed`, cause = the gate's JSON); a passed gate
ends with output `{"passed": true, ...}`. In preprod, the CI/CD pipeline starts executions through the
`<env>-evaluation-gate` role, which trusts the tooling account's platform roles only.
"""

from __future__ import annotations

import json
import math
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from aws_cdk import CfnOutput, Duration, Fn, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct, IConstruct

from common.lake_layout import LakeScope, Zone, stage_prefix
from common.preprod_gate import EXECUTION_PREFIX, GATE_PASSED_DETAIL_TYPE, gate_passed_source
from stacks.baseline_stack import BaselineStack
from stacks.blocks import durations
from stacks.blocks.evaluation_gate import (
    business_unit_gate_use_cases,
    gate_caller_role_name,
    gate_role_name,
    preprod_gate_key_alias,
    state_machine_name,
)
from stacks.blocks.event_bus_policy import default_bus_arn
from stacks.blocks.grants import allow, allow_listing
from stacks.blocks.inference_profiles import evaluation_models
from stacks.blocks.lake_access import (
    LakeAccess,
    LakeAccessRequest,
    grant_lake_access,
    lake_bucket_name,
    lake_key_alias,
    lake_via_service,
)
from stacks.blocks.logs import encrypted_log_group
from stacks.blocks.model_access import (
    SAGEMAKER_INVOKE_ACTIONS,
    invoked_models,
    model_resources,
)
from stacks.blocks.nag import acknowledge, acknowledge_all, acknowledge_cdk_managed_providers
from stacks.blocks.platform_stack import EnvironmentStack
from stacks.blocks.prompt_catalog_access import API_STAGE, PARTITION
from stacks.blocks.python_function import PlatformFunction
from stacks.blocks.retention import DataRetention
from stacks.blocks.storage import SecureBucket
from stacks.fine_tuning_stack import tenant_model_package_group_name
from stacks.settings import EnvironmentSpec, PlatformConfig, Stage
from stacks.settings.evaluation import EvaluationSettings

if TYPE_CHECKING:
    from stacks.model_profiles_stack import ModelProfilesStack

# Errors the Lambda service raises when it is busy; retried with exponential backoff and full jitter.
LAMBDA_TRANSIENT_ERRORS = [
    "Lambda.TooManyRequestsException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
]
# Client mistakes raised by the handlers (evaluation.service): retrying cannot help.
CLIENT_ERRORS = ["InvalidEventError", "DatasetRejectedError"]
GATE_FAILED_ERROR = "EvaluationGateFailed"
REVIEW_POLL_MINUTES = 15
EXECUTION_STATUS_CHANGE = "Step Functions Execution Status Change"
# One JSON line per review request: who (the reviewer's ARN), what, and how it went.
REVIEW_ACCESS_LOG_FORMAT = apigw.AccessLogFormat.json_with_standard_fields(
    caller=True,
    http_method=True,
    ip=True,
    protocol=True,
    request_time=True,
    resource_path=True,
    response_length=True,
    status=True,
    user=True,
)
# Step Functions passes at most 256 KiB between states; a batch stays well below it.
MAX_BATCH_BYTES = 200 * 1024


# (stack, ARN) -> cdk-nag's name: the roles of one stack share most ARNs, and resolving is a round trip.
_NAG_NAMES: weakref.WeakKeyDictionary[Stack, dict[str, str]] = weakref.WeakKeyDictionary()


def nag_resources(stack: Stack, arns: Iterable[str]) -> list[str]:
    """`arns` (possibly holding tokens) written the way cdk-nag names them in IAM5 findings.

    The ARNs not seen before in `stack` are resolved together, in one jsii call."""
    arns = list(arns)
    names = _NAG_NAMES.setdefault(stack, {})
    unseen = [arn for arn in dict.fromkeys(arns) if arn not in names]
    if unseen:
        for arn, resolved in zip(unseen, stack.resolve(unseen), strict=True):
            names[arn] = _nag_name(resolved)
    return [names[arn] for arn in arns]


def _nag_name(resolved: Any) -> str:
    parts = resolved["Fn::Join"][1] if isinstance(resolved, dict) and "Fn::Join" in resolved else [resolved]
    rendered = []
    for part in parts:
        if isinstance(part, str):
            rendered.append(part)
        elif isinstance(part, dict) and "Ref" in part:
            rendered.append(f"<{part['Ref']}>")
        elif isinstance(part, dict) and "Fn::GetAtt" in part:
            rendered.append(f"<{'.'.join(part['Fn::GetAtt'])}>")
        else:
            rendered.append(json.dumps(part, separators=(",", ":")))
    return "".join(rendered)


def acknowledge_wildcards(construct: IConstruct, resources: Iterable[str], reason: str) -> None:
    """Acknowledge IAM5 for exactly these wildcard resources, never for the rule as a whole."""
    stack = Stack.of(construct)
    acknowledge_all(
        construct,
        [(f"AwsSolutions-IAM5[Resource::{r}]", reason) for r in sorted(set(nag_resources(stack, resources)))],
    )


def state_machine_timeout_hours(settings: EvaluationSettings) -> int:
    """A day, or longer where a gate run waits for a human review with a longer deadline."""
    if not settings.human_review.enabled:
        return 24
    return max(24, math.ceil(settings.human_review.deadline_hours) + 1)


def tolerated_failure_percentage(settings: EvaluationSettings) -> float:
    """Failed batches the map tolerates: the gate's error budget, since more would fail the gate anyway."""
    return round(settings.gate.max_error_rate * 100, 2)


class EvaluationStack(EnvironmentStack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PlatformConfig,
        environment: EnvironmentSpec,
        baseline: BaselineStack,
        profiles: ModelProfilesStack,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            environment=environment,
            name="evaluation",
            description=f"LLMOps evaluation engine for {environment.name}: state machine, Lambdas, review queue",
        )
        self.settings = environment.business_unit.evaluation
        # Bedrock candidates and the judge are called through the stage's inference profiles (docs/cost.md).
        self.profiles = profiles
        self.business_unit = environment.business_unit.name
        self.runs_prefix = f"{self.business_unit}/evaluation_runs/"
        # Where this stage's app backend leaves rating candidates (app_backend.service.candidate_key).
        self.candidates_prefix = (
            f"{stage_prefix(self.business_unit, environment.stage.value)}evaluation_candidates/"
        )
        self.key = baseline.key
        retention = baseline.retention

        self.working_bucket = self._working_bucket(baseline)
        # Token strings read once: every grant below names them, and each read is a jsii round trip.
        self.key_arn = self.key.key_arn
        self.working_bucket_arn = self.working_bucket.bucket_arn
        self.review_queue = self._review_queue(retention)
        functions = self._functions(config, retention)
        self.review_api = self._review_api(config, retention)
        self.state_machine = self._state_machine(functions, retention)
        self.gate_role = self._gate_role(config) if environment.stage is Stage.PREPROD else None
        # Preprod evaluates the business unit's own new model versions (served by its deployer) as their gate.
        self.gate_use_cases = business_unit_gate_use_cases(environment)
        self.gate_recorder = (
            self._business_unit_gate(config, functions, retention) if self.gate_use_cases else None
        )

        CfnOutput(self, "StateMachineArn", value=self.state_machine.state_machine_arn)
        CfnOutput(self, "WorkingBucketName", value=self.working_bucket.bucket_name)
        CfnOutput(self, "ReviewQueueUrl", value=self.review_queue.queue_url)
        CfnOutput(self, "ReviewApiUrl", value=self.review_api.url_for_path("/reviews"))
        acknowledge_cdk_managed_providers(self)

    # ---- storage -------------------------------------------------------------------------------------

    def _working_bucket(self, baseline: BaselineStack) -> s3.Bucket:
        return SecureBucket(
            self,
            "RunArtifacts",
            key=baseline.key,
            access_logs=baseline.access_logs,
            retention=baseline.retention,
            # Batches are rewritten on retries; old versions are of no use after a month.
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-old-versions", noncurrent_version_expiration=durations.days(30))
            ],
        )

    def _review_queue(self, retention: DataRetention) -> sqs.Queue:
        """Flagged rows for human reviewers (consumer contract: docs/evaluation-stack.md)."""
        secure: dict[str, Any] = {
            "encryption": sqs.QueueEncryption.KMS,
            "encryption_master_key": self.key,
            "enforce_ssl": True,
            "retention_period": durations.days(14),
            "removal_policy": retention.removal_policy,
        }
        dead_letters = sqs.Queue(self, "ReviewDeadLetters", **secure)
        acknowledge(
            dead_letters,
            "AwsSolutions-SQS3",
            "This queue is the dead-letter queue of the human review queue; a dead-letter queue of its own "
            "would only move the same undeliverable messages once more",
        )
        return sqs.Queue(
            self,
            "ReviewQueue",
            visibility_timeout=durations.minutes(15),
            dead_letter_queue=sqs.DeadLetterQueue(queue=dead_letters, max_receive_count=5),
            **secure,
        )

    # ---- functions -----------------------------------------------------------------------------------

    def _functions(self, config: PlatformConfig, retention: DataRetention) -> dict[str, PlatformFunction]:
        environment = self.environment_spec
        common_env = {
            "EVALUATION_SETTINGS": self.profiles.route(self.settings).model_dump_json(),
            "RESULTS_BUCKET": self.working_bucket.bucket_name,
            "BUSINESS_UNIT": self.business_unit,
        }
        sizes = {  # entry point -> (memory MB, timeout)
            "prepare": (1024, durations.minutes(5)),
            "score_batch": (1024, durations.minutes(15)),
            "summarize": (2048, durations.minutes(15)),
            "gate": (512, durations.minutes(1)),
            "complete_reviews": (2048, durations.minutes(15)),
        }
        extra_env = {
            # Catalog datasets (and gate runs, which name none) are read from the lake's dataset zone.
            "prepare": {"DEFAULT_DATASET_BUCKET": lake_bucket_name(config, Zone.EVALUATION_DATASETS)},
            "summarize": {
                "LAKE_RESULTS_BUCKET": lake_bucket_name(config, Zone.EVALUATION_RESULTS),
                "LAKE_STAGE": environment.stage.value,
                "REVIEW_QUEUE_URL": self.review_queue.queue_url,
            },
            "complete_reviews": {
                "LAKE_RESULTS_BUCKET": lake_bucket_name(config, Zone.EVALUATION_RESULTS),
                "LAKE_STAGE": environment.stage.value,
            },
        }
        functions: dict[str, PlatformFunction] = {}
        for entry, (memory, timeout) in sizes.items():
            functions[entry] = self._function(
                config,
                retention,
                "".join(part.title() for part in entry.split("_")) + "Function",
                entry=entry,
                description=f"Evaluation {entry} step of {environment.name}",
                environment={**common_env, **extra_env.get(entry, {})},
                memory_size=memory,
                timeout=timeout,
            )
        self._grant_steps(config, functions)
        # Human reviews complete by themselves: drained or past the deadline (service.complete_reviews).
        events.Rule(
            self,
            "CompleteReviewsSchedule",
            description=f"Closes drained or overdue human reviews of {environment.name}",
            schedule=events.Schedule.rate(durations.minutes(15)),
            targets=[targets.LambdaFunction(functions["complete_reviews"].function, retry_attempts=2)],
        )
        return functions

    def _function(
        self,
        config: PlatformConfig,
        retention: DataRetention,
        construct_id: str,
        *,
        entry: str,
        description: str,
        environment: dict[str, str],
        memory_size: int,
        timeout: Duration,
    ) -> PlatformFunction:
        """One entry point of `evaluation.handler` as a function of this stack."""
        return PlatformFunction(
            self,
            construct_id,
            service="evaluation",
            handler=f"handler.{entry}",
            description=description,
            key=self.key,
            log_retention_days=self.environment_spec.settings.log_retention_days,
            retention=retention,
            powertools_layer_version=config.lambda_.powertools_layer_version,
            environment=environment,
            memory_size=memory_size,
            timeout=timeout,
            # evaluation.handler imports the engine, whose catalog prompts the catalog's own renderer renders.
            extra_packages=("prompt_catalog",),
        )

    def _grant_steps(self, config: PlatformConfig, functions: dict[str, PlatformFunction]) -> None:
        """Each step's role gets exactly what its step does (docs/evaluation-stack.md, "Permissions")."""
        bu = self.business_unit
        stage = self.environment_spec.stage.value
        # Datasets are curated once for the business unit (`<bu>/shared/`); results stay in the stage.
        datasets = LakeAccessRequest(
            business_unit=bu, stage=LakeScope.SHARED, zone=Zone.EVALUATION_DATASETS, access=LakeAccess.READ
        )
        results = LakeAccessRequest(
            business_unit=bu, stage=LakeScope(stage), zone=Zone.EVALUATION_RESULTS, access=LakeAccess.WRITE
        )
        lake_key = f"arn:{self.partition_token}:kms:{config.home_region}:{config.data_lake_account}:key/*"

        def lake_objects(zone: Zone, scope: str) -> str:
            return f"arn:{self.partition_token}:s3:::{lake_bucket_name(config, zone)}/{bu}/{scope}/*"

        # Catalog prompts of a dataset are resolved once per run, by prepare: exactly the two GET routes.
        catalog_reads = [
            self._catalog_route(config, f"GET/prompts/*/{kind}/*") for kind in ("versions", "aliases")
        ]
        allow(functions["prepare"].role, actions=["execute-api:Invoke"], resources=catalog_reads)
        wildcards: dict[str, list[str]] = {"prepare": catalog_reads, "score_batch": []}
        # Datasets and precomputed outputs come from the lake's dataset zone or the working bucket.
        for entry in ("prepare", "score_batch"):
            grant_lake_access(functions[entry].role, config, datasets)
            wildcards[entry] += [
                *self._grant_working_bucket(functions[entry].role, read_prefix=f"{bu}/"),
                lake_objects(Zone.EVALUATION_DATASETS, "shared"),
                lake_key,
            ]
        grant_lake_access(functions["complete_reviews"].role, config, results)
        wildcards["complete_reviews"] = [
            *self._grant_working_bucket(functions["complete_reviews"].role, read_prefix=self.runs_prefix),
            *self._grant_open_reviews(functions["complete_reviews"].role),
            lake_objects(Zone.EVALUATION_RESULTS, stage),
            lake_key,
        ]
        grant_lake_access(functions["summarize"].role, config, results)
        wildcards["summarize"] = [
            *self._grant_working_bucket(functions["summarize"].role, read_prefix=self.runs_prefix),
            lake_objects(Zone.EVALUATION_RESULTS, stage),
            lake_key,
        ]
        allow(
            functions["summarize"].role, actions=["sqs:SendMessage"], resources=[self.review_queue.queue_arn]
        )
        wildcards["gate"] = self._grant_working_bucket(
            functions["gate"].role, read_prefix=self.runs_prefix, write=False
        )
        wildcards["score_batch"] += [
            arn for arn in self._grant_model_invoke(functions["score_batch"].role) if "*" in arn
        ]
        for entry, resources in wildcards.items():
            acknowledge_wildcards(
                functions[entry].role,
                resources,
                "Object ARNs end in '<business unit prefix>*' (this unit's run artifacts and datasets only); the "
                "lake key is matched by its alias because key ids are unknown across accounts; a cross-region "
                "inference profile reaches its one foundation model in the regions it routes to; the prompt "
                "catalog's API id is random, so its ARN names the tooling account and the catalog stage",
            )

    def _grant_open_reviews(self, role: iam.IRole) -> list[str]:
        """complete_reviews removes a run's `_open_reviews/` marker once the run is closed."""
        markers = self._working_objects(f"{self.runs_prefix}_open_reviews/*")
        allow(role, actions=["s3:DeleteObject"], resources=[markers])
        return [markers]

    def _working_objects(self, key_pattern: str) -> str:
        """`working_bucket.arn_for_objects(key_pattern)` (the same string: "<bucket ARN>/<pattern>") without a
        jsii round trip."""
        return f"{self.working_bucket_arn}/{key_pattern}"

    def _grant_working_bucket(self, role: iam.IRole, *, read_prefix: str, write: bool = True) -> list[str]:
        """Read under `read_prefix`, write run artifacts; returns the wildcard object ARNs granted."""
        readable = self._working_objects(f"{read_prefix}*")
        writable = self._working_objects(f"{self.runs_prefix}*")
        allow(role, actions=["s3:GetObject"], resources=[readable])
        # Listing lets a missing object read as NoSuchKey (the idempotency check) instead of AccessDenied.
        allow_listing(role, self.working_bucket_arn, f"{read_prefix}*")
        key_actions = ["kms:Decrypt"]
        if write:
            allow(role, actions=["s3:PutObject"], resources=[writable])
            key_actions.append("kms:GenerateDataKey")
        allow(role, actions=key_actions, resources=[self.key_arn])
        return [readable, writable] if write else [readable]

    def _grant_model_invoke(self, role: iam.IRole) -> list[str]:
        """Invoke exactly the configured candidates and judge; returns the ARNs granted."""
        _, sagemaker = model_resources(
            invoked_models(self.settings),
            partition=self.partition_token,
            region=self.region_name,
            account=self.account_id,
        )
        # Each Bedrock model only through its profile: the profile, and its models on that condition.
        bedrock = [
            arn
            for model_id in evaluation_models(self.settings)
            for arn in self.profiles.grant_invoke(role, model_id)
        ]
        if sagemaker:
            allow(role, actions=list(SAGEMAKER_INVOKE_ACTIONS), resources=sagemaker)
        return [*bedrock, *sagemaker]

    def _invoke(
        self,
        construct_id: str,
        function: PlatformFunction,
        *,
        result_path: str,
        payload: sfn.TaskInput | None = None,
        input_path: str | None = None,
    ) -> tasks.LambdaInvoke:
        task = tasks.LambdaInvoke(
            self,
            construct_id,
            lambda_function=function.function,
            payload=payload,
            input_path=input_path,
            payload_response_only=True,
            retry_on_service_exceptions=False,
            result_path=result_path,
        )
        task.add_retry(
            errors=LAMBDA_TRANSIENT_ERRORS,
            interval=durations.seconds(2),
            backoff_rate=2,
            max_attempts=6,
            max_delay=durations.minutes(2),
            jitter_strategy=sfn.JitterType.FULL,
        )
        return task

    def _state_machine(
        self, functions: dict[str, PlatformFunction], retention: DataRetention
    ) -> sfn.StateMachine:
        run = {
            "run_id": sfn.JsonPath.string_at("$.prepared.run_id"),
            "use_case": sfn.JsonPath.string_at("$.prepared.use_case"),
        }
        rejected = sfn.Fail(
            self,
            "InputRejected",
            error_path="$.error.Error",
            cause_path="$.error.Cause",
            comment="client mistake",
        )

        defaults = sfn.Pass(
            self,
            "ApplyDefaults",
            comment="run_id defaults to the execution name; gate defaults to false",
            parameters={
                "defaults": {"gate": False, "run_id": sfn.JsonPath.execution_name},
                "input": sfn.JsonPath.entire_payload,
            },
        )
        merge = sfn.Pass(
            self,
            "MergeInput",
            parameters={
                "args": sfn.JsonPath.json_merge(
                    sfn.JsonPath.object_at("$.defaults"), sfn.JsonPath.object_at("$.input")
                )
            },
        )
        prepare = self._invoke("Prepare", functions["prepare"], input_path="$.args", result_path="$.prepared")
        score = self._invoke("ScoreBatch", functions["score_batch"], result_path=sfn.JsonPath.DISCARD)
        score_map = sfn.DistributedMap(
            self,
            "ScoreRecords",
            item_reader=sfn.S3JsonLItemReader(
                bucket=self.working_bucket, key=sfn.JsonPath.string_at("$.prepared.dataset.key")
            ),
            item_batcher=sfn.ItemBatcher(
                max_items_per_batch=self.settings.batch_size,
                max_input_bytes_per_batch=MAX_BATCH_BYTES,
                # ItemBatcher renders BatchInput as given: JSONPath keys carry their ".$" themselves.
                batch_input={
                    "run_id.$": "$.prepared.run_id",
                    "use_case.$": "$.prepared.use_case",
                    "labels.$": "$.prepared.labels",
                    "outputs.$": "$.prepared.outputs",
                },
            ),
            max_concurrency=self.settings.map_max_concurrency,
            tolerated_failure_percentage=tolerated_failure_percentage(self.settings),
            # Per-batch outcomes (SUCCEEDED / FAILED files with each failed batch's records) for the record.
            result_writer_v2=sfn.ResultWriterV2(
                bucket=self.working_bucket, prefix=f"{self.runs_prefix}map-results"
            ),
            map_execution_type=sfn.StateMachineType.STANDARD,
            result_path="$.map",
        )
        score_map.item_processor(score)
        summarize = self._invoke(
            "Summarize",
            functions["summarize"],
            payload=sfn.TaskInput.from_object(run),
            result_path="$.summary",
        )
        # A gate run with a per-run candidate (the business-unit gate) waits for its human review, where the
        # config asks for one: summarize again every 15 minutes until the review is drained or overdue.
        review_wait = sfn.Wait(
            self, "WaitForHumanReview", time=sfn.WaitTime.duration(durations.minutes(REVIEW_POLL_MINUTES))
        )
        review_wait.next(summarize)
        gate = self._invoke(
            "Gate", functions["gate"], payload=sfn.TaskInput.from_object(run), result_path="$.gate"
        )
        for step in (prepare, summarize, gate):
            step.add_catch(rejected, errors=CLIENT_ERRORS, result_path="$.error")

        gate_failed = sfn.Fail(
            self,
            "GateFailed",
            error=GATE_FAILED_ERROR,
            cause_path=sfn.JsonPath.json_to_string(sfn.JsonPath.object_at("$.gate")),
        )
        gate_passed = sfn.Succeed(self, "GatePassed", output_path="$.gate")
        done = sfn.Succeed(self, "Done", output_path="$.summary")
        gate_decision = (
            sfn.Choice(self, "GateDecision")
            .when(sfn.Condition.boolean_equals("$.gate.passed", True), gate_passed)
            .otherwise(gate_failed)
        )
        awaiting_review = (
            sfn.Choice(self, "AwaitingHumanReview")
            .when(
                sfn.Condition.or_(
                    sfn.Condition.is_not_present("$.args.candidate"),
                    sfn.Condition.boolean_equals("$.summary.review_open", False),
                ),
                gate.next(gate_decision),
            )
            .otherwise(review_wait)
        )
        gate_requested = (
            sfn.Choice(self, "GateRequested")
            .when(sfn.Condition.boolean_equals("$.args.gate", True), awaiting_review)
            .otherwise(done)
        )
        definition = defaults.next(merge).next(prepare).next(score_map).next(summarize).next(gate_requested)

        log_group = encrypted_log_group(
            self,
            "StateMachineLogs",
            key=self.key,
            retention_days=self.environment_spec.settings.log_retention_days,
            retention=retention,
        )
        machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=state_machine_name(self.environment_spec),
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            timeout=durations.hours(state_machine_timeout_hours(self.settings)),
            tracing_enabled=True,
            # Records and model outputs stay in S3; execution data in logs would copy prompts there too.
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
        )
        self.key.grant(machine, "kms:Decrypt", "kms:GenerateDataKey")
        acknowledge(
            machine.role,
            "AwsSolutions-IAM5[Resource::*]",
            "Log delivery (logs:*LogDelivery, PutResourcePolicy, Describe*) and X-Ray (PutTraceSegments, "
            "GetSampling*) support no resource-level permissions; tests check no other action uses '*'",
        )
        acknowledge_wildcards(
            machine.role,
            [
                *(f"{f.function.function_arn}:*" for f in functions.values()),
                f"arn:{self.partition_token}:s3:::{self.working_bucket.bucket_name}/*",
            ],
            "LambdaInvoke grants the step functions' versions ('<function>:*'); the map's item reader and result "
            "writer use objects of this environment's own run-artifact bucket",
        )
        executions = (
            f"arn:{self.partition_token}:states:{self.region_name}:{self.account_id}:execution:"
            + Fn.select(6, Fn.split(":", machine.state_machine_arn))
        )
        acknowledge_wildcards(
            machine,
            [f"{executions}:*", f"{executions}/*:*"],
            "A Distributed Map starts, describes, stops and redrives child executions of this one state "
            "machine; their names are generated per map run",
        )
        return machine

    # ---- human review API ----------------------------------------------------------------------------

    def _review_api(self, config: PlatformConfig, retention: DataRetention) -> apigw.RestApi:
        """GET /reviews/next, POST /reviews (lambdas/evaluation/review_api.py) for reviewers who are IAM
        principals of this account; SigV4 on every method, no Cognito (reviewers are staff, not end users)."""
        environment = self.environment_spec
        function = self._function(
            config,
            retention,
            "ReviewApiFunction",
            entry="review_api",
            description=f"Human review API of {environment.name}",
            environment={
                "RESULTS_BUCKET": self.working_bucket.bucket_name,
                "BUSINESS_UNIT": self.business_unit,
                "REVIEW_QUEUE_URL": self.review_queue.queue_url,
                "EVALUATION_SETTINGS": self.settings.model_dump_json(),
                # End users' rated requests (app backend) wait here until a tester accepts them.
                "CANDIDATES_BUCKET": lake_bucket_name(config, Zone.FEEDBACK),
                "CANDIDATES_PREFIX": self.candidates_prefix,
            },
            memory_size=256,
            timeout=durations.seconds(20),
        )
        role = function.role
        allow(
            role,
            actions=["sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:DeleteMessage"],
            resources=[self.review_queue.queue_arn],
        )
        reviews = self._working_objects(f"{self.runs_prefix}*/reviews/*")
        allow(role, actions=["s3:PutObject"], resources=[reviews])
        # Claims bind a receipt handle to its row and reviewer (review_api.check_claim).
        claims = self._working_objects(f"{self.runs_prefix}_claims/*")
        allow(role, actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], resources=[claims])
        # Listing lets a missing claim read as NoSuchKey (a 400) instead of AccessDenied.
        allow_listing(role, self.working_bucket_arn, f"{self.runs_prefix}_claims/*")
        allow(role, actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[self.key_arn])
        curation = self._grant_curation(config, role)
        acknowledge_wildcards(
            role,
            [reviews, claims, *curation],
            "Reviewer scores are written only under '<run>/reviews/' of this unit's run artifacts (run ids are "
            "chosen per execution); claims are named by the hash of an SQS receipt handle under '_claims/'; "
            "candidates are read under this unit's '<bu>/evaluation_candidates/' of the feedback zone (lake key by "
            "its alias); the catalog's API id is random, so its ARN names the tooling account, the catalog "
            "stage and the one accept route",
        )

        review = self.settings.human_review
        access_logs = encrypted_log_group(
            self,
            "ReviewApiAccessLogs",
            key=self.key,
            retention_days=environment.settings.log_retention_days,
            retention=retention,
        )
        api = apigw.RestApi(
            self,
            "ReviewApi",
            rest_api_name=f"{environment.name}-evaluation-review",
            description=f"Human review of evaluation results of {environment.name} (IAM-authorized)",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # The account's API Gateway logging role is set once per account by the application stack.
            cloud_watch_role=False,
            policy=iam.PolicyDocument(
                statements=[
                    iam.PolicyStatement(
                        sid="ThisAccountOnly",
                        principals=[iam.AccountPrincipal(self.account_id)],
                        actions=["execute-api:Invoke"],
                        resources=["execute-api:/*"],
                    ),
                    *self._tenant_decision_policy(),
                ]
            ),
            default_method_options=apigw.MethodOptions(authorization_type=apigw.AuthorizationType.IAM),
            deploy_options=apigw.StageOptions(
                stage_name="v1",
                tracing_enabled=True,
                throttling_rate_limit=review.api_rate_limit,
                throttling_burst_limit=review.api_burst_limit,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # bodies hold model outputs and reviewer comments
                metrics_enabled=True,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=REVIEW_ACCESS_LOG_FORMAT,
            ),
        )
        validator = api.add_request_validator(
            "Validator", validate_request_body=True, validate_request_parameters=True
        )
        submission = api.add_model(
            "ReviewSubmission",
            content_type="application/json",
            schema=apigw.JsonSchema(
                schema=apigw.JsonSchemaVersion.DRAFT4,
                type=apigw.JsonSchemaType.OBJECT,
                required=["run_id", "record_id", "model", "score", "receipt_handle"],
            ),
        )
        integration = apigw.LambdaIntegration(function.function, scope_permission_to_method=False)
        reviews_resource = api.root.add_resource("reviews")
        reviews_resource.add_method(
            "POST",
            integration,
            request_validator=validator,
            request_models={"application/json": submission},
        )
        reviews_resource.add_resource("next").add_method("GET", integration, request_validator=validator)
        self._tenant_decisions(api, integration, validator, role)
        api.root.add_resource("candidates").add_method(
            "GET",
            integration,
            request_validator=validator,
            request_parameters={"method.request.querystring.use_case": True},
        )
        accept = api.add_model(
            "AcceptRecords",
            content_type="application/json",
            schema=apigw.JsonSchema(schema=apigw.JsonSchemaVersion.DRAFT4, type=apigw.JsonSchemaType.OBJECT),
        )
        api.root.add_resource("datasets").add_resource("{name}").add_resource("accept").add_method(
            "POST", integration, request_validator=validator, request_models={"application/json": accept}
        )
        acknowledge(
            api,
            "AwsSolutions-COG4",
            "Reviewers are IAM principals of this business unit account (no Cognito pool in scope): every method "
            "requires SigV4 and the resource policy admits this account only",
        )
        acknowledge(
            api.deployment_stage,
            "AwsSolutions-APIG3",
            "Every method requires SigV4 from this account, so unsigned traffic is refused before the "
            "integration; the stage throttles per second and in bursts (human_review settings)",
        )
        return api

    # ---- tenant model versions awaiting review (lambdas/tenant_review -> review_api) ------------------

    def _tenant_groups(self) -> list[str]:
        """This stage's tenant registry groups, where tenants fine-tune here (fine_tuning.stages)."""
        environment = self.environment_spec
        bu = environment.business_unit
        if environment.stage.value not in bu.fine_tuning.stages:
            return []
        stage = environment.stage.value
        return [
            tenant_model_package_group_name(environment.org_prefix, bu.name, stage, u) for u in bu.use_cases
        ]

    def _tenant_decision_policy(self) -> list[iam.PolicyStatement]:
        """Only reviewers tagged with this business unit decide on its tenants' versions (in sandbox mode
        every business unit's principals share one account)."""
        if not self._tenant_groups():
            return []
        return [
            iam.PolicyStatement(
                sid="TenantDecisionsByThisBusinessUnitsReviewers",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["execute-api:Invoke"],
                resources=["execute-api:/*/POST/tenant-models/decisions"],
                conditions={"StringNotEquals": {"aws:PrincipalTag/BusinessUnit": self.business_unit}},
            )
        ]

    def _tenant_decisions(
        self,
        api: apigw.RestApi,
        integration: apigw.LambdaIntegration,
        validator: apigw.RequestValidator,
        role: iam.IRole,
    ) -> None:
        """POST /tenant-models/decisions: the review API's role sets the approval status of exactly this
        stage's tenant versions (review_api.TenantModelDecisions)."""
        groups = self._tenant_groups()
        if not groups:
            return
        function = self.node.find_child("ReviewApiFunction")
        assert isinstance(function, PlatformFunction)
        function.function.add_environment("TENANT_GROUPS", json.dumps(groups))
        versions = [
            f"arn:{self.partition_token}:sagemaker:{self.region_name}:{self.account_id}:model-package/{name}/*"
            for name in groups
        ]
        allow(
            role,
            actions=["sagemaker:DescribeModelPackage", "sagemaker:UpdateModelPackage"],
            resources=versions,
        )
        acknowledge_wildcards(
            role,
            versions,
            "Tenant versions are numbered by the registry at registration; the review API decides only on "
            "versions of this stage's tenant groups",
        )
        decision = api.add_model(
            "TenantDecision",
            content_type="application/json",
            schema=apigw.JsonSchema(
                schema=apigw.JsonSchemaVersion.DRAFT4,
                type=apigw.JsonSchemaType.OBJECT,
                required=["model_package_arn", "decision", "receipt_handle"],
            ),
        )
        api.root.add_resource("tenant-models").add_resource("decisions").add_method(
            "POST", integration, request_validator=validator, request_models={"application/json": decision}
        )

    def _catalog_route(self, config: PlatformConfig, route: str) -> str:
        """One route of the shared prompt catalog API: its id is random, so the ARN names the tooling account
        and the catalog's stage (stacks/blocks/prompt_catalog_access.py)."""
        return (
            f"arn:{PARTITION}:execute-api:{config.home_region}:{config.tooling_account}:*/{API_STAGE}/{route}"
        )

    def _grant_curation(self, config: PlatformConfig, role: iam.IRole) -> list[str]:
        """Read rating candidates and run datasets, mark candidates accepted, call the catalog's accept route."""
        feedback = lake_bucket_name(config, Zone.FEEDBACK)
        candidates = f"arn:{self.partition_token}:s3:::{feedback}/{self.candidates_prefix}*"
        allow(role, actions=["s3:GetObject"], resources=[candidates])
        allow_listing(role, f"arn:{self.partition_token}:s3:::{feedback}", f"{self.candidates_prefix}*")
        lake_key = f"arn:{self.partition_token}:kms:{config.home_region}:{config.data_lake_account}:key/*"
        allow(
            role,
            actions=["kms:Decrypt"],
            resources=[lake_key],
            conditions={
                "ForAnyValue:StringEquals": {"kms:ResourceAliases": lake_key_alias(config)},
                "StringEquals": {"kms:ViaService": lake_via_service(config)},
            },
        )
        datasets = self._working_objects(f"{self.runs_prefix}*/dataset.jsonl")
        accepted = self._working_objects(f"{self.runs_prefix}_accepted/*")
        allow(role, actions=["s3:GetObject"], resources=[datasets, accepted])
        allow(role, actions=["s3:PutObject"], resources=[accepted])
        allow_listing(role, self.working_bucket_arn, f"{self.runs_prefix}_accepted/*")
        accept_route = self._catalog_route(config, "POST/datasets/*/records")
        allow(role, actions=["execute-api:Invoke"], resources=[accept_route])
        return [candidates, lake_key, datasets, accepted, accept_route]

    # ---- CI/CD gate ----------------------------------------------------------------------------------

    def _gate_role(self, config: PlatformConfig) -> iam.Role:
        tooling = config.tooling_account
        role = iam.Role(
            self,
            "GateRole",
            role_name=gate_role_name(self.environment_spec),
            description=f"Lets the tooling account's pipeline run the evaluation gate of {self.environment_spec.name}",
            # Exactly the pipeline's gate-step role; by ARN condition (not as principal) so recreating that
            # role does not silently break the trust.
            assumed_by=iam.AccountPrincipal(tooling).with_conditions(
                {
                    "ArnEquals": {
                        "aws:PrincipalArn": (
                            f"arn:{self.partition_token}:iam::{tooling}:role/{gate_caller_role_name(self.environment_spec)}"
                        )
                    }
                }
            ),
            max_session_duration=durations.hours(1),
        )
        name = state_machine_name(self.environment_spec)
        allow(role, actions=["states:StartExecution"], resources=[self.state_machine.state_machine_arn])
        allow(
            role,
            actions=["states:DescribeExecution"],
            resources=[
                f"arn:{self.partition_token}:states:{self.region_name}:{self.account_id}:execution:{name}:*"
            ],
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:"
            f"{self.region_name}:{self.account_id}:execution:{name}:*]",
            "Execution ARNs carry the execution name chosen at start; the wildcard covers executions of this one "
            "state machine only",
        )
        CfnOutput(self, "GateRoleArn", value=role.role_arn)
        return role

    # ---- business-unit model gate --------------------------------------------------------------------

    def _business_unit_gate(
        self, config: PlatformConfig, functions: dict[str, PlatformFunction], retention: DataRetention
    ) -> PlatformFunction:
        """The served version is the run's candidate; the recorder signs the result onto the version."""
        environment = self.environment_spec
        bu = environment.business_unit
        serving = f"{environment.name}-serving"  # stacks.serving_stack.endpoint_name
        # score_batch calls the served version: this stage's serving endpoint and its adapter components.
        served = [
            f"arn:{self.partition_token}:sagemaker:{self.region_name}:{self.account_id}:endpoint/{serving}",
            f"arn:{self.partition_token}:sagemaker:{self.region_name}:{self.account_id}:inference-component/{serving}-*",
        ]
        functions["score_batch"].role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="InvokeServedCandidates", actions=["sagemaker:InvokeEndpoint"], resources=served
            )
        )
        acknowledge_wildcards(
            functions["score_batch"].role,
            served[1:],
            "Adapter components are created per served model version, named after this stage's endpoint",
        )
        key = kms.Key(
            self,
            "GateRecordKey",
            description=f"Signs {bu.name}'s preprod gate results on its model versions (prod verifies them)",
            key_spec=kms.KeySpec.HMAC_256,
            key_usage=kms.KeyUsage.GENERATE_VERIFY_MAC,
            alias=preprod_gate_key_alias(environment.org_prefix, bu.name),
            removal_policy=retention.removal_policy,
        )
        prod = config.environment(bu, Stage.PROD).account
        # Prod may only verify; no other account (dev registers versions) may sign or verify.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="ProdVerifiesGateRecords",
                principals=[iam.AccountPrincipal(prod)],
                actions=["kms:VerifyMac"],
                resources=["*"],
                conditions={"StringEquals": {"kms:MacAlgorithm": "HMAC_SHA_256"}},
            )
        )
        registry = f"arn:{self.partition_token}:sagemaker:{config.home_region}:{config.tooling_account}:model-package"
        versions = [f"{registry}/{group}/" for group in self.gate_use_cases]
        recorder = self._function(
            config,
            retention,
            "GateRecorderFunction",
            entry="record_gate",
            description=f"Writes {environment.name}'s business-unit gate results onto the model versions",
            environment={
                "GATE_KEY_ARN": key.key_arn,
                "GATE_GROUPS": json.dumps(versions),
                "BUSINESS_UNIT": bu.name,
            },
            memory_size=256,
            timeout=durations.minutes(1),
        )
        machine = state_machine_name(environment)
        gate_runs = f"arn:{self.partition_token}:states:{self.region_name}:{self.account_id}:execution:{machine}:{EXECUTION_PREFIX}*"
        role = recorder.role
        allow(role, actions=["states:DescribeExecution"], resources=[gate_runs])
        allow(role, actions=["sagemaker:DescribeModelPackage"], resources=[f"{v}*" for v in versions])
        # It records results and rejects failed versions; approving stays with the registry's approver role.
        allow(
            role,
            actions=["sagemaker:UpdateModelPackage"],
            resources=[f"{v}*" for v in versions],
            conditions={"StringEqualsIfExists": {"sagemaker:ModelApprovalStatus": "Rejected"}},
        )
        allow(role, actions=["kms:GenerateMac"], resources=[key.key_arn])
        acknowledge_wildcards(
            role,
            [gate_runs, *(f"{v}*" for v in versions)],
            "Gate executions are named per version (bu-gate-<group>-v<n>) and versions are numbered by the "
            "registry; the state machine and the business unit's groups are named exactly",
        )
        events.Rule(
            self,
            "GateRunEnded",
            description=f"Business-unit gate runs of {environment.name} that ended, to the gate recorder",
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=[EXECUTION_STATUS_CHANGE],
                detail={
                    "stateMachineArn": [self.state_machine.state_machine_arn],
                    "status": ["SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"],
                    "name": [{"prefix": EXECUTION_PREFIX}],
                },
            ),
            targets=[targets.LambdaFunction(recorder.function, retry_attempts=2)],
        )
        self._announce_passed_gates(config, recorder)
        CfnOutput(self, "GateRecordKeyArn", value=key.key_arn)
        return recorder

    def _announce_passed_gates(self, config: PlatformConfig, recorder: PlatformFunction) -> None:
        """A passing record on an already approved version: the recorder puts a "Preprod Gate Passed" event on
        this account's default bus and a rule forwards it to prod's, where the deployer checks it again."""
        environment = self.environment_spec
        source = gate_passed_source(environment.org_prefix)
        recorder.function.add_environment("GATE_PASSED_SOURCE", source)
        own_bus = default_bus_arn(self.partition, self.region, self.account)
        allow(
            recorder.role,
            actions=["events:PutEvents"],
            resources=[own_bus],
            conditions={
                "StringEquals": {"events:source": source, "events:detail-type": GATE_PASSED_DETAIL_TYPE}
            },
        )
        if config.is_sandbox:  # one account: prod's rule is on this same default bus
            return
        prod = config.environment(environment.business_unit, Stage.PROD)
        role = iam.Role(
            self,
            "GatePassedForwardingRole",
            assumed_by=iam.ServicePrincipal("events.amazonaws.com"),
            description=f"Puts {environment.name}'s passed-gate events on its business unit's prod event bus",
        )
        events.Rule(
            self,
            "GatePassedToProd",
            description=f"Passed preprod gates of approved {environment.business_unit.name} versions, to prod",
            event_pattern=events.EventPattern(
                source=[source], detail_type=[GATE_PASSED_DETAIL_TYPE], account=[self.account]
            ),
            targets=[
                targets.EventBus(
                    events.EventBus.from_event_bus_arn(
                        self, "ProdBus", default_bus_arn(self.partition, prod.region, prod.account)
                    ),
                    role=role,
                )
            ],
        )
