"""No deprecated CDK API is used at synth: tests/conftest.py runs the jsii kernel with JSII_DEPRECATED=fail, so
every synth of the suite (the default and sandbox platforms, the onboarding synth, the small test apps) raises
where `cdk synth` would print "... is deprecated". This module proves the switch is live in this process."""

from __future__ import annotations

import os

import pytest
from aws_cdk import CfnResource, Stack
from aws_cdk import aws_events as events

from tests.conftest import SynthesizedPlatform

BUS_POLICY = "AWS::Events::EventBusPolicy"


def test_the_suite_runs_the_jsii_kernel_in_fail_mode() -> None:
    assert os.environ["JSII_DEPRECATED"] == "fail"


def test_a_deprecated_property_read_raises_instead_of_printing() -> None:
    """What cdk-nag 3.0.2's EVB1 rule did on every CfnEventBusPolicy (the warning this suite now forbids)."""
    policy = events.CfnEventBusPolicy(Stack(), "Policy", statement_id="s", statement={"Effect": "Allow"})
    with pytest.raises(Exception, match="CfnEventBusPolicy#principal is deprecated"):
        _ = policy.principal


def test_the_platform_uses_no_cfn_event_bus_policy(default_platform: SynthesizedPlatform) -> None:
    """The default-bus policies are plain resources (stacks/blocks/event_bus_policy.py), so cdk-nag reads no
    deprecated property; the synthesized resource type is unchanged."""
    constructs = default_platform.platform.shared.node.root.node.find_all()
    policies = [c for c in constructs if isinstance(c, CfnResource) and c.cfn_resource_type == BUS_POLICY]
    assert policies and not any(isinstance(c, events.CfnEventBusPolicy) for c in policies)
