"""Fine-tuning for one business unit (dev by default): the SageMaker Pipeline and what starts it.

The pipeline definition is written as plain dicts (stacks/fine_tuning_pipeline.py) and embedded as
AWS::SageMaker::Pipeline; deploy-time values are filled with Fn::Sub. Jobs run in the baseline VPC's
isolated subnets with network isolation; volumes and outputs use this stack's key, whose alias
(`alias/<org>/<bu>/<stage>/fine-tuning`) the serving deployers of preprod and prod reach the artifacts by.
"""

from __future__ import annotations

import json

from aws_cdk import Fn
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from common.lake_layout import LakeScope, Zone, stage_prefix
from stacks.baseline_stack import BaselineStack
from stacks.blocks.encryption import PlatformKey
from stacks.blocks.job_deps import built_job_deps_dir
from stacks.blocks.lake_access import LakeAccess, LakeAccessRequest, grant_lake_access, lake_bucket_name
from stacks.blocks.lambda_deps import LAMBDAS_DIR
from stacks.blocks.nag import acknowledge, acknowledge_cdk_managed_providers
from stacks.blocks.platform_stack import EnvironmentStack
from stacks.blocks.python_function import PlatformFunction
from stacks.blocks.sagemaker_access import grant_sagemaker_runtime
from stacks.blocks.storage import SecureBucket
from stacks.fine_tuning_pipeline import pipeline_definition
from stacks.settings import EnvironmentSpec, PlatformConfig, Stage
from stacks.settings.serving import check_instance_type, image_uri_for, serving_image_uri

JOB_CODE_PACKAGES = ("fine_tuning_jobs", "evaluation", "common")


class FineTuningStack(EnvironmentStack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PlatformConfig,
        environment: EnvironmentSpec,
        baseline: BaselineStack,
    ) -> None:
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
        self.pipeline_name = f"{environment.name}-fine-tuning"
        prefix = environment.org_prefix

        self.key = PlatformKey(
            self,
            "Key",
            alias=f"alias/{prefix}/{bu.name}/{environment.stage.value}/fine-tuning",
            retention=baseline.retention,
        ).key
        self.bucket = SecureBucket(
            self, "Models", key=self.key, access_logs=baseline.access_logs, retention=baseline.retention
        )
        # Serving deployers in the business unit's other stages copy approved artifacts from models/.
        readers = sorted({config.environment(bu, stage).account for stage in (Stage.PREPROD, Stage.PROD)})
        reader_principals = [iam.AccountPrincipal(account) for account in readers]
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="ServingDeployersReadModels",
                principals=reader_principals,
                actions=["s3:GetObject"],
                resources=[self.bucket.arn_for_objects("models/*")],
                conditions={"StringEquals": {"aws:PrincipalTag/BusinessUnit": bu.name}},
            )
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="ServingDeployersDecryptModels",
                principals=reader_principals,
                actions=["kms:Decrypt"],
                resources=["*"],
                conditions={"StringEquals": {"kms:ViaService": f"s3.{self.region}.amazonaws.com"}},
            )
        )
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
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"], resources=[deps.bucket.arn_for_objects(deps.s3_object_key)]
            )
        )
        subnets = baseline.network.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED).subnet_ids
        definition = pipeline_definition(
            settings, business_unit=bu.name, default_use_case=bu.use_cases[0], subnet_count=len(subnets)
        )
        registry_prefix = f"arn:{self.partition}:sagemaker:{config.home_region}:{config.tooling_account}:model-package-group/{prefix}-{bu.name}-"
        variables = {
            "RoleArn": self.role.role_arn,
            "Bucket": self.bucket.bucket_name,
            "KmsKeyArn": self.key.key_arn,
            "SecurityGroup": self.security_group.security_group_id,
            "CodeUri": code.s3_object_url,
            "DepsUri": deps.s3_object_url,
            "Image": image,
            "ServingImage": serving_image,
            "RegistryArnPrefix": registry_prefix,
            **{f"Subnet{i}": subnet for i, subnet in enumerate(subnets)},
        }
        self.pipeline = sagemaker.CfnPipeline(
            self,
            "Pipeline",
            pipeline_name=self.pipeline_name,
            pipeline_description=f"Tenant data -> LoRA fine-tune -> evaluation -> registry ({bu.name})",
            role_arn=self.role.role_arn,
            pipeline_definition={"PipelineDefinitionBody": Fn.sub(json.dumps(definition), variables)},
        )
        self.pipeline_arn = (
            f"arn:{self.partition}:sagemaker:{self.region}:{self.account}:pipeline/{self.pipeline_name}"
        )
        # The application backend's POST /fine-tunes attaches this policy to its role.
        self.start_policy = iam.ManagedPolicy(
            self,
            "StartFineTuning",
            description=f"Start executions of {self.pipeline_name} (POST /fine-tunes)",
            statements=[
                iam.PolicyStatement(
                    actions=["sagemaker:StartPipelineExecution"], resources=[self.pipeline_arn]
                )
            ],
        )
        self._upload_trigger(config, environment, baseline)
        acknowledge_cdk_managed_providers(self)

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
        account_arn = f"arn:{self.partition}:sagemaker:{self.region}:{self.account}"
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
            iam.PolicyStatement(
                actions=["sagemaker:CreateModelPackage", "sagemaker:AddTags"],
                resources=[
                    f"arn:{self.partition}:sagemaker:{config.home_region}:{config.tooling_account}:model-package-group/{environment.org_prefix}-{bu.name}-*",
                    f"arn:{self.partition}:sagemaker:{config.home_region}:{config.tooling_account}:model-package/{environment.org_prefix}-{bu.name}-*/*",
                ],
            ),
        ]
        for statement in statements:
            role.add_to_policy(statement)
        # Tenant uploads in the data lake's raw zone, this business unit stage's prefix only.
        grant_lake_access(
            role,
            config,
            LakeAccessRequest(
                business_unit=bu.name,
                stage=LakeScope(environment.stage.value),
                zone=Zone.RAW,
                access=LakeAccess.READ,
            ),
        )
        grant_sagemaker_runtime(role, images=[image, serving_image])
        role.add_to_policy(iam.PolicyStatement(actions=["iam:PassRole"], resources=[role.role_arn]))
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"], resources=[code.bucket.arn_for_objects(code.s3_object_key)]
            )
        )
        for finding, reason in {
            f"Resource::<{self.get_logical_id(self.bucket.node.default_child)}.Arn>/*": "Pipeline runs write "  # type: ignore[arg-type]
            "per-tenant, per-execution outputs whose keys are only known at run time",
            f"Resource::arn:<AWS::Partition>:sagemaker:{self.region}:{self.account}:processing-job/pipelines-*": (
                "SageMaker Pipelines names its processing jobs pipelines-<execution id>-<step> at run time"
            ),
            f"Resource::arn:<AWS::Partition>:sagemaker:{self.region}:{self.account}:training-job/pipelines-*": (
                "SageMaker Pipelines names its training jobs pipelines-<execution id>-<step> at run time"
            ),
            f"Resource::arn:<AWS::Partition>:sagemaker:{config.home_region}:{config.tooling_account}:model-package-group/{environment.org_prefix}-{bu.name}-*": (
                "The registry groups of this business unit (one per use case, chosen per run by the UseCase parameter)"
            ),
            f"Resource::arn:<AWS::Partition>:sagemaker:{config.home_region}:{config.tooling_account}:model-package/{environment.org_prefix}-{bu.name}-*/*": (
                "Model package versions are numbered by the registry at registration time"
            ),
        }.items():
            acknowledge(role, f"AwsSolutions-IAM5[{finding}]", reason)
        return role

    def _upload_trigger(
        self, config: PlatformConfig, environment: EnvironmentSpec, baseline: BaselineStack
    ) -> None:
        bu = environment.business_unit
        trigger = PlatformFunction(
            self,
            "UploadTrigger",
            service="fine_tuning_trigger",
            description=f"Starts {self.pipeline_name} for a tenant's new raw-zone upload",
            key=baseline.key,
            log_retention_days=environment.settings.log_retention_days,
            retention=baseline.retention,
            powertools_layer_version=config.lambda_.powertools_layer_version,
            environment={
                "PIPELINE_NAME": self.pipeline_name,
                "BUSINESS_UNIT": bu.name,
                "LAKE_STAGE": environment.stage.value,
            },
        )
        trigger.role.add_to_policy(
            iam.PolicyStatement(actions=["sagemaker:StartPipelineExecution"], resources=[self.pipeline_arn])
        )
        # The data lake account forwards its raw zone's S3 events to this account's default bus.
        rule = events.Rule(
            self,
            "RawUpload",
            description=f"New tenant data of {bu.name} in the raw zone",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={
                    "bucket": {"name": [lake_bucket_name(config, Zone.RAW)]},
                    "object": {"key": [{"prefix": f"{stage_prefix(bu.name, environment.stage)}tenant="}]},
                },
            ),
        )
        rule.add_target(targets.LambdaFunction(trigger.function, retry_attempts=2))
