"""Sizes of the data lake's resource policies against the AWS limits, per number of business units.

Synthesizes ONLY the data lake stack (cdk-nag attached, as in `cdk synth`) for generated configs of
N business units (the default config's first business unit copied N times, as bench/synth_scaling.py
does) and prints, per N, the key policy and the largest bucket policy (and which bucket), the Lake
Formation location role's policy and the stack's resource count. A role's figure adds up its inline policy and the
managed policies CDK splits an overflowing policy into.

How a policy is counted: JSON without whitespace (`separators=(",", ":")`), counted twice, once with
the intrinsics as synthesized (`{"Fn::Join": ...}`, `{"Ref": "AWS::Partition"}`) and once resolved
(partition `aws`, buckets by name, as tests/stacks/policy_eval.py resolves them); the larger of the
two is the figure checked against the limit. The synthesized form is the longer one here, because
every ARN carries its `Fn::Join` wrapper, and CloudFormation sends AWS the shorter resolved one.

AWS limits: key policy 32,768 bytes; bucket policy 20,480 bytes; the inline policies of one IAM
role 10,240 characters in total; 500 resources per CloudFormation stack.

    .venv/bin/python bench/lake_policy_sizes.py [--sizes 1 2 5 10 20] [--mode multi_account|sandbox]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "lambdas")]

from aws_cdk import Acknowledgment, Validations  # noqa: E402

from bench.synth_scaling import generated_config  # noqa: E402
from stacks.app_factory import create_app  # noqa: E402
from stacks.blocks.nag import add_nag_checks  # noqa: E402
from stacks.data_lake_stack import DataLakeStack  # noqa: E402
from stacks.settings import PlatformConfig, parse_config  # noqa: E402
from tests.stacks.policy_eval import resolve  # noqa: E402

KEY_POLICY_LIMIT = 32 * 1024
BUCKET_POLICY_LIMIT = 20 * 1024
ROLE_INLINE_POLICIES_LIMIT = 10 * 1024
STACK_RESOURCES_LIMIT = 500
RESOURCE_LIMIT_CONTEXT = "@aws-cdk/core:stackResourceLimit"
# aws-cdk-lib's built-in template validation (CloudFormation Validate) also fails a synth past 500
# resources; its rule id, acknowledged only in this measuring synth.
RESOURCE_LIMIT_RULE = "CloudFormation-Validate::F0007"


def lake_config(business_units: int, mode: str = "multi_account") -> PlatformConfig:
    """A config of `business_units` copies of the default config's first business unit, in `mode`."""
    raw = generated_config(business_units)
    if mode == "sandbox":
        raw["deployment"] = {"mode": "sandbox", "sandbox_account": "555555555555"}
        raw.pop("accounts", None)
        for unit in raw["business_units"]:
            unit.pop("accounts", None)
    elif mode != "multi_account":
        raise ValueError(f"mode: {mode!r} is not multi_account or sandbox")
    return parse_config(raw)


def synth_lake(config: PlatformConfig) -> dict[str, Any]:
    """The data lake stack's template, alone (no other stack is built)."""
    # Both 500-resource checks (the stack's own and the built-in template validation's) are lifted,
    # here only, so that the policies can be measured past the limit; the resource count is reported
    # (and checked) separately, and `cdk synth` of the platform keeps both checks.
    app = create_app(context={RESOURCE_LIMIT_CONTEXT: 0})
    stack = DataLakeStack(app, "Lake", config=config)
    Validations.of(stack).acknowledge(
        Acknowledgment(
            id=RESOURCE_LIMIT_RULE,
            reason="Measuring synth only: the lake's policy sizes are measured past 500 resources on "
            "purpose; the resource count is reported against the limit separately (docs/data-lake.md, Limits).",
        )
    )
    add_nag_checks(app)
    template: dict[str, Any] = app.synth().get_stack_by_name(stack.stack_name).template
    return template


def policy_size(document: Any, template: dict[str, Any]) -> int:
    """Characters of the policy JSON without whitespace: the larger of synthesized and resolved."""
    compact = (",", ":")
    return max(
        len(json.dumps(document, separators=compact)),
        len(json.dumps(resolve(document, template), separators=compact)),
    )


@dataclass(frozen=True)
class PolicySizes:
    key_policy: int
    bucket_policies: dict[str, int]  # bucket name (or logical id) -> size
    role_policies: dict[str, int]  # role logical id -> total size of its policies (inline and CDK-split)
    resources: int

    @property
    def largest_bucket(self) -> tuple[str, int]:
        name = max(self.bucket_policies, key=lambda b: self.bucket_policies[b])
        return name, self.bucket_policies[name]

    @property
    def largest_role(self) -> tuple[str, int]:
        name = max(self.role_policies, key=lambda r: self.role_policies[r])
        return name, self.role_policies[name]


def policy_sizes(template: dict[str, Any]) -> PolicySizes:
    resources = template["Resources"]
    (key,) = [r for r in resources.values() if r["Type"] == "AWS::KMS::Key"]
    buckets: dict[str, int] = {}
    roles: dict[str, int] = {}
    for resource in resources.values():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::S3::BucketPolicy":
            bucket_id = properties["Bucket"]["Ref"]
            name = resources[bucket_id]["Properties"].get("BucketName", bucket_id)
            buckets[name] = policy_size(properties["PolicyDocument"], template)
        elif resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            # CDK moves what overflows a role's inline policy into managed policies: count them too.
            for role in properties.get("Roles", []):
                role_id = role["Ref"] if isinstance(role, dict) else role
                roles[role_id] = roles.get(role_id, 0) + policy_size(properties["PolicyDocument"], template)
    for logical_id, resource in resources.items():
        if resource["Type"] == "AWS::IAM::Role":
            inline = resource["Properties"].get("Policies", [])
            roles[logical_id] = roles.get(logical_id, 0) + sum(
                policy_size(p["PolicyDocument"], template) for p in inline
            )
    return PolicySizes(
        key_policy=policy_size(key["Properties"]["KeyPolicy"], template),
        bucket_policies=buckets,
        role_policies=roles,
        resources=len(resources),
    )


def zone_of(bucket: str) -> str:
    """`exco-lake-evaluation-datasets-222222222222-eu-west-1` -> `evaluation-datasets`."""
    match = re.search(r"-lake-(.+)-\d{12}-", bucket)
    return match.group(1) if match else bucket


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 5, 10, 20], metavar="N")
    parser.add_argument("--mode", choices=["multi_account", "sandbox"], default="multi_account")
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.sizes):
        parser.error("--sizes: every size must be at least 1")
    print(
        "| business units | key policy (limit 32,768) | largest bucket policy (limit 20,480) "
        "| largest role's policies (inline limit 10,240) | stack resources (limit 500) |"
    )
    print("|---:|---:|---|---:|---:|")
    exceeded: list[str] = []
    for size in args.sizes:
        sizes = policy_sizes(synth_lake(lake_config(size, args.mode)))
        bucket, bucket_size = sizes.largest_bucket
        _, role_size = sizes.largest_role
        for what, value, limit in (
            ("key policy", sizes.key_policy, KEY_POLICY_LIMIT),
            ("bucket policy", bucket_size, BUCKET_POLICY_LIMIT),
            ("role policies", role_size, ROLE_INLINE_POLICIES_LIMIT),
            ("stack resources", sizes.resources, STACK_RESOURCES_LIMIT),
        ):
            if value > limit:
                exceeded.append(f"{size} business units: {what} {value:,} > {limit:,}")
        print(
            f"| {size} | {sizes.key_policy:,} | {bucket_size:,} ({zone_of(bucket)}) "
            f"| {role_size:,} | {sizes.resources} |"
        )
    print(f"\nmode: {args.mode}; sizes in characters of whitespace-free JSON (see --help)")
    for line in exceeded:
        print(f"over an AWS limit: {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
