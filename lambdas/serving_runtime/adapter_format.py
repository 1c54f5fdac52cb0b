"""The LoRA adapter the fine-tuning pipeline registers, as the serving runtimes load it (no torch needed).

The training job writes peft's layout into model.tar.gz: `adapter_config.json`, `adapter_model.safetensors`
and the tokenizer files. Both serving paths read the same two adapter files: the LMI container (vLLM's LoRA
support, inference components) and the in-process batched LoRA runtime (`batched_lora.py`, used by
bench/gpu). What neither can serve is refused here with the field that is wrong.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
TOKENIZER_FILES = frozenset(
    {
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "tokenizer.model",
        "chat_template.jinja",
        "added_tokens.json",
    }
)
# vLLM (inside LMI) accepts these ranks only; the batched runtime pads any rank up to its maximum.
LMI_RANKS = (8, 16, 32, 64, 128, 256)
_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<factor>[AB])\.weight$")


class AdapterFormatError(ValueError):
    """The artifact is not a LoRA adapter the serving runtime can load; the message names the field."""


@dataclass(frozen=True)
class AdapterSpec:
    rank: int
    alpha: float
    use_rslora: bool
    target_modules: tuple[str, ...]
    base_model: str | None

    @property
    def scale(self) -> float:
        """peft's scaling of B @ A: alpha / r, or alpha / sqrt(r) with rank-stabilized LoRA."""
        return self.alpha / (math.sqrt(self.rank) if self.use_rslora else self.rank)


def parse_adapter_config(raw: Any) -> AdapterSpec:
    if not isinstance(raw, dict):
        raise AdapterFormatError(f"{ADAPTER_CONFIG}: must be a JSON object")
    if raw.get("peft_type") != "LORA":
        raise AdapterFormatError(f"{ADAPTER_CONFIG}.peft_type: must be LORA, got {raw.get('peft_type')!r}")
    rank, alpha = raw.get("r"), raw.get("lora_alpha")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise AdapterFormatError(f"{ADAPTER_CONFIG}.r: must be a positive integer, got {rank!r}")
    if not isinstance(alpha, int | float) or isinstance(alpha, bool) or alpha <= 0:
        raise AdapterFormatError(f"{ADAPTER_CONFIG}.lora_alpha: must be a positive number, got {alpha!r}")
    targets = raw.get("target_modules")
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
        raise AdapterFormatError(
            f"{ADAPTER_CONFIG}.target_modules: must be a list of module names (a regular expression or "
            f"'all-linear' cannot be checked before loading), got {targets!r}"
        )
    # Features the batched runtime and vLLM do not apply: refusing them beats serving a different model.
    for name, allowed in (
        ("rank_pattern", ({}, None)),
        ("alpha_pattern", ({}, None)),
        ("use_dora", (False, None)),
        ("modules_to_save", (None, [])),
        ("bias", ("none", None)),
    ):
        if raw.get(name) not in allowed:
            raise AdapterFormatError(
                f"{ADAPTER_CONFIG}.{name}: {raw.get(name)!r} is not supported for serving"
            )
    base = raw.get("base_model_name_or_path")
    return AdapterSpec(
        rank=rank,
        alpha=float(alpha),
        use_rslora=bool(raw.get("use_rslora", False)),
        target_modules=tuple(sorted(set(targets))),
        base_model=base if isinstance(base, str) else None,
    )


def lora_weight_key(key: str) -> tuple[str, str]:
    """`base_model.model.<module>.lora_A.weight` -> (`<module>`, "A"); anything else is refused."""
    match = _KEY.match(key)
    if match is None:
        raise AdapterFormatError(
            f"{ADAPTER_WEIGHTS}: unexpected tensor {key!r} (only lora_A / lora_B weights)"
        )
    return match.group("module"), match.group("factor")
