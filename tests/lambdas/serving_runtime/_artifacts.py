"""Build model.tar.gz artifacts in peft's layout without torch (safetensors written by hand)."""

from __future__ import annotations

import io
import json
import struct
import tarfile
from typing import Any

HIDDEN = 8


def safetensors_bytes(shapes: dict[str, list[int]]) -> bytes:
    header: dict[str, Any] = {}
    offset = 0
    for name, shape in shapes.items():
        size = 4 * shape[0] * shape[1]
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + b"\0" * offset


def lora_shapes(
    rank: int, modules: tuple[str, ...] = ("q_proj", "v_proj"), layers: int = 2
) -> dict[str, list[int]]:
    shapes = {}
    for layer in range(layers):
        for module in modules:
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            shapes[f"{prefix}.lora_A.weight"] = [rank, HIDDEN]
            shapes[f"{prefix}.lora_B.weight"] = [HIDDEN, rank]
    return shapes


def adapter_config(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "peft_type": "LORA",
        "r": 8,
        "lora_alpha": 16,
        "target_modules": ["q_proj", "v_proj"],
        "bias": "none",
        "use_dora": False,
        "modules_to_save": None,
        "rank_pattern": {},
        "alpha_pattern": {},
        "base_model_name_or_path": "/opt/ml/input/data/base_model",
    }
    config.update(overrides)
    return config


def artifact(files: dict[str, bytes], *, prefix: str = "") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(prefix + name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def adapter_artifact(rank: int = 8, **config: Any) -> bytes:
    return artifact(
        {
            "adapter_config.json": json.dumps(adapter_config(r=rank, **config)).encode(),
            "adapter_model.safetensors": safetensors_bytes(lora_shapes(rank)),
            "tokenizer.json": b"{}",
            "tokenizer_config.json": b"{}",
            "README.md": b"# model card",
        },
        prefix="./",
    )
