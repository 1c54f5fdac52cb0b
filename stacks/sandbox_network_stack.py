"""Sandbox mode: the one VPC that every environment of a region shares.

A fresh account may hold 5 VPCs per region; one VPC per environment (business units x 3 stages) outgrows that
at two business units. This stack, part of the shared stage (deployed first on main), owns the VPC, its flow
log, its gateway and interface endpoints, and publishes the ids as SSM parameters that the environments'
baselines read at deploy time (`stacks.blocks.network.SharedVpc`). Multi-account mode has no such stack.
"""

from __future__ import annotations

from constructs import Construct

from stacks.blocks.encryption import PlatformKey
from stacks.blocks.nag import acknowledge_cdk_managed_providers
from stacks.blocks.network import PlatformNetwork
from stacks.blocks.platform_stack import PlatformStack
from stacks.blocks.retention import retention_for
from stacks.settings import STAGES, PlatformConfig, StageSettings


def sandbox_network_stack_name(config: PlatformConfig, region: str) -> str:
    prefix = config.organization.prefix
    return f"{prefix}-network" if region == config.home_region else f"{prefix}-network-{region}"


def sandbox_network_settings(config: PlatformConfig) -> StageSettings:
    """The shared VPC serves every stage: interface endpoints if any stage wants them, the longest log
    retention of the stages for its flow log."""
    shared = config.sandbox_network
    assert shared is not None  # only built in sandbox mode
    stages = [config.stages.of(stage) for stage in STAGES]
    return StageSettings(
        interface_endpoints=any(s.interface_endpoints for s in stages),
        vpc_cidr=shared.vpc_cidr,
        max_azs=shared.max_azs,
        log_retention_days=max(s.log_retention_days for s in stages),
    )


class SandboxNetworkStack(PlatformStack):
    def __init__(self, scope: Construct, construct_id: str, *, config: PlatformConfig, region: str) -> None:
        prefix = config.organization.prefix
        super().__init__(
            scope,
            construct_id,
            stack_name=sandbox_network_stack_name(config, region),
            account=config.tooling_account,
            region=region,
            description="LLMOps sandbox: the isolated VPC and VPC endpoints every environment shares",
        )
        retention = retention_for(None)
        key = PlatformKey(
            self, "NetworkKey", alias=f"alias/{prefix}/sandbox-network", retention=retention
        ).key
        self.network = PlatformNetwork(
            self, "Network", settings=sandbox_network_settings(config), key=key, retention=retention
        )
        self.parameters = self.network.publish(prefix)
        acknowledge_cdk_managed_providers(self)
