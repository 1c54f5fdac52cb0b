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

import json

from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct
from serving_deployer.core import MAX_ARTIFACT_BYTES
from serving_runtime.lmi import lmi_environment

from common.preprod_gate import GATE_PASSED_DETAIL_TYPE, gate_passed_source
from stacks.baseline_stack import BaselineStack
from stacks.blocks import durations
from stacks.blocks.evaluation_gate import (
    business_unit_gate_use_cases,
    preprod_gate_key_alias,
    state_machine_name,
)
from stacks.blocks.grants import allow
from stacks.blocks.nag import acknowledge, acknowledge_cdk_managed_providers, acknowledge_wildcard_findings
from stacks.blocks.platform_stack import EnvironmentStack
from stacks.blocks.prompt_catalog_access import PARTITION
from stacks.blocks.python_function import PlatformFunction
from stacks.blocks.sagemaker_access import grant_sagemaker_runtime, grant_vpc_network_interfaces
from stacks.blocks.storage import SecureBucket
from stacks.fine_tuning_stack import FineTuningStack, business_unit_models_prefix, fine_tuning_bucket_name
from stacks.settings import BusinessUnit, EnvironmentSpec, PlatformConfig, Stage
from stacks.settings.serving import (
    ServingMode,
    ServingSettings,
    check_instance_type,
    load_catalog,
    serving_image_uri,
)

VARIANT_NAME = "AllTraffic"
MME_PREFIX = "mme/"
ADAPTER_PREFIX = "adapters/"  # verified copies of adapters that inference components load
# /tmp holds the artifact, its unpacked members and the package built from them: about three times the
# largest artifact the deployer accepts, plus room for the runtime (docs/perf/serving.md).
DEPLOYER_TMP_MIB = 3 * MAX_ARTIFACT_BYTES // 2**20 + 512
# Packaging streams through files, so memory does not grow with the artifact: a 200 MiB one peaks at 3.1 MiB
# of Python memory plus up to 32 MiB of upload buffers (1,038 MiB when it was packaged in memory). 1,024 MB stays for the CPU share Lambda gives
# with it (CPU is allotted in proportion to memory), which compressing the package needs.
DEPLOYER_MEMORY_MB = 1024
MODEL_PACKAGE_STATE_CHANGE = "SageMaker Model Package State Change"


def endpoint_name(environment: EnvironmentSpec) -> str:
    return f"{environment.name}-serving"


def model_package_group_names(environment: EnvironmentSpec) -> list[str]:
    """The registry's groups for this business unit (created in the tooling account, one per use case)."""
    bu = environment.business_unit
    return [f"{environment.org_prefix}-{bu.name}-{use_case}" for use_case in bu.use_cases]


def nag_resource(arn: str, partition: str) -> str:
    """The finding name cdk-nag gives a resource ARN built with this stack's partition."""
    return "Resource::" + arn.replace(f"arn:{partition}:", "arn:<AWS::Partition>:")


def settings_trains_business_unit_models(business_unit: BusinessUnit) -> bool:
    return business_unit.fine_tuning.business_unit_models_stage is not None


class ServingStack(EnvironmentStack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PlatformConfig,
        environment: EnvironmentSpec,
        baseline: BaselineStack,
        fine_tuning: FineTuningStack | None = None,
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
        grant_vpc_network_interfaces(
            self.role, subnet_ids=vpc_config["subnets"], security_group_ids=vpc_config["securityGroupIds"]
        )
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
        self.records = self._records_table(baseline)
        # Central groups whose approved versions prod serves only after preprod's gate passed (prod only).
        self.gate_checked_groups: list[str] = []
        self.deployer = self._deployer(config, environment, baseline, settings, fine_tuning)
        acknowledge_cdk_managed_providers(self)

    # ---- building blocks -------------------------------------------------------------------------

    def _execution_role(self, image: str) -> iam.Role:
        role = iam.Role(
            self,
            "EndpointRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"SageMaker execution role of {self.endpoint_name}",
        )
        allow(role, actions=["s3:GetObject"], resources=[self.models_bucket.arn_for_objects("*")])
        allow(role, actions=["s3:ListBucket"], resources=[self.models_bucket.bucket_arn])
        allow(role, actions=["kms:Decrypt"], resources=[self.key.key_arn])
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
        acknowledge_wildcard_findings(role, findings)

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
                durations.minutes(2),
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
                durations.minutes(1),
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
            scale_in_cooldown=durations.minutes(10),
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
                cooldown=durations.minutes(1),
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
                    period=durations.minutes(1),
                ),
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            alarm.add_alarm_action(cw_actions.ApplicationScalingAction(from_zero))
        return target

    def _records_table(self, baseline: BaselineStack) -> dynamodb.Table:
        """Which version serves each slot (tenant model or business-unit model); the app's /invoke reads it."""
        return dynamodb.Table(
            self,
            "ModelRecords",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=baseline.key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            removal_policy=baseline.retention.removal_policy,
        )

    def _deployer(
        self,
        config: PlatformConfig,
        environment: EnvironmentSpec,
        baseline: BaselineStack,
        settings: ServingSettings,
        fine_tuning: FineTuningStack | None,
    ) -> PlatformFunction:
        bu = environment.business_unit
        tenant_groups = fine_tuning.tenant_group_names if fine_tuning is not None else []
        model_prefix = MME_PREFIX if settings.mode is ServingMode.MULTI_MODEL_ENDPOINT else ADAPTER_PREFIX
        deployer = PlatformFunction(
            self,
            "Deployer",
            service="serving_deployer",
            extra_packages=("serving_runtime",),  # settings (LMI options) and the serving package builder
            description=f"Serves registered model versions on {self.endpoint_name}, one slot each",
            key=baseline.key,
            log_retention_days=environment.settings.log_retention_days,
            retention=baseline.retention,
            powertools_layer_version=config.lambda_.powertools_layer_version,
            timeout=durations.minutes(10),
            memory_size=DEPLOYER_MEMORY_MB,
            reserved_concurrent_executions=1,  # deployments of one endpoint happen one at a time
            environment={
                "SERVING_SETTINGS": settings.model_dump_json(),
                "ENDPOINT_NAME": self.endpoint_name,
                "VARIANT_NAME": VARIANT_NAME,
                "MODEL_BUCKET": self.models_bucket.bucket_name,
                "MODEL_PREFIX": model_prefix,
                "BASE_COMPONENT_NAME": self.base_component_name or "",
                "BUSINESS_UNIT": bu.name,
                "RECORDS_TABLE": self.records.table_name,
                "TENANT_GROUPS": json.dumps(tenant_groups),
                # Preprod serves the business unit's new versions before approval, to test them there.
                "PENDING_GROUPS": json.dumps(self.pending_groups(environment)),
            },
        )
        # Artifacts are verified, unpacked and packaged on /tmp, never whole in memory.
        function = deployer.function.node.default_child
        assert isinstance(function, lambda_.CfnFunction)
        function.ephemeral_storage = lambda_.CfnFunction.EphemeralStorageProperty(size=DEPLOYER_TMP_MIB)
        role = deployer.role
        allow(
            role,
            actions=["s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"],
            resources=[self.models_bucket.arn_for_objects(f"{model_prefix}*")],
        )
        allow(role, actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[self.key.key_arn])
        allow(
            role,
            actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"],
            resources=[self.records.table_arn],
        )
        findings = {
            f"Resource::<{self._logical_id(self.models_bucket)}.Arn>/{model_prefix}*": "The deployer writes and "
            f"deletes one artifact copy per served model version under {model_prefix}, named at deploy time",
        }
        groups = [
            f"arn:{self.partition_token}:sagemaker:{self.region_name}:{self.account_id}:model-package/{name}/*"
            for name in tenant_groups
        ]
        if fine_tuning is not None and tenant_groups:
            # Tenant versions: artifacts in this stage's own fine-tuning bucket, under tenant prefixes.
            tenant_artifacts = f"arn:{self.partition_token}:s3:::{fine_tuning_bucket_name(environment)}/models/{bu.name}/tenant=*"
            role.add_to_policy(
                iam.PolicyStatement(
                    sid="ReadTenantArtifacts", actions=["s3:GetObject"], resources=[tenant_artifacts]
                )
            )
            role.add_to_policy(
                iam.PolicyStatement(
                    sid="DecryptTenantArtifacts", actions=["kms:Decrypt"], resources=[fine_tuning.key.key_arn]
                )
            )
            findings[nag_resource(tenant_artifacts, self.partition_token)] = (
                "Tenant artifacts are written per tenant and run at run time; only this business unit's "
                "tenant prefix of this stage's own fine-tuning bucket is readable"
            )
        if environment.stage is not Stage.DEV:
            groups += [
                f"arn:{self.partition_token}:sagemaker:{config.home_region}:{config.tooling_account}:model-package/{name}/*"
                for name in model_package_group_names(environment)
            ]
        if environment.stage is not Stage.DEV and settings_trains_business_unit_models(bu):
            self._read_business_unit_models(config, environment, role, findings)
            self._business_unit_gate(config, environment, deployer, findings)
        role.add_to_policy(
            iam.PolicyStatement(
                sid="DescribeVersions", actions=["sagemaker:DescribeModelPackage"], resources=groups
            )
        )
        for group in groups:
            findings[nag_resource(group, self.partition_token)] = (
                "Model package versions are numbered by the registry; the group is named exactly"
            )
        endpoint_arn = f"arn:{self.partition_token}:sagemaker:{self.region_name}:{self.account_id}:endpoint/{self.endpoint_name}"
        allow(role, actions=["sagemaker:InvokeEndpoint"], resources=[endpoint_arn])
        if settings.mode is ServingMode.INFERENCE_COMPONENTS:
            component_arn = f"arn:{self.partition_token}:sagemaker:{self.region_name}:{self.account_id}:inference-component/{self.endpoint_name}-*"
            allow(
                role,
                actions=[
                    "sagemaker:CreateInferenceComponent",
                    "sagemaker:DescribeInferenceComponent",
                    "sagemaker:DeleteInferenceComponent",
                    "sagemaker:AddTags",
                ],
                resources=[component_arn, endpoint_arn],
            )
            findings[
                f"Resource::arn:<AWS::Partition>:sagemaker:{self.region_name}:{self.account_id}:inference-component/"
                f"{self.endpoint_name}-*"
            ] = "Adapter components are created per served model version, named after this endpoint"
        self._acknowledge_wildcards(role, findings)
        rule = events.Rule(
            self,
            "ModelPackageStateChange",
            description=f"Registry approvals and rejections of {environment.business_unit.name}'s models",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=[MODEL_PACKAGE_STATE_CHANGE],
                detail={
                    "ModelPackageGroupName": self.served_groups(environment, tenant_groups),
                    # Preprod also hears new business-unit versions when dev registers them (before any
                    # approval) to serve and test them; prod hears approvals only, never a pending version.
                    "ModelApprovalStatus": ["Approved", "Rejected"]
                    + (["PendingManualApproval"] if self.pending_groups(environment) else []),
                },
            ),
        )
        rule.add_target(targets.LambdaFunction(deployer.function, retry_attempts=2))
        self.deployer_rule = rule
        return deployer

    @staticmethod
    def pending_groups(environment: EnvironmentSpec) -> list[str]:
        if environment.stage is Stage.PREPROD and settings_trains_business_unit_models(
            environment.business_unit
        ):
            return model_package_group_names(environment)
        return []

    @staticmethod
    def served_groups(environment: EnvironmentSpec, tenant_groups: list[str]) -> list[str]:
        # Every business unit's central groups: its dev pipeline registers there, or a person does.
        central = model_package_group_names(environment) if environment.stage is not Stage.DEV else []
        return [*central, *tenant_groups]

    def _business_unit_gate(
        self,
        config: PlatformConfig,
        environment: EnvironmentSpec,
        deployer: PlatformFunction,
        findings: dict[str, str],
    ) -> None:
        """Preprod starts the evaluation gate of each version it served; prod verifies its signed result."""
        bu = environment.business_unit
        use_cases = business_unit_gate_use_cases(environment)
        if use_cases:
            machine = (
                f"states:{self.region_name}:{self.account_id}:stateMachine:{state_machine_name(environment)}"
            )
            # A plain string in the environment (every region the config accepts is in partition `aws`).
            deployer.function.add_environment("GATE_STATE_MACHINE_ARN", f"arn:{PARTITION}:{machine}")
            deployer.function.add_environment("GATE_USE_CASES", json.dumps(use_cases))
            deployer.role.add_to_policy(
                iam.PolicyStatement(
                    sid="StartGateRuns",
                    actions=["states:StartExecution"],
                    resources=[f"arn:{self.partition_token}:{machine}"],
                )
            )
        preprod = config.environment(bu, Stage.PREPROD)
        if environment.stage is Stage.PROD and business_unit_gate_use_cases(preprod):
            # The monitoring stack alarms when an approval of one of these groups is refused.
            self.gate_checked_groups = sorted(business_unit_gate_use_cases(preprod))
            alias = preprod_gate_key_alias(environment.org_prefix, bu.name)
            # Called by its alias ARN (key ids are generated in preprod); IAM matches the key by that alias.
            deployer.function.add_environment(
                "PREPROD_GATE_KEY_ARN", f"arn:{PARTITION}:kms:{preprod.region}:{preprod.account}:{alias}"
            )
            keys = f"arn:{self.partition_token}:kms:{preprod.region}:{preprod.account}:key/*"
            deployer.role.add_to_policy(
                iam.PolicyStatement(
                    sid="VerifyPreprodGateRecords",
                    actions=["kms:VerifyMac"],
                    resources=[keys],
                    conditions={"ForAnyValue:StringEquals": {"kms:ResourceAliases": alias}},
                )
            )
            findings[f"Resource::arn:<AWS::Partition>:kms:{preprod.region}:{preprod.account}:key/*"] = (
                "The preprod gate key's id is generated in the preprod account; the ARN pins that account and "
                "kms:ResourceAliases its alias"
            )
            # A record written after the approval: preprod's recorder announces it, the deployer checks again.
            events.Rule(
                self,
                "PreprodGatePassed",
                description=f"Passed preprod gates of approved {bu.name} versions, from preprod",
                event_pattern=events.EventPattern(
                    source=[gate_passed_source(environment.org_prefix)],
                    detail_type=[GATE_PASSED_DETAIL_TYPE],
                    account=[preprod.account],
                    detail={"ModelPackageGroupName": self.gate_checked_groups},
                ),
                targets=[targets.LambdaFunction(deployer.function, retry_attempts=2)],
            )

    def _read_business_unit_models(
        self, config: PlatformConfig, environment: EnvironmentSpec, role: iam.Role, findings: dict[str, str]
    ) -> None:
        """Business-unit versions are copied from the dev fine-tuning bucket, pinned to the dev account."""
        bu = environment.business_unit
        dev = config.environment(bu, Stage(bu.fine_tuning.business_unit_models_stage or Stage.DEV.value))
        objects = f"arn:{self.partition_token}:s3:::{fine_tuning_bucket_name(dev)}/{business_unit_models_prefix(bu.name)}*"
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadBusinessUnitArtifacts",
                actions=["s3:GetObject"],
                resources=[objects],
                # Bucket names are global: the object must also belong to the business unit's dev account.
                conditions={"StringEquals": {"s3:ResourceAccount": dev.account}},
            )
        )
        dev_keys = f"arn:{self.partition_token}:kms:{dev.region}:{dev.account}:key/*"
        role.add_to_policy(
            iam.PolicyStatement(
                sid="DecryptBusinessUnitArtifacts",
                actions=["kms:Decrypt"],
                resources=[dev_keys],
                conditions={
                    "StringEquals": {"kms:ViaService": f"s3.{dev.region}.amazonaws.com"},
                    "ForAnyValue:StringEquals": {
                        "kms:ResourceAliases": f"alias/{environment.org_prefix}/{bu.name}/{dev.stage.value}/fine-tuning"
                    },
                },
            )
        )
        findings[nag_resource(objects, self.partition_token)] = (
            "Business-unit artifacts get their keys at training time; the bucket is named exactly, "
            "s3:ResourceAccount pins the dev account, and only the business-unit models prefix is readable"
        )
        findings[f"Resource::arn:<AWS::Partition>:kms:{dev.region}:{dev.account}:key/*"] = (
            "The dev fine-tuning key's id is generated in the dev account; the ARN pins that account, "
            "kms:ResourceAliases its alias and kms:ViaService use through S3"
        )
