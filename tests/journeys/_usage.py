"""Helpers of the usage and online evaluation journey: follow references across synthesized stacks.

`canonical` turns a template value into a string that names what it points at, whichever stack it is
written in: `Ref` and `Fn::GetAtt` become `<stack>/<logical id>[.<attribute>]`, `Fn::ImportValue` is
followed to the exporting stack, `Fn::Join` is joined and `AWS::Partition` becomes `aws`. Two stacks that
reference the same resource therefore produce the same string.
"""

from __future__ import annotations

from typing import Any

from tests.conftest import SynthesizedPlatform

PSEUDO = {"AWS::Partition": "aws"}


class References:
    def __init__(self, platform: SynthesizedPlatform) -> None:
        self.platform = platform
        self.templates = {s.stack_name: t for s, t in platform.templates()}
        self.exports: dict[str, tuple[str, Any]] = {}
        for stack, template in self.templates.items():
            for output in template.get("Outputs", {}).values():
                if "Export" in output:
                    self.exports[output["Export"]["Name"]] = (stack, output["Value"])

    def canonical(self, value: Any, stack: str) -> Any:
        if isinstance(value, list):
            return [self.canonical(v, stack) for v in value]
        if not isinstance(value, dict):
            return value
        if "Fn::ImportValue" in value:
            exporter, exported = self.exports[value["Fn::ImportValue"]]
            return self.canonical(exported, exporter)
        if "Ref" in value:
            ref = value["Ref"]
            if ref.startswith("AWS::"):
                return PSEUDO.get(ref, f"<{ref}>")
            return f"{stack}/{ref}"
        if "Fn::GetAtt" in value:
            logical_id, attribute = value["Fn::GetAtt"]
            return f"{stack}/{logical_id}.{attribute}"
        if "Fn::Join" in value:
            separator, parts = value["Fn::Join"]
            return separator.join(str(self.canonical(p, stack)) for p in parts)
        return {k: self.canonical(v, stack) for k, v in value.items()}

    def resources(self, stack: str, kind: str) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in self.templates[stack]["Resources"].items() if r["Type"] == kind}

    def one(self, stack: str, kind: str, prefix: str) -> tuple[str, dict[str, Any]]:
        found = [(k, r) for k, r in self.resources(stack, kind).items() if k.startswith(prefix)]
        assert len(found) == 1, (stack, kind, prefix, [k for k, _ in found])
        return found[0]

    def function_env(self, stack: str, prefix: str) -> dict[str, Any]:
        _, function = self.one(stack, "AWS::Lambda::Function", prefix)
        variables = function["Properties"]["Environment"]["Variables"]
        return {k: self.canonical(v, stack) for k, v in variables.items()}

    def role_statements(self, stack: str, function_prefix: str) -> list[dict[str, Any]]:
        """The identity statements of a function's role, resources canonical, ready for policy_eval."""
        _, function = self.one(stack, "AWS::Lambda::Function", function_prefix)
        role = function["Properties"]["Role"]["Fn::GetAtt"][0]
        statements = []
        for policy in self.resources(stack, "AWS::IAM::Policy").values():
            if {"Ref": role} in policy["Properties"]["Roles"]:
                for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                    statements.append({**self.canonical(statement, stack), "Principal": "*"})
        return statements
