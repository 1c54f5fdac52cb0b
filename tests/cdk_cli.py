"""Run the pinned CDK CLI (package.json) the way `make` does: node_modules/.bin first on PATH."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
NODE_BIN = REPO_ROOT / "node_modules" / ".bin"


def cli_env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def cdk(*args: str, cwd: Path = REPO_ROOT, timeout: int = 180) -> subprocess.CompletedProcess[str]:
    """`npx --no-install cdk ARGS` with no extra flags: cdk.json alone must keep it quiet and offline."""
    return subprocess.run(
        ["npx", "--no-install", "cdk", *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def listed_stacks(assembly: Path, *patterns: str) -> list[str]:
    """Construct paths `cdk list` selects from a synthesized assembly (what deploy/diff/destroy would act on)."""
    result = cdk("list", "--app", str(assembly), *patterns)
    if result.returncode != 0:
        raise AssertionError(f"cdk list {' '.join(patterns)} failed: {result.stderr.strip()}")
    return [line.split(" (")[0] for line in result.stdout.splitlines() if line.strip()]
