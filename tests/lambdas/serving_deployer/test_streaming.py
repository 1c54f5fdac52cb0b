"""The deployer packages adapters through files: bounded memory, the same package bytes, the same errors."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from serving_deployer import core
from serving_deployer.core import DeploymentError, InferenceComponentTarget, ModelPackage
from serving_runtime.packaging import build_serving_package, write_serving_package

from tests.lambdas.serving_runtime._artifacts import (
    adapter_artifact,
    adapter_config,
    artifact,
    lora_shapes,
    safetensors_bytes,
)

SERVED = ("q_proj", "k_proj", "v_proj", "o_proj")
OPTIONS: dict[str, Any] = {
    "mode": "inference_components",
    "max_lora_rank": 16,
    "served_target_modules": SERVED,
}
SOURCE, MODELS, KEY = "source-bucket", "serving-models", "models/v1/model.tar.gz"
ENDPOINT = "exco-retail-prod-serving"
COMPONENT_ARN = f"arn:aws:sagemaker:eu-west-1:111111111111:inference-component/{ENDPOINT}-x"


def big_artifact(mib: int) -> bytes:
    """A rank-8 adapter whose weights are `mib` MiB of incompressible bytes after the header."""
    header = safetensors_bytes(lora_shapes(8))
    weights = header + random.Random(7).randbytes(mib * 1024 * 1024)
    return artifact(
        {"adapter_config.json": json.dumps(adapter_config()).encode(), "adapter_model.safetensors": weights}
    )


def test_the_streamed_package_is_byte_for_byte_the_in_memory_one(tmp_path: Path) -> None:
    data = adapter_artifact(base_model_name_or_path="streamed")
    out = tmp_path / "package.tar.gz"
    members = tmp_path / "members"
    members.mkdir()
    with out.open("wb") as target:
        info = write_serving_package(io.BytesIO(data), target, workdir=members, **OPTIONS)
    in_memory = build_serving_package(data, **OPTIONS)
    archive = out.read_bytes()
    assert archive == in_memory.archive and info.sha256 == hashlib.sha256(archive).hexdigest()
    assert info.manifest == in_memory.manifest and info.dropped == ["README.md"]
    # The gzip stream is what gzip.compress(tar, mtime=0) gives: packages built before streaming match.
    assert gzip.compress(gzip.decompress(archive), mtime=0) == archive
    assert info.manifest["source_sha256"] == hashlib.sha256(data).hexdigest()  # computed when not given


def test_packaging_memory_does_not_grow_with_the_adapter(tmp_path: Path) -> None:
    """tracemalloc's peak while packaging a 32 MiB adapter from a file into a file stays a small fraction of it
    (the in-memory build held the artifact, every member and the package at once: several times its size)."""
    source = tmp_path / "model.tar.gz"
    source.write_bytes(big_artifact(32))
    members = tmp_path / "members"
    members.mkdir()
    tracemalloc.start()
    try:
        with source.open("rb") as stream, (tmp_path / "out.tar.gz").open("wb") as out:
            info = write_serving_package(stream, out, workdir=members, **OPTIONS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.manifest["lora_layers"] == 4
    assert peak < 8 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"


# ---- through the deployer: verify, package, upload; bad archives refused as before ----------------------


@pytest.fixture
def aws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any, Stubber, Path]]:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(core.tempfile, "tempdir", str(scratch))  # the function's /tmp
    with mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-1")
        for bucket in (SOURCE, MODELS):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        sagemaker = boto3.client("sagemaker", region_name="eu-west-1")
        with Stubber(sagemaker) as stub:
            yield s3, sagemaker, stub, scratch


def install(s3: Any, sagemaker: Any, data: bytes) -> Any:
    s3.put_object(Bucket=SOURCE, Key=KEY, Body=data)
    target = InferenceComponentTarget(
        s3=s3,
        sagemaker=sagemaker,
        runtime=None,
        endpoint_name=ENDPOINT,
        variant_name="AllTraffic",
        base_component_name=f"{ENDPOINT}-base",
        bucket=MODELS,
        prefix="adapters/",
        test_payload="{}",
        sleep=lambda _: None,
    )
    package = ModelPackage(
        arn="arn:aws:sagemaker:eu-west-1:111111111111:model-package/exco-retail-product-qa/1",
        group="exco-retail-product-qa",
        version=1,
        status="Approved",
        artifact_url=f"s3://{SOURCE}/{KEY}",
        sha256=hashlib.sha256(data).hexdigest(),
    )
    return target.install(package, "business-unit/exco-retail-product-qa/v1/model.tar.gz")


def test_the_deployer_uploads_the_package_it_built_from_files_and_leaves_tmp_empty(aws: Any) -> None:
    s3, sagemaker, stub, scratch = aws
    data = adapter_artifact(base_model_name_or_path="deployed")
    stub.add_response("create_inference_component", {"InferenceComponentArn": COMPONENT_ARN}, {
        "InferenceComponentName": ANY, "EndpointName": ENDPOINT, "VariantName": "AllTraffic",
        "Specification": ANY, "Tags": ANY,
    })  # fmt: skip
    stub.add_response(
        "describe_inference_component", {"InferenceComponentStatus": "InService", **_component()}
    )
    served = install(s3, sagemaker, data)
    uploaded = s3.get_object(Bucket=MODELS, Key=served.artifact_key)
    archive = uploaded["Body"].read()
    assert archive == build_serving_package(data, **OPTIONS, source=f"s3://{SOURCE}/{KEY}").archive
    assert uploaded["Metadata"] == {
        "sha256": served.package_sha256,
        "source-sha256": hashlib.sha256(data).hexdigest(),
    }
    assert hashlib.sha256(archive).hexdigest() == served.package_sha256
    assert list(scratch.iterdir()) == []  # the artifact, its members and the package are gone


def _component() -> dict[str, Any]:
    return {
        "InferenceComponentName": "x",
        "InferenceComponentArn": COMPONENT_ARN,
        "EndpointName": ENDPOINT,
        "EndpointArn": "arn:aws:sagemaker:eu-west-1:111111111111:endpoint/x",
        "CreationTime": "2025-01-01T00:00:00Z",
        "LastModifiedTime": "2025-01-01T00:00:00Z",
    }


def _link_artifact() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        link = tarfile.TarInfo("adapter_model.safetensors")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    return buffer.getvalue()


BAD = {
    "not an archive": (b"this is not a tar archive", "not a readable tar archive"),
    "a link": (_link_artifact(), "'adapter_model.safetensors' is not a regular file"),
    "a path out": (artifact({"x": b"1"}, prefix="../"), "'../x' leaves the archive"),
    "no config": (artifact({"adapter_model.safetensors": b"12345678"}), "adapter_config.json missing"),
    "a header past the end": (
        artifact({
            "adapter_config.json": json.dumps(adapter_config()).encode(),
            "adapter_model.safetensors": (1000).to_bytes(8, "little") + b"{}",
        }),
        "header length 1000 exceeds the file",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD)
def test_bad_archives_are_refused_with_the_same_errors_and_nothing_is_installed(aws: Any, case: str) -> None:
    s3, sagemaker, _, scratch = aws
    data, message = BAD[case]
    with pytest.raises(DeploymentError, match=r"serving package for arn:aws:sagemaker:") as raised:
        install(s3, sagemaker, data)
    assert message in str(raised.value)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):  # the in-memory build says the same
        build_serving_package(data, **OPTIONS)
    assert s3.list_objects_v2(Bucket=MODELS).get("KeyCount") == 0  # no component: the Stubber has none
    assert list(scratch.iterdir()) == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2048))
def test_arbitrary_bytes_are_refused_with_a_deployment_error_and_leave_nothing(aws: Any, data: bytes) -> None:
    s3, sagemaker, _, scratch = aws
    with pytest.raises(DeploymentError, match="serving package for"):
        install(s3, sagemaker, data)
    assert list(scratch.iterdir()) == []


def test_an_artifact_above_the_limit_is_refused_before_it_is_read(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3, sagemaker, _, scratch = aws
    data = adapter_artifact()
    monkeypatch.setattr(core, "MAX_ARTIFACT_BYTES", len(data) - 1)
    with pytest.raises(DeploymentError, match=rf"{len(data)} bytes, above the deployer's {len(data) - 1}"):
        install(s3, sagemaker, data)
    assert list(scratch.iterdir()) == []
