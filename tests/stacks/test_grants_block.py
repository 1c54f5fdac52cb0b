"""stacks/blocks/grants.py: `allow` writes exactly the statement `add_to_principal_policy(PolicyStatement(...))`
writes, into the same default policy, and refuses what it cannot express."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Template
from hypothesis import given
from hypothesis import strategies as st

from stacks.blocks.grants import allow, allow_listing, allow_statement

STATEMENTS: list[dict[str, Any]] = [
    {"actions": ["s3:GetObject"], "resources": ["arn:aws:s3:::bucket/prefix/*"]},
    {
        "actions": ["s3:ListBucket"],
        "resources": ["arn:aws:s3:::bucket"],
        "conditions": {"StringLike": {"s3:prefix": ["prefix/", "prefix/*"]}},
    },
    {"actions": ["kms:Decrypt", "kms:GenerateDataKey"], "resources": ["*"]},
    # the same actions again: the policy minimizer merges it with the statement above, either way
    {
        "actions": ["kms:Decrypt", "kms:GenerateDataKey"],
        "resources": ["arn:aws:kms:eu-west-1:111111111111:key/k"],
    },
]


def _policies(stack: Stack) -> dict[str, Any]:
    found: dict[str, Any] = Template.from_stack(stack).find_resources("AWS::IAM::Policy")
    return found


def _role(stack: Stack) -> iam.Role:
    return iam.Role(stack, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))


def test_allow_writes_what_add_to_principal_policy_writes() -> None:
    app = App(context={"@aws-cdk/aws-iam:minimizePolicies": True})
    explicit, helper = Stack(app, "Explicit"), Stack(app, "Helper")
    explicit_role, helper_role = _role(explicit), _role(helper)
    for statement in STATEMENTS:
        explicit_role.add_to_principal_policy(iam.PolicyStatement(**statement))
        allow(helper_role, **statement)
    assert _policies(helper) == _policies(explicit)
    assert len(_policies(explicit)) == 1


def test_allow_statement_takes_iam_json() -> None:
    app = App()
    explicit, helper = Stack(app, "Explicit"), Stack(app, "Helper")
    statement = {
        "Effect": "Allow",
        "Action": ["s3:GetObject"],
        "Resource": ["arn:aws:s3:::b/k/*"],
        "Condition": {"StringEquals": {"aws:PrincipalTag/Stage": "dev"}},
    }
    _role(explicit).add_to_principal_policy(iam.PolicyStatement.from_json(statement))
    allow_statement(_role(helper), statement)
    assert _policies(helper) == _policies(explicit)


@pytest.mark.parametrize(
    "statement",
    [
        {"Effect": "Deny", "Action": ["s3:*"], "Resource": ["*"]},
        {"Effect": "Allow", "Sid": "Named", "Action": ["s3:*"], "Resource": ["*"]},
        {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": ["s3:*"], "Resource": ["*"]},
    ],
)
def test_statements_allow_cannot_express_are_refused(statement: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"^statement: "):
        allow_statement(_role(Stack(App(), "S")), statement)


@given(actions=st.one_of(st.just([]), st.text(min_size=1, max_size=8)), resources=st.just(["*"]))
def test_empty_or_single_string_actions_are_refused(actions: Any, resources: list[str]) -> None:
    role = _role(Stack(App(), "S"))
    with pytest.raises(ValueError, match=r"^actions, resources: "):
        allow(role, actions=actions, resources=resources)


def test_allow_listing_is_list_bucket_under_one_prefix() -> None:
    app = App()
    explicit, helper = Stack(app, "Explicit"), Stack(app, "Helper")
    _role(explicit).add_to_principal_policy(
        iam.PolicyStatement(
            actions=["s3:ListBucket"],
            resources=["arn:aws:s3:::b"],
            conditions={"StringLike": {"s3:prefix": ["runs/_claims/*"]}},
        )
    )
    allow_listing(_role(helper), "arn:aws:s3:::b", "runs/_claims/*")
    assert _policies(helper) == _policies(explicit)
