"""Where a Lambda function's third-party wheels live, keyed by the hash of its requirements.

`tools/build_lambda_deps.py` (run by `make`) installs `lambdas/<service>/requirements.txt` for the Lambda
runtime's platform into `.build/lambda-deps/<service>-<hash>/python` and packs that folder into a layer zip
beside it; synth never installs anything and stages the zip as one file (a folder asset would be walked,
hashed and copied file by file into every cdk.out: about 2,700 files and 100 MB for the default config).
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parents[2]
LAMBDAS_DIR = REPO_ROOT / "lambdas"
DEPS_CACHE = REPO_ROOT / ".build" / "lambda-deps"

# The Lambda runtime, not the local interpreter, decides which wheels fit.
LAMBDA_PYTHON_VERSION = "3.14"
# numpy and others publish their newest wheels only as manylinux_2_28; Lambda (Amazon Linux 2023) runs both.
LAMBDA_PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")
COMPLETE_MARKER = ".complete"
# Zip entries carry no build time, so the same folder always packs into the same bytes.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


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


@dataclass(frozen=True)
class LayerPackage:
    """A built layer folder packed as a zip, and the hash of what it contains (not of the zip's bytes, which
    depend on the zlib version), used as the asset hash so synth neither walks nor hashes the folder."""

    zip_file: Path
    content_hash: str


def layer_package(service: str) -> LayerPackage | None:
    """The layer zip of `service`'s third-party wheels (packed now if `make lambda-deps` predates packing)."""
    folder = built_deps_dir(service)
    return None if folder is None else pack_layer(folder)


@functools.cache
def pack_layer(folder: Path) -> LayerPackage:
    """`folder` (a complete layer folder, without its marker) as `<folder>.zip`, packed once and reused.

    The hash is written beside the zip before the zip is renamed into place, so a zip that exists always has
    its hash; concurrent packers write the same bytes and the last rename wins."""
    zip_file = folder.with_name(f"{folder.name}.zip")
    hash_file = folder.with_name(f"{folder.name}.zip.sha256")
    if zip_file.is_file() and hash_file.is_file():
        return LayerPackage(zip_file, hash_file.read_text(encoding="utf-8").strip())
    with tempfile.NamedTemporaryFile(dir=folder.parent, suffix=".zip.tmp", delete=False) as staging:
        staged = Path(staging.name)
        try:
            content_hash = write_deterministic_zip(folder, staging, exclude=frozenset({COMPLETE_MARKER}))
        except BaseException:
            staged.unlink()
            raise
    hash_staging = staged.with_name(f"{staged.name}.sha256")
    hash_staging.write_text(content_hash + "\n", encoding="utf-8")
    hash_staging.replace(hash_file)
    staged.chmod(0o644)  # a temporary file is private to its writer
    staged.replace(zip_file)
    return LayerPackage(zip_file, content_hash)


def write_deterministic_zip(folder: Path, target: IO[bytes], *, exclude: frozenset[str] = frozenset()) -> str:
    """Write every file and folder below `folder` (names in `exclude` left out at any depth) into the zip
    `target`, in sorted order with fixed timestamps and the files' permission bits; return the sha256 of
    the packed entries' paths, permission bits and contents."""
    content = hashlib.sha256()
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for directory, subdirectories, files in os.walk(folder):
            subdirectories[:] = sorted(d for d in subdirectories if d not in exclude)
            here = Path(directory)
            for name in subdirectories:
                if (here / name).is_symlink():
                    raise ValueError(f"{here / name}: a layer folder must not contain linked folders")
                entry = _entry(
                    f"{(here / name).relative_to(folder).as_posix()}/", (here / name).stat().st_mode
                )
                archive.writestr(entry, b"")
                content.update(f"dir\0{entry.filename}\0{entry.external_attr >> 16:o}\0".encode())
            for name in sorted(f for f in files if f not in exclude):
                path = here / name
                data = path.read_bytes()
                entry = _entry(path.relative_to(folder).as_posix(), path.stat().st_mode)
                archive.writestr(entry, data)
                content.update(
                    f"file\0{entry.filename}\0{entry.external_attr >> 16:o}\0{len(data)}\0".encode()
                )
                content.update(data)
    return content.hexdigest()


def _entry(name: str, mode: int) -> zipfile.ZipInfo:
    entry = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
    kind = stat.S_IFDIR if name.endswith("/") else stat.S_IFREG
    # high bits: Unix type and permissions; 0x10: the MS-DOS folder flag
    entry.external_attr = (kind | stat.S_IMODE(mode)) << 16 | (0x10 if kind == stat.S_IFDIR else 0)
    entry.compress_type = zipfile.ZIP_STORED if kind == stat.S_IFDIR else zipfile.ZIP_DEFLATED
    entry.create_system = 3  # Unix, so the permission bits are read back
    return entry
