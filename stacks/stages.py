"""Deployment units: the shared stage (tooling + data lake) and one stage per business unit x stage.

Each is a `cdk.Stage`, so the CI/CD pipelines can deploy exactly one of them per branch, and every
stack and resource name inside derives from (business unit, stage) and never collides.
"""

from __future__ import annotations

from aws_cdk import Stack as CdkStack
from aws_cdk import Stage as CdkStage
from aws_cdk import Tags
from constructs import Construct

from stacks.application_stack import ApplicationStack
from stacks.baseline_stack import BaselineStack
from stacks.blocks.role_tags import tag_untaggable_roles
from stacks.data_lake_stack import DataLakeStack
from stacks.evaluation_stack import EvaluationStack
from stacks.fine_tuning_stack import FineTuningStack
from stacks.guardrail_stack import GuardrailStack
from stacks.model_profiles_stack import ModelProfilesStack
from stacks.model_usage_stack import ModelUsageStack
from stacks.monitoring_stack import MonitoringStack
from stacks.prompt_catalog_stack import PromptCatalogStack
from stacks.registry_events_stack import RegistryEventsStack
from stacks.sandbox_network_stack import SandboxNetworkStack
from stacks.serving_stack import ServingStack
from stacks.settings import EnvironmentSpec, PlatformConfig, Stage
from stacks.tooling_stack import ToolingStack

SHARED_BUSINESS_UNIT = "shared"
SHARED_STAGE = "shared"


def tag_cost_allocation(scope: Construct, *, business_unit: str, stage: str, cost_center: str) -> None:
    """Cost allocation tags on every taggable resource below `scope`."""
    tags = Tags.of(scope)
    tags.add("BusinessUnit", business_unit)
    tags.add("Stage", stage)
    tags.add("CostCenter", cost_center)
    # CDK's custom resource provider roles are raw CfnResources the tag aspect skips.
    tag_untaggable_roles(scope, {"BusinessUnit": business_unit, "Stage": stage, "CostCenter": cost_center})


class SharedStage(CdkStage):
    """Tooling, data lake and prompt catalog stacks (and, in sandbox mode, the shared VPC of each region);
    deployed from the main branch as the first wave of its pipeline."""

    def __init__(self, scope: Construct, construct_id: str, *, config: PlatformConfig) -> None:
        super().__init__(scope, construct_id)
        self.tooling = ToolingStack(self, "Tooling", config=config)
        self.data_lake = DataLakeStack(self, "DataLake", config=config)
        # The prompt catalog serves every business unit from the tooling account.
        self.prompt_catalog = PromptCatalogStack(
            self, "PromptCatalog", config=config, access_logs=self.tooling.access_logs
        )
        # Sandbox mode: one VPC per region for all environments (a fresh account may hold 5 VPCs per region).
        self.networks: dict[str, SandboxNetworkStack] = {}
        if config.is_sandbox:
            for region in sorted({e.region for e in config.environments()}):
                construct_id = "Network" if region == config.home_region else f"Network-{region}"
                self.networks[region] = SandboxNetworkStack(self, construct_id, config=config, region=region)
        tag_cost_allocation(
            self,
            business_unit=SHARED_BUSINESS_UNIT,
            stage=SHARED_STAGE,
            cost_center=config.organization.cost_center,
        )


class BusinessUnitStage(CdkStage):
    """Everything one business unit runs in one stage (dev, preprod or prod) of its own account."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PlatformConfig,
        environment: EnvironmentSpec,
        shared_network: SandboxNetworkStack | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.environment_spec = environment
        self.baseline = BaselineStack(
            self,
            "Baseline",
            environment=environment,
            owns_account_singletons=not config.is_sandbox,
            shared_network=shared_network.network if shared_network else None,
        )

        # Model cost attribution: the Bedrock inference profiles every model call below goes through, and
        # Bedrock model invocation logging (docs/cost.md).
        self.model_profiles = ModelProfilesStack(
            self, "ModelProfiles", config=config, environment=environment, baseline=self.baseline
        )
        # Guardrail service: input/output filters every model call of this business unit passes through.
        self.guardrail = GuardrailStack(
            self, "Guardrail", config=config, environment=environment, baseline=self.baseline
        )
        # Evaluation engine: state machine, Lambdas, run bucket, review queue; the CI gate role in preprod.
        self.evaluation = EvaluationStack(
            self,
            "Evaluation",
            config=config,
            environment=environment,
            baseline=self.baseline,
            profiles=self.model_profiles,
        )
        # Usage records of every /invoke and the online evaluation of sampled answers (docs/cost.md).
        self.model_usage = ModelUsageStack(
            self,
            "ModelUsage",
            config=config,
            environment=environment,
            baseline=self.baseline,
            profiles=self.model_profiles,
            evaluation=self.evaluation,
        )

        # ---- model registry events (tooling): preprod and prod receive model package state changes ----
        # (sandbox mode: the registry's events already arrive on the one account's default bus)
        self.registry_events: RegistryEventsStack | None = None
        if environment.stage is not Stage.DEV and not config.is_sandbox:
            self.registry_events = RegistryEventsStack(
                self, "RegistryEvents", config=config, environment=environment
            )
        # Fine-tuning pipelines: tenants' where they live (fine_tuning.stages; preprod and prod by default),
        # the business unit's own models in fine_tuning.business_unit_models_stage (dev by default).
        self.fine_tuning: FineTuningStack | None = None
        if environment.stage.value in environment.business_unit.fine_tuning.stage_names():
            self.fine_tuning = FineTuningStack(
                self,
                "FineTuning",
                config=config,
                environment=environment,
                baseline=self.baseline,
                review_queue=self.evaluation.review_queue,  # reviewed tenant versions wait there
            )

        # GPU serving of fine-tuned models (business_units[].serving.stages; preprod and prod by default).
        self.serving: ServingStack | None = None
        if environment.stage.value in environment.business_unit.serving.stages:
            self.serving = ServingStack(
                self,
                "Serving",
                config=config,
                environment=environment,
                baseline=self.baseline,
                fine_tuning=self.fine_tuning,
            )

        # Application backend (issue 8): end-user API of this business unit and stage.
        # Its guardrail and (where this stage has it) fine-tuning pipeline are the ones above.
        self.application = ApplicationStack(
            self,
            "Application",
            config=config,
            environment=environment,
            key=self.baseline.key,
            guardrail=self.guardrail,
            # POST /fine-tunes where this stage fine-tunes its tenants; their models from the serving stack.
            fine_tuning=self.fine_tuning if self.fine_tuning and self.fine_tuning.serves_tenants else None,
            serving=self.serving,
            profiles=self.model_profiles,
            usage=self.model_usage,
        )
        # ---- monitoring: keep this block LAST; it discovers what the stacks above run ----
        # (dashboard, alarms on one encrypted topic, budget; a later stack: self.monitoring.monitor_stack(s))
        self.monitoring = MonitoringStack(
            self,
            "Monitoring",
            environment=environment,
            baseline=self.baseline,
            shared_account=config.is_sandbox,
        )
        for stack in self.node.children:
            if stack is not self.monitoring and stack is not self.baseline and isinstance(stack, CdkStack):
                self.monitoring.monitor_stack(stack)

        tag_cost_allocation(
            self,
            business_unit=environment.business_unit.name,
            stage=environment.stage.value,
            cost_center=environment.business_unit.cost_center,
        )
