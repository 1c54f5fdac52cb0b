"""Serving deployer memory benchmark: peak Python memory (tracemalloc) of installing one adapter version on
inference components, for a synthetic artifact of about 200 MB, this tree against a baseline revision.

Run from the repository root:

    .venv/bin/python bench/serving_package_memory_bench.py --baseline-ref f255a33 --runs 3

The measured path is the deployer's own `InferenceComponentTarget.install`: read the registered artifact
from S3 and verify its SHA-256, build the serving package (`serving_runtime.packaging`), upload it, create
the component and wait for it. S3 and SageMaker are fakes (the artifact is a local file served as the
object's body; uploads are read through and dropped), so only the deployer's memory is measured, not a mock
service's copy of the objects. `lambdas/` of the baseline revision is extracted to a temporary folder; each
install runs in a fresh process with tracemalloc started just before it, baseline and this tree
alternating. The report gives each version's median peak and wall time over the runs, their ratio, and the
1-minute load average (time is load-dependent on a shared machine; tracemalloc's peak is not).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import tracemalloc
from io import BytesIO
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
HIDDEN = 4096  # a 7B-class model's hidden size


def synthetic_artifact(path: Path, target_mib: int) -> str:
    """model.tar.gz in peft's layout, its safetensors weights about `target_mib` MiB of incompressible
    fp32 data (rank-64 q/v LoRA pairs over as many layers as it takes); returns the file's SHA-256."""
    rank, pair_bytes = 64, 2 * 4 * 64 * HIDDEN
    layers = max(1, target_mib * MIB // (2 * pair_bytes))
    header: dict[str, Any] = {}
    offset = 0
    for layer in range(layers):
        for module in ("q_proj", "v_proj"):
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            for factor, shape in (("lora_A", [rank, HIDDEN]), ("lora_B", [HIDDEN, rank])):
                size = 4 * shape[0] * shape[1]
                header[f"{prefix}.{factor}.weight"] = {
                    "dtype": "F32",
                    "shape": shape,
                    "data_offsets": [offset, offset + size],
                }
                offset += size
    encoded = json.dumps(header).encode()
    config = {
        "peft_type": "LORA",
        "r": rank,
        "lora_alpha": 2 * rank,
        "target_modules": ["q_proj", "v_proj"],
        "bias": "none",
        "base_model_name_or_path": "bench",
    }
    rng = random.Random(0)
    with tarfile.open(path, mode="w:gz", compresslevel=1) as archive:
        for name, data in (
            ("adapter_config.json", json.dumps(config).encode()),
            ("README.md", b"synthetic adapter for bench/serving_package_memory_bench.py\n"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, BytesIO(data))
        with tempfile.TemporaryFile() as weights:
            weights.write(struct.pack("<Q", len(encoded)) + encoded)
            remaining = offset
            while remaining:
                part = min(remaining, 8 * MIB)
                weights.write(rng.randbytes(part))
                remaining -= part
            info = tarfile.TarInfo("adapter_model.safetensors")
            info.size = weights.tell()
            weights.seek(0)
            archive.addfile(info, weights)
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(8 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


# ---- worker: one install in this process -------------------------------------------------------------------


class FakeS3:
    """get_object serves the local artifact; every upload is read through (as botocore would) and dropped.
    Keyword arguments as boto3 names them."""

    def __init__(self, artifact: Path) -> None:
        self.artifact = artifact
        self.uploaded = 0

    def get_object(self, **_: Any) -> dict[str, Any]:
        return {"Body": self.artifact.open("rb"), "ContentLength": self.artifact.stat().st_size}

    def put_object(self, **params: Any) -> dict[str, Any]:
        self.uploaded += len(params["Body"])
        return {}

    def upload_file(self, filename: str, *_: Any, **__: Any) -> None:
        with Path(filename).open("rb") as stream:
            self.upload_fileobj(stream)

    def upload_fileobj(self, stream: Any, *_: Any, **__: Any) -> None:
        # 1 MiB reads: the fake's own buffers stay below what is measured. (boto3's managed upload holds up
        # to multipart_chunksize x max_concurrency of the TransferConfig the deployer passes; not measured.)
        while chunk := stream.read(MIB):
            self.uploaded += len(chunk)

    def delete_object(self, **_: Any) -> dict[str, Any]:
        return {}


class FakeSageMaker:
    def create_inference_component(self, **_: Any) -> dict[str, Any]:
        return {}

    def describe_inference_component(self, **_: Any) -> dict[str, Any]:
        return {"InferenceComponentStatus": "InService"}


def worker(artifact: Path, sha256: str) -> dict[str, Any]:
    from serving_deployer.core import InferenceComponentTarget, ModelPackage

    s3 = FakeS3(artifact)
    target = InferenceComponentTarget(
        s3=s3,
        sagemaker=FakeSageMaker(),
        runtime=None,
        endpoint_name="bench-serving",
        variant_name="AllTraffic",
        base_component_name="bench-base",
        bucket="bench-models",
        prefix="adapters/",
        test_payload="{}",
    )
    target.lmi = target.lmi.model_copy(update={"max_lora_rank": 64})
    package = ModelPackage(
        arn="arn:aws:sagemaker:eu-west-1:111111111111:model-package/bench/1",
        group="bench",
        version=1,
        status="Approved",
        artifact_url="s3://bench-source/model.tar.gz",
        sha256=sha256,
    )
    tracemalloc.start()
    started = time.perf_counter()
    served = target.install(package, "business-unit/bench/v1/model.tar.gz")
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "peak_mib": peak / MIB,
        "seconds": seconds,
        "uploaded_mib": s3.uploaded / MIB,
        "sha": served.package_sha256,
    }


# ---- driver ------------------------------------------------------------------------------------------------


def extract_lambdas(revision: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "lambdas"], cwd=REPO, check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "lambdas"


def run_worker(lambdas: Path, artifact: Path, sha256: str) -> dict[str, Any]:
    load = os.getloadavg()[0]
    out = subprocess.run(
        [sys.executable, __file__, "--worker", "--lambdas", str(lambdas), "--artifact", str(artifact), "--sha256", sha256],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    result: dict[str, Any] = json.loads(out)
    result["load"] = load
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline-ref", default="f255a33", help="revision whose lambdas/ is the baseline")
    parser.add_argument("--runs", type=int, default=3, help="installs per version (median reported)")
    parser.add_argument("--size-mib", type=int, default=200, help="artifact size to aim for")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--lambdas", help=argparse.SUPPRESS)
    parser.add_argument("--artifact", help=argparse.SUPPRESS)
    parser.add_argument("--sha256", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.runs < 1 or args.size_mib < 1:
        parser.error("--runs and --size-mib must be at least 1")
    if args.worker:
        sys.path[:0] = [args.lambdas]
        print(json.dumps(worker(Path(args.artifact), args.sha256)))
        return
    with tempfile.TemporaryDirectory(prefix="serving-bench-") as tmp:
        folder = Path(tmp)
        artifact = folder / "model.tar.gz"
        sha256 = synthetic_artifact(artifact, args.size_mib)
        versions = {
            f"baseline {args.baseline_ref}": extract_lambdas(args.baseline_ref, folder / "baseline"),
            "this tree": REPO / "lambdas",
        }
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in versions}
        for _ in range(args.runs):
            for name, lambdas in versions.items():
                results[name].append(run_worker(lambdas, artifact, sha256))
        size = artifact.stat().st_size / MIB
    print(f"artifact: {size:.1f} MiB (model.tar.gz), {args.runs} installs per version, alternating")
    medians: dict[str, dict[str, float]] = {}
    for name, runs in results.items():
        medians[name] = {k: statistics.median(r[k] for r in runs) for k in ("peak_mib", "seconds")}
        peaks = ", ".join(f"{r['peak_mib']:.1f}" for r in runs)
        loads = ", ".join(f"{r['load']:.1f}" for r in runs)
        print(
            f"{name}: peak {medians[name]['peak_mib']:.1f} MiB (runs {peaks}), "
            f"wall {medians[name]['seconds']:.1f} s, load {loads}; package sha256 {runs[0]['sha'][:12]}"
        )
    base, new = medians[f"baseline {args.baseline_ref}"], medians["this tree"]
    print(
        f"this tree / baseline: peak {new['peak_mib'] / base['peak_mib']:.3f}x, "
        f"wall {new['seconds'] / base['seconds']:.2f}x"
    )


if __name__ == "__main__":
    main()
