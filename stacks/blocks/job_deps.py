"""Where the fine-tuning jobs' wheels live, keyed by the requirements and the image's Python version.

`tools/build_job_deps.py` (run by `make lambda-deps`) downloads `lambdas/fine_tuning_jobs/job-requirements.txt`
and its dependencies as wheels for the training image's Python into `.build/job-deps/<hash>/`; synth only
packages that folder as an asset and never installs anything. The jobs install from it with
`pip install --no-index` (they run network-isolated): packages the image already has are kept.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = REPO_ROOT / "lambdas" / "fine_tuning_jobs" / "job-requirements.txt"
JOB_DEPS_CACHE = REPO_ROOT / ".build" / "job-deps"
# The training image's Python (the default image's tag says py312; stacks/settings/fine_tuning.py checks it).
JOB_PYTHON_VERSION = "3.12"
JOB_PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")
COMPLETE_MARKER = ".complete"
WHEELS = "wheels"


class MissingJobDependenciesError(RuntimeError):
    pass


def job_deps_dir() -> Path:
    digest = hashlib.sha256(f"{JOB_PYTHON_VERSION}|{','.join(JOB_PLATFORMS)}|".encode())
    digest.update(REQUIREMENTS.read_bytes())
    return JOB_DEPS_CACHE / digest.hexdigest()[:16]


def built_job_deps_dir() -> Path:
    folder = job_deps_dir()
    if not (folder / COMPLETE_MARKER).is_file():
        raise MissingJobDependenciesError(
            "lambdas/fine_tuning_jobs/job-requirements.txt is not downloaded for the training image yet: "
            "run `make lambda-deps`"
        )
    return folder
