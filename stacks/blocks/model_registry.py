"""The central model registry: one SageMaker model package group per business unit x use case.

Each group's resource policy names exactly its business unit's accounts: dev registers versions,
preprod and prod describe them and create models from them. Where the business unit trains its own models,
preprod's gate may also update a version (its gate record, or Rejected) but never approve it. Approval
happens in the tooling account, by the business unit's approver role only: the policy denies setting
"Approved" to every other principal, whatever its identity policy says.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from stacks.blocks import durations
from stacks.blocks.business_unit_access import BusinessUnitAccess
from stacks.blocks.grants import allow
from stacks.blocks.nag import acknowledge
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


def approver_role_name(prefix: str, business_unit: str) -> str:
    return f"{prefix}-model-approver-{business_unit}"


def nag_arn(stack: Stack, arn: str) -> str:
    """An ARN built with `format_arn` as cdk-nag names it in an IAM5 finding."""
    resolved = stack.resolve(arn)
    parts = resolved["Fn::Join"][1] if isinstance(resolved, dict) else [resolved]
    return "".join(p if isinstance(p, str) else f"<{p['Ref']}>" for p in parts)


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
        gate_accounts: dict[str, str] | None = None,
    ) -> None:
        """`gate_accounts`: business unit -> its preprod account, for business units whose preprod gates
        their own model versions (stacks/blocks/evaluation_gate.py)."""
        super().__init__(scope, construct_id)
        self.prefix = prefix
        self.groups: dict[tuple[str, str], sagemaker.CfnModelPackageGroup] = {}
        self.gate_accounts = dict(gate_accounts or {})
        self.approvers = {
            access.business_unit: self._approver(prefix, access, use_cases) for access in accesses
        }
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

    def _approver(self, prefix: str, access: BusinessUnitAccess, use_cases: dict[str, list[str]]) -> iam.Role:
        """The one principal that may approve the business unit's versions (people assume it in tooling)."""
        stack = Stack.of(self)
        names = [
            model_package_group_name(prefix, access.business_unit, uc)
            for uc in use_cases[access.business_unit]
        ]
        role = iam.Role(
            self,
            f"Approver-{access.business_unit}",
            role_name=approver_role_name(prefix, access.business_unit),
            description=f"Approves or rejects {access.business_unit}'s model versions after the preprod gate",
            assumed_by=iam.AccountPrincipal(stack.account),
            max_session_duration=durations.hours(1),
        )
        versions = [
            stack.format_arn(service="sagemaker", resource="model-package", resource_name=f"{name}/*")
            for name in names
        ]
        allow(
            role,
            actions=["sagemaker:UpdateModelPackage"],
            resources=versions,
            conditions={"StringEquals": {"sagemaker:ModelApprovalStatus": ["Approved", "Rejected"]}},
        )
        allow(role, actions=list(READ_ACTIONS), resources=versions)
        for version in versions:
            acknowledge(
                role,
                f"AwsSolutions-IAM5[Resource::{nag_arn(stack, version)}]",
                "Model package versions are numbered by the registry; the group is named exactly",
            )
        return role

    def group_policy(self, name: str, access: BusinessUnitAccess) -> iam.PolicyDocument:
        stack = Stack.of(self)
        # The policy cannot reference the group's own ARN attribute (a cycle): build it from the name.
        resources = [
            stack.format_arn(service="sagemaker", resource="model-package-group", resource_name=name),
            stack.format_arn(service="sagemaker", resource="model-package", resource_name=f"{name}/*"),
        ]
        approver = stack.format_arn(
            service="iam",
            region="",
            resource="role",
            resource_name=approver_role_name(self.prefix, access.business_unit),
        )
        gate = self.gate_accounts.get(access.business_unit)
        gate_statements = (
            [
                # Preprod's gate recorder writes its record and rejects failed versions (never approves).
                access.statement(
                    sid="RecordPreprodGate",
                    accounts=[gate],
                    actions=["sagemaker:UpdateModelPackage"],
                    resources=resources[1:],
                    conditions={"StringEqualsIfExists": {"sagemaker:ModelApprovalStatus": "Rejected"}},
                )
            ]
            if gate
            else []
        )
        return iam.PolicyDocument(
            statements=[
                # Nobody but the approver creates or sets a version Approved: dev registers versions that
                # wait for the preprod gate and the approver, whatever its pipeline definition asks for.
                iam.PolicyStatement(
                    sid=f"{access.sid}OnlyTheApproverApproves",
                    effect=iam.Effect.DENY,
                    principals=[iam.AnyPrincipal()],
                    actions=["sagemaker:CreateModelPackage", "sagemaker:UpdateModelPackage"],
                    resources=resources,
                    conditions={
                        "StringEquals": {"sagemaker:ModelApprovalStatus": "Approved"},
                        "ArnNotEquals": {"aws:PrincipalArn": approver},
                    },
                ),
                *gate_statements,
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
