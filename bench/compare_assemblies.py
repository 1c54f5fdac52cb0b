"""Are two cloud assemblies (cdk.out folders) the same? For refactorings that must not change what deploys.

Compares every file of both folders byte for byte: templates, manifests, asset folders, the cdk-nag
validation report. One thing differs between any two synths of the same code and is left out: the jsii
kernel's temporary folder name inside the construct stack traces of `*.metadata.json`
(`/tmp/jsii-kernel-AbC123/...`). Prints one line per difference; exit code 0 when identical, 1 when not,
2 on bad arguments.

    .venv/bin/python bench/compare_assemblies.py BEFORE_CDK_OUT AFTER_CDK_OUT
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

_KERNEL_DIR = re.compile(rb"jsii-kernel-[A-Za-z0-9]+")


def _normalized(path: Path) -> bytes:
    content = path.read_bytes()
    if path.name.endswith(".metadata.json"):
        return _KERNEL_DIR.sub(b"jsii-kernel-*", content)
    return content


def assembly_differences(before: Path, after: Path) -> list[str]:
    """One line per file that is missing on one side or whose content differs (relative paths, sorted)."""
    files_before = {p.relative_to(before) for p in before.rglob("*") if p.is_file()}
    files_after = {p.relative_to(after) for p in after.rglob("*") if p.is_file()}
    differences = [f"only in {before}: {p}" for p in sorted(files_before - files_after)]
    differences += [f"only in {after}: {p}" for p in sorted(files_after - files_before)]
    differences += [
        f"differs: {p}"
        for p in sorted(files_before & files_after)
        if _normalized(before / p) != _normalized(after / p)
    ]
    return differences


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("before", type=Path, help="the first cloud assembly folder")
    parser.add_argument("after", type=Path, help="the second cloud assembly folder")
    args = parser.parse_args(argv)
    for name, folder in (("before", args.before), ("after", args.after)):
        if not (folder / "manifest.json").is_file():
            parser.error(f"{name}: {folder} is not a cloud assembly (no manifest.json)")
    differences = assembly_differences(args.before, args.after)
    for line in differences:
        print(line)
    files = sum(1 for p in args.after.rglob("*") if p.is_file())
    print(
        f"{'identical' if not differences else f'{len(differences)} differences'}: "
        f"{args.before} vs {args.after} ({files} files)"
    )
    return 1 if differences else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
