"""Sandbox mode: one VPC shared by every environment of the region, owned by the shared stage and found by the
environments through SSM parameters at deploy time; multi-account mode keeps one VPC per environment.

The hop tests follow a subnet id from where an environment uses it (a Lambda function, a SageMaker endpoint) back
through the cross-stack export, the CloudFormation parameter and the SSM parameter name to the subnet of the
shared VPC: a hop whose names do not match fails the test."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from stacks.blocks.network import shared_vpc_parameter, subnet_parameter
from stacks.settings import ConfigError, PlatformConfig, Stage, parse_config
from tests.conftest import SynthesizedPlatform

REPO_ROOT = Path(__file__).resolve().parents[2]
SANDBOX_RAW: dict[str, Any] = yaml.safe_load((REPO_ROOT / "config" / "sandbox.yaml").read_text())
DEFAULT_RAW: dict[str, Any] = yaml.safe_load((REPO_ROOT / "config" / "platform.yaml").read_text())
NETWORK_STACK = "exsb-network"
SSM_TYPE = "AWS::SSM::Parameter::Value<String>"


def resources(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template.get("Resources", {}).items() if r["Type"] == resource_type}


def vpcs(platform: SynthesizedPlatform) -> dict[str, list[str]]:
    return {
        stack.stack_name: list(resources(template, "AWS::EC2::VPC"))
        for stack, template in platform.templates()
        if resources(template, "AWS::EC2::VPC")
    }


class Resolver:
    """Follows a value an environment stack uses to the resource of the sandbox network stack it names."""

    def __init__(self, platform: SynthesizedPlatform) -> None:
        self.templates = {stack.stack_name: template for stack, template in platform.templates()}
        self.exports = {
            output["Export"]["Name"]: (stack_name, output["Value"])
            for stack_name, template in self.templates.items()
            for output in template.get("Outputs", {}).values()
            if "Export" in output
        }
        network = self.templates[NETWORK_STACK]
        self.ssm = {
            p["Properties"]["Name"]: p["Properties"]["Value"]
            for p in resources(network, "AWS::SSM::Parameter").values()
        }

    def network_resource(self, stack_name: str, value: Any) -> str:
        """Logical id, in the network stack, of what `value` (used in `stack_name`) finally refers to."""
        hops = 0
        while True:
            hops += 1
            assert hops < 6, value
            if isinstance(value, dict) and "Fn::ImportValue" in value:
                stack_name, value = self.exports[value["Fn::ImportValue"]]
                continue
            assert isinstance(value, dict) and set(value) == {"Ref"}, value
            parameter = self.templates[stack_name].get("Parameters", {}).get(value["Ref"])
            assert parameter is not None, f"{stack_name}: {value} is not a parameter"
            assert parameter["Type"] == SSM_TYPE
            written = self.ssm[parameter["Default"]]  # KeyError: nobody writes the parameter it reads
            assert isinstance(written, dict) and set(written) == {"Ref"}, written
            return str(written["Ref"])


@pytest.fixture(scope="module")
def resolver(sandbox_platform: SynthesizedPlatform) -> Resolver:
    return Resolver(sandbox_platform)


def test_the_sandbox_has_one_vpc_owned_by_the_shared_stage(sandbox_platform: SynthesizedPlatform) -> None:
    found = vpcs(sandbox_platform)
    assert list(found) == [NETWORK_STACK] and len(found[NETWORK_STACK]) == 1
    assert sandbox_platform.platform.shared.networks.keys() == {"us-east-1"}


def test_multi_account_mode_keeps_one_vpc_per_environment(default_platform: SynthesizedPlatform) -> None:
    found = vpcs(default_platform)
    environments = list(default_platform.config.environments())
    assert set(found) == {f"{e.name}-baseline" for e in environments}
    assert all(len(ids) == 1 for ids in found.values())
    assert default_platform.platform.shared.networks == {}


def test_the_network_stack_publishes_the_vpc_and_its_subnets(sandbox_platform: SynthesizedPlatform) -> None:
    template = sandbox_platform.template(NETWORK_STACK)
    (vpc,) = resources(template, "AWS::EC2::VPC")
    subnets = resources(template, "AWS::EC2::Subnet")
    assert len(subnets) == 2 and all(s["Properties"]["VpcId"] == {"Ref": vpc} for s in subnets.values())
    published = {
        p["Properties"]["Name"]: p["Properties"]["Value"]
        for p in resources(template, "AWS::SSM::Parameter").values()
    }
    assert published[shared_vpc_parameter("exsb", "vpc-id")] == {"Ref": vpc}
    assert {published[shared_vpc_parameter("exsb", subnet_parameter(i))]["Ref"] for i in range(2)} == set(
        subnets
    )
    assert len(published) == 3
    (flow_log,) = resources(template, "AWS::EC2::FlowLog").values()
    assert flow_log["Properties"]["ResourceId"] == {"Ref": vpc}


def test_every_environment_uses_the_shared_subnets_hop_by_hop(
    sandbox_platform: SynthesizedPlatform, resolver: Resolver
) -> None:
    subnets = set(resources(sandbox_platform.template(NETWORK_STACK), "AWS::EC2::Subnet"))
    used: dict[str, set[str]] = {}
    for stack, template in sandbox_platform.templates():
        if stack.stack_name == NETWORK_STACK:
            continue
        for function in resources(template, "AWS::Lambda::Function").values():
            for subnet in function["Properties"].get("VpcConfig", {}).get("SubnetIds", []):
                used.setdefault(stack.stack_name, set()).add(
                    resolver.network_resource(stack.stack_name, subnet)
                )
        for config in resources(template, "AWS::SageMaker::EndpointConfig").values():
            for subnet in config["Properties"].get("VpcConfig", {}).get("Subnets", []):
                used.setdefault(stack.stack_name, set()).add(
                    resolver.network_resource(stack.stack_name, subnet)
                )
    # guardrail functions where the stage has interface endpoints; serving endpoints in preprod and prod
    expected = {
        f"exsb-{bu}-{stage}-{stack}"
        for bu in ("retail", "finance")
        for stage in ("preprod", "prod")
        for stack in ("guardrail", "serving")
    }
    assert expected <= set(used)
    assert all(found == subnets for found in used.values()), used


def test_every_environment_security_group_is_its_own_and_in_the_shared_vpc(
    sandbox_platform: SynthesizedPlatform, resolver: Resolver
) -> None:
    (vpc,) = resources(sandbox_platform.template(NETWORK_STACK), "AWS::EC2::VPC")
    checked = 0
    for stack, template in sandbox_platform.templates():
        if not stack.stack_name.startswith(("exsb-retail-", "exsb-finance-")):
            continue
        groups = resources(template, "AWS::EC2::SecurityGroup")
        for group in groups.values():
            assert resolver.network_resource(stack.stack_name, group["Properties"]["VpcId"]) == vpc
            checked += 1
            # no rule admits a group of another stack (another environment): only itself or an address range
            for rule in group["Properties"].get("SecurityGroupIngress", []):
                assert (
                    "SourceSecurityGroupId" not in rule
                    or rule["SourceSecurityGroupId"]["Fn::GetAtt"][0] in groups
                )
        for rule in resources(template, "AWS::EC2::SecurityGroupIngress").values():
            source = rule["Properties"].get("SourceSecurityGroupId")
            assert source is None or source["Fn::GetAtt"][0] in groups, (stack.stack_name, rule)
    assert checked >= 8


def test_interface_endpoints_are_created_once_in_the_shared_vpc(
    sandbox_platform: SynthesizedPlatform,
) -> None:
    """Two endpoints of one service with private DNS cannot share a VPC: every environment uses one set."""
    per_stack = {
        stack.stack_name: [
            e["Properties"]["ServiceName"]
            for e in resources(template, "AWS::EC2::VPCEndpoint").values()
            if e["Properties"].get("VpcEndpointType") == "Interface"
        ]
        for stack, template in sandbox_platform.templates()
    }
    assert {name for name, services in per_stack.items() if services} == {NETWORK_STACK}
    services = [str(s) for s in per_stack[NETWORK_STACK]]
    assert len(services) == len(set(services))
    # the baseline's six plus what the guardrails of the stages with endpoints add (Comprehend, X-Ray)
    assert len(services) >= 8
    template = sandbox_platform.template(NETWORK_STACK)
    (group,) = resources(template, "AWS::EC2::SecurityGroup").values()
    assert group["Properties"]["SecurityGroupIngress"] == [
        {
            "CidrIp": "10.0.0.0/16",
            "Description": "HTTPS from the VPC",
            "FromPort": 443,
            "IpProtocol": "tcp",
            "ToPort": 443,
        }
    ]


def test_the_shared_network_deploys_first_on_main(sandbox_platform: SynthesizedPlatform) -> None:
    pipeline = sandbox_platform.platform.pipelines["prod"]
    assert next(iter(pipeline.waves)) == "shared"
    (codepipeline,) = resources(
        sandbox_platform.template("exsb-prod-pipeline"), "AWS::CodePipeline::Pipeline"
    ).values()
    stages = [s["Name"] for s in codepipeline["Properties"]["Stages"]]
    shared = next(s for s in codepipeline["Properties"]["Stages"] if s["Name"] == "shared")
    assert "exsb-network.Deploy" in {a["Name"] for a in shared["Actions"]}
    assert stages.index("shared") < min(
        i for i, name in enumerate(stages) if name.startswith("prod-wave") or "-prod" in name
    )


def test_sandbox_environments_take_the_shared_vpcs_range_and_azs(sandbox_config: PlatformConfig) -> None:
    for environment in sandbox_config.environments():
        assert (environment.settings.vpc_cidr, environment.settings.max_azs) == ("10.0.0.0/16", 2)
    assert (
        sandbox_config.environment(sandbox_config.business_units[0], Stage.DEV).settings.interface_endpoints
        is False
    )


def test_the_sandbox_network_is_configurable() -> None:
    raw = copy.deepcopy(SANDBOX_RAW)
    raw["deployment"]["sandbox_network"] = {"vpc_cidr": "10.50.0.0/20", "max_azs": 3}
    config = parse_config(raw)
    assert {(e.settings.vpc_cidr, e.settings.max_azs) for e in config.environments()} == {("10.50.0.0/20", 3)}


@pytest.mark.parametrize(
    ("base", "network", "field"),
    [
        ("default", {"vpc_cidr": "10.0.0.0/16"}, "deployment.sandbox_network"),
        ("sandbox", {"vpc_cidr": "8.8.0.0/16"}, "deployment.sandbox_network.vpc_cidr"),
        ("sandbox", {"max_azs": 4}, "deployment.sandbox_network.max_azs"),
        ("sandbox", {"cidr": "10.0.0.0/16"}, "deployment.sandbox_network.cidr"),
    ],
)
def test_a_bad_sandbox_network_is_one_line_naming_the_field(
    base: str, network: dict[str, Any], field: str
) -> None:
    raw = copy.deepcopy(SANDBOX_RAW if base == "sandbox" else DEFAULT_RAW)
    raw.setdefault("deployment", {})["sandbox_network"] = network
    with pytest.raises(ConfigError) as excinfo:
        parse_config(raw)
    assert any(line.startswith(f"{field}:") for line in excinfo.value.problems), excinfo.value.problems


@given(
    cidr=st.one_of(
        st.text(max_size=24),
        st.from_regex(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}/\d{1,2}", fullmatch=True),
    ),
    max_azs=st.one_of(st.integers(min_value=-2, max_value=6), st.text(max_size=3)),
)
def test_any_sandbox_network_is_accepted_whole_or_refused_naming_its_field(cidr: str, max_azs: Any) -> None:
    raw = copy.deepcopy(SANDBOX_RAW)
    raw["deployment"]["sandbox_network"] = {"vpc_cidr": cidr, "max_azs": max_azs}
    try:
        config = parse_config(raw)
    except ConfigError as error:
        assert error.problems
        assert all(line.startswith("deployment.sandbox_network.") for line in error.problems), error.problems
        return
    assert {(e.settings.vpc_cidr, e.settings.max_azs) for e in config.environments()} == {
        (cidr, int(max_azs))
    }
