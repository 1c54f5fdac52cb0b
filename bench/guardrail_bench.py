"""Guardrail benchmark: local-rules latency by input size, detection quality on the labeled set, and the
orchestration overhead of a verdict.

Run from the repository root:

    .venv/bin/python bench/guardrail_bench.py                      # this tree
    .venv/bin/python bench/guardrail_bench.py --compare e63b465    # and a baseline revision, same run

With `--compare REV`, `lambdas/guardrail` of REV is extracted to a temporary folder and both versions run in
separate worker processes, alternating round by round, so a shared machine's load hits both alike; the
report gives each version's medians over the rounds and their ratio. Services are fakes that sleep a fixed
time and return canned answers, so only our code is measured. Quality covers the local rules layer only:
Comprehend and the Bedrock guardrail need an AWS account (`--live` calls them with the default credentials).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
LABELED = REPO / "bench" / "data" / "guardrail_labeled.jsonl"
SENTENCE = "Bitte schick die Rechnung an jürgen.müller@example.de, Karte 4111 1111 1111 1111, danke 😀. "
PROSE = (
    "The quarterly review covers revenue, churn and the hiring plan. Revenue grew in every region except "
    "the north, where two large customers delayed their renewals until the next fiscal year. Churn fell "
    "slightly after the support team introduced weekly check-ins. "
)
LATENCY_S = {"toxicity": 0.060, "pii": 0.045, "bedrock": 0.080}
SIZES_KB = (1, 4, 16)


def text_of(kib: int, unit: str = SENTENCE) -> str:
    text = (unit * (kib * 1024 // len(unit.encode()) + 1)).encode()[: kib * 1024]
    return text.decode("utf-8", "ignore")


def blob_of(kib: int) -> str:
    """A base64url blob (a pasted token or file): one long run of e-mail local-part characters."""
    raw = random.Random(0).randbytes(kib * 1024)
    return base64.urlsafe_b64encode(raw).decode()[: kib * 1024]


INPUTS = {
    "sentence": lambda kib: text_of(kib),  # PII-dense: an e-mail and a card every 95 bytes
    "prose": lambda kib: text_of(kib, PROSE),  # ordinary business text, nothing to find
    "blob": blob_of,
}


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples_ms, n=100, method="inclusive")
    return statistics.median(samples_ms), cuts[98]


# ---- worker: runs inside one version's code ---------------------------------------------------------------


def _worker_imports(lambdas: str) -> None:
    sys.path.insert(0, lambdas)
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "bench")


def worker_latency(runs: int) -> dict[str, Any]:
    from guardrail.layers.local_rules import LocalRulesLayer
    from guardrail.model import CheckRequest, ContentItem
    from guardrail.settings import DirectionSettings, LocalRules

    layer = LocalRulesLayer()
    settings = DirectionSettings(
        local_rules=LocalRules(deny_terms=("acme-secret", "project x"), deny_patterns=(r"\bORD-\d{6}\b",))
    )
    results: dict[str, Any] = {}
    for label, make in INPUTS.items():
        for kib in SIZES_KB:
            items = (ContentItem("You are a helpful assistant.", trusted=True), ContentItem(make(kib)))
            request = CheckRequest("input", items, "retail", "anthropic.claude-3:0", "bench-1")
            layer.check(request, settings)  # warm caches (compiled patterns, phone metadata)
            count = runs if label != "blob" or kib < 16 else max(10, runs // 10)
            samples = []
            for _ in range(count):
                start = time.perf_counter()
                layer.check(request, settings)
                samples.append((time.perf_counter() - start) * 1000)
            results[f"{label} {kib} KB"] = percentiles(samples)
    return results


def worker_quality() -> dict[str, Any]:
    from guardrail.layers.local_rules import LocalRulesLayer
    from guardrail.model import CheckRequest, ContentItem
    from guardrail.settings import DirectionSettings

    layer = LocalRulesLayer()
    settings = DirectionSettings()
    rows = [json.loads(line) for line in LABELED.read_text(encoding="utf-8").splitlines()]
    found: dict[str, list[str]] = {}
    for row in rows:
        request = CheckRequest("input", (ContentItem(row["text"]),), "retail", "m", row["id"])
        found[row["id"]] = sorted({f.type for f in layer.check(request, settings).findings})
    return {"found": found}


# ---- quality from the worker's findings -------------------------------------------------------------------


def quality_table(found: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    rows = [json.loads(line) for line in LABELED.read_text(encoding="utf-8").splitlines()]
    kinds = sorted({kind for row in rows for kind in row["expect"]})
    table: dict[str, dict[str, float]] = {}
    for kind in kinds:
        tp = sum(1 for r in rows if kind in r["expect"] and kind in found[r["id"]])
        fn = sum(1 for r in rows if kind in r["expect"] and kind not in found[r["id"]])
        fp = sum(1 for r in rows if kind not in r["expect"] and kind in found[r["id"]])
        table[kind] = {
            "attacks": tp + fn,
            "tp": tp,
            "fp": fp,
            "precision": tp / (tp + fp) if tp + fp else float("nan"),
            "recall": tp / (tp + fn) if tp + fn else float("nan"),
        }
    benign = [r for r in rows if r["label"] == "benign"]
    table["(benign texts flagged)"] = {
        "attacks": len(benign),
        "tp": 0,
        "fp": sum(1 for r in benign if found[r["id"]]),
        "precision": float("nan"),
        "recall": float("nan"),
    }
    return table


def print_quality(tables: dict[str, dict[str, dict[str, float]]]) -> None:
    rows = [json.loads(line) for line in LABELED.read_text(encoding="utf-8").splitlines()]
    print(f"local rules quality on {LABELED.relative_to(REPO)} ({len(rows)} texts, "
          f"{sum(r['label'] == 'benign' for r in rows)} benign):")  # fmt: skip
    for version, table in tables.items():
        print(f"  {version}:")
        for kind, row in table.items():
            print(
                f"    {kind:36s} n={row['attacks']:3.0f}  tp={row['tp']:3.0f}  fp={row['fp']:3.0f}  "
                f"precision={row['precision']:.2f}  recall={row['recall']:.2f}"
            )


# ---- driver -----------------------------------------------------------------------------------------------


def extract_revision(revision: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "lambdas/guardrail"],
        cwd=REPO, check=True, capture_output=True,
    ).stdout  # fmt: skip
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "lambdas"


def run_worker(lambdas: Path, task: str, runs: int) -> dict[str, Any]:
    # The baseline folder holds only lambdas/guardrail; lambdas/common comes from this tree.
    path = os.pathsep.join([str(lambdas), str(REPO / "lambdas")])
    out = subprocess.run(
        [sys.executable, __file__, "--worker", task, "--lambdas", path, "--runs", str(runs)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    result: dict[str, Any] = json.loads(out)
    return result


def compare(revision: str | None, rounds: int, runs: int) -> None:
    versions = {"after (this tree)": REPO / "lambdas"}
    with tempfile.TemporaryDirectory() as tmp:
        if revision:
            versions = {f"before ({revision})": extract_revision(revision, Path(tmp)), **versions}
        per_version: dict[str, list[dict[str, Any]]] = {name: [] for name in versions}
        for _ in range(rounds):
            for name, lambdas in versions.items():  # alternate: both see the same load
                per_version[name].append(run_worker(lambdas, "latency", runs))
        print(
            f"local rules layer, one check; median over {rounds} rounds of {runs} runs each (p50 / p99 ms):"
        )
        header = f"  {'input':16s}" + "".join(f"{name:>32s}" for name in versions)
        print(header + ("    ratio p50 / p99" if revision else ""))
        medians: dict[str, dict[str, tuple[float, float]]] = {}
        for name, results in per_version.items():
            medians[name] = {
                key: (
                    statistics.median(r[key][0] for r in results),
                    statistics.median(r[key][1] for r in results),
                )
                for key in results[0]
            }
        for key in medians[next(iter(versions))]:
            cells = "".join(f"{m[key][0]:>20.3f} / {m[key][1]:>9.3f}" for m in medians.values())
            ratio = ""
            if revision:
                before, after = medians[f"before ({revision})"][key], medians["after (this tree)"][key]
                ratio = f"    {before[0] / after[0]:.2f}x / {before[1] / after[1]:.2f}x"
            print(f"  {key:16s}{cells}{ratio}")
        this_tree = medians["after (this tree)"]
        for label in INPUTS:
            growth = this_tree[f"{label} 16 KB"][0] / this_tree[f"{label} 1 KB"][0]
            print(f"  {label}: 16 KB / 1 KB p50 = {growth:.1f}x for 16x the text (linear: about 16x)")
        quality = {
            name: quality_table(run_worker(path, "quality", 1)["found"]) for name, path in versions.items()
        }
        print_quality(quality)


class SlowComprehend:
    def detect_toxic_content(self, TextSegments, LanguageCode):  # noqa: N803 - boto3 names
        time.sleep(LATENCY_S["toxicity"])
        return {"ResultList": [{"Labels": [], "Toxicity": 0.0} for _ in TextSegments]}

    def detect_pii_entities(self, Text, LanguageCode):  # noqa: N803
        time.sleep(LATENCY_S["pii"])
        return {"Entities": [{"Type": "EMAIL", "Score": 0.99, "BeginOffset": 29, "EndOffset": 53}]}


class SlowBedrock:
    def apply_guardrail(self, **_kwargs):
        time.sleep(LATENCY_S["bedrock"])
        return {"action": "NONE", "outputs": [], "assessments": []}


def bench_orchestration(runs: int = 60) -> None:
    sys.path.insert(0, str(REPO / "lambdas"))
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "bench")
    from guardrail.engine import GuardrailEngine
    from guardrail.layers.base import Layer
    from guardrail.layers.bedrock import BedrockGuardrailLayer
    from guardrail.layers.local_rules import LocalRulesLayer
    from guardrail.layers.pii import PiiLayer
    from guardrail.layers.toxicity import ToxicityLayer
    from guardrail.model import CheckRequest, ContentItem
    from guardrail.settings import BedrockGuardrail, DirectionSettings, GuardrailSettings, LayerSwitches

    direction = DirectionSettings(layers=LayerSwitches(bedrock=True), failure_policy="fail_closed")
    settings = GuardrailSettings(
        input=direction, bedrock_guardrail=BedrockGuardrail(guardrail_id="abc123", version="1")
    )
    layers: dict[str, Layer] = {
        "local_rules": LocalRulesLayer(),
        "toxicity": ToxicityLayer(SlowComprehend()),
        "pii": PiiLayer(SlowComprehend()),
        "bedrock": BedrockGuardrailLayer(SlowBedrock(), "abc123", "1"),
    }
    engine = GuardrailEngine(settings, layers=layers, metrics=False)
    items = (ContentItem("You are a helpful assistant.", trusted=True), ContentItem(text_of(1)))
    req = CheckRequest("input", items, "retail", "anthropic.claude-3:0", "bench-1")
    engine.check(req)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        verdict = engine.check(req)
        samples.append((time.perf_counter() - start) * 1000)
    assert verdict.action == "block"  # the card number is blocked by the local PII fallback
    ideal = max(LATENCY_S.values()) * 1000
    p50, p99 = percentiles(samples)
    print(f"whole verdict, 4 layers concurrently, services {LATENCY_S} s, 1 KB input:")
    print(
        f"  ideal (slowest layer) {ideal:.1f} ms; p50 {p50:.2f} ms ({p50 / ideal:.3f}x); p99 {p99:.2f} ms "
        f"({p99 / ideal:.3f}x); sequential would be {sum(LATENCY_S.values()) * 1000:.0f} ms ({runs} runs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--compare", metavar="REV", help="also measure lambdas/guardrail of this git revision"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--worker", choices=["latency", "quality"], help=argparse.SUPPRESS)
    parser.add_argument("--lambdas", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        for folder in reversed(args.lambdas.split(os.pathsep)):
            _worker_imports(folder)
        result = worker_latency(args.runs) if args.worker == "latency" else worker_quality()
        print(json.dumps(result))
        return
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    compare(args.compare, args.rounds, args.runs)
    bench_orchestration()


if __name__ == "__main__":
    main()
