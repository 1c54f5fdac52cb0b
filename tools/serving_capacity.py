"""How many fine-tuned models one serving instance holds, and where that figure comes from (`make cost`).

Inference components serve LoRA adapters with batched LoRA: the measured figure is the number of adapters
bench/gpu kept resident on one GPU while mixed-tenant batches ran (bench/gpu/results/*.json), times the
instance's GPUs, capped by LMI's `max_cpu_loras` (adapters kept in host memory; more are loaded from S3 on
first use). Multi-model endpoints load complete models, so their figure stays the configured assumption
`models_per_instance`. Request load is not modelled by either: both figures assume the traffic fits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from stacks.settings import PlatformConfig
from stacks.settings.serving import GpuCatalog, GpuInstance, ServingMode, ServingSettings

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "gpu" / "results"


@dataclass(frozen=True)
class MeasuredCapacity:
    adapters_per_gpu: int
    gpu: str
    source: str


def measured_capacity(results: Path = RESULTS) -> MeasuredCapacity | None:
    """The largest adapter count a recorded bench/gpu run served with mixed-tenant batches, if any."""
    best: MeasuredCapacity | None = None
    for path in sorted(results.glob("*.json")):
        serving = json.loads(path.read_text(encoding="utf-8"))["serving"]
        runs = serving["batched_lora"]
        largest = max(runs, key=int)
        if runs[largest]["distinct_tenants_in_batch"] < 2:
            continue  # not a mixed-tenant measurement
        candidate = MeasuredCapacity(
            adapters_per_gpu=int(largest),
            gpu=serving["device"],
            source=str(path.relative_to(results.parents[2])),
        )
        if best is None or candidate.adapters_per_gpu > best.adapters_per_gpu:
            best = candidate
    return best


def models_per_instance(
    settings: ServingSettings, instance: GpuInstance, measured: MeasuredCapacity | None
) -> tuple[int, str]:
    """(models one instance holds, where the figure comes from)."""
    if settings.mode is ServingMode.INFERENCE_COMPONENTS and measured is not None:
        per_instance = min(measured.adapters_per_gpu * instance.gpus, settings.lmi.max_cpu_loras)
        return per_instance, (
            f"measured: {measured.adapters_per_gpu:,} adapters resident per GPU with mixed-tenant batches "
            f"on {measured.gpu} ({measured.source}), "
            f"x {instance.gpus} GPU(s), capped by lmi.max_cpu_loras {settings.lmi.max_cpu_loras:,}"
        )
    return (
        settings.models_per_instance,
        f"assumed: serving.models_per_instance {settings.models_per_instance}",
    )


def capacity_notes(config: PlatformConfig, catalog: GpuCatalog) -> list[str]:
    """One line per business unit: the capacity `make cost` uses and its source."""
    measured = measured_capacity()
    notes = []
    for bu in config.business_units:
        per_instance, source = models_per_instance(
            bu.serving, catalog.instance(bu.serving.instance_type), measured
        )
        notes.append(f"Capacity {bu.name}: {per_instance:,} models per instance ({source})")
    return notes
