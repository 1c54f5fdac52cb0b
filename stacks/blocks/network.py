"""The environment VPC: private isolated subnets only, reaching AWS services through VPC endpoints.

Nothing in it can reach the internet. S3 and DynamoDB use free gateway endpoints; the interface endpoints
that SageMaker jobs, Lambda functions and Step Functions need are switched per stage in the config
because each costs money per AZ and hour.
"""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
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


class PlatformNetwork(Construct):
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
        self.vpc = ec2.Vpc(
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
        self.vpc.add_flow_log(
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
            vpc=self.vpc,
            description="HTTPS from inside the VPC to the interface endpoints",
            allow_all_outbound=False,
        )
        self.endpoint_security_group.add_ingress_rule(
            ec2.Peer.ipv4(settings.vpc_cidr), ec2.Port.tcp(443), "HTTPS from the VPC"
        )
        self.interface_endpoints: dict[str, ec2.InterfaceVpcEndpoint] = {}
        for name, service in BASELINE_INTERFACE_ENDPOINTS.items():
            self.add_interface_endpoint(name, service)

    @property
    def isolated_subnets(self) -> ec2.SubnetSelection:
        return ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)

    def add_interface_endpoint(
        self, name: str, service: ec2.IInterfaceVpcEndpointService
    ) -> ec2.InterfaceVpcEndpoint | None:
        """Add an interface endpoint a later stack needs (e.g. Bedrock runtime), if the stage enables them."""
        if not self._interface_endpoints_enabled:
            return None
        if name not in self.interface_endpoints:
            self.interface_endpoints[name] = self.vpc.add_interface_endpoint(
                name,
                service=service,
                private_dns_enabled=True,
                security_groups=[self.endpoint_security_group],
                subnets=self.isolated_subnets,
                open=False,
            )
        return self.interface_endpoints[name]
