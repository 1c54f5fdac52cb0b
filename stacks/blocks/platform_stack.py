"""Base class of every platform stack: explicit environment, no synth-time lookups."""

from __future__ import annotations

from aws_cdk import Aws, Environment, Fn, Stack
from constructs import Construct

from stacks.settings import EnvironmentSpec

MAX_AZS = 3
PARTITION = Aws.PARTITION  # a static property read (a round trip): once


class PlatformStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stack_name: str,
        account: str,
        region: str,
        description: str,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            stack_name=stack_name,
            env=Environment(account=account, region=region),
            description=description,
            termination_protection=False,
        )
        # The environment is explicit, so the account and region are these literals and the partition is the
        # AWS::Partition token. Stacks read them for most ARNs they build, and each read of the jsii
        # properties (`self.account`, ...) is a round trip to Node: these are plain Python attributes.
        self.account_id = account
        self.region_name = region
        self.partition_token = PARTITION

    @property
    def availability_zones(self) -> list[str]:
        # An account-bound stack would look its AZs up with credentials at synth time. AZ names differ per
        # account, so resolve them at deploy time instead: synth stays offline and works for any account.
        return [Fn.select(index, Fn.get_azs()) for index in range(MAX_AZS)]


class EnvironmentStack(PlatformStack):
    """A stack of one business unit in one stage, deployed to that environment's account and region.

    Named `<prefix>-<business unit>-<stage>-<name>`, so two business units, or sandbox mode where every
    environment shares one account, never collide.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        environment: EnvironmentSpec,
        name: str,
        description: str,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            stack_name=f"{environment.name}-{name}",
            account=environment.account,
            region=environment.region,
            description=description,
        )
        self.environment_spec = environment
