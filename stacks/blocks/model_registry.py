"""The central model registry: one SageMaker model package group per business unit x use case.

Each group's resource policy names exactly its business unit's accounts: dev registers versions,
preprod and prod describe them and create models from them. Approval (UpdateModelPackage) is not
granted across accounts: it happens in the tooling account after the preprod evaluation.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from stacks.blocks.business_unit_access import BusinessUnitAccess
from stacks.blocks.retention import DataRetention

READ_ACTIONS = (
    "sagemaker:DescribeModelPackageGroup",
    "sagemaker:DescribeModelPackage",
    "sagemaker:ListModelPackages",
)
REGISTER_ACTIONS = (*READ_ACTIONS, "sagemaker:CreateModelPackage")
# CreateModel from a model package ARN is how another account deploys a registered version.
DEPLOY_ACTIONS = (*READ_ACTIONS, "sagemaker:CreateModel")
MAX_GROUP_NAME_LENGTH = 63


def model_package_group_name(prefix: str, business_unit: str, use_case: str) -> str:
    name = f"{prefix}-{business_unit}-{use_case}"
    if len(name) > MAX_GROUP_NAME_LENGTH:  # the config's name patterns keep it at 60 at most
        raise ValueError(f"model package group name {name!r} is longer than {MAX_GROUP_NAME_LENGTH}")
    return name


class ModelRegistry(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        accesses: list[BusinessUnitAccess],
        use_cases: dict[str, list[str]],
        retention: DataRetention,
    ) -> None:
        super().__init__(scope, construct_id)
        self.groups: dict[tuple[str, str], sagemaker.CfnModelPackageGroup] = {}
        for access in accesses:
            for use_case in use_cases[access.business_unit]:
                name = model_package_group_name(prefix, access.business_unit, use_case)
                group = sagemaker.CfnModelPackageGroup(
                    self,
                    f"{access.business_unit}-{use_case}",
                    model_package_group_name=name,
                    model_package_group_description=(
                        f"Model versions of {access.business_unit} / {use_case}, registered from its dev account"
                    ),
                    model_package_group_policy=self.group_policy(name, access).to_json(),
                )
                group.apply_removal_policy(retention.removal_policy)
                self.groups[(access.business_unit, use_case)] = group

    def group_names(self, business_unit: str) -> list[str]:
        return [
            str(group.model_package_group_name)
            for (bu, _), group in self.groups.items()
            if bu == business_unit
        ]

    def group_policy(self, name: str, access: BusinessUnitAccess) -> iam.PolicyDocument:
        stack = Stack.of(self)
        # The policy cannot reference the group's own ARN attribute (a cycle): build it from the name.
        resources = [
            stack.format_arn(service="sagemaker", resource="model-package-group", resource_name=name),
            stack.format_arn(service="sagemaker", resource="model-package", resource_name=f"{name}/*"),
        ]
        return iam.PolicyDocument(
            statements=[
                access.statement(
                    sid="RegisterFromDev",
                    accounts=access.writers,
                    actions=REGISTER_ACTIONS,
                    resources=resources,
                ),
                access.statement(
                    sid="DeployToPreprodAndProd",
                    accounts=access.readers,
                    actions=DEPLOY_ACTIONS,
                    resources=resources,
                ),
            ]
        )
