"""Summarize a cloud assembly and gate it with cfn-lint.

Reads every stack in `cdk.out` (nested stage assemblies included), runs cfn-lint over all templates in
parallel, and prints one table: stack, account, region, business unit, stage, resource count, plus totals.
Exits 1 when cfn-lint reports an error (cdk-nag errors already stop `cdk synth` itself).

    python -m tools.synth_report [cdk.out]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from stacks.blocks.nag import failed_validations

# cfn-lint exit status is a bit mask: 2 = error, 4 = warning, 8 = informational.
CFN_LINT_ERROR_BIT = 2
# CloudFormation's hard limit is 500 resources per stack; warn well before it.
RESOURCE_WARNING_THRESHOLD = 250


@dataclass(frozen=True)
class StackSummary:
    name: str
    account: str
    region: str
    business_unit: str
    stage: str
    resources: int
    template: Path


def iter_stacks(assembly_dir: Path) -> Iterator[StackSummary]:
    manifest = json.loads((assembly_dir / "manifest.json").read_text(encoding="utf-8"))
    for artifact_id, artifact in manifest.get("artifacts", {}).items():
        properties = artifact.get("properties", {})
        if artifact["type"] == "cdk:cloud-assembly":
            yield from iter_stacks(assembly_dir / properties["directoryName"])
        elif artifact["type"] == "aws:cloudformation:stack":
            template_path = assembly_dir / properties["templateFile"]
            template = json.loads(template_path.read_text(encoding="utf-8"))
            _, _, location = artifact["environment"].partition("aws://")
            account, _, region = location.partition("/")
            tags = properties.get("tags", {})
            yield StackSummary(
                name=properties.get("stackName", artifact_id),
                account=account,
                region=region,
                business_unit=tags.get("BusinessUnit", "-"),
                stage=tags.get("Stage", "-"),
                resources=len(template.get("Resources", {})),
                template=template_path,
            )


def run_cfn_lint(templates: list[Path], workers: int) -> tuple[int, str]:
    """cfn-lint costs ~0.35 s per template in one process: split the templates over `workers` processes."""
    if not templates:
        return 0, ""
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    chunks = [templates[i::workers] for i in range(workers) if templates[i::workers]]

    def lint(chunk: list[Path]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - fixed executable, paths from our own assembly
            [str(cfn_lint), "--format", "parseable", "--", *map(str, chunk)],
            capture_output=True,
            text=True,
            check=False,
        )

    with ThreadPoolExecutor(max_workers=len(chunks)) as pool:
        results = list(pool.map(lint, chunks))
    status = 0
    for result in results:
        status |= result.returncode
    return status, "".join(r.stdout + r.stderr for r in results)


def format_table(stacks: list[StackSummary]) -> str:
    headers = ("stack", "account", "region", "business unit", "stage", "resources")
    rows = [(s.name, s.account, s.region, s.business_unit, s.stage, str(s.resources)) for s in stacks]
    total_resources = sum(s.resources for s in stacks)
    rows.append((f"TOTAL ({len(stacks)} stacks)", "", "", "", "", str(total_resources)))
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.rjust(w) if i == 5 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    separator = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), separator, *(line(r) for r in rows[:-1]), separator, line(rows[-1])])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "assembly", nargs="?", default="cdk.out", help="cloud assembly directory (default: cdk.out)"
    )
    assembly = Path(parser.parse_args(argv).assembly)
    if not (assembly / "manifest.json").is_file():
        print(f"no cloud assembly at {assembly}: run the synth first", file=sys.stderr)
        return 1
    violations = failed_validations(assembly)
    if violations:
        print(
            "cdk-nag: unacknowledged findings:\n" + "\n".join(f"  - {v}" for v in violations), file=sys.stderr
        )
        return 1
    stacks = sorted(iter_stacks(assembly), key=lambda s: (s.business_unit != "shared", s.name))
    status, lint_output = run_cfn_lint([s.template for s in stacks], workers=max(os.cpu_count() or 1, 1))
    print(format_table(stacks))
    largest = max(stacks, key=lambda s: s.resources)
    print(f"\nlargest stack: {largest.name} ({largest.resources} resources; CloudFormation allows 500)")
    for stack in stacks:
        if stack.resources > RESOURCE_WARNING_THRESHOLD:
            print(f"WARNING: {stack.name} has {stack.resources} resources (> {RESOURCE_WARNING_THRESHOLD})")
    if lint_output.strip():
        print("\ncfn-lint findings:\n" + lint_output.rstrip())
    if status & CFN_LINT_ERROR_BIT:
        print("\ncfn-lint: FAILED (errors above)", file=sys.stderr)
        return 1
    print(f"\ncfn-lint: no errors in {len(stacks)} templates")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
