"""Model registry events across accounts: SageMaker model package state changes (e.g. "Approved").

Tooling side: one rule per business unit matching its groups, with that business unit's preprod and
prod default event buses as targets. Receiving side: a default-bus policy in preprod and prod that
lets the tooling account put exactly these events. In sandbox mode every bus is the one account's
default bus, where the registry's events already arrive (EventBridge refuses a rule that targets its
own bus), so nothing is forwarded there.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from constructs import Construct

from common.preprod_gate import GATE_PASSED_DETAIL_TYPE
from stacks.blocks.event_bus_policy import default_bus_arn, default_bus_policy

EVENT_SOURCE = "aws.sagemaker"
EVENT_DETAIL_TYPE = "SageMaker Model Package State Change"


class RegistryEventForwarding(Construct):
    """Forwards one business unit's model package state changes to the given (account, region) buses."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        business_unit: str,
        group_names: Sequence[str],
        destinations: Sequence[tuple[str, str]],
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("events.amazonaws.com"),
            description=f"Puts {business_unit}'s model registry events on its preprod and prod event buses",
        )
        self.rule = events.Rule(
            self,
            "Rule",
            description=f"Model package state changes of {business_unit}'s groups, to its preprod and prod",
            event_pattern=events.EventPattern(
                source=[EVENT_SOURCE],
                detail_type=[EVENT_DETAIL_TYPE],
                detail={"ModelPackageGroupName": list(group_names)},
            ),
        )
        for account, region in destinations:
            bus = events.EventBus.from_event_bus_arn(
                self, f"Bus{account}{region}", default_bus_arn(stack.partition, region, account)
            )
            self.rule.add_target(targets.EventBus(bus, role=self.role))


class RegistryEventReceiver(Construct):
    """Lets the tooling account put model registry events on this account's default event bus; in prod,
    also lets the business unit's preprod account put its "Preprod Gate Passed" events (`gate_sender`:
    preprod's account and the events' source), so a record that lands after the approval completes it."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        statement_id: str,
        tooling_account: str,
        gate_sender: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.policy = default_bus_policy(
            self,
            "DefaultBusPolicy",
            statement_id=statement_id,
            sender_account=tooling_account,
            conditions={"events:source": EVENT_SOURCE, "events:detail-type": EVENT_DETAIL_TYPE},
        )
        self.gate_policy = None
        if gate_sender is not None:
            account, source = gate_sender
            self.gate_policy = default_bus_policy(
                self,
                "PreprodGateBusPolicy",
                statement_id=f"{statement_id}-preprod-gate",
                sender_account=account,
                conditions={"events:source": source, "events:detail-type": GATE_PASSED_DETAIL_TYPE},
            )
