"""Summarize a cloud assembly and gate it with cdk-nag's report and cfn-lint.

Reads every stack in `cdk.out` (nested stage assemblies included), runs cfn-lint over the templates in
parallel, and prints one table: the construct path the CDK CLI accepts (`cdk deploy retail-dev/Serving`)
beside the CloudFormation stack name, account, region, business unit, stage, resource count and markers
(GPU: GPU instances, on demand or running; always-on: billed while idle, such as a serving endpoint that keeps
instances, interface VPC endpoints or a WAF web ACL), a subtotal per business unit, the total, a cdk-nag line and a cfn-lint line.
cfn-lint results are cached per template content (and cfn-lint version) in .cache/cfn-lint, so a warm synth
lints only the templates that changed. Exits 1 on an unacknowledged cdk-nag finding, a missing validation
report or a cfn-lint error.

    python -m tools.synth_report [cdk.out]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

from stacks.blocks.nag_report import failed_validations

# cfn-lint exit status is a bit mask: 2 = error, 4 = warning, 8 = informational.
CFN_LINT_ERROR_BIT = 2
# CloudFormation's hard limit is 500 resources per stack; warn well before it.
RESOURCE_WARNING_THRESHOLD = 250
CACHE_DIR = Path(__file__).resolve().parents[1] / ".cache" / "cfn-lint"
# SageMaker GPU instance families (g4dn, g5, g6, g6e, p4d, p5 ...).
GPU_FAMILIES = ("ml.g", "ml.p")


@dataclass(frozen=True)
class StackSummary:
    name: str
    path: str  # construct path, as `cdk list / deploy / diff / destroy` accept it
    account: str
    region: str
    business_unit: str
    stage: str
    resources: int
    template: Path
    markers: tuple[str, ...] = ()


def _instance_types(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("InstanceType", "TrainingInstanceType") and isinstance(item, str):
                yield item
            else:
                yield from _instance_types(item)
    elif isinstance(value, list):
        for item in value:
            yield from _instance_types(item)
    elif isinstance(value, str) and value.startswith("{") and "InstanceType" in value:
        try:  # a SageMaker Pipeline definition is a JSON string
            yield from _instance_types(json.loads(value))
        except ValueError:
            return


def _resource_tags(template: dict[str, Any]) -> dict[str, str]:
    """Cost allocation tags of the first resource that carries them (when the manifest holds no stack tags)."""
    for resource in template.get("Resources", {}).values():
        tags = resource.get("Properties", {}).get("Tags")
        if isinstance(tags, list):
            found = {
                t["Key"]: t["Value"] for t in tags if isinstance(t, dict) and isinstance(t.get("Value"), str)
            }
            if "BusinessUnit" in found:
                return found
    return {}


def _scales_to_zero(endpoint_config: dict[str, Any]) -> bool:
    """Every variant lets SageMaker remove all instances when idle (managed instance scaling down to 0)."""
    variants = endpoint_config.get("ProductionVariants", [])
    return bool(variants) and all(
        v.get("ManagedInstanceScaling", {}).get("Status") == "ENABLED"
        and v.get("ManagedInstanceScaling", {}).get("MinInstanceCount") == 0
        for v in variants
    )


def markers_of(template: dict[str, Any]) -> tuple[str, ...]:
    """GPU: some resource uses a GPU instance type. always-on: something bills by the hour while idle (an
    endpoint that keeps instances, interface VPC endpoints, a WAF web ACL, a NAT gateway)."""
    resources = template.get("Resources", {}).values()
    gpu = any(t.startswith(GPU_FAMILIES) for r in resources for t in _instance_types(r.get("Properties", {})))
    always_on = any(
        r["Type"] in ("AWS::WAFv2::WebACL", "AWS::EC2::NatGateway")
        or (
            r["Type"] == "AWS::EC2::VPCEndpoint"
            and r.get("Properties", {}).get("VpcEndpointType") == "Interface"
        )
        or (r["Type"] == "AWS::SageMaker::EndpointConfig" and not _scales_to_zero(r.get("Properties", {})))
        for r in resources
    )
    return tuple(m for m, on in (("GPU", gpu), ("always-on", always_on)) if on)


def iter_stacks(assembly_dir: Path) -> Iterator[StackSummary]:
    stage_tags: dict[Path, dict[str, str]] = {}
    for stack in list(_iter_stacks(assembly_dir, stage_tags)):
        if stack.business_unit == "-" and stack.template.parent in stage_tags:
            tags = stage_tags[stack.template.parent]
            stack = replace(stack, business_unit=tags["BusinessUnit"], stage=tags.get("Stage", "-"))
        yield stack


def _iter_stacks(assembly_dir: Path, stage_tags: dict[Path, dict[str, str]]) -> Iterator[StackSummary]:
    manifest = json.loads((assembly_dir / "manifest.json").read_text(encoding="utf-8"))
    for artifact_id, artifact in manifest.get("artifacts", {}).items():
        properties = artifact.get("properties", {})
        if artifact["type"] == "cdk:cloud-assembly":
            yield from _iter_stacks(assembly_dir / properties["directoryName"], stage_tags)
        elif artifact["type"] == "aws:cloudformation:stack":
            template_path = assembly_dir / properties["templateFile"]
            template = json.loads(template_path.read_text(encoding="utf-8"))
            _, _, location = artifact["environment"].partition("aws://")
            account, _, region = location.partition("/")
            # stack tags from the manifest; else a resource's tags; else (a stack of untaggable resources only)
            # the tags of the other stacks in the same stage
            tags = properties.get("tags") or _resource_tags(template)
            if "BusinessUnit" in tags:
                stage_tags.setdefault(assembly_dir, tags)
            yield StackSummary(
                name=properties.get("stackName", artifact_id),
                path=artifact.get("displayName", artifact_id),
                account=account,
                region=region,
                business_unit=tags.get("BusinessUnit", "-"),
                stage=tags.get("Stage", "-"),
                resources=len(template.get("Resources", {})),
                template=template_path,
                markers=markers_of(template),
            )


def _lint_key(template: Path) -> str:
    digest = hashlib.sha256(f"cfn-lint {version('cfn-lint')}\n".encode())
    digest.update(template.read_bytes())
    return digest.hexdigest()


def _status_of(lines: list[str]) -> int:
    """cfn-lint's exit bits from its parseable lines (`path:line:col:eline:ecol:RULE:message`)."""
    status = 0
    for line in lines:
        rule = line.split(":")[5] if line.count(":") >= 6 else ""
        status |= {"E": 2, "W": 4, "I": 8}.get(rule[:1], 0)
    return status


def run_cfn_lint(templates: list[Path], workers: int) -> tuple[int, str]:
    """cfn-lint over `templates` without the cache: (exit bits, output)."""
    status, output, _ = run_cfn_lint_cached(templates, workers, cache_dir=None)
    return status, output


def run_cfn_lint_cached(
    templates: list[Path], workers: int, cache_dir: Path | None = CACHE_DIR
) -> tuple[int, str, int]:
    """cfn-lint costs ~0.35 s per template in one process: lint only templates whose content is not in the
    cache, split over `workers` processes. Returns (exit bits, output, templates linted now)."""
    results: dict[Path, list[str]] = {}
    todo: list[Path] = []
    for template in templates:
        cached = cache_dir / f"{_lint_key(template)}.json" if cache_dir else None
        if cached is not None and cached.is_file():
            results[template] = [
                line.replace("{template}", str(template)) for line in json.loads(cached.read_text())
            ]
        else:
            todo.append(template)
    if todo:
        cfn_lint = Path(sys.executable).with_name("cfn-lint")
        chunks = [todo[i::workers] for i in range(workers) if todo[i::workers]]

        def lint(chunk: list[Path]) -> subprocess.CompletedProcess[str]:
            return subprocess.run(  # noqa: S603 - fixed executable, paths from our own assembly
                [str(cfn_lint), "--format", "parseable", "--", *map(str, chunk)],
                capture_output=True,
                text=True,
                check=False,
            )

        with ThreadPoolExecutor(max_workers=len(chunks)) as pool:
            runs = list(pool.map(lint, chunks))
        output = [line for r in runs for line in (r.stdout + r.stderr).splitlines() if line.strip()]
        crashed = any(r.returncode & 1 for r in runs)  # bit 1: cfn-lint itself failed; cache nothing
        for template in todo:
            own = [line for line in output if line.startswith(f"{template}:")]
            results[template] = own
            if cache_dir is not None and not crashed:
                cache_dir.mkdir(parents=True, exist_ok=True)
                lines = [f"{{template}}{line.removeprefix(str(template))}" for line in own]
                (cache_dir / f"{_lint_key(template)}.json").write_text(json.dumps(lines))
        strays = [line for line in output if not any(line.startswith(f"{t}:") for t in todo)]
        if crashed or strays:
            return 2 | 1, "\n".join(output) + "\n", len(todo)
    lines = [line for template in templates for line in results[template]]
    return _status_of(lines), "".join(f"{line}\n" for line in lines), len(todo)


def nag_line(assembly: Path) -> tuple[bool, str]:
    """(passed, the line to print) from the validation report cdk-nag writes into the assembly."""
    if not (assembly / "validation-report.json").is_file():
        return False, f"cdk-nag: no validation report in {assembly}: the AwsSolutions checks did not run"
    violations = failed_validations(assembly)
    if violations:
        return False, f"cdk-nag: {len(violations)} unacknowledged AwsSolutions findings (listed above)"
    return True, "cdk-nag: AwsSolutions checks passed, 0 unacknowledged findings"


def format_table(stacks: list[StackSummary]) -> str:
    """One row per stack, grouped by business unit with a subtotal each, then the total."""
    headers = (
        "construct path (cdk CLI)",
        "stack",
        "account",
        "region",
        "business unit",
        "stage",
        "resources",
        "markers",
    )
    numeric = headers.index("resources")

    def row(s: StackSummary) -> tuple[str, ...]:
        return (
            s.path,
            s.name,
            s.account,
            s.region,
            s.business_unit,
            s.stage,
            str(s.resources),
            " ".join(s.markers),
        )

    groups: dict[str, list[StackSummary]] = {}
    for stack in stacks:
        groups.setdefault(stack.business_unit, []).append(stack)
    body: list[tuple[str, ...] | None] = []  # None: a separator line
    for business_unit, members in groups.items():
        body.extend(row(s) for s in members)
        markers = sorted({m for s in members for m in s.markers})
        subtotal = (
            f"subtotal {business_unit} ({len(members)} stacks)",
            "",
            "",
            "",
            "",
            "",
            str(sum(s.resources for s in members)),
            " ".join(markers),
        )
        body.extend([subtotal, None])
    total = (f"TOTAL ({len(stacks)} stacks)", "", "", "", "", "", str(sum(s.resources for s in stacks)), "")
    rows = [r for r in body if r is not None] + [total]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.rjust(w) if i == numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    separator = "  ".join("-" * w for w in widths)
    lines = [line(headers), separator]
    lines.extend(separator if r is None else line(r) for r in body)
    lines.append(line(total))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "assembly", nargs="?", default="cdk.out", help="cloud assembly directory (default: cdk.out)"
    )
    assembly = Path(parser.parse_args(argv).assembly)
    if not (assembly / "manifest.json").is_file():
        print(f"no cloud assembly at {assembly}: run the synth first", file=sys.stderr)
        return 1
    nag_passed, nag = nag_line(assembly)
    if not nag_passed:
        violations = failed_validations(assembly)
        if violations:
            print(
                "cdk-nag: unacknowledged findings:\n" + "\n".join(f"  - {v}" for v in violations),
                file=sys.stderr,
            )
        print(nag, file=sys.stderr)
        return 1
    stacks = sorted(
        iter_stacks(assembly), key=lambda s: (s.business_unit != "shared", s.business_unit, s.path)
    )
    status, lint_output, linted = run_cfn_lint_cached(
        [s.template for s in stacks], workers=max(os.cpu_count() or 1, 1)
    )
    print(format_table(stacks))
    largest = max(stacks, key=lambda s: s.resources)
    print(f"\nlargest stack: {largest.name} ({largest.resources} resources; CloudFormation allows 500)")
    for stack in stacks:
        if stack.resources > RESOURCE_WARNING_THRESHOLD:
            print(f"WARNING: {stack.name} has {stack.resources} resources (> {RESOURCE_WARNING_THRESHOLD})")
    print("markers: GPU = GPU instances (on demand or running); always-on = billed while idle")
    print(f"\n{nag}")
    if lint_output.strip():
        print("\ncfn-lint findings:\n" + lint_output.rstrip())
    if status & CFN_LINT_ERROR_BIT:
        print("\ncfn-lint: FAILED (errors above)", file=sys.stderr)
        return 1
    cached = len(stacks) - linted
    print(
        f"cfn-lint: no errors in {len(stacks)} templates ({linted} linted now, {cached} unchanged since a cached run)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
