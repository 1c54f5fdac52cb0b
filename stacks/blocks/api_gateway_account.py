"""The account-level role API Gateway uses to write REST API logs: exactly one per account and region.

`AWS::ApiGateway::Account` is a singleton. If every stack with an API set it (CDK's `cloud_watch_role=True`),
stacks sharing an account (sandbox mode, or several APIs in one environment) would overwrite each other and a
stack deletion could remove the role from under the others. So APIs never create it; the one stack that owns
the account's baseline does: each business unit environment's baseline in multi-account mode, and the tooling
stack for the tooling account (and for the one account in sandbox mode).
"""

from __future__ import annotations

from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.blocks.nag import acknowledge
from stacks.blocks.retention import DataRetention


class ApiGatewayAccountLogging(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, retention: DataRetention) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
            description="API Gateway writes execution and access logs of this account's REST APIs",
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name(
                    "service-role/AmazonAPIGatewayPushToCloudWatchLogs"
                )
            ],
        )
        self.role.apply_removal_policy(retention.removal_policy)
        self.account = apigw.CfnAccount(self, "Account", cloud_watch_role_arn=self.role.role_arn)
        acknowledge(
            self.role,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]",
            "The account-level role API Gateway uses to write execution and access logs of every REST API "
            "in the account and region; it creates the log groups it names itself, so this AWS policy is "
            "the documented scope",
        )
