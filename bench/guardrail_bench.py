"""Guardrail benchmark: local-rules latency by input size, and orchestration overhead of a verdict.

Run from the repository root:  python bench/guardrail_bench.py
Services are fakes that sleep a fixed time and return canned answers, so only our code is measured.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "lambdas"))
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "bench")

from guardrail.engine import GuardrailEngine
from guardrail.layers.base import Layer
from guardrail.layers.bedrock import BedrockGuardrailLayer
from guardrail.layers.local_rules import LocalRulesLayer
from guardrail.layers.pii import PiiLayer
from guardrail.layers.toxicity import ToxicityLayer
from guardrail.model import CheckRequest, ContentItem
from guardrail.settings import (
    BedrockGuardrail,
    DirectionSettings,
    GuardrailSettings,
    LayerSwitches,
    LocalRules,
)

SENTENCE = "Bitte schick die Rechnung an jürgen.müller@example.de, Karte 4111 1111 1111 1111, danke 😀. "
LATENCY_S = {"toxicity": 0.060, "pii": 0.045, "bedrock": 0.080}


def text_of(kib: int) -> str:
    text = (SENTENCE * (kib * 1024 // len(SENTENCE.encode()) + 1)).encode()[: kib * 1024]
    return text.decode("utf-8", "ignore")


def blob_of(kib: int) -> str:
    """A base64url blob (a pasted token or file): one long run of e-mail local-part characters."""
    raw = random.Random(0).randbytes(kib * 1024)
    return base64.urlsafe_b64encode(raw).decode()[: kib * 1024]


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples_ms, n=100, method="inclusive")
    return statistics.median(samples_ms), cuts[98]


def request(text: str) -> CheckRequest:
    items = (ContentItem("You are a helpful assistant.", trusted=True), ContentItem(text))
    return CheckRequest("input", items, "retail", "anthropic.claude-3:0", "bench-1")


def bench_local_rules(runs: int = 300, blob_runs: int = 30) -> None:
    layer = LocalRulesLayer()
    settings = DirectionSettings(
        local_rules=LocalRules(deny_terms=("acme-secret", "project x"), deny_patterns=(r"\bORD-\d{6}\b",))
    )
    print("local rules layer (one check):")
    inputs = [("sentence", text_of, runs), ("base64url blob", blob_of, blob_runs)]
    for label, make_text, count in inputs:
        for kib in (1, 4, 16):
            req = request(make_text(kib))
            layer.check(req, settings)  # warm the compiled-pattern cache
            samples = []
            for _ in range(count):
                start = time.perf_counter()
                layer.check(req, settings)
                samples.append((time.perf_counter() - start) * 1000)
            p50, p99 = percentiles(samples)
            print(f"  {label} {kib:>2} KB: p50 {p50:.3f} ms  p99 {p99:.3f} ms  ({count} runs)")


def bench_email_scan(runs: int = 10) -> None:
    """The e-mail scan alone on the blob: plain finditer (the old code path) against email_matches."""
    try:
        from guardrail.layers.local_rules import EMAIL_REGEX, email_matches
    except ImportError:  # benchmarking a revision from before the linear scan
        return
    print("e-mail scan alone, base64url blob:")
    for kib in (1, 4, 16):
        text = blob_of(kib)
        medians = []
        for scan in (EMAIL_REGEX.finditer, email_matches):
            samples = []
            for _ in range(runs):
                start = time.perf_counter()
                list(scan(text))
                samples.append((time.perf_counter() - start) * 1000)
            medians.append(statistics.median(samples))
        plain, linear = medians
        print(
            f"  {kib:>2} KB: finditer p50 {plain:.3f} ms, email_matches p50 {linear:.3f} ms "
            f"({plain / linear:.0f}x, {runs} runs)"
        )


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
    req = request(text_of(1))  # 1 KB: one call per service
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


if __name__ == "__main__":
    # --help answers with the docstring; the bench takes no options
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    bench_local_rules()
    bench_email_scan()
    bench_orchestration()
