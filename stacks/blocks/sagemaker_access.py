"""What every SageMaker execution role of the platform needs: pull its images, write logs and metrics, join the VPC
(`grant_vpc_network_interfaces`, scoped to the subnets and security groups it uses)."""

from __future__ import annotations

import re

from aws_cdk import Stack
from aws_cdk import aws_iam as iam

from stacks.blocks.grants import allow
from stacks.blocks.nag import acknowledge, acknowledge_wildcard_findings

_ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com/(?P<repo>[^:@]+)"
)


def ecr_repository_arn(image_uri: str, partition: str) -> str:
    """The repository ARN of an ECR image URI, so a role pulls exactly that repository."""
    match = _ECR_IMAGE.match(image_uri)
    if match is None:
        raise ValueError(
            f"image_uri: {image_uri!r} is not an ECR image URI (<account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>)"
        )
    return f"arn:{partition}:ecr:{match['region']}:{match['account']}:repository/{match['repo']}"


def grant_sagemaker_runtime(role: iam.Role, *, images: list[str]) -> None:
    stack = Stack.of(role)
    prefix = f"arn:{stack.partition}"
    statements = [
        iam.PolicyStatement(
            actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
            resources=sorted({ecr_repository_arn(image, stack.partition) for image in images}),
        ),
        iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]),
        iam.PolicyStatement(
            actions=["cloudwatch:PutMetricData"],
            resources=["*"],
            conditions={"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*", "AWS/SageMaker"]}},
        ),
        iam.PolicyStatement(
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            resources=[f"{prefix}:logs:{stack.region}:{stack.account}:log-group:/aws/sagemaker/*"],
        ),
    ]
    for statement in statements:
        role.add_to_policy(statement)
    acknowledge_wildcard_findings(
        role,
        {
            "Resource::*": "Only ecr:GetAuthorizationToken, cloudwatch:PutMetricData (limited to SageMaker "
            "namespaces by condition) and, where the role joins a VPC, the ec2 Describe* calls use '*': none of "
            "them supports a resource scope",
            f"Resource::arn:<AWS::Partition>:logs:{stack.region}:{stack.account}:log-group:/aws/sagemaker/*": (
                "SageMaker names its log groups under /aws/sagemaker/ at deploy or run time"
            ),
        },
    )


def grant_vpc_network_interfaces(
    role: iam.Role, *, subnet_ids: list[str], security_group_ids: list[str]
) -> None:
    """What SageMaker needs to put a job or endpoint into the VPC, scoped to the given subnets and groups.

    CreateNetworkInterface is authorized on the new interface and on the subnet and security groups it
    uses, so naming those ARNs keeps the role out of every other subnet and group. The interfaces' own ids
    exist only at run time (network-interface/* in this account and region); the Describe* calls support
    no resource scope at all.
    """
    stack = Stack.of(role)
    ec2_arn = f"arn:{stack.partition}:ec2:{stack.region}:{stack.account}"
    interfaces = f"{ec2_arn}:network-interface/*"
    allow(
        role,
        actions=["ec2:CreateNetworkInterface"],
        resources=[
            interfaces,
            *(f"{ec2_arn}:subnet/{subnet}" for subnet in subnet_ids),
            *(f"{ec2_arn}:security-group/{group}" for group in security_group_ids),
        ],
    )
    allow(
        role,
        actions=[
            "ec2:DeleteNetworkInterface",
            "ec2:CreateNetworkInterfacePermission",
            "ec2:DeleteNetworkInterfacePermission",
        ],
        resources=[interfaces],
    )
    allow(
        role,
        actions=[
            "ec2:DescribeNetworkInterfaces",
            "ec2:DescribeVpcs",
            "ec2:DescribeDhcpOptions",
            "ec2:DescribeSubnets",
            "ec2:DescribeSecurityGroups",
        ],
        resources=["*"],
    )
    acknowledge(
        role,
        f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:{stack.region}:{stack.account}:network-interface/*]",
        "SageMaker creates the network interfaces at deploy or run time, so their ids are unknown; creation is "
        "also bound to this stack's subnets and security group ARNs",
    )
