"""One identity-policy Allow statement in one jsii call.

`role.add_to_principal_policy(iam.PolicyStatement(actions=..., resources=...))` costs four round trips to the
jsii Node process: creating the statement, the call, and two reads of the result struct (jsii fetches every
field of a returned struct eagerly, though callers ignore it). `iam.Grant.add_to_principal` builds the same
statement (Allow; actions, resources, conditions; no sid) inside Node and adds it to the same default policy
through the same `addToPrincipalPolicy`, in one call. Statements with a sid, a Deny or principals keep the
explicit form.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import aws_iam as iam


def allow(
    grantee: iam.IGrantable,
    *,
    actions: Sequence[str],
    resources: Sequence[str],
    conditions: Mapping[str, Any] | None = None,
) -> None:
    """Allow `actions` on `resources` (under `conditions`) in `grantee`'s identity policy."""
    if isinstance(actions, str) or isinstance(resources, str):
        raise ValueError("actions, resources: pass lists, not a single string")
    if not actions or not resources:
        raise ValueError("actions, resources: a statement needs at least one action and one resource")
    iam.Grant.add_to_principal(
        grantee=grantee,
        actions=list(actions),
        resource_arns=list(resources),
        conditions=dict(conditions) if conditions is not None else None,
    )


def allow_listing(grantee: iam.IGrantable, bucket_arn: str, prefix: str) -> None:
    """`s3:ListBucket` on one bucket, only for listings under `prefix` (an `s3:prefix` pattern)."""
    allow(
        grantee,
        actions=["s3:ListBucket"],
        resources=[bucket_arn],
        conditions={"StringLike": {"s3:prefix": [prefix]}},
    )


def allow_statement(grantee: iam.IGrantable, statement: Mapping[str, Any]) -> None:
    """`allow` for a statement written as IAM JSON (`Effect: Allow`, `Action`, `Resource`, `Condition`)."""
    unknown = set(statement) - {"Effect", "Action", "Resource", "Condition"}
    if statement.get("Effect") != "Allow" or unknown:
        raise ValueError(
            f"statement: only Allow statements with Action, Resource and Condition fit; got {statement}"
        )
    allow(
        grantee,
        actions=statement["Action"],
        resources=statement["Resource"],
        conditions=statement.get("Condition"),
    )
