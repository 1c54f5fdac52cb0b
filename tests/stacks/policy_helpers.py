"""Read resource policies out of synthesized templates, with intrinsic ARNs flattened to plain strings."""

from __future__ import annotations

import re
from typing import Any


def flatten(value: Any) -> Any:
    """`Fn::Join` of strings and `Ref AWS::Partition` -> one string; other references stay `<Ref>`."""
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(str(flatten(p)) for p in parts)
    if isinstance(value, dict) and value.get("Ref") == "AWS::Partition":
        return "aws"
    if isinstance(value, dict) and "Ref" in value:
        return f"<{value['Ref']}>"
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return f"<{'.'.join(value['Fn::GetAtt'])}>"
    if isinstance(value, dict):
        return {k: flatten(v) for k, v in value.items()}
    if isinstance(value, list):
        return [flatten(v) for v in value]
    return value


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def principal_accounts(statement: dict[str, Any]) -> set[str]:
    principal = flatten(statement.get("Principal", {}))
    arns = as_list(principal.get("AWS", [])) if isinstance(principal, dict) else []
    accounts = set()
    for arn in arns:
        match = re.fullmatch(r"arn:aws:iam::(\d{12}):root", arn)
        assert match, f"expected account principals only, got {arn}"
        accounts.add(match.group(1))
    return accounts


def resources_of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == resource_type}


def access_log_group_id(destination_arn: Any) -> str:
    """Logical id of the log group an API stage's access log points at: `Fn::GetAtt [id, Arn]`, or (feature
    flag @aws-cdk/aws-apigateway:logGroupDestinationArnWithoutWildcard) the ARN joined around `Ref id`."""
    if "Fn::GetAtt" in destination_arn:
        return str(destination_arn["Fn::GetAtt"][0])
    (ref,) = [
        p["Ref"]
        for p in destination_arn["Fn::Join"][1]
        if isinstance(p, dict) and "Ref" in p and "::" not in p["Ref"]
    ]
    return str(ref)
