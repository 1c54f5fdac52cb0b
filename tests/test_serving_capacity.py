"""`make cost` capacity: the measured adapters-per-GPU figure for inference components, else the assumption."""

from __future__ import annotations

import json
from pathlib import Path

from stacks.settings.serving import GpuInstance, ServingMode, ServingSettings
from tools.serving_capacity import MeasuredCapacity, measured_capacity, models_per_instance
from tools.serving_cost import cost_rows

ONE_GPU = GpuInstance(usd_per_hour=1.0, gpus=1, gpu_memory_gib=24, local_nvme=True)
FOUR_GPUS = GpuInstance(usd_per_hour=4.0, gpus=4, gpu_memory_gib=96, local_nvme=True)
MEASURED = MeasuredCapacity(adapters_per_gpu=1024, gpu="NVIDIA H100", source="bench/gpu/results/x.json")


def write_result(folder: Path, name: str, runs: dict[str, int]) -> None:
    batched = {k: {"distinct_tenants_in_batch": d, "p50_vs_merged": 1.1} for k, d in runs.items()}
    (folder / name).write_text(json.dumps({"serving": {"device": "GPU X", "batched_lora": batched}}))


def test_the_largest_mixed_tenant_run_is_the_measured_capacity(tmp_path: Path) -> None:
    results = tmp_path / "bench" / "gpu" / "results"
    results.mkdir(parents=True)
    assert measured_capacity(results) is None
    write_result(results, "a.json", {"1": 1, "32": 32, "256": 32})
    write_result(results, "b.json", {"1": 1, "4096": 1})  # one tenant only: not a mixed-tenant figure
    found = measured_capacity(results)
    assert found is not None and (found.adapters_per_gpu, found.gpu) == (256, "GPU X")
    assert found.source == "bench/gpu/results/a.json"


def test_inference_components_use_the_measurement_times_gpus_capped_by_host_slots() -> None:
    settings = ServingSettings(lmi={"max_cpu_loras": 2048})
    assert models_per_instance(settings, ONE_GPU, MEASURED)[0] == 1024
    count, source = models_per_instance(settings, FOUR_GPUS, MEASURED)
    assert count == 2048 and "measured: 1,024 adapters resident per GPU" in source and "x.json" in source


def test_multi_model_endpoints_and_missing_measurements_keep_the_configured_assumption() -> None:
    mme = ServingSettings(mode=ServingMode.MULTI_MODEL_ENDPOINT, min_capacity=1, models_per_instance=40)
    assert models_per_instance(mme, ONE_GPU, MEASURED) == (40, "assumed: serving.models_per_instance 40")
    assert models_per_instance(ServingSettings(), ONE_GPU, None)[0] == 50


def test_cost_rows_size_the_shared_endpoint_with_that_capacity() -> None:
    rows = {(bu, stage, n): instances for bu, stage, _, n, instances, _, _ in cost_rows(None, [1000])}
    assert measured_capacity() is not None  # bench/gpu/results/h100-run-*.json are committed
    assert rows[("retail", "preprod", 1000)] == 1  # measured: 1,024 adapters per GPU, one GPU per g5.2xlarge
    assert rows[("finance", "preprod", 1000)] == 20  # multi-model endpoint: 50 per instance, assumed
