"""Where the batched-LoRA runtime's extra decoding time goes, against one merged model (one GPU, no internet).

    python bench/gpu/profile_decode.py --out /tmp/gpu-profile            # one GPU: docs/perf/serving.md
    python bench/gpu/profile_decode.py --out /tmp/gpu-profile --tiny     # any machine: toy sizes

The serving workload of bench/gpu/run.py (same model, batch and generation settings) in three variants, their
repetitions interleaved so that drift of the host hits all three alike:
- merged: one adapter merged into the base weights (q, k, v and o as separate projections);
- grouped, no LoRA: the runtime's layout (one GEMM over the concatenated q/k/v weights) with no adapter
  gathered: the cost of the layout and of the runtime's Python modules alone;
- batched LoRA: every row another tenant's adapter (the runtime as served).
Then one profiled generation of each (torch.profiler): kernel launches, GPU kernel time and host time per
decoding step, and the operators that take the most GPU time. If GPU kernel time per step is well below the
wall time per step, decoding is bound by the host (Python and kernel launches), and the runtime's extra
kernels and modules cost host time rather than GPU time. Writes <out>/decode_profile.json and prints it.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lambdas"))

import torch
from run import (
    FULL,
    TARGET_MODULES,
    TINY,
    Sizes,
    bench_adapter_spec,
    log,
    merge_random_adapter,
    random_adapter,
    serving_setup,
    sync,
)
from serving_runtime.batched_lora import MultiLoraModel


def interleaved(variants: dict[str, Callable[[], None]], reps: int) -> dict[str, list[float]]:
    """Each variant once per round, in turn, after two warm-up rounds; seconds per run of each."""
    for _ in range(2):
        for fn in variants.values():
            fn()
    sync()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(reps):
        for name, fn in variants.items():
            started = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - started)
    return times


def profiled(fn: Callable[[], None], steps: int, device: str) -> dict[str, Any]:
    """One profiled run: launches, kernel time and host time per decoding step, top operators by GPU time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    sync()
    started = time.perf_counter()
    with profile(activities=activities) as prof:
        fn()
        sync()
    wall = time.perf_counter() - started
    events = prof.key_averages()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    kernel_us = sum(e.device_time_total for e in kernels) if kernels else 0.0
    top = sorted(events, key=lambda e: (e.self_device_time_total, e.self_cpu_time_total), reverse=True)[:12]
    return {
        "wall_ms_per_step_profiled": round(1000 * wall / steps, 3),
        "kernel_launches_per_step": round(len(kernels) / steps, 1),
        "gpu_kernel_ms_per_step": round(kernel_us / 1000 / steps, 3),
        "host_op_ms_per_step": round(sum(e.self_cpu_time_total for e in events) / 1000 / steps, 3),
        "top_ops_by_gpu_time": [
            {
                "op": e.key,
                "calls_per_step": round(e.count / steps, 1),
                "gpu_ms_per_step": round(e.self_device_time_total / 1000 / steps, 3),
                "host_ms_per_step": round(e.self_cpu_time_total / 1000 / steps, 3),
            }
            for e in top
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tiny", action="store_true", help="toy sizes: checks the steps on any machine")
    parser.add_argument("--reps", type=int, default=10)
    args = parser.parse_args(argv)
    sizes: Sizes = TINY if args.tiny else FULL
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.tiny:
        print("no GPU: run with --tiny to check the steps on CPU", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    setup = serving_setup(sizes, device)
    merge_random_adapter(setup.model, sizes.rank, device, setup.dtype)
    merged_model = copy.deepcopy(setup.model)
    served = MultiLoraModel(
        setup.model, target_modules=TARGET_MODULES, max_rank=sizes.rank, gpu_slots=sizes.batch
    )
    spec = bench_adapter_spec(sizes)
    tenants = [f"tenant-{i:04d}" for i in range(sizes.batch)]
    for index, tenant in enumerate(tenants):
        served.add_adapter(tenant, spec, random_adapter(served.layers, sizes.rank, index, device=device))
    kwargs = {"input_ids": setup.prompts, "attention_mask": setup.mask, **setup.generation}

    def merged() -> None:
        with torch.inference_mode():
            merged_model.generate(**kwargs)

    variants: dict[str, Callable[[], None]] = {
        "merged": merged,
        "grouped_no_lora": lambda: served.generate(None, **kwargs),
        "batched_lora": lambda: served.generate(tenants, **kwargs),
    }
    log(f"timing {len(variants)} variants, {args.reps} interleaved rounds")
    times = interleaved(variants, args.reps)
    merged_p50 = statistics.median(times["merged"])
    steps = sizes.new_tokens
    result: dict[str, Any] = {
        "command": " ".join(["python", "bench/gpu/profile_decode.py", *(argv or sys.argv[1:])]),
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "workload": {
            "batch": sizes.batch,
            "prompt_tokens": sizes.prompt_tokens,
            "new_tokens": steps,
            "layers": sizes.serve_layers,
            "hidden": sizes.serve_hidden,
            "lora_rank": sizes.rank,
        },
        "timing": {
            name: {
                "p50_s": round(statistics.median(values), 4),
                "p50_vs_merged": round(statistics.median(values) / merged_p50, 3),
                "ms_per_step_p50": round(1000 * statistics.median(values) / steps, 3),
            }
            for name, values in times.items()
        },
    }
    log("profiling one generation of each")
    result["profile"] = {name: profiled(fn, steps, device) for name, fn in variants.items()}
    (args.out / "decode_profile.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
