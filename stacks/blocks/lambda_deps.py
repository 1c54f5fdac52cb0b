"""Where a Lambda function's third-party wheels live, keyed by the hash of its requirements.

`tools/build_lambda_deps.py` (run by `make`) installs `lambdas/<service>/requirements.txt` for the Lambda
runtime's platform into `.build/lambda-deps/<service>-<hash>/python`; synth only packages that folder as a
layer and never installs anything.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
LAMBDAS_DIR = REPO_ROOT / "lambdas"
DEPS_CACHE = REPO_ROOT / ".build" / "lambda-deps"

# The Lambda runtime, not the local interpreter, decides which wheels fit.
LAMBDA_PYTHON_VERSION = "3.14"
# numpy and others publish their newest wheels only as manylinux_2_28; Lambda (Amazon Linux 2023) runs both.
LAMBDA_PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")
COMPLETE_MARKER = ".complete"


def requirements_file(service: str) -> Path:
    return LAMBDAS_DIR / service / "requirements.txt"


def deps_dir(service: str) -> Path | None:
    """The layer folder (containing `python/`) for `service`, or None when it needs no third-party wheels."""
    requirements = requirements_file(service)
    if not requirements.is_file():
        return None
    digest = hashlib.sha256()
    digest.update(f"{LAMBDA_PYTHON_VERSION}|{','.join(LAMBDA_PLATFORMS)}|".encode())
    digest.update(requirements.read_bytes())
    return DEPS_CACHE / f"{service}-{digest.hexdigest()[:16]}"


class MissingLambdaDependenciesError(RuntimeError):
    pass


def built_deps_dir(service: str) -> Path | None:
    folder = deps_dir(service)
    if folder is not None and not (folder / COMPLETE_MARKER).is_file():
        raise MissingLambdaDependenciesError(
            f"lambdas/{service}/requirements.txt is not built for the Lambda runtime yet: run `make lambda-deps`"
        )
    return folder
