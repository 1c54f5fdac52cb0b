"""Pipeline step 2 (training job, GPU): LoRA fine-tune of the base model from the platform bucket.

Runs inside the Hugging Face training container; the base model comes from the `base_model` channel (never
the internet). The loss covers the answer tokens only: prompt positions carry the label -100, which the
cross-entropy ignores, so the adapter learns to answer rather than to repeat prompts. With
`early_stopping_patience` > 0 training stops once the validation loss has not improved for that many
evaluations and the best checkpoint is kept. Writes the adapter to /opt/ml/model, which SageMaker packs into
model.tar.gz. With managed spot, checkpoints in /opt/ml/checkpoints let an interrupted job resume.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CHANNELS = Path("/opt/ml/input/data")
HYPERPARAMETERS = Path("/opt/ml/input/config/hyperparameters.json")
IGNORE_INDEX = -100  # the label torch's cross-entropy skips
DEFAULTS: dict[str, float] = {
    "lora_rank": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "epochs": 3,
    "learning_rate": 2e-4,
    "batch_size": 4,
    "max_length": 1024,
    "early_stopping_patience": 0,
}
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")


def load_hyperparameters(path: Path = HYPERPARAMETERS) -> dict[str, float]:
    raw = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise ValueError(
            f"hyperparameters: unknown name(s) {', '.join(unknown)}; allowed: {', '.join(DEFAULTS)}"
        )
    values: dict[str, float] = {}
    for key, default in DEFAULTS.items():
        try:
            values[key] = float(raw.get(key, default))
        except ValueError:
            raise ValueError(f"hyperparameters.{key}: {raw[key]!r} is not a number") from None
    return values


def answer_only_example(
    prompt_ids: Sequence[int], answer_ids: Sequence[int], max_length: int
) -> dict[str, list[int]]:
    """Prompt then answer as one sequence; only the answer's positions keep their label.

    Truncation cuts the prompt's start, never the answer's, so each example keeps something to learn from.
    """
    if not answer_ids:
        raise ValueError("reference: the answer is empty after tokenization")
    answer = list(answer_ids)[:max_length]
    room = max_length - len(answer)
    prompt = list(prompt_ids)[max(0, len(prompt_ids) - room) :] if room > 0 else []
    return {
        "input_ids": prompt + answer,
        "attention_mask": [1] * (len(prompt) + len(answer)),
        "labels": [IGNORE_INDEX] * len(prompt) + answer,
    }


def encode(tokenizer: Any, record: dict[str, str], max_length: int) -> dict[str, list[int]]:
    prompt_ids = tokenizer(record["prompt"] + "\n", add_special_tokens=True)["input_ids"]
    answer_ids = tokenizer(record["reference"], add_special_tokens=False)["input_ids"] + [
        tokenizer.eos_token_id
    ]
    return answer_only_example(prompt_ids, answer_ids, max_length)


def read_jsonl(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def train(
    base_model: Path,
    train_file: Path,
    validation_file: Path,
    output_dir: Path,
    checkpoint_dir: Path,
    hp: dict[str, float],
    *,
    bf16: bool = True,
) -> dict[str, Any]:  # pragma: no cover - needs torch; exercised by bench/gpu and tests that import torch
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        EarlyStoppingCallback,
        Trainer,
        TrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(str(base_model))
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    dtype = torch.bfloat16 if bf16 else torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(base_model), dtype=dtype)
    model = get_peft_model(
        model,
        LoraConfig(
            r=int(hp["lora_rank"]),
            lora_alpha=int(hp["lora_alpha"]),
            lora_dropout=hp["lora_dropout"],
            target_modules=list(TARGET_MODULES),
            task_type="CAUSAL_LM",
        ),
    )
    max_length = int(hp["max_length"])
    train_set = [encode(tokenizer, r, max_length) for r in read_jsonl(train_file)]
    validation_set = [encode(tokenizer, r, max_length) for r in read_jsonl(validation_file)]
    patience = int(hp["early_stopping_patience"])
    args = TrainingArguments(
        output_dir=str(checkpoint_dir),
        num_train_epochs=hp["epochs"],
        learning_rate=hp["learning_rate"],
        per_device_train_batch_size=int(hp["batch_size"]),
        per_device_eval_batch_size=int(hp["batch_size"]),
        bf16=bf16,
        save_strategy="epoch",
        eval_strategy="epoch" if validation_set else "no",
        save_total_limit=2,
        load_best_model_at_end=patience > 0 and bool(validation_set),
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        logging_steps=10,
        report_to=[],
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=validation_set or None,
        # Pads labels with -100 as well, so padding never counts as an answer token.
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX),
        callbacks=[EarlyStoppingCallback(early_stopping_patience=patience)]
        if args.load_best_model_at_end
        else [],
    )
    resume = any(checkpoint_dir.glob("checkpoint-*"))
    result = trainer.train(resume_from_checkpoint=resume or None)
    model.save_pretrained(str(output_dir))
    tokenizer.save_pretrained(str(output_dir))
    history = [e for e in trainer.state.log_history if "eval_loss" in e]
    return {"train_loss": result.training_loss, "epochs_run": trainer.state.epoch, "eval_history": history}


def main() -> None:  # pragma: no cover - runs on a GPU training instance
    os.environ["HF_HUB_OFFLINE"] = "1"  # network isolation: everything comes from the channels
    train(
        CHANNELS / "base_model",
        CHANNELS / "train" / "train.jsonl",
        CHANNELS / "validation" / "validation.jsonl",
        Path("/opt/ml/model"),
        Path("/opt/ml/checkpoints"),
        load_hyperparameters(),
    )


if __name__ == "__main__":
    main()
