"""Issue 16 item 15: the EC2 network-interface actions accept subnet, security-group and network-interface
ARNs, so no role of the platform gets them on "*". SageMaker roles that join the VPC may create interfaces
only in their own stack's isolated subnets with their own security group."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import SynthesizedPlatform

ENI_ACTIONS = {
    "ec2:CreateNetworkInterface",
    "ec2:DeleteNetworkInterface",
    "ec2:CreateNetworkInterfacePermission",
    "ec2:DeleteNetworkInterfacePermission",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
}


def statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for resource in template["Resources"].values():
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            found.extend(resource["Properties"]["PolicyDocument"]["Statement"])
        for policy in (
            resource.get("Properties", {}).get("Policies", []) if resource["Type"] == "AWS::IAM::Role" else []
        ):
            found.extend(policy["PolicyDocument"]["Statement"])
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def arn_kind(resource: Any) -> str:
    """'subnet', 'security-group', 'network-interface/*' or '*' from a (possibly Fn::Join) ARN."""
    if resource == "*":
        return "*"
    parts = resource["Fn::Join"][1] if isinstance(resource, dict) else [resource]
    text = "".join(p if isinstance(p, str) else "<ref>" for p in parts)
    tail = text.rsplit(":", 1)[-1]
    return tail if tail == "network-interface/*" else tail.split("/", 1)[0]


@pytest.mark.parametrize("platform_name", ["default_platform", "sandbox_platform"])
def test_no_network_interface_action_on_every_resource(
    platform_name: str, request: pytest.FixtureRequest
) -> None:
    platform: SynthesizedPlatform = request.getfixturevalue(platform_name)
    checked = 0
    for stack, template in platform.templates():
        for statement in statements(template):
            actions = set(as_list(statement["Action"])) & ENI_ACTIONS
            if not actions or statement["Effect"] != "Allow":
                continue
            kinds = {arn_kind(r) for r in as_list(statement["Resource"])}
            assert "*" not in kinds, (stack.stack_name, sorted(actions))
            if "ec2:CreateNetworkInterface" in actions:
                checked += 1
                # The new interface, and exactly the subnets and security groups it may use.
                assert kinds == {"network-interface/*", "subnet", "security-group"}, (stack.stack_name, kinds)
            else:
                assert kinds == {"network-interface/*"}, (stack.stack_name, kinds)
    assert checked > 0  # the serving and fine-tuning roles were found


def test_serving_role_creates_interfaces_only_in_its_isolated_subnets(
    default_platform: SynthesizedPlatform,
) -> None:
    for stack, template in default_platform.templates():
        for statement in statements(template):
            if "ec2:CreateNetworkInterface" not in as_list(statement["Action"]):
                continue
            subnet_refs = [
                part
                for r in as_list(statement["Resource"])
                if isinstance(r, dict)
                for part in r["Fn::Join"][1]
                if isinstance(part, dict)
            ]
            # Subnet ids come from the baseline VPC (imported), the group from this stack: no literal wildcard.
            joined = [r for r in as_list(statement["Resource"]) if isinstance(r, dict)]
            assert joined and subnet_refs, stack.stack_name
            for r in joined:
                literal = "".join(p for p in r["Fn::Join"][1] if isinstance(p, str))
                assert literal.count("*") == (1 if literal.endswith("network-interface/*") else 0), literal
