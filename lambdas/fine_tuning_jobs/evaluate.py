"""Pipeline step 3 (processing job, GPU): the evaluation engine's text metrics on the held-out split.

Writes `evaluation.json` in the SageMaker model-quality shape (`metrics.<name>.value`), which the
pipeline's condition step reads (JsonGet) and the registry attaches as model metrics.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from statistics import fmean

OUTPUT = Path("/opt/ml/processing/output/evaluation")


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


def main() -> None:  # pragma: no cover - runs on a GPU processing instance
    import tarfile

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from common.checksums import file_sha256

    root = Path("/opt/ml/processing/input")
    artifact = next((root / "model").glob("*.tar.gz"))
    with tarfile.open(artifact) as archive:
        archive.extractall(root / "adapter", filter="data")
    tokenizer = AutoTokenizer.from_pretrained(str(root / "base_model"))
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(str(root / "base_model"), device_map="auto"),
        str(root / "adapter"),
    )
    records = [
        json.loads(line) for line in (root / "heldout" / "heldout.jsonl").read_text().splitlines() if line
    ]

    def answer(prompt: str) -> str:
        inputs = tokenizer(prompt + "\n", return_tensors="pt").to(model.device)
        generated = model.generate(**inputs, max_new_tokens=256, do_sample=False)
        return str(tokenizer.decode(generated[0][inputs["input_ids"].shape[1] :], skip_special_tokens=True))

    result = report(
        ((answer(r["prompt"]), r["reference"]) for r in records), os.environ["METRICS"].split(",")
    )
    # The registry records the digest (ArtifactSha256); the deployer serves only a copy that matches it.
    output = {**result, "artifact": {"sha256": file_sha256(artifact)}}
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / "evaluation.json").write_text(json.dumps(output), encoding="utf-8")


if __name__ == "__main__":
    main()
