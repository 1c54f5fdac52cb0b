"""GPU check of fine-tuning and serving, runnable on one GPU with no internet (nothing from a hub).

    python bench/gpu/run.py --out /tmp/gpu-check            # one GPU: the figures in docs/perf/serving.md
    python bench/gpu/run.py --out /tmp/gpu-check --tiny     # any machine: the same steps at toy sizes

1. Pipeline: a tenant's JSON lines -> `fine_tuning_jobs.preprocess.split` -> `fine_tuning_jobs.train.train`
   (LoRA, answer-only loss, early stopping) on a tiny Llama-architecture model built from a config with a
   tokenizer trained here -> `fine_tuning_jobs.evaluate.evaluate` (batched) -> evaluation.json in the shape
   the pipeline's condition step reads -> `serving_runtime.packaging.build_serving_package` on the adapter.
2. Correctness: the trained adapter plus two random ones served by `serving_runtime.batched_lora` in one
   mixed batch give peft's logits row by row.
3. Serving: a larger Llama-architecture model (random bf16 weights, 886M parameters by default); mixed-tenant
   batches (every row another tenant) at K = 1, 32, 1,024 resident adapters against one merged model in the
   same run; adapter load time from peft files, page-in time from host memory, GPU memory per adapter.
Writes <out>/gpu_check.json and prints it.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lambdas"))

import torch
from fine_tuning_jobs.evaluate import evaluate
from fine_tuning_jobs.preprocess import split
from fine_tuning_jobs.train import TARGET_MODULES, train
from serving_runtime.adapter_format import AdapterSpec
from serving_runtime.batched_lora import MultiLoraModel
from serving_runtime.packaging import build_serving_package

COLOURS = ["red", "green", "blue", "amber", "violet", "grey", "white", "black"]


@dataclass(frozen=True)
class Sizes:
    records: int
    train_hidden: int
    serve_hidden: int
    serve_intermediate: int
    serve_layers: int
    serve_heads: int
    vocab: int
    batch: int
    prompt_tokens: int
    new_tokens: int
    ks: tuple[int, ...]
    extra_host: int  # adapters beyond the GPU slots, paged in on demand
    files: int  # adapters written as peft files and loaded from disk
    reps: int
    rank: int


FULL = Sizes(400, 128, 2048, 5632, 16, 32, 32000, 32, 128, 64, (1, 32, 1024), 256, 32, 15, 16)
TINY = Sizes(120, 32, 64, 128, 2, 4, 256, 4, 8, 4, (1, 4, 16), 8, 4, 3, 8)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def tenant_records(count: int) -> list[str]:
    rng = random.Random(7)
    lines = []
    for item in range(count):
        colour = rng.choice(COLOURS)
        record = {
            "id": f"r{item}",
            "prompt": f"what colour is item {item} ?",
            "reference": f"item {item} is {colour} .",
        }
        lines.append(json.dumps(record))
    return lines


def build_tokenizer(lines: list[str], target: Path) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted(
        {
            w
            for line in lines
            for r in [json.loads(line)]
            for w in (r["prompt"] + " " + r["reference"]).split()
        }
    )
    vocab = {tok: i for i, tok in enumerate(["<unk>", "<s>", "</s>", "<pad>", *words])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    tokenizer.save_pretrained(str(target))
    return tokenizer


def pipeline(sizes: Sizes, work: Path, device: str) -> dict[str, Any]:
    from transformers import LlamaConfig, LlamaForCausalLM

    lines = tenant_records(sizes.records)
    splits = split(lines, held_out_fraction=0.1)
    for name, records in splits.items():
        (work / name).mkdir(parents=True, exist_ok=True)
        (work / name / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    base = work / "base_model"
    tokenizer = build_tokenizer(lines, base)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=sizes.train_hidden, intermediate_size=2 * sizes.train_hidden,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(str(base))
    hp = {"lora_rank": 8, "lora_alpha": 16, "lora_dropout": 0.0, "epochs": 6, "learning_rate": 3e-3,
          "batch_size": 16, "max_length": 64, "early_stopping_patience": 2}  # fmt: skip
    started = time.perf_counter()
    trained = train(base, work / "train" / "train.jsonl", work / "validation" / "validation.jsonl",
                    work / "adapter", work / "checkpoints", hp, bf16=device == "cuda")  # fmt: skip
    train_s = time.perf_counter() - started
    heldout = [
        json.loads(line) for line in (work / "heldout" / "heldout.jsonl").read_text().splitlines() if line
    ]
    started = time.perf_counter()
    report = evaluate(
        base, work / "adapter", heldout, ["token_f1", "rougeL"], batch_size=16, max_new_tokens=12
    )
    evaluate_s = time.perf_counter() - started
    (work / "evaluation.json").write_text(json.dumps(report))
    for name in ("token_f1", "rougeL"):  # the condition step's JsonGet paths
        assert isinstance(report["metrics"][name]["value"], float)
    with tarfile.open(work / "model.tar.gz", "w:gz") as archive:
        for path in sorted((work / "adapter").iterdir()):
            archive.add(path, arcname=path.name)
    package = build_serving_package(
        (work / "model.tar.gz").read_bytes(), mode="inference_components", max_lora_rank=16,
        served_target_modules=TARGET_MODULES, source="bench",
    )  # fmt: skip
    return {
        "splits": {name: len(records) for name, records in splits.items()},
        "train_seconds": round(train_s, 2),
        "train_loss": trained["train_loss"],
        "epochs_run": trained["epochs_run"],
        "validation_loss": [round(e["eval_loss"], 4) for e in trained["eval_history"]],
        "evaluate_seconds": round(evaluate_s, 2),
        "evaluation_json": report,
        "package": {
            "sha256": package.sha256,
            "files": sorted(package.manifest["files"]),
            "dropped": package.dropped,
        },
    }


def random_adapter(
    model_layers: dict[str, Any], rank: int, seed: int, std: float = 0.02, device: str = "cpu"
) -> dict[str, torch.Tensor]:
    """peft's tensor names and shapes (A [r, in], B [out, r]) with random values."""
    generator = torch.Generator(device=device).manual_seed(seed)
    tensors = {}
    for name, layer in model_layers.items():
        fan_in, fan_out = layer.in_features, layer.out_features
        for factor, shape in (("A", (rank, fan_in)), ("B", (fan_out, rank))):
            tensors[f"base_model.model.{name}.lora_{factor}.weight"] = (
                torch.randn(shape, generator=generator, device=device) * std
            )
    return tensors


def correctness(work: Path, device: str) -> dict[str, Any]:
    """Mixed batch through the stacked runtime vs peft's mixed-batch `adapter_names`, same adapters."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    base = work / "base_model"
    dtype = torch.float32
    reference = AutoModelForCausalLM.from_pretrained(str(base), dtype=dtype).to(device).eval()
    ids = ["trained", "random-1", "random-2"]
    # Two more adapters in peft's own layout, written by peft itself.
    for seed, name in ((1, "random-1"), (2, "random-2")):
        torch.manual_seed(seed)
        fresh = get_peft_model(
            AutoModelForCausalLM.from_pretrained(str(base), dtype=dtype),
            LoraConfig(
                r=4 * seed, lora_alpha=8, target_modules=list(TARGET_MODULES), init_lora_weights=False
            ),
        )
        fresh.save_pretrained(str(work / name))
    peft_model = PeftModel.from_pretrained(reference, str(work / "adapter"), adapter_name="trained")
    for name in ids[1:]:
        peft_model.load_adapter(str(work / name), adapter_name=name)
    torch.manual_seed(3)
    rows = ids * 2
    input_ids = torch.randint(4, reference.config.vocab_size, (len(rows), 10), device=device)
    with torch.inference_mode():
        expected = peft_model(input_ids=input_ids, adapter_names=rows).logits
    plain = AutoModelForCausalLM.from_pretrained(str(base), dtype=dtype).to(device).eval()
    served = MultiLoraModel(plain, target_modules=TARGET_MODULES, max_rank=16, gpu_slots=2)
    for name in ids:
        served.load_adapter_dir(name, work / ("adapter" if name == "trained" else name))
    with torch.inference_mode(), served.adapters(rows[:2]):  # two slots: the third adapter pages one out
        pass
    with torch.inference_mode(), served.adapters(ids[1:]):
        pass
    outputs = []
    for start in range(0, len(rows), 2):  # batches of two rows: every batch pages adapters in and out
        with torch.inference_mode(), served.adapters(rows[start : start + 2]):
            outputs.append(plain(input_ids=input_ids[start : start + 2]).logits)
    got = torch.cat(outputs)
    with torch.inference_mode():
        base_only = plain(input_ids=input_ids).logits
    return {
        "rows": rows,
        "max_abs_diff_vs_peft": float((got - expected).abs().max()),
        "max_abs_adapter_effect_peft": float((expected - base_only).abs().max()),
        "max_abs_adapter_effect_served": float((got - base_only).abs().max()),
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def timed_pairs(first: Any, second: Any, reps: int) -> tuple[list[float], list[float]]:
    """Alternate the two workloads rep by rep (after warm-ups of both); times of each."""
    for _ in range(2):
        first()
        second()
    sync()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(reps):
        for fn, into in ((first, times[0]), (second, times[1])):
            started = time.perf_counter()
            fn()
            sync()
            into.append(time.perf_counter() - started)
    return times


def summary(times: list[float], tokens: int) -> dict[str, float]:
    p50 = statistics.median(times)
    return {
        "p50_s": round(p50, 4),
        "p99_s": round(percentile(times, 0.99), 4),
        "tokens_per_s": round(tokens / p50, 1),
    }


@dataclass
class ServingSetup:
    """The serving workload: a random-weight Llama model and one batch of prompts to decode greedily."""

    model: Any
    dtype: torch.dtype
    prompts: torch.Tensor
    mask: torch.Tensor
    generation: dict[str, Any]
    parameters: int
    base_bytes: int


def serving_setup(sizes: Sizes, device: str) -> ServingSetup:
    from transformers import LlamaConfig, LlamaForCausalLM

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    config = LlamaConfig(
        vocab_size=sizes.vocab, hidden_size=sizes.serve_hidden, intermediate_size=sizes.serve_intermediate,
        num_hidden_layers=sizes.serve_layers, num_attention_heads=sizes.serve_heads,
        num_key_value_heads=sizes.serve_heads, max_position_embeddings=2048, tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype).eval()
    prompts = torch.randint(3, sizes.vocab, (sizes.batch, sizes.prompt_tokens), device=device)
    return ServingSetup(
        model=model,
        dtype=dtype,
        prompts=prompts,
        mask=torch.ones_like(prompts),
        generation={
            "max_new_tokens": sizes.new_tokens,
            "min_new_tokens": sizes.new_tokens,
            "do_sample": False,
            "pad_token_id": 0,
        },
        parameters=sum(p.numel() for p in model.parameters()),
        base_bytes=sum(p.numel() * p.element_size() for p in model.parameters()),
    )


def bench_adapter_spec(sizes: Sizes) -> AdapterSpec:
    """The spec of the bench's random adapters (alpha 2r: scale 2, as the merged baseline uses)."""
    return AdapterSpec(
        rank=sizes.rank,
        alpha=2.0 * sizes.rank,
        use_rslora=False,
        target_modules=TARGET_MODULES,
        base_model=None,
    )


def merge_random_adapter(model: Any, rank: int, device: str, dtype: torch.dtype) -> None:
    """W += scale * B @ A for one random adapter: the baseline of a model dedicated to one tenant."""
    targets = {
        n: m
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and n.rpartition(".")[2] in TARGET_MODULES
    }
    delta = random_adapter(targets, rank, seed=999)
    with torch.no_grad():
        for name, module in targets.items():
            a = delta[f"base_model.model.{name}.lora_A.weight"].to(device, torch.float32)
            b = delta[f"base_model.model.{name}.lora_B.weight"].to(device, torch.float32)
            module.weight += (b @ a * 2.0).to(dtype)


def serving(sizes: Sizes, work: Path, device: str) -> dict[str, Any]:
    setup = serving_setup(sizes, device)
    model, dtype, prompts, mask, generation = (
        setup.model, setup.dtype, setup.prompts, setup.mask, setup.generation
    )  # fmt: skip
    parameters, base_bytes = setup.parameters, setup.base_bytes
    tokens = sizes.batch * sizes.new_tokens
    merge_random_adapter(model, sizes.rank, device, dtype)
    # The merged model stays as a separate copy: its repetitions alternate with the batched ones below, so
    # drift of the host (eager decoding is bound by kernel launches) hits both sides alike.
    merged_model = copy.deepcopy(model)

    def merged_run() -> None:
        with torch.inference_mode():
            merged_model.generate(input_ids=prompts, attention_mask=mask, **generation)

    slots = max(sizes.ks)
    if device == "cuda":
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated()
    served = MultiLoraModel(model, target_modules=TARGET_MODULES, max_rank=sizes.rank, gpu_slots=slots)
    gpu_stack_bytes = (
        torch.cuda.memory_allocated() - before if device == "cuda" else served.bytes_per_slot() * slots
    )
    spec = bench_adapter_spec(sizes)

    # Adapters as files in peft's layout, loaded through the same reader the runtime uses for the artifact.
    from safetensors.torch import save_file

    load_times = []
    for index in range(sizes.files):
        folder = work / "adapters" / f"tenant-{index:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.to(dtype).contiguous() for k, v in random_adapter(served.layers, sizes.rank, index).items()},
                  str(folder / "adapter_model.safetensors"))  # fmt: skip
        (folder / "adapter_config.json").write_text(json.dumps(
            {"peft_type": "LORA", "r": sizes.rank, "lora_alpha": 2 * sizes.rank, "target_modules": list(TARGET_MODULES),
             "bias": "none", "use_dora": False, "modules_to_save": None, "rank_pattern": {}, "alpha_pattern": {}}
        ))  # fmt: skip
        started = time.perf_counter()
        served.load_adapter_dir(f"tenant-{index:04d}", folder)
        load_times.append(time.perf_counter() - started)
    log(f"loaded {sizes.files} adapter files")
    total = slots + sizes.extra_host
    for index in range(sizes.files, total):
        served.add_adapter(
            f"tenant-{index:04d}", spec, random_adapter(served.layers, sizes.rank, index, device=device)
        )
    log(f"{total} adapters in host memory")
    ids = [f"tenant-{i:04d}" for i in range(total)]

    started = time.perf_counter()
    for start in range(0, slots, sizes.batch):  # everything resident before the K runs
        served.assign(ids[start : start + sizes.batch])
    sync()
    fill_s = time.perf_counter() - started

    results: dict[str, Any] = {}
    rng = random.Random(11)
    merged_times: list[float] = []
    for k in sizes.ks:
        rows = [ids[rng.randrange(k)] if k > sizes.batch else ids[i % k] for i in range(sizes.batch)]
        log(
            f"timing K={k} against the merged model: {len(set(rows))} distinct tenants in a batch of {sizes.batch}"
        )
        own, times = timed_pairs(
            merged_run,
            lambda rows=rows: served.generate(rows, input_ids=prompts, attention_mask=mask, **generation),
            sizes.reps,
        )
        merged_times.extend(own)
        results[str(k)] = {**summary(times, tokens), "distinct_tenants_in_batch": len(set(rows))}
        results[str(k)]["merged_p50_s_same_block"] = round(statistics.median(own), 4)
        results[str(k)]["p50_vs_merged"] = round(statistics.median(times) / statistics.median(own), 3)
        log(f"K={k}: {results[str(k)]}")  # also in the log of a run cut short
    merged = summary(merged_times, tokens)

    # Page-in: adapters that are not resident are copied from pinned host memory into LRU-evicted slots.
    page_times = []
    for index in range(slots, total):
        adapter_id = ids[index]
        started = time.perf_counter()
        served.assign([adapter_id])
        sync()
        page_times.append(time.perf_counter() - started)
    cold_times = []
    for rep in range(max(3, sizes.reps // 3)):
        # A fresh set of non-resident tenants every time: each batch pages all of its adapters in.
        fresh = [ids[(rep * sizes.batch + i) % slots] for i in range(sizes.batch)]
        for adapter_id in fresh:
            served.table.evict(adapter_id)
        started = time.perf_counter()
        served.generate(fresh, input_ids=prompts, attention_mask=mask, **generation)
        sync()
        cold_times.append(time.perf_counter() - started)
    per_adapter = served.bytes_per_slot()
    return {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "model": {
            "parameters": parameters,
            "bytes": base_bytes,
            "dtype": str(dtype),
            "layers": sizes.serve_layers,
            "hidden": sizes.serve_hidden,
        },
        "workload": {
            "batch": sizes.batch,
            "prompt_tokens": sizes.prompt_tokens,
            "new_tokens": sizes.new_tokens,
            "greedy": True,
            "reps": sizes.reps,
            "lora_rank": sizes.rank,
            "targets": list(TARGET_MODULES),
        },
        "merged_model": merged,
        "batched_lora": results,
        "adapter_load_from_file_ms": {
            "p50": round(1000 * statistics.median(load_times), 2),
            "p99": round(1000 * percentile(load_times, 0.99), 2),
            "count": len(load_times),
        },
        "page_in_from_host_ms": {
            "p50": round(1000 * statistics.median(page_times), 3),
            "p99": round(1000 * percentile(page_times, 0.99), 3),
            "count": len(page_times),
        },
        "cold_batch_all_paged_in": {**summary(cold_times, tokens), "adapters_paged_per_batch": sizes.batch},
        "fill_all_slots_s": round(fill_s, 3),
        "gpu_slots": slots,
        "adapters_in_host_memory": total,
        "bytes_per_adapter": per_adapter,
        "adapter_share_of_base_model": round(per_adapter / base_bytes, 5),
        "gpu_bytes_for_all_slots_measured": gpu_stack_bytes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tiny", action="store_true", help="toy sizes: checks the steps on any machine")
    parser.add_argument("--reps", type=int, default=None)
    args = parser.parse_args(argv)
    sizes = TINY if args.tiny else FULL
    if args.reps:
        sizes = Sizes(**{**sizes.__dict__, "reps": args.reps})
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.tiny:
        print("no GPU: run with --tiny to check the steps on CPU", file=sys.stderr)
        return 2
    work = args.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"command": " ".join(["python", "bench/gpu/run.py", *(argv or sys.argv[1:])])}
    log("pipeline: preprocess -> train -> evaluate -> package")
    result["pipeline"] = pipeline(sizes, work, device)
    log("correctness against peft")
    result["correctness"] = correctness(work, device)
    log("serving")
    result["serving"] = serving(sizes, work, device)
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
