"""Turn the registered artifact into what the serving mode loads: `build_serving_package`.

The fine-tuning pipeline registers model.tar.gz with peft's adapter layout (adapter_config.json,
adapter_model.safetensors, tokenizer files). For inference components the LMI container loads an adapter
from an archive holding those files at its root; this function checks the adapter against what the base
component serves (rank, target modules, tensor names and shapes, read from the safetensors header without
torch), drops what the runtime does not read, and writes a deterministic archive with a `manifest.json` of
SHA-256 checksums, so the same input always gives the same package and checksum.

Multi-model endpoints are refused (`ServingModeError`): see docs/serving.md, "Serving runtime", for why.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import struct
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from serving_runtime.adapter_format import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    TOKENIZER_FILES,
    AdapterFormatError,
    AdapterSpec,
    lora_weight_key,
    parse_adapter_config,
)

MANIFEST = "manifest.json"
MAX_MEMBER_BYTES = 2 * 1024**3  # an adapter of a 70B model at rank 256 stays well below this
MULTI_MODEL_REFUSAL = (
    "multi_model_endpoint cannot serve the fine-tuning pipeline's LoRA adapters: the GPU "
    "multi-model container (Triton) loads each target model as a complete, separate model, so every tenant "
    "would need its own copy of the base weights (an adapter is about 1 % of them) and no batch could mix "
    "tenants; use mode inference_components"
)


class ServingModeError(ValueError):
    """The serving mode cannot serve this kind of artifact."""


@dataclass(frozen=True)
class ServingPackage:
    archive: bytes  # tar.gz: adapter files at the root plus manifest.json
    manifest: dict[str, Any]
    spec: AdapterSpec
    dropped: list[str] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.archive).hexdigest()


def safetensors_header(data: bytes) -> dict[str, Any]:
    """The JSON header of a safetensors file: tensor name -> {dtype, shape, data_offsets}."""
    if len(data) < 8:
        raise AdapterFormatError(f"{ADAPTER_WEIGHTS}: shorter than a safetensors header")
    (length,) = struct.unpack("<Q", data[:8])
    if length > len(data) - 8:
        raise AdapterFormatError(f"{ADAPTER_WEIGHTS}: header length {length} exceeds the file")
    try:
        header = json.loads(data[8 : 8 + length])
    except ValueError as exc:
        raise AdapterFormatError(f"{ADAPTER_WEIGHTS}: header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise AdapterFormatError(f"{ADAPTER_WEIGHTS}: header is not a JSON object")
    header.pop("__metadata__", None)
    return header


def check_weights(header: dict[str, Any], spec: AdapterSpec) -> int:
    """Every tensor is a lora_A [r, in] / lora_B [out, r] pair of a targeted module; returns the pair count."""
    modules: dict[str, dict[str, list[int]]] = {}
    for key, info in header.items():
        module, factor = lora_weight_key(key)
        if module.rpartition(".")[2] not in spec.target_modules:
            raise AdapterFormatError(f"{ADAPTER_WEIGHTS}: {key!r} is outside {ADAPTER_CONFIG}.target_modules")
        shape = info.get("shape") if isinstance(info, dict) else None
        if not isinstance(shape, list) or len(shape) != 2:
            raise AdapterFormatError(f"{ADAPTER_WEIGHTS}: {key!r} is not a matrix")
        modules.setdefault(module, {})[factor] = shape
    if not modules:
        raise AdapterFormatError(f"{ADAPTER_WEIGHTS}: holds no LoRA weights")
    for module, factors in modules.items():
        if set(factors) != {"A", "B"}:
            raise AdapterFormatError(f"{ADAPTER_WEIGHTS}: {module} lacks lora_A or lora_B")
        if factors["A"][0] != spec.rank or factors["B"][1] != spec.rank:
            raise AdapterFormatError(
                f"{ADAPTER_WEIGHTS}: {module} has rank {factors['A'][0]}/{factors['B'][1]}, "
                f"{ADAPTER_CONFIG}.r says {spec.rank}"
            )
    return len(modules)


def read_artifact(artifact: bytes) -> dict[str, bytes]:
    """Regular files of a model.tar.gz by name; links, devices and paths that leave the archive are refused."""
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(artifact), mode="r:*") as archive:
            for member in archive.getmembers():
                name = member.name.removeprefix("./")
                if member.isdir() or name in ("", "."):
                    continue
                if not member.isfile():
                    raise AdapterFormatError(f"artifact: {name!r} is not a regular file")
                if name.startswith("/") or ".." in name.split("/"):
                    raise AdapterFormatError(f"artifact: {name!r} leaves the archive")
                if member.size > MAX_MEMBER_BYTES:
                    raise AdapterFormatError(f"artifact: {name!r} is larger than {MAX_MEMBER_BYTES} bytes")
                extracted = archive.extractfile(member)
                assert extracted is not None  # a regular file always has content
                files[name] = extracted.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise AdapterFormatError(f"artifact: not a readable tar archive ({exc})") from None
    return files


def _archive(files: Iterable[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    # mtime 0, fixed owner and mode, sorted names: the same files always give the same bytes.
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            archive.addfile(info, io.BytesIO(data))
    return gzip.compress(buffer.getvalue(), mtime=0)


def build_serving_package(
    artifact: bytes,
    *,
    mode: str,
    max_lora_rank: int,
    served_target_modules: Iterable[str],
    source: str | None = None,
) -> ServingPackage:
    """The package the deployer installs for `mode` from the registered artifact (model.tar.gz bytes).

    `max_lora_rank` and `served_target_modules` describe the base component (LMI `max_lora_rank`, the
    projections LoRA is applied to); `source` (e.g. the artifact's S3 URL) is recorded in the manifest.
    """
    if mode == "multi_model_endpoint":
        raise ServingModeError(f"serving.mode: {MULTI_MODEL_REFUSAL}")
    if mode != "inference_components":
        raise ServingModeError(f"serving.mode: unknown mode {mode!r}")
    files = read_artifact(artifact)
    for required in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if required not in files:
            raise AdapterFormatError(
                f"artifact: {required} missing (found: {', '.join(sorted(files)) or 'nothing'})"
            )
    try:
        raw_config = json.loads(files[ADAPTER_CONFIG])
    except ValueError as exc:
        raise AdapterFormatError(f"{ADAPTER_CONFIG}: not JSON ({exc})") from None
    spec = parse_adapter_config(raw_config)
    if spec.rank > max_lora_rank:
        raise AdapterFormatError(
            f"{ADAPTER_CONFIG}.r: rank {spec.rank} is above the endpoint's max_lora_rank {max_lora_rank}"
        )
    unserved = sorted(set(spec.target_modules) - set(served_target_modules))
    if unserved:
        raise AdapterFormatError(
            f"{ADAPTER_CONFIG}.target_modules: {unserved} are not served by the base component"
        )
    pairs = check_weights(safetensors_header(files[ADAPTER_WEIGHTS]), spec)
    kept = {n: d for n, d in files.items() if n in (ADAPTER_CONFIG, ADAPTER_WEIGHTS) or n in TOKENIZER_FILES}
    manifest: dict[str, Any] = {
        "format": "peft-lora",
        "rank": spec.rank,
        "lora_alpha": spec.alpha,
        "target_modules": list(spec.target_modules),
        "lora_layers": pairs,
        "base_model": spec.base_model,
        "source": source,
        "source_sha256": hashlib.sha256(artifact).hexdigest(),
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(kept.items())},
    }
    archive = _archive([*kept.items(), (MANIFEST, json.dumps(manifest, sort_keys=True, indent=1).encode())])
    return ServingPackage(archive, manifest, spec, dropped=sorted(set(files) - set(kept)))
