"""Journey helpers for serving stacks: per-stack bucket names and identity-policy checks (additive)."""

from __future__ import annotations

from typing import Any

from tests.stacks.policy_eval import PARTITION, Request, decide


def bucket_name(stack: str, logical_id: str) -> str:
    """A stand-in for a generated bucket name, unique per stack (lowercase, S3-valid)."""
    return f"{stack}-{logical_id}".lower()[:63]


def resolve(value: Any, template: dict[str, Any], stack: str) -> Any:
    """Intrinsics -> strings; a bucket's Ref / Arn becomes its per-stack stand-in name."""
    if isinstance(value, list):
        return [resolve(v, template, stack) for v in value]
    if isinstance(value, dict):
        if "Ref" in value:
            ref = value["Ref"]
            if ref == "AWS::Partition":
                return PARTITION
            resource = template["Resources"].get(ref, {})
            return (
                bucket_name(stack, ref) if resource.get("Type") == "AWS::S3::Bucket" else f"<{stack}:{ref}>"
            )
        if "Fn::GetAtt" in value:
            logical_id, attribute = value["Fn::GetAtt"]
            if template["Resources"][logical_id]["Type"] == "AWS::S3::Bucket" and attribute == "Arn":
                return f"arn:{PARTITION}:s3:::{bucket_name(stack, logical_id)}"
            return f"<{stack}:{logical_id}.{attribute}>"
        if "Fn::Join" in value:
            separator, parts = value["Fn::Join"]
            return separator.join(str(resolve(p, template, stack)) for p in parts)
        if "Fn::ImportValue" in value:
            return f"<import:{value['Fn::ImportValue']}>"
        return {k: resolve(v, template, stack) for k, v in value.items()}
    return value


def role_statements(template: dict[str, Any], stack: str, role_logical_id: str) -> list[dict[str, Any]]:
    """Every identity-policy statement attached to the role, resolved, applying to its caller."""
    statements = []
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::IAM::Policy":
            continue
        if {"Ref": role_logical_id} not in resource["Properties"].get("Roles", []):
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            statements.append({**resolve(statement, template, stack), "Principal": "*"})
    return statements


def role_allows(statements: list[dict[str, Any]], action: str, resource: str) -> bool:
    return decide(statements, Request(account="any", action=action, resource=resource)) == "allow"


def only_bucket(template: dict[str, Any], prefix: str) -> str:
    (logical_id,) = [
        lid
        for lid, r in template["Resources"].items()
        if r["Type"] == "AWS::S3::Bucket" and lid.startswith(prefix)
    ]
    return logical_id
