"""The serving package of an adapter for inference components (issue 17): built from the registered,
checksum-verified artifact by `serving_runtime.packaging.build_serving_package` and installed in its place.

The package holds only what LMI loads (adapter_config.json, adapter_model.safetensors, tokenizer files) plus
`manifest.json` (the source artifact's SHA-256 and each file's); it is checked against the base component's
LoRA limits (`serving.lmi`) before any component is created. The object's metadata carries both digests, so
what serves can be traced to the registered artifact. Pure Python: no torch in the deployer's package.
"""

from __future__ import annotations

from typing import Any

from serving_runtime.lmi import LmiSettings
from serving_runtime.packaging import ServingPackage, build_serving_package

INFERENCE_COMPONENTS = "inference_components"


def package_adapter(artifact: bytes, *, lmi: LmiSettings, source: str | None) -> ServingPackage:
    """Validate the adapter against what the base component serves and build its package (ValueError if not)."""
    return build_serving_package(
        artifact,
        mode=INFERENCE_COMPONENTS,
        max_lora_rank=lmi.max_lora_rank,
        served_target_modules=lmi.lora_target_modules,
        source=source,
    )


def upload_package(s3: Any, built: ServingPackage, *, bucket: str, key: str) -> None:
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=built.archive,
        ContentType="application/gzip",
        Metadata={"sha256": built.sha256, "source-sha256": built.manifest["source_sha256"]},
    )
