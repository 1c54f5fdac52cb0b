"""A statement on an account's default event bus policy (`AWS::Events::EventBusPolicy`).

Written as a plain `CfnResource` rather than `events.CfnEventBusPolicy`: cdk-nag 3.0.2 (the latest release)
reads the L1's deprecated `principal` property for every `CfnEventBusPolicy` it checks (rule EVB1), and
aws-cdk-lib prints a deprecation warning for that read on every synth. The template is the same; EVB1's check
(no statement open to every principal without a condition) runs over the synthesized templates in
tests/stacks/test_event_bus_policies.py instead.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnResource, Stack
from constructs import Construct


def default_bus_arn(partition: str, region: str, account: str) -> str:
    return f"arn:{partition}:events:{region}:{account}:event-bus/default"


def default_bus_policy(
    scope: Construct,
    construct_id: str,
    *,
    statement_id: str,
    sender_account: str,
    conditions: dict[str, str],
) -> CfnResource:
    """Let `sender_account` put events matching `conditions` (StringEquals) on this account's default bus."""
    stack = Stack.of(scope)
    statement: dict[str, Any] = {
        "Sid": statement_id,
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:{stack.partition}:iam::{sender_account}:root"},
        "Action": "events:PutEvents",
        "Resource": default_bus_arn(stack.partition, stack.region, stack.account),
        "Condition": {"StringEquals": conditions},
    }
    return CfnResource(
        scope,
        construct_id,
        type="AWS::Events::EventBusPolicy",
        properties={"EventBusName": "default", "StatementId": statement_id, "Statement": statement},
    )
