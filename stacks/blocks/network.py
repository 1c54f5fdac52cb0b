"""The environment VPC: private isolated subnets only, reaching AWS services through VPC endpoints.

Nothing in it can reach the internet. S3 and DynamoDB use free gateway endpoints; the interface endpoints
that SageMaker jobs, Lambda functions and Step Functions need are switched per stage in the config
because each costs money per AZ and hour.

Multi-account mode: each environment's baseline owns its VPC (`PlatformNetwork`). Sandbox mode: one VPC per
region, owned by the shared stage (`stacks/sandbox_network_stack.py`), which publishes its ids as SSM
parameters; each environment's baseline reads them at deploy time (`SharedVpc`). A CloudFormation export
cannot cross the stages (CDK refuses references between stages, and an import would pin the VPC stack), and
a synth-time `Vpc.from_lookup` would need credentials: SSM parameters need neither.
"""

from __future__ import annotations

from typing import Protocol

from aws_cdk import Annotations, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from stacks.blocks.logs import encrypted_log_group
from stacks.blocks.retention import DataRetention
from stacks.settings import StageSettings

# Interface endpoints a training job, a Lambda function or a state machine in the VPC needs.
BASELINE_INTERFACE_ENDPOINTS: dict[str, ec2.InterfaceVpcEndpointAwsService] = {
    "SageMakerApi": ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_API,
    "SageMakerRuntime": ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_RUNTIME,
    "Sts": ec2.InterfaceVpcEndpointAwsService.STS,
    "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
    "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
}


class EnvironmentNetwork(Protocol):
    """What later stacks use of an environment's network, whoever owns the VPC."""

    @property
    def vpc(self) -> ec2.IVpc: ...

    @property
    def isolated_subnets(self) -> ec2.SubnetSelection: ...

    def add_interface_endpoint(
        self, name: str, service: ec2.IInterfaceVpcEndpointService
    ) -> ec2.InterfaceVpcEndpoint | None: ...


def shared_vpc_parameter(prefix: str, name: str) -> str:
    """SSM parameter names of the sandbox VPC's ids, e.g. `/exsb/sandbox-network/vpc-id`."""
    return f"/{prefix}/sandbox-network/{name}"


def subnet_parameter(index: int) -> str:
    return f"isolated-subnet-{index}-id"


class _IsolatedVpc:
    """`vpc` and `isolated_subnets` of both network kinds: the subnets are the VPC's isolated ones."""

    _vpc: ec2.IVpc

    @property
    def vpc(self) -> ec2.IVpc:
        return self._vpc

    @property
    def isolated_subnets(self) -> ec2.SubnetSelection:
        return ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)


class PlatformNetwork(Construct, _IsolatedVpc):
    """A VPC this stack owns: an environment's in multi-account mode, the shared one in sandbox mode."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: StageSettings,
        key: kms.IKey,
        retention: DataRetention,
    ) -> None:
        super().__init__(scope, construct_id)
        self._interface_endpoints_enabled = settings.interface_endpoints
        prefix_length = int(settings.vpc_cidr.split("/")[1])
        self._vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(settings.vpc_cidr),
            max_azs=settings.max_azs,
            nat_gateways=0,
            restrict_default_security_group=True,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="isolated",
                    subnet_type=ec2.SubnetType.PRIVATE_ISOLATED,
                    # Room for up to 4 subnet groups of 3 AZs later (e.g. a separate one for endpoints).
                    cidr_mask=min(prefix_length + 4, 28),
                )
            ],
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3),
                "DynamoDb": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.DYNAMODB),
            },
        )
        self._vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(
                encrypted_log_group(
                    self,
                    "FlowLogGroup",
                    key=key,
                    retention_days=settings.log_retention_days,
                    retention=retention,
                )
            ),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )
        self.endpoint_security_group = ec2.SecurityGroup(
            self,
            "EndpointSecurityGroup",
            vpc=self._vpc,
            description="HTTPS from inside the VPC to the interface endpoints",
            allow_all_outbound=False,
        )
        self.endpoint_security_group.add_ingress_rule(
            ec2.Peer.ipv4(settings.vpc_cidr), ec2.Port.tcp(443), "HTTPS from the VPC"
        )
        self.interface_endpoints: dict[str, ec2.InterfaceVpcEndpoint] = {}
        for name, service in BASELINE_INTERFACE_ENDPOINTS.items():
            self.add_interface_endpoint(name, service)

    def publish(self, prefix: str) -> list[ssm.StringParameter]:
        """Write the VPC's id and its isolated subnets' ids to SSM, for `SharedVpc` readers."""
        values = {"vpc-id": self._vpc.vpc_id}
        for index, subnet in enumerate(self._vpc.isolated_subnets):
            values[subnet_parameter(index)] = subnet.subnet_id
        return [
            ssm.StringParameter(
                self,
                f"Parameter-{name}",
                parameter_name=shared_vpc_parameter(prefix, name),
                string_value=value,
                description=f"Sandbox VPC shared by every environment of this region: {name}",
            )
            for name, value in values.items()
        ]

    def add_interface_endpoint(
        self, name: str, service: ec2.IInterfaceVpcEndpointService
    ) -> ec2.InterfaceVpcEndpoint | None:
        """Add an interface endpoint a later stack needs (e.g. Bedrock runtime), if the stage enables them."""
        if not self._interface_endpoints_enabled:
            return None
        if name not in self.interface_endpoints:
            self.interface_endpoints[name] = self._vpc.add_interface_endpoint(
                name,
                service=service,
                private_dns_enabled=True,
                security_groups=[self.endpoint_security_group],
                subnets=self.isolated_subnets,
                open=False,
            )
        return self.interface_endpoints[name]


class SharedVpc(Construct, _IsolatedVpc):
    """An environment's handle on the sandbox VPC the shared stage owns (sandbox mode).

    The ids are CloudFormation parameters of type `AWS::SSM::Parameter::Value<String>`, resolved when the
    environment deploys; interface endpoints are added to the owner, once for every environment, because two
    endpoints of one service with private DNS cannot share a VPC. Isolation between environments comes from
    their own security groups (each admits only itself; the VPC has no route out) and, as everywhere in one
    account, from their IAM roles."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        owner: PlatformNetwork,
        prefix: str,
        settings: StageSettings,
    ) -> None:
        super().__init__(scope, construct_id)
        self._owner = owner

        def parameter(name: str) -> str:
            return ssm.StringParameter.value_for_string_parameter(self, shared_vpc_parameter(prefix, name))

        # Route tables stay with the owner (gateway endpoints are the VPC's): nothing here reads them.
        Annotations.of(self).acknowledge_warning(
            "@aws-cdk/aws-ec2:noSubnetRouteTableId",
            "the environments only place functions and jobs in the shared subnets; routes belong to the owner",
        )
        self._vpc = ec2.Vpc.from_vpc_attributes(
            self,
            "Vpc",
            vpc_id=parameter("vpc-id"),
            vpc_cidr_block=settings.vpc_cidr,
            availability_zones=Stack.of(self).availability_zones[: settings.max_azs],
            isolated_subnet_ids=[parameter(subnet_parameter(i)) for i in range(settings.max_azs)],
        )

    def add_interface_endpoint(
        self, name: str, service: ec2.IInterfaceVpcEndpointService
    ) -> ec2.InterfaceVpcEndpoint | None:
        return self._owner.add_interface_endpoint(name, service)
