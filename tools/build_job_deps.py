"""Download the fine-tuning jobs' wheels once per requirements hash (see stacks/blocks/job_deps.py)."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from stacks.blocks.job_deps import (
    COMPLETE_MARKER,
    JOB_DEPS_CACHE,
    JOB_PLATFORMS,
    JOB_PYTHON_VERSION,
    REQUIREMENTS,
    WHEELS,
    job_deps_dir,
)
from tools.deps_cache import build_once


def build() -> Path:
    return build_once(job_deps_dir(), cache=JOB_DEPS_CACHE, marker=COMPLETE_MARKER, fill=_download)


def _download(staging: Path) -> None:
    subprocess.run(  # noqa: S603 - fixed interpreter and arguments
        [
            sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--only-binary=:all:", "--implementation", "cp",
            *(arg for platform in JOB_PLATFORMS for arg in ("--platform", platform)),
            "--python-version", JOB_PYTHON_VERSION,
            "--dest", str(staging / WHEELS), "-r", str(REQUIREMENTS),
        ],
        check=True,
    )  # fmt: skip
    shutil.copy(REQUIREMENTS, staging / REQUIREMENTS.name)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0]).parse_args(argv)
    folder = build()
    wheels = sorted(p.name for p in (folder / WHEELS).glob("*.whl"))
    print(f"job deps: {len(wheels)} wheels -> {folder.relative_to(JOB_DEPS_CACHE.parent.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
