"""Build each Lambda service's third-party wheels once per requirements hash and pack them as the layer zip
(see stacks/blocks/lambda_deps.py)."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from stacks.blocks.lambda_deps import (
    COMPLETE_MARKER,
    DEPS_CACHE,
    LAMBDA_PLATFORMS,
    LAMBDA_PYTHON_VERSION,
    LAMBDAS_DIR,
    deps_dir,
    pack_layer,
    requirements_file,
)
from tools.deps_cache import build_once


def build(service: str) -> Path | None:
    target = deps_dir(service)
    if target is None:
        return None
    if not (target / COMPLETE_MARKER).is_file():
        # a zip packed from an earlier build of this folder would no longer describe it
        for packed in (target.with_name(f"{target.name}.zip"), target.with_name(f"{target.name}.zip.sha256")):
            packed.unlink(missing_ok=True)
    build_once(
        target, cache=DEPS_CACHE, marker=COMPLETE_MARKER, fill=lambda staging: _install(service, staging)
    )
    pack_layer(target)
    return target


def _install(service: str, staging: Path) -> None:
    subprocess.run(  # noqa: S603 - fixed interpreter and arguments
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--no-compile", "--only-binary=:all:", "--implementation", "cp",
            *(arg for platform in LAMBDA_PLATFORMS for arg in ("--platform", platform)),
            "--python-version", LAMBDA_PYTHON_VERSION,
            "--target", str(staging / "python"), "-r", str(requirements_file(service)),
        ],
        check=True,
    )  # fmt: skip
    # boto3/botocore come with the runtime; tests and caches only add weight.
    for pattern in ("boto3", "botocore", "s3transfer", "**/__pycache__", "**/tests"):
        for path in (staging / "python").glob(pattern):
            shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0]).parse_args(argv)
    services = sorted(p.parent.name for p in LAMBDAS_DIR.glob("*/requirements.txt"))
    for service in services:
        folder = build(service)
        print(
            f"lambda deps: {service} -> {folder.relative_to(DEPS_CACHE.parent.parent) if folder else 'none'}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
