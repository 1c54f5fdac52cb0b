"""The one way platform stacks create a Python Lambda function.

Packages `lambdas/<service>/` together with `lambdas/common/` (no Docker, no install at synth time), adds
the published Powertools layer and the service's prebuilt third-party layer, and gives the function its
own role, an encrypted log group with retention, X-Ray tracing and encrypted environment variables.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Mapping

from aws_cdk import AssetHashType, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from stacks.blocks.lambda_deps import LAMBDAS_DIR, layer_package
from stacks.blocks.logs import encrypted_log_group
from stacks.blocks.nag import acknowledge
from stacks.blocks.retention import DataRetention

# Static members of jsii classes are round trips to Node on every read: read them once.
RUNTIME = lambda_.Runtime.PYTHON_3_14
ARCHITECTURE = lambda_.Architecture.X86_64
DEFAULT_TIMEOUT = Duration.seconds(30)
POWERTOOLS_LAYER = "arn:{partition}:lambda:{region}:017000801446:layer:AWSLambdaPowertoolsPythonV3-python314-x86_64:{version}"

# A stack's partition and region, read once per stack instead of twice per function (each read is a round
# trip to Node). Weak keys: tests build many apps.
_STACK_LOCATIONS: weakref.WeakKeyDictionary[Stack, tuple[str, str]] = weakref.WeakKeyDictionary()


def stack_location(stack: Stack) -> tuple[str, str]:
    """(partition, region) of `stack`."""
    location = _STACK_LOCATIONS.get(stack)
    if location is None:
        location = _STACK_LOCATIONS[stack] = (stack.partition, stack.region)
    return location


@functools.cache
def lambda_principal() -> iam.ServicePrincipal:
    """One principal object for every function role (it holds no state; creating one is a round trip)."""
    return iam.ServicePrincipal("lambda.amazonaws.com")


def asset_excludes(service: str, extra_packages: tuple[str, ...] = ()) -> list[str]:
    """Ship only the service's package, lambdas/common and the other packages it imports in-process,
    without caches or requirement files."""
    shipped = [item for package in (service, *extra_packages) for item in (f"!{package}", f"!{package}/**")]
    return [
        "*",
        *shipped,
        "!common",
        "!common/**",
        "**/__pycache__",
        "**/*.pyc",
        "**/requirements.txt",
    ]


class PlatformFunction(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        service: str,
        handler: str = "handler.lambda_handler",
        description: str,
        key: kms.IKey,
        log_retention_days: int,
        retention: DataRetention,
        powertools_layer_version: int,
        environment: Mapping[str, str] | None = None,
        memory_size: int = 512,
        timeout: Duration | None = None,
        vpc: ec2.IVpc | None = None,
        security_groups: list[ec2.ISecurityGroup] | None = None,
        reserved_concurrent_executions: int | None = None,
        extra_packages: tuple[str, ...] = (),
        unscoped_actions: tuple[str, ...] = (),
    ) -> None:
        """`unscoped_actions`: actions without a resource type that the caller grants this role on "*"
        (e.g. Comprehend detection); the IAM5 acknowledgement names them, so its reason stays true."""
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=lambda_principal(),
            description=f"Runs the {service} function ({construct_id})",
        )
        self.log_group = encrypted_log_group(
            self, "Logs", key=key, retention_days=log_retention_days, retention=retention
        )
        partition, region = stack_location(stack)
        layers: list[lambda_.ILayerVersion] = [
            lambda_.LayerVersion.from_layer_version_arn(
                self,
                "Powertools",
                POWERTOOLS_LAYER.format(partition=partition, region=region, version=powertools_layer_version),
            )
        ]
        deps = layer_package(service)
        if deps is not None:
            layers.append(
                lambda_.LayerVersion(
                    self,
                    "Dependencies",
                    # One prebuilt zip with the hash of its contents: CDK copies one file and hashes nothing.
                    code=lambda_.Code.from_asset(
                        str(deps.zip_file), asset_hash_type=AssetHashType.CUSTOM, asset_hash=deps.content_hash
                    ),
                    compatible_runtimes=[RUNTIME],
                    description=f"Third-party libraries of {service}",
                    removal_policy=retention.removal_policy,
                )
            )
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            code=lambda_.Code.from_asset(str(LAMBDAS_DIR), exclude=asset_excludes(service, extra_packages)),
            handler=f"{service}.{handler}",
            description=description,
            role=self.role,
            layers=layers,
            memory_size=memory_size,
            timeout=timeout or DEFAULT_TIMEOUT,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=self.log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            environment_encryption=key,
            environment={
                "POWERTOOLS_SERVICE_NAME": service,
                "POWERTOOLS_METRICS_NAMESPACE": "LLMOpsPlatform",
                **(environment or {}),
            },
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED) if vpc else None,
            security_groups=security_groups,
            reserved_concurrent_executions=reserved_concurrent_executions,
        )
        self.log_group.grant_write(self.role)
        wildcard_actions = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
        if vpc is not None:
            self._grant_network_interfaces(stack, vpc, security_groups or [])
            wildcard_actions.extend(["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"])
        wildcard_actions.extend(unscoped_actions)
        self.wildcard_actions = tuple(wildcard_actions)
        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::*]",
            "Resource '*' only for actions that have no resource type in the Service Authorization Reference: "
            f"{', '.join(wildcard_actions)}; tests check every '*' statement against actions without a "
            "resource type",
        )

    def _grant_network_interfaces(
        self, stack: Stack, vpc: ec2.IVpc, security_groups: list[ec2.ISecurityGroup]
    ) -> None:
        """What Lambda needs to attach the function to its subnets, scoped where IAM allows: new network
        interfaces only in the function's own subnets with its own security groups (instead of the
        AWSLambdaVPCAccessExecutionRole managed policy, whose actions all use Resource '*')."""
        subnets = vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED).subnet_ids
        interfaces = stack.format_arn(service="ec2", resource="network-interface", resource_name="*")
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["ec2:CreateNetworkInterface"],
                resources=[
                    interfaces,
                    *(stack.format_arn(service="ec2", resource="subnet", resource_name=s) for s in subnets),
                    *(
                        stack.format_arn(
                            service="ec2", resource="security-group", resource_name=g.security_group_id
                        )
                        for g in security_groups
                    ),
                ],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "ec2:AssignPrivateIpAddresses",
                    "ec2:DeleteNetworkInterface",
                    "ec2:UnassignPrivateIpAddresses",
                ],
                resources=[interfaces],
            )
        )
        # Describe* actions have no resource type: "*" is the only resource they accept.
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"], resources=["*"]
            )
        )
        acknowledge(
            self.role,
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:{stack.region}:{stack.account}:network-interface/*]",
            "Lambda creates and deletes the function's network interfaces at deploy and scale time, so their ids "
            "are unknown beforehand; creation is bound to the function's own subnets and security groups",
        )

    def grant_invoke(self, grantee: iam.IGrantable) -> iam.Grant:
        return self.function.grant_invoke(grantee)
