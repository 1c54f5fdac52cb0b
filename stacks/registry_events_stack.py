"""Receiving side of the model registry events in a business unit's preprod or prod account."""

from __future__ import annotations

from constructs import Construct

from common.preprod_gate import gate_passed_source
from stacks.blocks.evaluation_gate import business_unit_gate_use_cases
from stacks.blocks.platform_stack import EnvironmentStack
from stacks.blocks.registry_events import RegistryEventReceiver
from stacks.settings import EnvironmentSpec, PlatformConfig, Stage


class RegistryEventsStack(EnvironmentStack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: PlatformConfig, environment: EnvironmentSpec
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            environment=environment,
            name="registry-events",
            description=(
                f"LLMOps {environment.name}: lets the tooling account's model registry rule deliver "
                "model package state changes to this account's default event bus"
            ),
        )
        gate_sender = None
        preprod = config.environment(environment.business_unit, Stage.PREPROD)
        if environment.stage is Stage.PROD and business_unit_gate_use_cases(preprod):
            # Preprod's gate recorder announces records that land after the approval (docs/fine-tuning.md).
            gate_sender = (preprod.account, gate_passed_source(environment.org_prefix))
        self.receiver = RegistryEventReceiver(
            self,
            "ModelRegistryEvents",
            statement_id=f"{environment.org_prefix}-model-registry-events",
            tooling_account=config.tooling_account,
            gate_sender=gate_sender,
        )
