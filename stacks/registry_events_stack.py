"""Receiving side of the model registry events in a business unit's preprod or prod account."""

from __future__ import annotations

from constructs import Construct

from stacks.blocks.platform_stack import EnvironmentStack
from stacks.blocks.registry_events import RegistryEventReceiver
from stacks.settings import EnvironmentSpec, PlatformConfig


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
        self.receiver = RegistryEventReceiver(
            self,
            "ModelRegistryEvents",
            statement_id=f"{environment.org_prefix}-model-registry-events",
            tooling_account=config.tooling_account,
        )
