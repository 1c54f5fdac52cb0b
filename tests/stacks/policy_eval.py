"""A small evaluator for the resource policies the data lake synthesizes (test helper, not IAM itself).

It resolves the intrinsics those templates use (Ref AWS::Partition, GetAtt <bucket>.Arn, Fn::Join),
substitutes `${aws:PrincipalTag/...}` variables and applies IAM's order: an explicit deny wins, then
an allow, else the implicit deny. Enough for bucket and key policies; not a general IAM simulator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

PARTITION = "aws"
_VARIABLE = re.compile(r"\$\{([^}]+)\}")


def resolve(value: Any, template: dict[str, Any]) -> Any:
    """Intrinsics -> strings; lists resolved element-wise."""
    if isinstance(value, list):
        return [resolve(v, template) for v in value]
    if isinstance(value, dict):
        if "Ref" in value:
            if value["Ref"] == "AWS::Partition":
                return PARTITION
            return f"<{value['Ref']}>"
        if "Fn::GetAtt" in value:
            logical_id, attribute = value["Fn::GetAtt"]
            resource = template["Resources"][logical_id]
            if resource["Type"] == "AWS::S3::Bucket" and attribute == "Arn":
                # A bucket without a fixed name gets its logical id (it cannot be a lake bucket).
                return f"arn:{PARTITION}:s3:::{resource['Properties'].get('BucketName', logical_id.lower())}"
            return f"<{logical_id}.{attribute}>"
        if "Fn::Join" in value:
            separator, parts = value["Fn::Join"]
            return separator.join(str(resolve(p, template)) for p in parts)
        return {k: resolve(v, template) for k, v in value.items()}
    return value


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def wildcard_match(pattern: str, value: str) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value) is not None


@dataclass
class Request:
    account: str
    action: str
    resource: str
    context: dict[str, str] = field(default_factory=dict)

    def substitute(self, pattern: str) -> str | None:
        """Policy variables filled from the context; None when one is missing (the pattern cannot match)."""
        missing = [m for m in _VARIABLE.findall(pattern) if m not in self.context]
        if missing:
            return None
        return _VARIABLE.sub(lambda m: self.context[m.group(1)], pattern)


def _matches_any(patterns: list[str], value: str, request: Request) -> bool:
    for pattern in patterns:
        filled = request.substitute(pattern)
        if filled is not None and wildcard_match(filled, value):
            return True
    return False


def _condition_holds(operator: str, key: str, expected: Any, request: Request) -> bool:
    expected_values = [str(e).lower() if isinstance(e, bool) else str(e) for e in as_list(expected)]
    # aws:PrincipalAccount is always in a request's context: the caller's account.
    context = {"aws:PrincipalAccount": request.account, **request.context}
    present = key in context
    actual = context.get(key, "")
    base = operator.removeprefix("ForAnyValue:")
    if base.endswith("IfExists"):  # an absent key satisfies the condition
        base = base.removesuffix("IfExists")
        if not present:
            return True
    if base == "Null":
        return (not present) == (expected_values[0] == "true")
    if base == "StringEquals" or base == "Bool":
        return present and actual in expected_values
    if base == "StringNotEquals":
        return not present or actual not in expected_values
    if base == "StringLike":
        return present and _matches_any(expected_values, actual, request)
    if base == "StringNotLike":
        return not present or not _matches_any(expected_values, actual, request)
    if base in ("ArnEquals", "ArnLike"):
        return present and _matches_any(expected_values, actual, request)
    if base in ("ArnNotEquals", "ArnNotLike"):
        return not present or not _matches_any(expected_values, actual, request)
    if base == "NumericLessThan":
        return present and float(actual) < float(expected_values[0])
    raise NotImplementedError(operator)


def statement_applies(statement: dict[str, Any], request: Request) -> bool:
    principal = statement.get("Principal", {})
    principals = as_list(principal.get("AWS", [])) if isinstance(principal, dict) else [principal]
    if "*" not in principals and f"arn:{PARTITION}:iam::{request.account}:root" not in principals:
        return False
    if "Action" in statement and not any(
        wildcard_match(a, request.action) for a in as_list(statement["Action"])
    ):
        return False
    if "NotAction" in statement and any(
        wildcard_match(a, request.action) for a in as_list(statement["NotAction"])
    ):
        return False
    if "Resource" in statement and not _matches_any(
        as_list(statement["Resource"]), request.resource, request
    ):
        return False
    if "NotResource" in statement and _matches_any(
        as_list(statement["NotResource"]), request.resource, request
    ):
        return False
    return all(
        _condition_holds(operator, key, expected, request)
        for operator, pairs in statement.get("Condition", {}).items()
        for key, expected in pairs.items()
    )


def decide(statements: list[dict[str, Any]], request: Request) -> str:
    """'deny' (explicit), 'allow', or 'implicit' (nothing allows it)."""
    applying = [s for s in statements if statement_applies(s, request)]
    if any(s["Effect"] == "Deny" for s in applying):
        return "deny"
    if any(s["Effect"] == "Allow" for s in applying):
        return "allow"
    return "implicit"


def secure_context(**context: str) -> dict[str, str]:
    return {"aws:SecureTransport": "true", "s3:TlsVersion": "1.3", **context}


def decide_identity(statements: list[dict[str, Any]], request: Request) -> str:
    """`decide` for identity-based statements (a role's own policies, which carry no Principal)."""
    return decide([{**s, "Principal": "*"} if "Principal" not in s else s for s in statements], request)
