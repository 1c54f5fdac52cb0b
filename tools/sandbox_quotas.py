"""Count the quota-bound resources of a synthesized assembly per account and region, against the defaults a
fresh AWS account starts with (sandbox mode puts every environment into one account and region).

    python -m tools.sandbox_quotas [cdk.out]

Exit code 1 when some count is above its default quota (ask for an increase before deploying, or change the
config), 0 otherwise. The defaults are the published Service Quotas default values.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Published default quotas of a new account (per account and region unless the name says otherwise).
DEFAULT_QUOTAS = {
    "VPCs per Region": 5,
    "Elastic IP addresses per Region": 5,
    "Internet gateways per Region": 5,
    "NAT gateways per Availability Zone": 5,
    "Gateway VPC endpoints per Region": 20,
    "Interface VPC endpoints per VPC": 50,
    # Lambda keeps 100 of the 1,000 default concurrent executions unreserved: at most 900 may be reserved.
    "Lambda reserved concurrency per Region": 900,
}


@dataclass(frozen=True)
class QuotaCount:
    account: str
    region: str
    quota: str
    used: int
    limit: int
    where: str = ""  # which VPC, for per-VPC quotas

    @property
    def over(self) -> bool:
        return self.used > self.limit


def _stacks(assembly: Path) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    manifest = json.loads((assembly / "manifest.json").read_text(encoding="utf-8"))
    for artifact_id, artifact in manifest.get("artifacts", {}).items():
        properties = artifact.get("properties", {})
        if artifact["type"] == "cdk:cloud-assembly":
            yield from _stacks(assembly / properties["directoryName"])
        elif artifact["type"] == "aws:cloudformation:stack":
            account, _, region = artifact["environment"].removeprefix("aws://").partition("/")
            template = json.loads((assembly / properties["templateFile"]).read_text(encoding="utf-8"))
            yield properties.get("stackName", artifact_id), account, region, template


def count_quotas(assembly: Path) -> list[QuotaCount]:
    per_region: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    endpoints_per_vpc: dict[tuple[str, str, str], int] = defaultdict(int)
    nat_per_stack: dict[tuple[str, str], int] = defaultdict(int)
    for stack_name, account, region, template in _stacks(assembly):
        counts = per_region[(account, region)]
        for resource in template.get("Resources", {}).values():
            kind, properties = resource["Type"], resource.get("Properties", {})
            if kind == "AWS::EC2::VPC":
                counts["VPCs per Region"] += 1
            elif kind == "AWS::EC2::EIP":
                counts["Elastic IP addresses per Region"] += 1
            elif kind == "AWS::EC2::InternetGateway":
                counts["Internet gateways per Region"] += 1
            elif kind == "AWS::EC2::NatGateway":
                nat_per_stack[(account, region)] += 1
            elif (
                kind == "AWS::EC2::VPCEndpoint" and properties.get("VpcEndpointType", "Gateway") == "Gateway"
            ):
                counts["Gateway VPC endpoints per Region"] += 1
            elif kind == "AWS::EC2::VPCEndpoint" and properties.get("VpcEndpointType") == "Interface":
                vpc = json.dumps(properties.get("VpcId"), sort_keys=True)
                endpoints_per_vpc[(account, region, f"{stack_name} {vpc}")] += 1
            elif kind == "AWS::Lambda::Function":
                reserved = properties.get("ReservedConcurrentExecutions")
                if isinstance(reserved, int):
                    counts["Lambda reserved concurrency per Region"] += reserved
    results = []
    for (account, region), counts in sorted(per_region.items()):
        for quota in (q for q in DEFAULT_QUOTAS if q != "Interface VPC endpoints per VPC"):
            used = (
                counts[quota]
                if quota != "NAT gateways per Availability Zone"
                else nat_per_stack[(account, region)]
            )
            results.append(QuotaCount(account, region, quota, used, DEFAULT_QUOTAS[quota]))
    for (account, region, vpc), used in sorted(endpoints_per_vpc.items()):
        results.append(
            QuotaCount(
                account,
                region,
                "Interface VPC endpoints per VPC",
                used,
                DEFAULT_QUOTAS["Interface VPC endpoints per VPC"],
                vpc,
            )
        )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "assembly", nargs="?", default="cdk.out", help="cloud assembly directory (default: cdk.out)"
    )
    assembly = Path(parser.parse_args(argv).assembly)
    if not (assembly / "manifest.json").is_file():
        print(f"no cloud assembly at {assembly}: run the synth first", file=sys.stderr)
        return 2
    results = count_quotas(assembly)
    for result in results:
        flag = "OVER" if result.over else "ok"
        where = f" ({result.where})" if result.where else ""
        print(
            f"{flag:4} {result.account}/{result.region} {result.quota}{where}: {result.used} of {result.limit}"
        )
    return 1 if any(r.over for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
