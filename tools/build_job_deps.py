"""Download the fine-tuning jobs' wheels once per requirements hash (see stacks/blocks/job_deps.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
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


def build() -> Path:
    target = job_deps_dir()
    if (target / COMPLETE_MARKER).is_file():
        return target
    JOB_DEPS_CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=JOB_DEPS_CACHE) as staging:
        subprocess.run(  # noqa: S603 - fixed interpreter and arguments
            [
                sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                "--only-binary=:all:", "--implementation", "cp",
                *(arg for platform in JOB_PLATFORMS for arg in ("--platform", platform)),
                "--python-version", JOB_PYTHON_VERSION,
                "--dest", str(Path(staging) / WHEELS), "-r", str(REQUIREMENTS),
            ],
            check=True,
        )  # fmt: skip
        shutil.copy(REQUIREMENTS, Path(staging) / REQUIREMENTS.name)
        (Path(staging) / COMPLETE_MARKER).touch()
        if target.exists():
            shutil.rmtree(target)
        Path(staging).rename(target)
        Path(staging).mkdir()  # TemporaryDirectory cleans up the (now empty) path it created
    return target


def main() -> int:
    folder = build()
    wheels = sorted(p.name for p in (folder / WHEELS).glob("*.whl"))
    print(f"job deps: {len(wheels)} wheels -> {folder.relative_to(JOB_DEPS_CACHE.parent.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
