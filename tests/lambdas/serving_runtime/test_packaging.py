"""The deployer's serving package: what LMI loads, checked against the base component, or refused."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from serving_runtime.adapter_format import AdapterFormatError
from serving_runtime.packaging import (
    MANIFEST,
    ServingModeError,
    build_serving_package,
    safetensors_header,
)

from tests.lambdas.serving_runtime._artifacts import (
    adapter_artifact,
    adapter_config,
    artifact,
    lora_shapes,
    safetensors_bytes,
)

SERVED = ("q_proj", "k_proj", "v_proj", "o_proj")


def package(data: bytes, **kwargs: Any) -> Any:
    options: dict[str, Any] = {
        "mode": "inference_components",
        "max_lora_rank": 16,
        "served_target_modules": SERVED,
    }
    options.update(kwargs)
    return build_serving_package(data, **options)


def members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def test_the_package_holds_the_adapter_at_its_root_with_a_checksum_manifest() -> None:
    source = adapter_artifact(rank=8)
    result = package(source, source="s3://bucket/models/retail/tenant=t1/model.tar.gz")
    files = members(result.archive)
    assert sorted(files) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        MANIFEST,
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    manifest = json.loads(files[MANIFEST])
    assert manifest["source_sha256"] == hashlib.sha256(source).hexdigest()
    for name, digest in manifest["files"].items():
        assert hashlib.sha256(files[name]).hexdigest() == digest
    assert (manifest["rank"], manifest["lora_layers"], manifest["target_modules"]) == (
        8,
        4,
        ["q_proj", "v_proj"],
    )
    assert result.dropped == ["README.md"]
    assert result.spec.scale == 2.0


def test_the_same_artifact_gives_the_same_bytes() -> None:
    source = adapter_artifact()
    assert package(source).sha256 == package(source).sha256


def test_multi_model_endpoints_are_refused_with_the_reason() -> None:
    with pytest.raises(ServingModeError, match=r"serving\.mode: multi_model_endpoint cannot serve .* LoRA"):
        package(adapter_artifact(), mode="multi_model_endpoint")


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (
            adapter_artifact(rank=32),
            r"adapter_config\.json\.r: rank 32 is above the endpoint's max_lora_rank 16",
        ),
        (adapter_artifact(target_modules=["q_proj", "gate_proj"]), r"target_modules: \['gate_proj'\]"),
        (adapter_artifact(use_dora=True), r"use_dora"),
        (adapter_artifact(rank_pattern={"q_proj": 4}), r"rank_pattern"),
        (adapter_artifact(peft_type="IA3"), r"peft_type"),
        (adapter_artifact(target_modules="all-linear"), r"target_modules: must be a list"),
        (artifact({"adapter_config.json": b"{}"}), r"adapter_model\.safetensors missing"),
        (b"not a tar", r"artifact: not a readable tar archive"),
    ],
)
def test_bad_artifacts_name_the_field(data: bytes, field: str) -> None:
    with pytest.raises(AdapterFormatError, match=field):
        package(data)


def test_weights_must_match_the_declared_rank_and_targets() -> None:
    config = json.dumps(adapter_config(r=8)).encode()
    wrong_rank = artifact(
        {"adapter_config.json": config, "adapter_model.safetensors": safetensors_bytes(lora_shapes(4))}
    )
    with pytest.raises(AdapterFormatError, match=r"has rank 4/4, adapter_config\.json\.r says 8"):
        package(wrong_rank)
    outside = artifact(
        {
            "adapter_config.json": config,
            "adapter_model.safetensors": safetensors_bytes(lora_shapes(8, ("o_proj",))),
        }
    )
    with pytest.raises(AdapterFormatError, match=r"outside adapter_config\.json\.target_modules"):
        package(outside)
    shapes = lora_shapes(8)
    shapes.pop(next(k for k in shapes if k.endswith("lora_B.weight")))
    half = artifact({"adapter_config.json": config, "adapter_model.safetensors": safetensors_bytes(shapes)})
    with pytest.raises(AdapterFormatError, match=r"lacks lora_A or lora_B"):
        package(half)


def test_links_and_paths_leaving_the_archive_are_refused() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        link = tarfile.TarInfo("adapter_config.json")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    with pytest.raises(AdapterFormatError, match=r"not a regular file"):
        package(buffer.getvalue())
    with pytest.raises(AdapterFormatError, match=r"leaves the archive"):
        package(artifact({"../adapter_config.json": b"{}"}))


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=64))
def test_any_bytes_as_safetensors_give_a_named_error_or_a_header(data: bytes) -> None:
    try:
        header = safetensors_header(data)
    except AdapterFormatError as exc:
        assert str(exc).startswith("adapter_model.safetensors:")
    else:
        assert isinstance(header, dict)


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["peft_type", "r", "lora_alpha", "target_modules", "bias", "use_dora"]),
        st.one_of(
            st.none(), st.integers(-3, 300), st.text(max_size=5), st.lists(st.text(max_size=5), max_size=3)
        ),
    )
)
def test_any_config_overrides_give_a_package_or_a_named_error(overrides: dict[str, Any]) -> None:
    data = artifact(
        {
            "adapter_config.json": json.dumps(adapter_config(**overrides)).encode(),
            "adapter_model.safetensors": safetensors_bytes(lora_shapes(8)),
        }
    )
    try:
        package(data)
    except AdapterFormatError as exc:
        assert str(exc).startswith(("adapter_config.json", "adapter_model.safetensors"))
