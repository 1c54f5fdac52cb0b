"""Per-environment baseline: the CMK, the access-log bucket and the private network every later stack uses."""

from __future__ import annotations

from constructs import Construct

from stacks.blocks.api_gateway_account import ApiGatewayAccountLogging
from stacks.blocks.encryption import PlatformKey
from stacks.blocks.nag import acknowledge_cdk_managed_providers
from stacks.blocks.network import EnvironmentNetwork, PlatformNetwork, SharedVpc
from stacks.blocks.platform_stack import EnvironmentStack
from stacks.blocks.retention import retention_for
from stacks.blocks.storage import AccessLogBucket
from stacks.settings import EnvironmentSpec


class BaselineStack(EnvironmentStack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        environment: EnvironmentSpec,
        owns_account_singletons: bool = True,
        shared_network: PlatformNetwork | None = None,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            environment=environment,
            name="baseline",
            description=(
                f"LLMOps baseline for {environment.name}: KMS key, access-log bucket, "
                + ("the shared sandbox VPC" if shared_network else "isolated VPC")
            ),
        )
        self.retention = retention_for(environment.stage)
        self.key = PlatformKey(
            self,
            "PlatformKey",
            alias=(
                f"alias/{environment.org_prefix}/{environment.business_unit.name}/{environment.stage.value}/platform"
            ),
            retention=self.retention,
        ).key
        self.access_logs = AccessLogBucket(
            self,
            "AccessLogs",
            retention=self.retention,
            expire_after_days=max(environment.settings.log_retention_days, 30),
        )
        # Its own VPC, or (sandbox mode, `shared_network`) the one VPC all environments of the region share.
        self.network: EnvironmentNetwork = (
            SharedVpc(
                self,
                "Network",
                owner=shared_network,
                prefix=environment.org_prefix,
                settings=environment.settings,
            )
            if shared_network is not None
            else PlatformNetwork(
                self, "Network", settings=environment.settings, key=self.key, retention=self.retention
            )
        )
        # Account-wide singletons (API Gateway's logging role) belong to the stack that owns the account:
        # this baseline in multi-account mode; the tooling stack when every environment shares one account.
        self.api_gateway_logging = (
            ApiGatewayAccountLogging(self, "ApiGatewayLogging", retention=self.retention)
            if owns_account_singletons
            else None
        )
        acknowledge_cdk_managed_providers(self)
