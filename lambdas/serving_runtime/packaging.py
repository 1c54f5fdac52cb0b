"""Turn the registered artifact into what the serving mode loads: `build_serving_package`.

The fine-tuning pipeline registers model.tar.gz with peft's adapter layout (adapter_config.json,
adapter_model.safetensors, tokenizer files). For inference components the LMI container loads an adapter
from an archive holding those files at its root; this function checks the adapter against what the base
component serves (rank, target modules, tensor names and shapes, read from the safetensors header without
torch), drops what the runtime does not read, and writes a deterministic archive with a `manifest.json` of
SHA-256 checksums, so the same input always gives the same package and checksum.

`write_serving_package` streams: it reads the artifact from a file, extracts each member to a work folder in
chunks (hashing it on the way), reads only the safetensors header, and writes the package to a file, so its
memory does not grow with the adapter's size (docs/perf/serving.md). `build_serving_package` is the same on
bytes in memory, for small artifacts and tests.

Multi-model endpoints are refused (`ServingModeError`): see docs/serving.md, "Serving runtime", for why.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import struct
import tarfile
import tempfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from common.checksums import stream_sha256
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
CHUNK_BYTES = 1024 * 1024  # what is held in memory at once while copying and hashing
GZIP_LEVEL = 9
MULTI_MODEL_REFUSAL = (
    "multi_model_endpoint cannot serve the fine-tuning pipeline's LoRA adapters: the GPU "
    "multi-model container (Triton) loads each target model as a complete, separate model, so every tenant "
    "would need its own copy of the base weights (an adapter is about 1 % of them) and no batch could mix "
    "tenants; use mode inference_components"
)


class ServingModeError(ValueError):
    """The serving mode cannot serve this kind of artifact."""


@dataclass(frozen=True)
class PackageInfo:
    """What `write_serving_package` wrote: the package's digest and manifest, the adapter's spec."""

    sha256: str
    manifest: dict[str, Any]
    spec: AdapterSpec
    dropped: list[str] = field(default_factory=list)


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
    return read_safetensors_header(io.BytesIO(data), len(data))


def read_safetensors_header(stream: IO[bytes], size: int) -> dict[str, Any]:
    """The header of a safetensors file of `size` bytes, reading only the header from `stream`."""
    if size < 8:
        raise AdapterFormatError(f"{ADAPTER_WEIGHTS}: shorter than a safetensors header")
    (length,) = struct.unpack("<Q", stream.read(8))
    if length > size - 8:
        raise AdapterFormatError(f"{ADAPTER_WEIGHTS}: header length {length} exceeds the file")
    try:
        header = json.loads(stream.read(length))
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


@dataclass(frozen=True)
class Extracted:
    """One regular file of the artifact, copied to the work folder."""

    path: Path
    size: int
    sha256: str


def _checked_members(archive: tarfile.TarFile) -> Iterable[tuple[str, tarfile.TarInfo]]:
    """Regular files by name; links, devices and paths that leave the archive are refused."""
    for member in archive:
        name = member.name.removeprefix("./")
        if member.isdir() or name in ("", "."):
            continue
        if not member.isfile():
            raise AdapterFormatError(f"artifact: {name!r} is not a regular file")
        if name.startswith("/") or ".." in name.split("/"):
            raise AdapterFormatError(f"artifact: {name!r} leaves the archive")
        if member.size > MAX_MEMBER_BYTES:
            raise AdapterFormatError(f"artifact: {name!r} is larger than {MAX_MEMBER_BYTES} bytes")
        yield name, member


def read_artifact(artifact: bytes) -> dict[str, bytes]:
    """Regular files of a model.tar.gz (in memory) by name."""
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(artifact), mode="r:*") as archive:
            for name, member in _checked_members(archive):
                extracted = archive.extractfile(member)
                assert extracted is not None  # a regular file always has content
                files[name] = extracted.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise AdapterFormatError(f"artifact: not a readable tar archive ({exc})") from None
    return files


def extract_artifact(artifact: IO[bytes], workdir: Path) -> dict[str, Extracted]:
    """Regular files of a model.tar.gz (a file) copied into `workdir` chunk by chunk, hashed on the way.

    Members are stored under their index, never their name, so no name can reach outside `workdir`."""
    files: dict[str, Extracted] = {}
    try:
        with tarfile.open(fileobj=artifact, mode="r:*") as archive:
            for index, (name, member) in enumerate(_checked_members(archive)):
                source = archive.extractfile(member)
                assert source is not None  # a regular file always has content
                path = workdir / f"member-{index}"
                with path.open("wb") as target:
                    digest = stream_sha256(source, copy_to=target, chunk_bytes=CHUNK_BYTES)
                files[name] = Extracted(path, member.size, digest)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise AdapterFormatError(f"artifact: not a readable tar archive ({exc})") from None
    return files


class _GzipWriter:
    """A gzip stream into `target`, written as it comes and hashed on the way out: byte for byte what
    `gzip.compress(data, mtime=0)` gives (no name, time 0, best compression, OS Unix), so the same files
    always give the same package."""

    HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\x03"

    def __init__(self, target: IO[bytes]) -> None:
        self.target, self.digest = target, hashlib.sha256()
        self.compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        self.crc = self.size = 0
        self._out(self.HEADER)

    def _out(self, data: bytes) -> None:
        self.digest.update(data)
        self.target.write(data)

    def tell(self) -> int:  # tarfile asks where the archive starts
        return self.size

    def write(self, data: bytes) -> int:
        self.crc, self.size = zlib.crc32(data, self.crc), self.size + len(data)
        self._out(self.compressor.compress(data))
        return len(data)

    def finish(self) -> str:
        self._out(self.compressor.flush())
        self._out(struct.pack("<LL", self.crc, self.size & 0xFFFFFFFF))
        return self.digest.hexdigest()


def _write_archive(members: Iterable[tuple[str, int, IO[bytes]]], out: IO[bytes]) -> str:
    """Deterministic tar.gz of (name, size, stream) into `out` (mtime 0, fixed owner and mode, sorted
    names); returns its SHA-256."""
    gz = _GzipWriter(out)
    with tarfile.open(fileobj=cast(IO[bytes], gz), mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, size, stream in sorted(members, key=lambda member: member[0]):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = size, 0, 0o644
            archive.addfile(info, stream)
    return gz.finish()


def _check_mode(mode: str) -> None:
    if mode == "multi_model_endpoint":
        raise ServingModeError(f"serving.mode: {MULTI_MODEL_REFUSAL}")
    if mode != "inference_components":
        raise ServingModeError(f"serving.mode: unknown mode {mode!r}")


def write_serving_package(
    artifact: IO[bytes],
    out: IO[bytes],
    *,
    workdir: Path,
    mode: str,
    max_lora_rank: int,
    served_target_modules: Iterable[str],
    source: str | None = None,
    source_sha256: str | None = None,
) -> PackageInfo:
    """Write the package the deployer installs for `mode` into `out`, from the artifact (model.tar.gz, a
    seekable file at offset 0); member files go to `workdir` meanwhile.

    `max_lora_rank` and `served_target_modules` describe the base component (LMI `max_lora_rank`, the
    projections LoRA is applied to); `source` (e.g. the artifact's S3 URL) is recorded in the manifest, with
    `source_sha256` (computed from `artifact` when not given, e.g. by a caller that verified it already).
    """
    _check_mode(mode)
    if source_sha256 is None:
        source_sha256 = stream_sha256(artifact, chunk_bytes=CHUNK_BYTES)
        artifact.seek(0)
    files = extract_artifact(artifact, workdir)
    for required in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if required not in files:
            raise AdapterFormatError(
                f"artifact: {required} missing (found: {', '.join(sorted(files)) or 'nothing'})"
            )
    try:
        raw_config = json.loads(files[ADAPTER_CONFIG].path.read_bytes())
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
    weights = files[ADAPTER_WEIGHTS]
    with weights.path.open("rb") as stream:
        pairs = check_weights(read_safetensors_header(stream, weights.size), spec)
    kept = {n: f for n, f in files.items() if n in (ADAPTER_CONFIG, ADAPTER_WEIGHTS) or n in TOKENIZER_FILES}
    manifest: dict[str, Any] = {
        "format": "peft-lora",
        "rank": spec.rank,
        "lora_alpha": spec.alpha,
        "target_modules": list(spec.target_modules),
        "lora_layers": pairs,
        "base_model": spec.base_model,
        "source": source,
        "source_sha256": source_sha256,
        "files": {name: f.sha256 for name, f in sorted(kept.items())},
    }
    encoded = json.dumps(manifest, sort_keys=True, indent=1).encode()
    with contextlib.ExitStack() as streams:
        members = [(n, f.size, streams.enter_context(f.path.open("rb"))) for n, f in kept.items()]
        digest = _write_archive([*members, (MANIFEST, len(encoded), io.BytesIO(encoded))], out)
    return PackageInfo(digest, manifest, spec, dropped=sorted(set(files) - set(kept)))


def build_serving_package(
    artifact: bytes,
    *,
    mode: str,
    max_lora_rank: int,
    served_target_modules: Iterable[str],
    source: str | None = None,
) -> ServingPackage:
    """`write_serving_package` on an artifact in memory (model.tar.gz bytes); the package in memory too."""
    _check_mode(mode)
    out = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="serving-package-") as workdir:
        info = write_serving_package(
            io.BytesIO(artifact),
            out,
            workdir=Path(workdir),
            mode=mode,
            max_lora_rank=max_lora_rank,
            served_target_modules=served_target_modules,
            source=source,
            source_sha256=hashlib.sha256(artifact).hexdigest(),
        )
    return ServingPackage(out.getvalue(), info.manifest, info.spec, dropped=info.dropped)
