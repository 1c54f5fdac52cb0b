"""Guardrail benchmark: local-rules latency by input size, detection quality on the labeled set, and the
orchestration overhead of a verdict.

Run from the repository root:

    .venv/bin/python bench/guardrail_bench.py                                        # this tree
    .venv/bin/python bench/guardrail_bench.py --compare e63b465 --compare 29b0ecb    # and baselines, same run

With `--compare REV` (repeatable), `lambdas/guardrail` of REV is extracted to a temporary folder and every
version runs in separate worker processes, alternating round by round, so a shared machine's load hits all
alike; the report gives each version's medians over the rounds and their ratios, wall clock and the
checking thread's CPU time (which leaves out the time a loaded machine made it wait for a core), and,
because the p99 of a shared machine is mostly its load, each version's figures from the quietest round
(lowest load average).
The linearity check times this tree on adversarial texts (long runs built to make a backtracking pattern
retry) at 4 and 64 KB. Services are fakes that sleep a fixed time and return canned answers, so only our
code is measured. Quality covers the local rules layer only: Comprehend and the Bedrock guardrail need an
AWS account.
"""

from __future__ import annotations

import argparse
import base64
import gc
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
SIZES_KB = (1, 4, 16, 64)


def text_of(kib: int, unit: str = SENTENCE) -> str:
    text = (unit * (kib * 1024 // len(unit.encode()) + 1)).encode()[: kib * 1024]
    return text.decode("utf-8", "ignore")


def blob_of(kib: int) -> str:
    """A base64url blob (a pasted token or file): one long run of e-mail local-part characters."""
    raw = random.Random(0).randbytes(kib * 1024)
    return base64.urlsafe_b64encode(raw).decode()[: kib * 1024]


# The injection heuristics' anchor words, packed: "ignore ... rules" is an attack every 58 bytes, and "the",
# "all", "now" and "before" start or anchor other patterns without completing them.
ANCHORS = "ignore the previous rules and all instructions now before "
INPUTS = {
    "sentence": lambda kib: text_of(kib),  # PII-dense: an e-mail and a card every 95 bytes
    "prose": lambda kib: text_of(kib, PROSE),  # ordinary business text, nothing to find
    "blob": blob_of,
    "anchors": lambda kib: text_of(kib, ANCHORS),  # injection-dense: 71 attacks in 4 KB
}


# Texts built to make a backtracking pattern retry: long runs that almost match (no "@" after a long local
# part, digit runs with separators, capitals and digits like an IBAN, anchor words that start patterns
# without completing them, secret-key words without a key, a deny pattern's prefix without its digits).
ADVERSARIAL = {
    "local part, no @": "a.b-c_d%e+f" * 8,
    "digits and separators": "1 2-3.4/5(6)7 ",
    "IBAN-like": "DE00 AAAA 0000 AAAA 0000 AAAA 0000 AAAA ",
    "anchor words": ANCHORS,
    "secret words": "secret access key = ",
    "deny prefix": "ORD-12345 ORD-",
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
    # As the guardrail's handler does after its cold start (`common.cold_start.keep_out_of_collections`), for every revision
    # alike: what the imports built is left out of later garbage collections.
    layer.check(CheckRequest("input", (ContentItem(SENTENCE),), "retail", "m", "warm-up"), settings)
    gc.collect()
    gc.freeze()
    results: dict[str, Any] = {}
    for label, make in INPUTS.items():
        for kib in SIZES_KB:
            items = (ContentItem("You are a helpful assistant.", trusted=True), ContentItem(make(kib)))
            request = CheckRequest("input", items, "retail", "anthropic.claude-3:0", "bench-1")
            layer.check(request, settings)  # warm caches (compiled patterns, phone metadata)
            # Fewer runs for the large texts (the versions before issue 16 take up to a second there).
            count = runs if kib <= 4 else max(20, runs // (kib // 4))
            samples, cpu = [], []
            for _ in range(count):
                start, start_cpu = time.perf_counter(), time.thread_time()
                layer.check(request, settings)
                samples.append((time.perf_counter() - start) * 1000)
                cpu.append((time.thread_time() - start_cpu) * 1000)
            # wall clock p50, p99, then the thread's CPU time (what preemption on a loaded machine leaves out)
            results[f"{label} {kib} KB"] = (*percentiles(samples), *percentiles(cpu))
    return results


def worker_linearity(runs: int) -> dict[str, Any]:
    """p50 (ms) of one check of each adversarial text at 4 and 64 KB."""
    from guardrail.layers.local_rules import LocalRulesLayer
    from guardrail.model import CheckRequest, ContentItem
    from guardrail.settings import DirectionSettings, LocalRules

    layer = LocalRulesLayer()
    settings = DirectionSettings(local_rules=LocalRules(deny_patterns=(r"\bORD-\d{6}\b",)))
    results: dict[str, Any] = {}
    for label, unit in ADVERSARIAL.items():
        for kib in (4, 64):
            request = CheckRequest("input", (ContentItem(text_of(kib, unit)),), "retail", "m", "bench")
            layer.check(request, settings)
            samples = []
            for _ in range(max(11, runs // (4 if kib == 4 else 16))):
                start = time.perf_counter()
                layer.check(request, settings)
                samples.append((time.perf_counter() - start) * 1000)
            results[f"{label} {kib} KB"] = statistics.median(samples)
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
    """One worker process; its result, and the 1-minute load average when it started, under "load"."""
    # The baseline folder holds only lambdas/guardrail; lambdas/common comes from this tree.
    path = os.pathsep.join([str(lambdas), str(REPO / "lambdas")])
    load = os.getloadavg()[0]
    out = subprocess.run(
        [sys.executable, __file__, "--worker", task, "--lambdas", path, "--runs", str(runs)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    result: dict[str, Any] = json.loads(out)
    result["load"] = load
    return result


AFTER = "after (this tree)"


def compare(revisions: list[str], rounds: int, runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        before = {f"before ({rev})": extract_revision(rev, Path(tmp) / rev) for rev in revisions}
        versions = {**before, AFTER: REPO / "lambdas"}
        per_version: dict[str, list[dict[str, Any]]] = {name: [] for name in versions}
        for _ in range(rounds):
            for name, lambdas in versions.items():  # alternate: all see the same load
                per_version[name].append(run_worker(lambdas, "latency", runs))
        medians = {
            name: {
                key: tuple(statistics.median(r[key][i] for r in results) for i in range(4))
                for key in results[0]
                if key != "load"
            }
            for name, results in per_version.items()
        }
        loads = [round(r["load"], 1) for r in per_version[AFTER]]
        print(f"local rules layer, one check; median over {rounds} rounds of {runs} runs each (p50 / p99 ms); "
              f"load average at the start of each round of this tree: {loads}")  # fmt: skip
        print_table(medians, list(before))
        print(f"the same rounds, the checking thread's CPU time (time.thread_time: without the time it waited "
              f"for a core), median over {rounds} rounds (p50 / p99 ms):")  # fmt: skip
        print_table(
            {name: {k: (v[2], v[3]) for k, v in m.items()} for name, m in medians.items()}, list(before)
        )
        # The quietest round of each version: the p99 that the machine's load leaves measurable.
        quietest = {name: min(results, key=lambda r: r["load"]) for name, results in per_version.items()}
        print("quietest round of each version (load average at its start): " + ", ".join(
            f"{name} {r['load']:.1f}" for name, r in quietest.items()))  # fmt: skip
        print_table(
            {name: {k: (v[0], v[1]) for k, v in r.items() if k != "load"} for name, r in quietest.items()},
            list(before),
        )
        this_tree = medians[AFTER]
        for label in INPUTS:
            steps = ", ".join(
                f"{kib} KB {this_tree[f'{label} {kib} KB'][0] / this_tree[f'{label} 1 KB'][0]:.1f}x"
                for kib in SIZES_KB[1:]
            )
            cpu_steps = ", ".join(
                f"{kib} KB {this_tree[f'{label} {kib} KB'][2] / this_tree[f'{label} 1 KB'][2]:.1f}x"
                for kib in SIZES_KB[1:]
            )
            print(f"  {label}: p50 against 1 KB: {steps}; CPU time {cpu_steps} (linear: the size ratio)")
        linearity = run_worker(REPO / "lambdas", "linearity", runs)
        print(f"adversarial texts, this tree, p50 ms (load average {linearity.pop('load'):.1f}):")
        for label in ADVERSARIAL:
            small, large = linearity[f"{label} 4 KB"], linearity[f"{label} 64 KB"]
            print(
                f"  {label:24s} 4 KB {small:8.3f}   64 KB {large:8.3f}   {large / small:5.1f}x for 16x the text"
            )
        quality = {
            name: quality_table(run_worker(path, "quality", 1)["found"]) for name, path in versions.items()
        }
        print_quality(quality)


def print_table(figures: dict[str, dict[str, tuple[float, float]]], before: list[str]) -> None:
    header = f"  {'input':16s}" + "".join(f"{name:>30s}" for name in figures)
    print(header + "".join(f"   {name.removeprefix('before ')}/after p50 p99" for name in before))
    after = figures[AFTER]
    for key in after:
        cells = "".join(f"{m[key][0]:>18.3f} / {m[key][1]:>9.3f}" for m in figures.values())
        ratios = "".join(
            f"   {figures[name][key][0] / after[key][0]:>9.2f}x {figures[name][key][1] / after[key][1]:>6.2f}x"
            for name in before
        )
        print(f"  {key:16s}{cells}{ratios}")


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
        "--compare",
        metavar="REV",
        action="append",
        default=[],
        help="also measure lambdas/guardrail of this git revision (repeatable)",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--worker", choices=["latency", "quality", "linearity"], help=argparse.SUPPRESS)
    parser.add_argument("--lambdas", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        for folder in reversed(args.lambdas.split(os.pathsep)):
            _worker_imports(folder)
        workers = {"latency": worker_latency, "linearity": worker_linearity}
        result = workers[args.worker](args.runs) if args.worker in workers else worker_quality()
        print(json.dumps(result))
        return
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    compare(args.compare, args.rounds, args.runs)
    bench_orchestration()


if __name__ == "__main__":
    main()
