"""The serving package of an adapter for inference components (issue 17): built from the registered,
checksum-verified artifact by `serving_runtime.packaging.build_serving_package` and installed in its place.

The package holds only what LMI loads (adapter_config.json, adapter_model.safetensors, tokenizer files) plus
`manifest.json` (the source artifact's SHA-256 and each file's); it is checked against the base component's
LoRA limits (`serving.lmi`) before any component is created. The object's metadata carries both digests, so
what serves can be traced to the registered artifact. Pure Python: no torch in the deployer's package.
Built and uploaded from files in the function's /tmp, never whole in memory (docs/perf/serving.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from boto3.s3.transfer import TransferConfig
from serving_runtime.lmi import LmiSettings
from serving_runtime.packaging import PackageInfo, write_serving_package

INFERENCE_COMPONENTS = "inference_components"
UPLOAD_CONFIG = TransferConfig(multipart_chunksize=8 * 1024 * 1024, max_concurrency=4)


@dataclass(frozen=True)
class BuiltPackage:
    path: Path  # the package's tar.gz in the work folder
    info: PackageInfo


def package_adapter(
    artifact: IO[bytes], *, workdir: Path, lmi: LmiSettings, source: str | None, source_sha256: str
) -> BuiltPackage:
    """Validate the adapter (a verified model.tar.gz file) against what the base component serves and write
    its package into `workdir` (ValueError if not servable)."""
    path = workdir / "serving-package.tar.gz"
    members = workdir / "members"
    members.mkdir()
    with path.open("wb") as out:
        info = write_serving_package(
            artifact,
            out,
            workdir=members,
            mode=INFERENCE_COMPONENTS,
            max_lora_rank=lmi.max_lora_rank,
            served_target_modules=lmi.lora_target_modules,
            source=source,
            source_sha256=source_sha256,
        )
    return BuiltPackage(path, info)


def upload_package(s3: Any, built: BuiltPackage, *, bucket: str, key: str) -> None:
    # Multipart from the file, a few parts in flight: memory stays bounded whatever the package's size.
    s3.upload_file(
        str(built.path),
        bucket,
        key,
        ExtraArgs={
            "ContentType": "application/gzip",
            "Metadata": {"sha256": built.info.sha256, "source-sha256": built.info.manifest["source_sha256"]},
        },
        Config=UPLOAD_CONFIG,
    )
