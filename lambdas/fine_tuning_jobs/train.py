"""Pipeline step 2 (training job, GPU): LoRA fine-tune of the base model from the platform bucket.

Runs inside the Hugging Face training container (transformers, peft); the base model comes from the
`base_model` channel (never the internet). Writes the adapter to /opt/ml/model, which SageMaker packs
into model.tar.gz. With managed spot, checkpoints in /opt/ml/checkpoints let an interrupted job resume.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

CHANNELS = Path("/opt/ml/input/data")
HYPERPARAMETERS = Path("/opt/ml/input/config/hyperparameters.json")


def load_hyperparameters(path: Path = HYPERPARAMETERS) -> dict[str, float]:
    raw = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    defaults = {"lora_rank": 16, "lora_alpha": 32, "lora_dropout": 0.05, "epochs": 3, "learning_rate": 2e-4}
    return {key: float(raw.get(key, value)) for key, value in defaults.items()}


def main() -> None:  # pragma: no cover - runs on a GPU training instance
    import torch
    from datasets import load_dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    os.environ["HF_HUB_OFFLINE"] = "1"  # network isolation: everything comes from the channels
    hp = load_hyperparameters()
    base = str(CHANNELS / "base_model")
    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(base, torch_dtype=torch.bfloat16, device_map="auto")
    model = get_peft_model(
        model,
        LoraConfig(
            r=int(hp["lora_rank"]),
            lora_alpha=int(hp["lora_alpha"]),
            lora_dropout=hp["lora_dropout"],
            task_type="CAUSAL_LM",
        ),
    )
    files = {split: str(CHANNELS / split / f"{split}.jsonl") for split in ("train", "validation")}
    data = load_dataset("json", data_files=files).map(
        lambda r: tokenizer(
            r["prompt"] + "\n" + r["reference"] + tokenizer.eos_token, truncation=True, max_length=1024
        ),
        remove_columns=["prompt", "reference"],
    )
    checkpoints = "/opt/ml/checkpoints"
    args = TrainingArguments(
        output_dir=checkpoints,
        num_train_epochs=hp["epochs"],
        learning_rate=hp["learning_rate"],
        per_device_train_batch_size=4,
        bf16=True,
        save_strategy="epoch",
        eval_strategy="epoch",
        logging_steps=10,
        report_to=[],
    )
    from transformers import DataCollatorForLanguageModeling

    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=data["train"],
        eval_dataset=data["validation"],
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
    )
    resume = any(Path(checkpoints).glob("checkpoint-*"))
    trainer.train(resume_from_checkpoint=resume or None)
    model.save_pretrained("/opt/ml/model")
    tokenizer.save_pretrained("/opt/ml/model")


if __name__ == "__main__":
    main()
