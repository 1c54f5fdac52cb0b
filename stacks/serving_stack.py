"""GPU serving for one business unit in one stage: many fine-tuned models share one SageMaker endpoint.

Two modes (config `serving.mode`):
- multi_model_endpoint: a SageMaker multi-model endpoint on GPU instances (NVIDIA Triton container); every
  approved model is an artifact under `s3://<models bucket>/mme/`, loaded on its first call (TargetModel).
  Scales instances on invocations per instance.
- inference_components: a base-model component plus one adapter component per approved model; the base
  component's copy count scales on concurrent requests per copy, down to zero where the config allows,
  and managed instance scaling follows the copies.

The endpoint runs in the baseline VPC's isolated subnets. Its alarms (errors, latency, GPU memory, thresholds
in `serving.alarms`) live in the monitoring stack, on the stage's one alarm topic. The deployer Lambda reacts to model package approvals from the central registry.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct
from serving_runtime.lmi import lmi_environment

from stacks.baseline_stack import BaselineStack
from stacks.blocks.nag import acknowledge, acknowledge_cdk_managed_providers
from stacks.blocks.platform_stack import EnvironmentStack
from stacks.blocks.python_function import PlatformFunction
from stacks.blocks.sagemaker_access import grant_sagemaker_runtime
from stacks.blocks.storage import SecureBucket
from stacks.settings import EnvironmentSpec, PlatformConfig, Stage
from stacks.settings.serving import (
    ServingMode,
    ServingSettings,
    check_instance_type,
    load_catalog,
    serving_image_uri,
)

VARIANT_NAME = "AllTraffic"
MME_PREFIX = "mme/"
MODEL_PACKAGE_STATE_CHANGE = "SageMaker Model Package State Change"


def endpoint_name(environment: EnvironmentSpec) -> str:
    return f"{environment.name}-serving"


def model_package_group_names(environment: EnvironmentSpec) -> list[str]:
    """The registry's groups for this business unit (created in the tooling account, one per use case)."""
    bu = environment.business_unit
    return [f"{environment.org_prefix}-{bu.name}-{use_case}" for use_case in bu.use_cases]


def fine_tuning_stack_name(config: PlatformConfig, environment: EnvironmentSpec) -> str:
    return f"{config.environment(environment.business_unit, Stage.DEV).name}-fine-tuning"


class ServingStack(EnvironmentStack):
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
            name="serving",
            description=f"LLMOps GPU serving for {environment.name}: shared endpoint, autoscaling, deployer",
        )
        settings = environment.business_unit.serving
        field = f"business_units[{environment.business_unit.name}].serving"
        check_instance_type(settings.instance_type, region=environment.region, field=f"{field}.instance_type")
        image = serving_image_uri(settings, region=environment.region, field=field)
        self.settings = settings
        self.endpoint_name = endpoint_name(environment)
        self.models_bucket = SecureBucket(
            self, "Models", key=baseline.key, access_logs=baseline.access_logs, retention=baseline.retention
        )
        self.security_group = ec2.SecurityGroup(
            self,
            "EndpointSecurityGroup",
            vpc=baseline.network.vpc,
            description="Serving endpoint instances: HTTPS out to the VPC endpoints only",
            allow_all_outbound=False,
        )
        self.security_group.add_egress_rule(
            ec2.Peer.ipv4(environment.settings.vpc_cidr), ec2.Port.tcp(443), "HTTPS to interface endpoints"
        )
        self.security_group.add_egress_rule(
            ec2.Peer.any_ipv4(),
            ec2.Port.tcp(443),
            "HTTPS to S3 through the gateway endpoint (the subnets have no other route out)",
        )
        self.key = baseline.key
        self.role = self._execution_role(image)
        vpc_config = {
            "securityGroupIds": [self.security_group.security_group_id],
            "subnets": baseline.network.vpc.select_subnets(
                subnet_type=ec2.SubnetType.PRIVATE_ISOLATED
            ).subnet_ids,
        }
        uses_instance_store = load_catalog().instance(settings.instance_type).local_nvme
        volume_key = None if uses_instance_store else baseline.key.key_arn
        capture = self._data_capture(settings, baseline) if settings.data_capture else None

        if settings.mode is ServingMode.MULTI_MODEL_ENDPOINT:
            model = sagemaker.CfnModel(
                self,
                "MultiModel",
                execution_role_arn=self.role.role_arn,
                enable_network_isolation=True,
                vpc_config=sagemaker.CfnModel.VpcConfigProperty(
                    security_group_ids=vpc_config["securityGroupIds"], subnets=vpc_config["subnets"]
                ),
                primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                    image=image,
                    mode="MultiModel",
                    model_data_url=self.models_bucket.s3_url_for_object(MME_PREFIX),
                ),
            )
            endpoint_config = sagemaker.CfnEndpointConfig(
                self,
                "EndpointConfig",
                kms_key_id=volume_key,
                data_capture_config=capture,
                production_variants=[
                    sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                        variant_name=VARIANT_NAME,
                        model_name=model.attr_model_name,
                        instance_type=settings.instance_type,
                        initial_instance_count=settings.initial_instances,
                        initial_variant_weight=1,
                    )
                ],
            )
        else:
            endpoint_config = sagemaker.CfnEndpointConfig(
                self,
                "EndpointConfig",
                kms_key_id=volume_key,
                data_capture_config=capture,
                execution_role_arn=self.role.role_arn,
                enable_network_isolation=True,
                vpc_config=sagemaker.CfnEndpointConfig.VpcConfigProperty(
                    security_group_ids=vpc_config["securityGroupIds"], subnets=vpc_config["subnets"]
                ),
                production_variants=[
                    sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                        variant_name=VARIANT_NAME,
                        instance_type=settings.instance_type,
                        initial_instance_count=settings.initial_instances,
                        managed_instance_scaling=sagemaker.CfnEndpointConfig.ManagedInstanceScalingProperty(
                            status="ENABLED",
                            min_instance_count=settings.min_capacity,
                            max_instance_count=settings.max_capacity,
                        ),
                        routing_config=sagemaker.CfnEndpointConfig.RoutingConfigProperty(
                            routing_strategy="LEAST_OUTSTANDING_REQUESTS"
                        ),
                    )
                ],
            )
        if uses_instance_store:
            acknowledge(
                endpoint_config,
                "AwsSolutions-SM2",
                f"Instance type {settings.instance_type} keeps models on NVMe instance storage, which the Nitro hardware "
                "encrypts (AES-256); SageMaker rejects a KMS volume key for instance types with instance storage",
            )
        self.endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=self.endpoint_name,
            endpoint_config_name=endpoint_config.attr_endpoint_config_name,
        )
        self.base_component_name: str | None = None
        if settings.mode is ServingMode.INFERENCE_COMPONENTS:
            self._base_component(settings, image)
        self.scalable_target = self._autoscaling(settings)
        self.deployer = self._deployer(config, environment, baseline, settings)
        acknowledge_cdk_managed_providers(self)

    # ---- building blocks -------------------------------------------------------------------------

    def _execution_role(self, image: str) -> iam.Role:
        role = iam.Role(
            self,
            "EndpointRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"SageMaker execution role of {self.endpoint_name}",
        )
        role.add_to_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[self.models_bucket.arn_for_objects("*")])
        )
        role.add_to_policy(
            iam.PolicyStatement(actions=["s3:ListBucket"], resources=[self.models_bucket.bucket_arn])
        )
        role.add_to_policy(iam.PolicyStatement(actions=["kms:Decrypt"], resources=[self.key.key_arn]))
        grant_sagemaker_runtime(role, images=[image])
        self._acknowledge_wildcards(
            role,
            {
                f"Resource::<{self._logical_id(self.models_bucket)}.Arn>/*": "Model objects in this stack's "
                "bucket are named at deploy time (one per approved model); the endpoint only reads them",
            },
        )
        return role

    def _logical_id(self, construct: Construct) -> str:
        default_child = construct.node.default_child
        assert default_child is not None
        return self.get_logical_id(default_child)  # type: ignore[arg-type]

    @staticmethod
    def _acknowledge_wildcards(role: iam.Role, findings: dict[str, str]) -> None:
        for finding, reason in findings.items():
            acknowledge(role, f"AwsSolutions-IAM5[{finding}]", reason)

    def _data_capture(
        self, settings: ServingSettings, baseline: BaselineStack
    ) -> sagemaker.CfnEndpointConfig.DataCaptureConfigProperty:
        return sagemaker.CfnEndpointConfig.DataCaptureConfigProperty(
            enable_capture=True,
            initial_sampling_percentage=settings.data_capture_percent,
            destination_s3_uri=self.models_bucket.s3_url_for_object("data-capture"),
            kms_key_id=baseline.key.key_arn,
            capture_options=[
                sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Input"),
                sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Output"),
            ],
        )

    def _base_component(self, settings: ServingSettings, image: str) -> None:
        base_model = sagemaker.CfnModel(
            self,
            "BaseModel",
            execution_role_arn=self.role.role_arn,
            enable_network_isolation=True,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=image,
                model_data_source=sagemaker.CfnModel.ModelDataSourceProperty(
                    s3_data_source=sagemaker.CfnModel.S3DataSourceProperty(
                        s3_uri=self.models_bucket.s3_url_for_object(settings.base_model_prefix),
                        s3_data_type="S3Prefix",
                        compression_type="None",
                    )
                ),
                # LMI (vLLM) serves LoRA adapters on top of the base model; adapters arrive as components.
                environment=lmi_environment(
                    settings.lmi, tensor_parallel_degree=settings.accelerators_per_copy
                ),
            ),
        )
        self.base_component_name = f"{self.endpoint_name}-base"
        component = sagemaker.CfnInferenceComponent(
            self,
            "BaseComponent",
            inference_component_name=self.base_component_name,
            endpoint_name=self.endpoint.attr_endpoint_name,
            variant_name=VARIANT_NAME,
            specification=sagemaker.CfnInferenceComponent.InferenceComponentSpecificationProperty(
                model_name=base_model.attr_model_name,
                compute_resource_requirements=sagemaker.CfnInferenceComponent.InferenceComponentComputeResourceRequirementsProperty(
                    number_of_accelerator_devices_required=settings.accelerators_per_copy,
                    min_memory_required_in_mb=settings.memory_per_copy_mb,
                ),
            ),
            runtime_config=sagemaker.CfnInferenceComponent.InferenceComponentRuntimeConfigProperty(
                copy_count=settings.initial_instances
            ),
        )
        component.add_resource_dependency(self.endpoint)
        self.base_component = component

    def _autoscaling(self, settings: ServingSettings) -> appscaling.ScalableTarget:
        # Each mode scales its own unit on its own metric: instances of the variant on invocations per
        # instance (MME), copies of the base component on concurrent requests per copy (inference components).
        scaled: Construct
        if settings.mode is ServingMode.MULTI_MODEL_ENDPOINT:
            target_id, scaled, resource_id, dimension = (
                "ScalableVariant",
                self.endpoint,
                f"endpoint/{self.endpoint_name}/variant/{VARIANT_NAME}",
                "sagemaker:variant:DesiredInstanceCount",
            )
            policy_id, metric, scale_out = (
                "InvocationsPerInstance",
                appscaling.PredefinedMetric.SAGEMAKER_VARIANT_INVOCATIONS_PER_INSTANCE,
                Duration.minutes(2),
            )
        else:
            target_id, scaled, resource_id, dimension = (
                "ScalableBaseComponent",
                self.base_component,
                f"inference-component/{self.base_component_name}",
                "sagemaker:inference-component:DesiredCopyCount",
            )
            policy_id, metric, scale_out = (
                "ConcurrentRequestsPerCopy",
                appscaling.PredefinedMetric.SAGEMAKER_INFERENCE_COMPONENT_CONCURRENT_REQUESTS_PER_COPY_HIGH_RESOLUTION,
                Duration.minutes(1),
            )
        target = appscaling.ScalableTarget(
            self,
            target_id,
            service_namespace=appscaling.ServiceNamespace.SAGEMAKER,
            resource_id=resource_id,
            scalable_dimension=dimension,
            min_capacity=settings.min_capacity,
            max_capacity=settings.max_capacity,
        )
        target.node.add_dependency(scaled)
        target.scale_to_track_metric(
            policy_id,
            target_value=settings.scaling_target,
            predefined_metric=metric,
            scale_in_cooldown=Duration.minutes(10),
            scale_out_cooldown=scale_out,
        )
        if settings.mode is ServingMode.MULTI_MODEL_ENDPOINT:
            return target
        if settings.min_capacity == 0:
            # Target tracking cannot leave zero copies (no traffic reaches a component without copies);
            # requests that found no capacity trigger one copy.
            from_zero = appscaling.StepScalingAction(
                self,
                "ScaleOutFromZero",
                scaling_target=target,
                adjustment_type=appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
                cooldown=Duration.minutes(1),
            )
            from_zero.add_adjustment(adjustment=1, lower_bound=0)
            alarm = cloudwatch.Alarm(
                self,
                "NoCapacityAlarm",
                alarm_description="Requests reached the base component while it had no copies: add one",
                metric=cloudwatch.Metric(
                    namespace="AWS/SageMaker",
                    metric_name="NoCapacityInvocationFailures",
                    dimensions_map={"InferenceComponentName": self.base_component_name or ""},
                    statistic="Maximum",
                    period=Duration.minutes(1),
                ),
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            alarm.add_alarm_action(cw_actions.ApplicationScalingAction(from_zero))
        return target

    def _deployer(
        self,
        config: PlatformConfig,
        environment: EnvironmentSpec,
        baseline: BaselineStack,
        settings: ServingSettings,
    ) -> PlatformFunction:
        deployer = PlatformFunction(
            self,
            "Deployer",
            service="serving_deployer",
            extra_packages=("serving_runtime",),  # settings (LMI options) and the serving package builder
            description=f"Makes approved models servable on {self.endpoint_name}",
            key=baseline.key,
            log_retention_days=environment.settings.log_retention_days,
            retention=baseline.retention,
            powertools_layer_version=config.lambda_.powertools_layer_version,
            timeout=Duration.minutes(10),
            reserved_concurrent_executions=1,  # deployments of one endpoint happen one at a time
            environment={
                "SERVING_SETTINGS": settings.model_dump_json(),
                "ENDPOINT_NAME": self.endpoint_name,
                "VARIANT_NAME": VARIANT_NAME,
                "MODEL_BUCKET": self.models_bucket.bucket_name,
                "MODEL_PREFIX": MME_PREFIX,
                "BASE_COMPONENT_NAME": self.base_component_name or "",
                "BUSINESS_UNIT": environment.business_unit.name,
            },
        )
        role = deployer.role
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                resources=[self.models_bucket.arn_for_objects(f"{MME_PREFIX}*")],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[self.models_bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{MME_PREFIX}*"]}},
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[self.key.key_arn])
        )
        # Artifacts come from the business unit's fine-tuning bucket in its dev account (its bucket policy
        # and key policy let this account read `models/`).
        source_bucket = f"arn:{self.partition}:s3:::{fine_tuning_stack_name(config, environment)}-*"
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadFineTunedArtifacts",
                actions=["s3:GetObject"],
                resources=[f"{source_bucket}/models/*"],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="DecryptFineTunedArtifacts",
                actions=["kms:Decrypt"],
                resources=[f"arn:{self.partition}:kms:{self.region}:*:key/*"],
                conditions={
                    "StringEquals": {"kms:ViaService": f"s3.{self.region}.amazonaws.com"},
                    "ForAnyValue:StringEquals": {
                        "kms:ResourceAliases": f"alias/{environment.org_prefix}/{environment.business_unit.name}/dev/fine-tuning"
                    },
                },
            )
        )
        endpoint_arn = (
            f"arn:{self.partition}:sagemaker:{self.region}:{self.account}:endpoint/{self.endpoint_name}"
        )
        role.add_to_policy(
            iam.PolicyStatement(actions=["sagemaker:InvokeEndpoint"], resources=[endpoint_arn])
        )
        if settings.mode is ServingMode.INFERENCE_COMPONENTS:
            component_arn = f"arn:{self.partition}:sagemaker:{self.region}:{self.account}:inference-component/{self.endpoint_name}-*"
            role.add_to_policy(
                iam.PolicyStatement(
                    actions=[
                        "sagemaker:CreateInferenceComponent",
                        "sagemaker:DescribeInferenceComponent",
                        "sagemaker:DeleteInferenceComponent",
                        "sagemaker:AddTags",
                    ],
                    resources=[component_arn, endpoint_arn],
                )
            )
            role.add_to_policy(
                iam.PolicyStatement(actions=["sagemaker:ListInferenceComponents"], resources=["*"])
            )
        findings = {
            f"Resource::<{self._logical_id(self.models_bucket)}.Arn>/{MME_PREFIX}*": "The deployer writes and "
            "deletes one artifact per approved model version under mme/, named at deploy time",
            f"Resource::{source_bucket.replace(self.partition, '<AWS::Partition>')}/models/*": "Fine-tuned "
            "artifacts live in the business unit's dev fine-tuning bucket, whose generated name starts with "
            "its stack name; only models/ is readable",
            f"Resource::arn:<AWS::Partition>:kms:{self.region}:*:key/*": "The dev account's fine-tuning key id "
            "is unknown here; kms:ResourceAliases pins its alias and kms:ViaService limits use to S3",
        }
        if settings.mode is ServingMode.INFERENCE_COMPONENTS:
            findings[
                f"Resource::arn:<AWS::Partition>:sagemaker:{self.region}:{self.account}:inference-component/"
                f"{self.endpoint_name}-*"
            ] = "Adapter components are created per approved model version, named after this endpoint"
        self._acknowledge_wildcards(role, findings)
        rule = events.Rule(
            self,
            "ModelPackageStateChange",
            description=f"Registry approvals and rejections of {environment.business_unit.name}'s models",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=[MODEL_PACKAGE_STATE_CHANGE],
                detail={
                    "ModelPackageGroupName": model_package_group_names(environment),
                    "ModelApprovalStatus": ["Approved", "Rejected"],
                },
            ),
        )
        rule.add_target(targets.LambdaFunction(deployer.function, retry_attempts=2))
        return deployer
