"""Fine-tuning for one business unit in one stage: its SageMaker Pipelines and what starts them.

- Tenant pipeline (`fine_tuning.stages`, preprod and prod by default): started by the stage's own tenants'
  raw-zone uploads (forwarded from the lake account) or POST /fine-tunes, capped at
  `fine_tuning.max_concurrent_runs`, registering into this account's tenant groups
  (`<prefix>-<bu>-<stage>-tenants-<use case>`). A tenant's data, run and model never leave the stage.
- Business-unit pipeline (`fine_tuning.business_unit_models_stage`, dev by default): the business unit's own
  models, registered in the central registry; preprod and prod deployers may copy `models/<bu>/business-unit/`.

Definitions are plain dicts (stacks/fine_tuning_pipeline.py) embedded as AWS::SageMaker::Pipeline with Fn::Sub.
Jobs run in the baseline VPC's isolated subnets with network isolation; volumes and outputs use this stack's
key (alias `alias/<org>/<bu>/<stage>/fine-tuning`).
"""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import Fn
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as lambda_event_sources
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from common.fine_tuning_runs import TenantUseCases
from common.lake_layout import LakeScope, Zone
from stacks.baseline_stack import BaselineStack
from stacks.blocks import durations
from stacks.blocks.encryption import PlatformKey
from stacks.blocks.event_dead_letters import event_dead_letter_queue
from stacks.blocks.grants import allow
from stacks.blocks.job_deps import built_job_deps_dir
from stacks.blocks.lake_access import LakeAccess, LakeAccessRequest, grant_lake_access, lake_bucket_name
from stacks.blocks.lambda_deps import LAMBDAS_DIR
from stacks.blocks.model_registry import MAX_GROUP_NAME_LENGTH, model_package_group_name
from stacks.blocks.nag import acknowledge_cdk_managed_providers, acknowledge_wildcard_findings
from stacks.blocks.platform_stack import EnvironmentStack
from stacks.blocks.python_function import PlatformFunction
from stacks.blocks.sagemaker_access import grant_sagemaker_runtime, grant_vpc_network_interfaces
from stacks.blocks.storage import SecureBucket
from stacks.blocks.upload_events import UploadEventReceiver, upload_event_pattern
from stacks.fine_tuning_pipeline import pipeline_definition
from stacks.settings import EnvironmentSpec, PlatformConfig, Stage
from stacks.settings.fine_tuning import check_fine_tuning_placement
from stacks.settings.serving import check_instance_type, image_uri_for, serving_image_uri

JOB_CODE_PACKAGES = ("fine_tuning_jobs", "evaluation", "common")
UPLOAD_RETRY_MINUTES = 15
UPLOAD_MAX_TRIES = 672  # a week of retries every 15 minutes before an upload moves to the dead letters
# What a starter does with the cap's lease slots (common/fine_tuning_runs.py): read, take, bind, give back.
LEASE_TAKER_ACTIONS = ("dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem")
LEASE_RELEASER_ACTIONS = ("dynamodb:Query", "dynamodb:DeleteItem")
PIPELINE_ENDED = ["Succeeded", "Failed", "Stopped"]


def business_unit_models_prefix(business_unit: str) -> str:
    """Where business-unit runs put their artifacts (stacks/fine_tuning_pipeline.py); tenants' are elsewhere."""
    return f"models/{business_unit}/business-unit/"


def fine_tuning_bucket_name(environment: EnvironmentSpec) -> str:
    """Fixed name of the fine-tuning bucket: deployers (this stage's, and for business-unit models preprod's
    and prod's) name it exactly instead of matching a generated name."""
    return f"{environment.name}-ft-{environment.account}"


def tenant_model_package_group_name(prefix: str, business_unit: str, stage: str, use_case: str) -> str:
    """A stage's own registry group for its tenants' versions of one use case (docs/fine-tuning.md)."""
    name = f"{prefix}-{business_unit}-{stage}-tenants-{use_case}"
    if len(name) > MAX_GROUP_NAME_LENGTH:
        raise ValueError(
            f"business_units[{business_unit}].use_cases: tenant registry group {name!r} is longer than "
            f"{MAX_GROUP_NAME_LENGTH} characters; use a shorter use case name"
        )
    return name


class FineTuningStack(EnvironmentStack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PlatformConfig,
        environment: EnvironmentSpec,
        baseline: BaselineStack,
        review_queue: sqs.IQueue | None = None,
    ) -> None:
        """`review_queue`: the stage's human review queue (evaluation stack), where tenant versions of a
        `reviewed` use case wait for a reviewer."""
        super().__init__(
            scope,
            construct_id,
            environment=environment,
            name="fine-tuning",
            description=f"LLMOps fine-tuning pipeline for {environment.name}",
        )
        bu = environment.business_unit
        settings = bu.fine_tuning
        field = f"business_units[{bu.name}].fine_tuning"
        for name in ("training_instance_type", "evaluation_instance_type"):
            check_instance_type(getattr(settings, name), region=environment.region, field=f"{field}.{name}")
        image = settings.image_uri or image_uri_for(
            settings.training_image, region=environment.region, field=f"{field}.training_image"
        )
        serving_image = serving_image_uri(
            bu.serving, region=environment.region, field=f"business_units[{bu.name}].serving"
        )
        prefix = environment.org_prefix
        stage = environment.stage.value
        check_fine_tuning_placement(
            settings,
            use_cases=bu.use_cases,
            serving_stages=list(bu.serving.stages),
            field=field,
        )
        self.settings = settings
        self.stage = stage
        self.serves_tenants = stage in settings.stages
        self.trains_business_unit_models = stage == settings.business_unit_models_stage
        # The tenant pipeline keeps the historical name: the app's POST /fine-tunes starts it.
        self.pipeline_name = f"{environment.name}-fine-tuning"
        self.business_unit_pipeline_name = f"{environment.name}-business-unit-fine-tuning"
        self.tenant_use_case = bu.application.use_case or bu.use_cases[0]
        # The use cases a tenant run may train, for both starters (trigger, POST /fine-tunes) via
        # TENANT_USE_CASES; their promotion policies stay in the pipeline definition and the job role.
        self.tenant_use_cases = TenantUseCases(default=self.tenant_use_case, names=tuple(bu.use_cases))
        # Tenant versions stay in this account: one group per use case, tenant id in each package's metadata.
        self.tenant_group_names = (
            [tenant_model_package_group_name(prefix, bu.name, stage, u) for u in bu.use_cases]
            if self.serves_tenants
            else []
        )

        self.key = PlatformKey(
            self,
            "Key",
            alias=f"alias/{prefix}/{bu.name}/{stage}/fine-tuning",
            retention=baseline.retention,
        ).key
        self.bucket = SecureBucket(
            self,
            "Models",
            key=self.key,
            access_logs=baseline.access_logs,
            retention=baseline.retention,
            bucket_name=fine_tuning_bucket_name(environment),
        )
        if self.trains_business_unit_models:
            self._share_business_unit_models(config, environment)
        self.security_group = ec2.SecurityGroup(
            self,
            "JobSecurityGroup",
            vpc=baseline.network.vpc,
            description="Fine-tuning jobs: HTTPS out only",
            allow_all_outbound=False,
        )
        self.security_group.add_egress_rule(
            ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to VPC and S3 gateway endpoints"
        )
        # Distributed training and inter-container encryption talk between the job's own instances.
        self.security_group.add_ingress_rule(
            self.security_group, ec2.Port.all_tcp(), "Between the instances of one job"
        )
        self.security_group.add_egress_rule(
            self.security_group, ec2.Port.all_tcp(), "Between the instances of one job"
        )

        code = s3_assets.Asset(
            self,
            "JobCode",
            path=str(LAMBDAS_DIR),
            exclude=[
                "*",
                *(f"!{p}" for p in JOB_CODE_PACKAGES),
                *(f"!{p}/**" for p in JOB_CODE_PACKAGES),
                "**/__pycache__",
                "**/*.pyc",
            ],
        )
        # Wheels of the libraries the jobs import and the image lacks, installed offline at job start.
        deps = s3_assets.Asset(self, "JobDependencies", path=str(built_job_deps_dir()))
        self.role = self._job_role(config, environment, image, serving_image, code)
        allow(
            self.role, actions=["s3:GetObject"], resources=[deps.bucket.arn_for_objects(deps.s3_object_key)]
        )
        subnets = baseline.network.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED).subnet_ids
        grant_vpc_network_interfaces(
            self.role, subnet_ids=subnets, security_group_ids=[self.security_group.security_group_id]
        )
        variables = {
            "RoleArn": self.role.role_arn,
            "Bucket": self.bucket.bucket_name,
            "KmsKeyArn": self.key.key_arn,
            "SecurityGroup": self.security_group.security_group_id,
            "CodeUri": code.s3_object_url,
            "DepsUri": deps.s3_object_url,
            "Image": image,
            "ServingImage": serving_image,
            **{f"Subnet{i}": subnet for i, subnet in enumerate(subnets)},
        }
        self.pipelines: dict[str, sagemaker.CfnPipeline] = {}
        # Dead-letter queues of the tenant trigger path: the monitoring stack alarms on each (name -> queue).
        self.dead_letter_queues: dict[str, sqs.Queue] = {}
        self.run_leases: dynamodb.Table | None = None
        if self.serves_tenants:
            self.tenant_groups = [
                sagemaker.CfnModelPackageGroup(
                    self,
                    f"TenantModels-{use_case}",
                    model_package_group_name=name,
                    model_package_group_description=(
                        f"Tenant models of {bu.name} / {use_case} in {stage}; TenantId in each version's metadata"
                    ),
                )
                for use_case, name in zip(bu.use_cases, self.tenant_group_names, strict=True)
            ]
            for group in self.tenant_groups:
                group.apply_removal_policy(baseline.retention.removal_policy)
            local_prefix = f"arn:{self.partition_token}:sagemaker:{self.region_name}:{self.account_id}:model-package-group/"
            self._pipeline(
                "Pipeline",
                self.pipeline_name,
                pipeline_definition(
                    settings,
                    business_unit=bu.name,
                    default_use_case=self.tenant_use_case,
                    subnet_count=len(subnets),
                    kind="tenant",
                    stage=stage,
                    use_cases=list(bu.use_cases),
                ),
                # Tenant groups are <prefix>-<bu>-<stage>-tenants-<use case>: the prefix ends before the use case.
                {**variables, "RegistryArnPrefix": f"{local_prefix}{prefix}-{bu.name}-{stage}-tenants-"},
                f"Tenant data -> LoRA fine-tune -> evaluation -> {stage} tenant registry ({bu.name})",
            )
            for group in self.tenant_groups:
                self.pipelines[self.pipeline_name].add_resource_dependency(group)
        if self.trains_business_unit_models:
            central = f"arn:{self.partition_token}:sagemaker:{config.home_region}:{config.tooling_account}:model-package-group/{prefix}-{bu.name}-"
            self._pipeline(
                "BusinessUnitPipeline",
                self.business_unit_pipeline_name,
                pipeline_definition(
                    settings,
                    business_unit=bu.name,
                    default_use_case=bu.use_cases[0],
                    subnet_count=len(subnets),
                    kind="business_unit",
                    stage=stage,
                ),
                {**variables, "RegistryArnPrefix": central},
                f"Business-unit data -> LoRA fine-tune -> evaluation -> central registry ({bu.name})",
            )
        self.pipeline_arn = f"arn:{self.partition_token}:sagemaker:{self.region_name}:{self.account_id}:pipeline/{self.pipeline_name}"
        # A start that lost its slot stops its own execution (common/fine_tuning_runs.py); SageMaker writes
        # the pipeline name in lower case in execution ARNs.
        self.executions_arn = (
            f"{self.pipeline_arn.replace(self.pipeline_name, self.pipeline_name.lower())}/execution/*"
        )
        self.start_policy: iam.ManagedPolicy | None = None
        if self.serves_tenants:
            self.run_leases = self._run_leases(baseline)
            # The application backend's POST /fine-tunes attaches this policy to its role.
            self.start_policy = iam.ManagedPolicy(
                self,
                "StartFineTuning",
                description=f"Start executions of {self.pipeline_name} (POST /fine-tunes) within the cap",
                statements=[
                    iam.PolicyStatement(
                        actions=["sagemaker:StartPipelineExecution"], resources=[self.pipeline_arn]
                    ),
                    iam.PolicyStatement(
                        actions=["sagemaker:StopPipelineExecution"], resources=[self.executions_arn]
                    ),
                    *self._lease_statements(baseline, LEASE_TAKER_ACTIONS),
                ],
            )
            acknowledge_wildcard_findings(self.start_policy, self._executions_finding())
            self._upload_trigger(config, environment, baseline)
            self._lease_release(config, environment, baseline)
            if review_queue is not None:
                self._tenant_review(config, environment, baseline, review_queue)
        acknowledge_cdk_managed_providers(self)

    def _pipeline(
        self, construct_id: str, name: str, definition: dict[str, Any], variables: dict[str, str], about: str
    ) -> None:
        self.pipelines[name] = sagemaker.CfnPipeline(
            self,
            construct_id,
            pipeline_name=name,
            pipeline_description=about,
            role_arn=self.role.role_arn,
            pipeline_definition={"PipelineDefinitionBody": Fn.sub(json.dumps(definition), variables)},
        )

    def _share_business_unit_models(self, config: PlatformConfig, environment: EnvironmentSpec) -> None:
        """Serving deployers of preprod and prod copy business-unit model versions (never tenant ones)."""
        bu = environment.business_unit
        readers = sorted({config.environment(bu, stage).account for stage in (Stage.PREPROD, Stage.PROD)})
        reader_principals = [iam.AccountPrincipal(account) for account in readers]
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="ServingDeployersReadBusinessUnitModels",
                principals=reader_principals,
                actions=["s3:GetObject"],
                resources=[self.bucket.arn_for_objects(f"{business_unit_models_prefix(bu.name)}*")],
                conditions={"StringEquals": {"aws:PrincipalTag/BusinessUnit": bu.name}},
            )
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="ServingDeployersDecryptModels",
                principals=reader_principals,
                actions=["kms:Decrypt"],
                resources=["*"],
                conditions={"StringEquals": {"kms:ViaService": f"s3.{self.region_name}.amazonaws.com"}},
            )
        )

    def _job_role(
        self,
        config: PlatformConfig,
        environment: EnvironmentSpec,
        image: str,
        serving_image: str,
        code: s3_assets.Asset,
    ) -> iam.Role:
        bu = environment.business_unit
        role = iam.Role(
            self,
            "JobRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"Runs {self.pipeline_name} and its processing and training jobs",
        )
        account_arn = f"arn:{self.partition_token}:sagemaker:{self.region_name}:{self.account_id}"
        statements = [
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[self.bucket.arn_for_objects("*")],
            ),
            iam.PolicyStatement(actions=["s3:ListBucket"], resources=[self.bucket.bucket_arn]),
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:GenerateDataKey", "kms:CreateGrant", "kms:DescribeKey"],
                resources=[self.key.key_arn],
            ),
            iam.PolicyStatement(
                actions=[
                    "sagemaker:CreateProcessingJob",
                    "sagemaker:DescribeProcessingJob",
                    "sagemaker:StopProcessingJob",
                    "sagemaker:CreateTrainingJob",
                    "sagemaker:DescribeTrainingJob",
                    "sagemaker:StopTrainingJob",
                    "sagemaker:AddTags",
                ],
                resources=[
                    f"{account_arn}:processing-job/pipelines-*",
                    f"{account_arn}:training-job/pipelines-*",
                ],
            ),
        ]
        for statement in statements:
            role.add_to_policy(statement)
        registry_findings = self._registry_statements(role, config, environment)
        stage = LakeScope(environment.stage.value)
        # Tenant uploads in the data lake's raw zone: this business unit's and stage's prefix only.
        if self.serves_tenants:
            grant_lake_access(
                role,
                config,
                LakeAccessRequest(business_unit=bu.name, stage=stage, zone=Zone.RAW, access=LakeAccess.READ),
            )
        # The business unit's curated training data of this stage.
        if self.trains_business_unit_models:
            grant_lake_access(
                role,
                config,
                LakeAccessRequest(
                    business_unit=bu.name, stage=stage, zone=Zone.CURATED, access=LakeAccess.READ
                ),
            )
        grant_sagemaker_runtime(role, images=[image, serving_image])
        allow(role, actions=["iam:PassRole"], resources=[role.role_arn])
        allow(role, actions=["s3:GetObject"], resources=[code.bucket.arn_for_objects(code.s3_object_key)])
        acknowledge_wildcard_findings(
            role,
            {
                f"Resource::<{self.get_logical_id(self.bucket.node.default_child)}.Arn>/*": "Pipeline runs write "  # type: ignore[arg-type]
                "per-tenant, per-execution outputs whose keys are only known at run time",
                f"Resource::arn:<AWS::Partition>:sagemaker:{self.region_name}:{self.account_id}:processing-job/pipelines-*": (
                    "SageMaker Pipelines names its processing jobs pipelines-<execution id>-<step> at run time"
                ),
                f"Resource::arn:<AWS::Partition>:sagemaker:{self.region_name}:{self.account_id}:training-job/pipelines-*": (
                    "SageMaker Pipelines names its training jobs pipelines-<execution id>-<step> at run time"
                ),
                **registry_findings,
            },
        )
        return role

    def _executions_finding(self) -> dict[str, str]:
        return {
            f"Resource::{self.executions_arn.replace(f'arn:{self.partition_token}:', 'arn:<AWS::Partition>:')}": (
                "Execution ids are generated by SageMaker at start; only executions of this one pipeline "
                "may be stopped (a start that lost its cap slot stops its own)"
            )
        }

    def _registry_statements(
        self, role: iam.Role, config: PlatformConfig, environment: EnvironmentSpec
    ) -> dict[str, str]:
        """CreateModelPackage on exactly the groups this stage's pipelines register in; into a group whose
        versions wait for a person (a `reviewed` tenant use case, every business-unit group) only with
        ModelApprovalStatus PendingManualApproval, whatever the pipeline definition says."""
        bu = environment.business_unit
        settings = bu.fine_tuning
        automatic: list[str] = []
        reviewed: list[str] = []
        if self.serves_tenants:
            for use_case, name in zip(bu.use_cases, self.tenant_group_names, strict=True):
                group = f"arn:{self.partition_token}:sagemaker:{self.region_name}:{self.account_id}:model-package-group/{name}"
                status = settings.approval_status_for(use_case)
                (automatic if status == "Approved" else reviewed).append(group)
        if self.trains_business_unit_models:
            reviewed += [
                f"arn:{self.partition_token}:sagemaker:{config.home_region}:{config.tooling_account}:model-package-group/"
                + model_package_group_name(environment.org_prefix, bu.name, use_case)
                for use_case in bu.use_cases
            ]

        def versions_of(groups: list[str]) -> list[str]:
            return [group.replace(":model-package-group/", ":model-package/") + "/*" for group in groups]

        if automatic:
            allow(
                role, actions=["sagemaker:CreateModelPackage"], resources=automatic + versions_of(automatic)
            )
        if reviewed:
            allow(
                role,
                actions=["sagemaker:CreateModelPackage"],
                resources=reviewed + versions_of(reviewed),
                conditions={"StringEquals": {"sagemaker:ModelApprovalStatus": "PendingManualApproval"}},
            )
        groups = automatic + reviewed
        versions = versions_of(groups)
        allow(role, actions=["sagemaker:AddTags"], resources=groups + versions)
        return {
            f"Resource::{version.replace(f'arn:{self.partition_token}:', 'arn:<AWS::Partition>:')}": (
                "Model package versions are numbered by the registry at registration time; the group is exact"
            )
            for version in versions
        }

    def _upload_trigger(
        self, config: PlatformConfig, environment: EnvironmentSpec, baseline: BaselineStack
    ) -> None:
        """Raw-zone upload event -> FIFO queue (one start at a time, so the cap holds) -> trigger function."""
        bu = environment.business_unit
        stage = environment.stage.value
        if not config.is_sandbox:
            # The lake account forwards this stage's tenant uploads (stacks/blocks/upload_events.py).
            self.upload_receiver = UploadEventReceiver(
                self, "TenantUploadEvents", config=config, business_unit=bu.name, stage=stage
            )
        dead_letters = sqs.Queue(
            self,
            "UploadDeadLetters",
            fifo=True,
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.key,
            enforce_ssl=True,
            retention_period=durations.days(14),
        )
        self.upload_queue = sqs.Queue(
            self,
            "Uploads",
            fifo=True,
            content_based_deduplication=True,
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.key,
            enforce_ssl=True,
            # An upload that found the cap reached comes back after this long.
            visibility_timeout=durations.minutes(UPLOAD_RETRY_MINUTES),
            retention_period=durations.days(14),
            dead_letter_queue=sqs.DeadLetterQueue(queue=dead_letters, max_receive_count=UPLOAD_MAX_TRIES),
        )
        self.dead_letter_queues["TenantUpload"] = dead_letters
        trigger = self._function(
            "UploadTrigger",
            "fine_tuning_trigger",
            f"Starts {self.pipeline_name} for a tenant's new raw-zone upload, within the cap",
            self._cap_environment(environment),
            config,
            environment,
            baseline,
        )
        allow(trigger.role, actions=["sagemaker:StartPipelineExecution"], resources=[self.pipeline_arn])
        allow(trigger.role, actions=["sagemaker:StopPipelineExecution"], resources=[self.executions_arn])
        acknowledge_wildcard_findings(trigger.role, self._executions_finding())
        for statement in self._lease_statements(baseline, LEASE_TAKER_ACTIONS):
            trigger.role.add_to_policy(statement)
        trigger.function.add_event_source(
            lambda_event_sources.SqsEventSource(
                self.upload_queue, batch_size=1, report_batch_item_failures=True
            )
        )
        self.upload_rule = events.Rule(
            self,
            "RawUpload",
            rule_name=f"{environment.name}-tenant-uploads",  # named: its dead letters' key policy names it
            description=f"New tenant data of {bu.name} in {stage}, in the raw zone",
            event_pattern=upload_event_pattern(lake_bucket_name(config, Zone.RAW), bu.name, stage),
        )
        # One message group: the function starts one execution at a time, so two uploads cannot both
        # pass the cap check.
        # Events EventBridge could not put on the queue (after its retries) land here instead of vanishing.
        undelivered = self._event_dead_letters("UploadEventDeadLetters", f"{environment.name}-tenant-uploads")
        self.upload_rule.add_target(
            targets.SqsQueue(
                self.upload_queue,
                message_group_id="uploads",
                dead_letter_queue=undelivered,
                retry_attempts=185,  # EventBridge's most: about 24 hours of retries
            )
        )
        self.trigger = trigger

    # ---- the cap's lease slots (common/fine_tuning_runs.py) ----------------------------------------------

    def _run_leases(self, baseline: BaselineStack) -> dynamodb.Table:
        """One item per taken slot of `max_concurrent_runs`; conditional writes make the cap exact."""
        return dynamodb.Table(
            self,
            "RunLeases",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=baseline.key,
            time_to_live_attribute="expires_at",
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            removal_policy=baseline.retention.removal_policy,
        )

    def _leases_table(self) -> dynamodb.Table:
        assert self.run_leases is not None  # created before anything that takes or frees a slot
        return self.run_leases

    def _lease_statements(
        self, baseline: BaselineStack, actions: tuple[str, ...]
    ) -> list[iam.PolicyStatement]:
        return [
            iam.PolicyStatement(actions=list(actions), resources=[self._leases_table().table_arn]),
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[baseline.key.key_arn]
            ),
        ]

    def _lease_release(
        self, config: PlatformConfig, environment: EnvironmentSpec, baseline: BaselineStack
    ) -> None:
        """The pipeline's end (succeeded, failed or stopped) frees the run's slot."""
        release = self._function(
            "RunLeaseRelease",
            "fine_tuning_trigger",
            f"Frees the cap slot of a {self.pipeline_name} run that ended",
            self._cap_environment(environment),
            config,
            environment,
            baseline,
            handler="handler.release_handler",
        )
        for statement in self._lease_statements(baseline, LEASE_RELEASER_ACTIONS):
            release.role.add_to_policy(statement)
        self.release_rule = self._sagemaker_event_rule(
            "RunEnded",
            f"{environment.name}-fine-tuning-run-ended",
            f"A {self.pipeline_name} execution ended: free its slot of the cap",
            "SageMaker Model Building Pipeline Execution Status Change",
            {
                # SageMaker writes the pipeline name in lower case in its ARNs.
                "pipelineArn": [self.pipeline_arn.replace(self.pipeline_name, self.pipeline_name.lower())],
                "currentPipelineExecutionStatus": PIPELINE_ENDED,
            },
            release,
        )
        self.lease_release = release

    def _cap_environment(self, environment: EnvironmentSpec) -> dict[str, str]:
        """What the trigger's handlers need to take and free the cap's slots (fine_tuning_trigger.handler)."""
        settings = environment.business_unit.fine_tuning
        return {
            "PIPELINE_NAME": self.pipeline_name,
            "BUSINESS_UNIT": environment.business_unit.name,
            "STAGE": self.stage,
            "MAX_CONCURRENT_RUNS": str(settings.max_concurrent_runs),
            "MAX_RUNTIME_HOURS": str(settings.max_runtime_hours),
            "RUN_LEASES_TABLE": self._leases_table().table_name,
            TenantUseCases.ENV: self.tenant_use_cases.to_json(),
        }

    def _function(
        self,
        construct_id: str,
        service: str,
        description: str,
        variables: dict[str, str],
        config: PlatformConfig,
        environment: EnvironmentSpec,
        baseline: BaselineStack,
        handler: str = "handler.lambda_handler",
    ) -> PlatformFunction:
        return PlatformFunction(
            self,
            construct_id,
            service=service,
            handler=handler,
            description=description,
            key=baseline.key,
            log_retention_days=environment.settings.log_retention_days,
            retention=baseline.retention,
            powertools_layer_version=config.lambda_.powertools_layer_version,
            environment=variables,
        )

    def _sagemaker_event_rule(
        self,
        construct_id: str,
        rule_name: str,
        description: str,
        detail_type: str,
        detail: dict[str, Any],
        function: PlatformFunction,
    ) -> events.Rule:
        """A default-bus rule for one SageMaker event that invokes `function`, with its own dead letters."""
        rule = events.Rule(
            self,
            construct_id,
            rule_name=rule_name,
            description=description,
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"], detail_type=[detail_type], detail=detail
            ),
        )
        undelivered = self._event_dead_letters(f"{construct_id}DeadLetters", rule_name)
        rule.add_target(
            targets.LambdaFunction(function.function, dead_letter_queue=undelivered, retry_attempts=185)
        )
        # EventBridge invokes asynchronously: an event the function failed on (after Lambda's two retries)
        # lands in the same dead letters instead of being dropped.
        # (L1: the L2 destination grants kms:GenerateDataKey* / ReEncrypt*; these are the exact actions.)
        lambda_.CfnEventInvokeConfig(
            self,
            f"{construct_id}OnFailure",
            function_name=function.function.function_name,
            qualifier="$LATEST",
            maximum_retry_attempts=2,
            destination_config=lambda_.CfnEventInvokeConfig.DestinationConfigProperty(
                on_failure=lambda_.CfnEventInvokeConfig.OnFailureProperty(destination=undelivered.queue_arn)
            ),
        )
        allow(function.role, actions=["sqs:SendMessage"], resources=[undelivered.queue_arn])
        allow(function.role, actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=[self.key.key_arn])
        return rule

    def _event_dead_letters(self, construct_id: str, rule_name: str) -> sqs.Queue:
        """The dead letters of the rule `rule_name`'s targets, under the stack's key; the monitoring stack
        alarms on every queue of `dead_letter_queues`."""
        queue = event_dead_letter_queue(
            self,
            construct_id,
            key=self.key,
            rule_arns=[
                f"arn:{self.partition_token}:events:{self.region_name}:{self.account_id}:rule/{rule_name}"
            ],
        )
        self.dead_letter_queues[construct_id.removesuffix("DeadLetters")] = queue
        return queue

    # ---- reviewed tenant versions -> the human review queue ----------------------------------------------

    def _tenant_review(
        self, config: PlatformConfig, environment: EnvironmentSpec, baseline: BaselineStack, queue: sqs.IQueue
    ) -> None:
        """A tenant version registered PendingManualApproval -> lambdas/tenant_review -> the review queue."""
        bu = environment.business_unit
        forwarder = self._function(
            "TenantReviewRequests",
            "tenant_review",
            f"Queues {self.stage} tenant versions that await review for the human reviewers",
            {
                "BUSINESS_UNIT": bu.name,
                "STAGE": self.stage,
                "TENANT_GROUPS": json.dumps(self.tenant_group_names),
                "REVIEW_QUEUE_URL": queue.queue_url,
            },
            config,
            environment,
            baseline,
        )
        versions = [
            f"arn:{self.partition_token}:sagemaker:{self.region_name}:{self.account_id}:model-package/{name}/*"
            for name in self.tenant_group_names
        ]
        # The evaluation report of a tenant run: <bu>/tenant=<id>/<execution>/evaluate/evaluation/evaluation.json.
        reports = self.bucket.arn_for_objects(f"{bu.name}/tenant=*/evaluate/evaluation/evaluation.json")
        for statement in (
            iam.PolicyStatement(actions=["sagemaker:DescribeModelPackage"], resources=versions),
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[reports]),
            iam.PolicyStatement(actions=["kms:Decrypt"], resources=[self.key.key_arn]),
            iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[queue.queue_arn]),
            # The review queue is encrypted with the stage's baseline key.
            iam.PolicyStatement(
                actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=[baseline.key.key_arn]
            ),
        ):
            forwarder.role.add_to_policy(statement)
        findings = {
            f"Resource::<{self.get_logical_id(self.bucket.node.default_child)}.Arn>/{bu.name}/tenant=*/evaluate/"  # type: ignore[arg-type]
            "evaluation/evaluation.json": "Evaluation reports are written per tenant and execution (ids known "
            "at run time); only the report file of the Evaluate step is readable",
            **{
                f"Resource::{v.replace(f'arn:{self.partition_token}:', 'arn:<AWS::Partition>:')}": "Tenant versions are "
                "numbered by the registry at registration; the group is exactly one of this stage's tenant groups"
                for v in versions
            },
        }
        acknowledge_wildcard_findings(forwarder.role, findings)
        self.review_rule = self._sagemaker_event_rule(
            "ReviewRequest",
            f"{environment.name}-tenant-review-requests",
            f"A {self.stage} tenant version awaits review: put it on the human review queue",
            "SageMaker Model Package State Change",
            {
                "ModelPackageGroupName": list(self.tenant_group_names),
                "ModelApprovalStatus": ["PendingManualApproval"],
            },
            forwarder,
        )
        self.review_forwarder = forwarder
