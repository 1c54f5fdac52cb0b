"""What every SageMaker execution role of the platform needs: pull its images, write logs and metrics, join the VPC."""

from __future__ import annotations

import re

from aws_cdk import Stack
from aws_cdk import aws_iam as iam

from stacks.blocks.nag import acknowledge

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
        iam.PolicyStatement(
            actions=[
                "ec2:CreateNetworkInterface",
                "ec2:DeleteNetworkInterface",
                "ec2:DescribeNetworkInterfaces",
                "ec2:DescribeVpcs",
                "ec2:DescribeDhcpOptions",
                "ec2:DescribeSubnets",
                "ec2:DescribeSecurityGroups",
            ],
            resources=["*"],
        ),
        iam.PolicyStatement(
            actions=["ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterfacePermission"],
            resources=[f"{prefix}:ec2:{stack.region}:{stack.account}:network-interface/*"],
        ),
    ]
    for statement in statements:
        role.add_to_policy(statement)
    for finding, reason in {
        "Resource::*": "The actions ecr:GetAuthorizationToken, cloudwatch:PutMetricData (limited to SageMaker "
        "namespaces) and the ec2 Describe/network-interface actions support no resource scope",
        f"Resource::arn:<AWS::Partition>:logs:{stack.region}:{stack.account}:log-group:/aws/sagemaker/*": (
            "SageMaker names its log groups under /aws/sagemaker/ at deploy or run time"
        ),
        f"Resource::arn:<AWS::Partition>:ec2:{stack.region}:{stack.account}:network-interface/*": (
            "SageMaker creates the network interfaces in the VPC at deploy or run time, so their ids are unknown"
        ),
    }.items():
        acknowledge(role, f"AwsSolutions-IAM5[{finding}]", reason)
