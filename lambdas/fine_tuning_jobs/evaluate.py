"""Pipeline step 3 (processing job, GPU): the evaluation engine's text metrics on the held-out split.

Answers are generated in batches (left-padded, greedy), `EVAL_BATCH_SIZE` prompts per forward pass, in the
training job's prompt format. Writes `evaluation.json` in the SageMaker model-quality shape
(`metrics.<name>.value`), which the pipeline's condition step reads (JsonGet) and the registry attaches as
model metrics.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from statistics import fmean
from typing import Any, TypeVar

OUTPUT = Path("/opt/ml/processing/output/evaluation")
T = TypeVar("T")


def report(
    pairs: Iterable[tuple[str, str]], metrics: Sequence[str]
) -> dict[str, dict[str, dict[str, float]]]:
    """Mean of each metric over (output, reference) pairs, as model-quality JSON."""
    from evaluation.metrics import text_metrics

    scores: dict[str, list[float]] = {name: [] for name in metrics}
    for output, reference in pairs:
        values = text_metrics(output, reference)
        for name in metrics:
            scores[name].append(values[name])
    if not any(scores.values()):
        raise ValueError("held-out split is empty: nothing to evaluate")
    return {"metrics": {name: {"value": fmean(values)} for name, values in scores.items()}}


def sample_answers(
    records: Sequence[dict[str, str]], answers: Sequence[str], limit: int = 5
) -> list[dict[str, str]]:
    """The first held-out answers beside their prompts and references: what a reviewer reads
    (lambdas/tenant_review) when the use case's promotion is `reviewed`."""
    return [
        {"prompt": r["prompt"], "output": a, "reference": r["reference"]}
        for r, a in zip(records[:limit], answers[:limit], strict=True)
    ]


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    if size < 1:
        raise ValueError(f"EVAL_BATCH_SIZE: must be at least 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start : start + size]


def generate_answers(
    model: Any, tokenizer: Any, prompts: Sequence[str], *, batch_size: int, max_new_tokens: int
) -> list[str]:  # pragma: no cover - needs torch; exercised by bench/gpu and tests that import torch
    import torch

    tokenizer.padding_side = "left"  # generation continues from the last position of every row
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    answers: list[str] = []
    for chunk in batches(prompts, batch_size):
        inputs = tokenizer([p + "\n" for p in chunk], return_tensors="pt", padding=True).to(model.device)
        with torch.inference_mode():
            generated = model.generate(
                **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
        width = inputs["input_ids"].shape[1]
        answers.extend(tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True))
    return answers


def evaluate(
    base_model: Path,
    adapter: Path,
    records: Sequence[dict[str, str]],
    metrics: Sequence[str],
    *,
    batch_size: int = 16,
    max_new_tokens: int = 256,
) -> dict[str, Any]:  # pragma: no cover - needs torch
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        str(adapter if (adapter / "tokenizer_config.json").exists() else base_model)
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    base = AutoModelForCausalLM.from_pretrained(str(base_model), dtype=dtype).to(device)
    model = PeftModel.from_pretrained(base, str(adapter)).eval()
    answers = generate_answers(
        model, tokenizer, [r["prompt"] for r in records], batch_size=batch_size, max_new_tokens=max_new_tokens
    )
    scored = report(zip(answers, (r["reference"] for r in records), strict=True), metrics)
    return {**scored, "samples": sample_answers(records, answers)}


def main() -> None:  # pragma: no cover - runs on a GPU processing instance
    import tarfile

    os.environ["HF_HUB_OFFLINE"] = "1"
    from common.checksums import file_sha256

    root = Path("/opt/ml/processing/input")
    artifact = next((root / "model").glob("*.tar.gz"))
    with tarfile.open(artifact) as archive:
        archive.extractall(root / "adapter", filter="data")
    records = [
        json.loads(line) for line in (root / "heldout" / "heldout.jsonl").read_text().splitlines() if line
    ]
    result = evaluate(
        root / "base_model",
        root / "adapter",
        records,
        os.environ["METRICS"].split(","),
        batch_size=int(os.environ.get("EVAL_BATCH_SIZE", "16")),
        max_new_tokens=int(os.environ.get("EVAL_MAX_NEW_TOKENS", "256")),
    )
    # The registry records the digest (ArtifactSha256); the deployer serves only a copy that matches it.
    output = {**result, "artifact": {"sha256": file_sha256(artifact)}}
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / "evaluation.json").write_text(json.dumps(output), encoding="utf-8")


if __name__ == "__main__":
    main()
