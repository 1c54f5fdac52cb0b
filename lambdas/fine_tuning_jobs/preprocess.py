"""Pipeline step 1 (processing job): tenant JSON lines -> train / validation / held-out splits.

Input records are the evaluation catalog's format (`prompt`, `reference`); the split is deterministic per
record (hash of its id or text), so reruns of a tenant's data give the same held-out set.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

INPUT = Path("/opt/ml/processing/input/data")
OUTPUT = Path("/opt/ml/processing/output")


def bucket_of(record: dict[str, str], held_out_fraction: float) -> str:
    key = record.get("id") or record["prompt"]
    position = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if position < held_out_fraction:
        return "heldout"
    if position < 2 * held_out_fraction:
        return "validation"
    return "train"


def split(lines: Iterable[str], held_out_fraction: float) -> dict[str, list[dict[str, str]]]:
    splits: dict[str, list[dict[str, str]]] = {"train": [], "validation": [], "heldout": []}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        if not isinstance(record.get("prompt"), str) or not isinstance(record.get("reference"), str):
            raise ValueError(f"line {number}: needs string fields 'prompt' and 'reference'")
        splits[bucket_of(record, held_out_fraction)].append(record)
    return splits


def main() -> None:
    fraction = float(os.environ.get("HELD_OUT_FRACTION", "0.1"))
    lines = (
        line
        for path in sorted(INPUT.rglob("*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
    )
    for name, records in split(lines, fraction).items():
        target = OUTPUT / name
        target.mkdir(parents=True, exist_ok=True)
        (target / f"{name}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in records), encoding="utf-8"
        )


if __name__ == "__main__":
    main()
