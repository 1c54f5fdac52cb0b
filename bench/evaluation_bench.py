"""Evaluation engine benchmark: engine overhead, run efficiency vs ideal, metric throughput.

    python bench/evaluation_bench.py [--records 400] [--latency-ms 20] [--concurrency 8]

Model doubles answer with a fixed latency (time.sleep), so the figures measure the engine, not a model.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lambdas"))

from evaluation import metrics
from evaluation.aggregate import summarize
from evaluation.engine import run_batch
from evaluation.scoring import ScoringContext, score_records
from evaluation.selection import rank_models
from evaluation.settings import EvaluationSettings
from evaluation.store import MemoryResultStore

from common.evaluation_dataset import EvaluationRecord
from common.model_gateway import ModelRequest, ModelResponse

REFERENCE = (
    "The quarterly report shows revenue grew by twelve percent while costs stayed flat across regions."
)
OUTPUT = "Revenue grew twelve percent in the quarter and costs were flat in all regions, the report shows."


class FixedLatencyModel:
    def __init__(self, name: str, latency_s: float, text: str) -> None:
        self.name, self.latency_s, self.text = name, latency_s, text

    def invoke(self, request: ModelRequest) -> ModelResponse:
        if self.latency_s:
            time.sleep(self.latency_s)
        return ModelResponse(self.text, self.latency_s * 1000, 40, 20)


def records(n: int, kind: str) -> list[EvaluationRecord]:
    if kind == "label":
        return [EvaluationRecord(id=f"r{i}", input=f"Sentiment {i}", labels=["positive"]) for i in range(n)]
    return [
        EvaluationRecord(id=f"r{i}", input=f"Summarize {i}", reference_output=REFERENCE) for i in range(n)
    ]


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def engine_overhead(n: int, repeat: int) -> None:
    data = records(n, "label")
    model = FixedLatencyModel("m", 0.0, "positive")
    ctx = ScoringContext(run_id="bench", settings=EvaluationSettings(), label_set=["positive", "negative"])
    bare = timed(lambda: [model.invoke(ModelRequest(r.input or "", record_id=r.id)) for r in data], repeat)
    engine = timed(lambda: score_records(data, [model], ctx), repeat)
    batched = timed(
        lambda: [run_batch(data[i : i + 20], [model], ctx, MemoryResultStore()) for i in range(0, n, 20)],
        repeat,
    )
    rows = score_records(data, [model], ctx)
    summary = timed(lambda: rank_models(summarize(rows), ctx.settings), repeat)
    per = lambda xs: statistics.median(xs) / n * 1e6  # noqa: E731
    print(f"engine overhead, {n} discrete-label records, zero-latency model (median of {repeat}):")
    print(f"  bare model loop            {per(bare):8.1f} us/record")
    print(
        f"  score_records              {per(engine):8.1f} us/record  (overhead {per(engine) - per(bare):.1f})"
    )
    print(f"  run_batch x20 + store      {per(batched):8.1f} us/record")
    print(f"  summarize + rank           {per(summary):8.1f} us/record")


def run_efficiency(n: int, latency_ms: float, concurrency: int) -> None:
    data = records(n, "label")
    model = FixedLatencyModel("m", latency_ms / 1000, "positive")
    ctx = ScoringContext(run_id="bench", settings=EvaluationSettings(), label_set=["positive"])
    ideal = n * latency_ms / 1000 / concurrency
    actual = timed(lambda: score_records(data, [model], ctx, workers=concurrency), 3)
    best = statistics.median(actual)
    print(f"run efficiency, {n} records x {latency_ms:g} ms model, concurrency {concurrency} (median of 3):")
    print(f"  ideal {ideal:.3f} s, actual {best:.3f} s, efficiency {ideal / best:.1%}")


def metric_throughput(n: int) -> None:
    metrics.text_metrics(OUTPUT, REFERENCE)  # load libraries once
    out_tokens, ref_tokens = OUTPUT.split(), REFERENCE.split()
    cases = {
        "exact + quasi-exact": lambda: (
            metrics.exact_match(OUTPUT, REFERENCE),
            metrics.quasi_exact_match(OUTPUT, REFERENCE),
        ),
        "token F1": lambda: metrics.token_f1(OUTPUT, REFERENCE),
        "ROUGE-1/2/L": lambda: metrics._rouge().score(REFERENCE, OUTPUT),
        "BLEU (sacrebleu)": lambda: metrics.bleu(OUTPUT, REFERENCE),
        "METEOR (nltk)": lambda: metrics.meteor(out_tokens, ref_tokens),
        "all text metrics": lambda: metrics.text_metrics(OUTPUT, REFERENCE),
        "label match": lambda: metrics.match_label("The answer is positive.", ["positive", "negative"]),
    }
    print(f"metric cost per record ({n} calls each, 16-word output):")
    for name, fn in cases.items():
        samples = []
        for _ in range(n):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
        samples.sort()
        p50, p99 = samples[len(samples) // 2] * 1e6, samples[int(len(samples) * 0.99)] * 1e6
        print(f"  {name:<22} p50 {p50:8.1f} us  p99 {p99:8.1f} us  ~{1e6 / p50:8.0f} records/s")


def cold_start() -> None:
    """Whole-process cost of loading the metric libraries, against a bare interpreter (median of 3)."""
    import subprocess

    lambdas = str(Path(__file__).resolve().parents[1] / "lambdas")
    load = "from evaluation.metrics import text_metrics; text_metrics('a b c', 'a b d')"
    bare = timed(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), 3)
    full = timed(lambda: subprocess.run([sys.executable, "-c", load], check=True, cwd=lambdas), 3)
    print(
        f"cold start: bare python {statistics.median(bare):.3f} s, "
        f"+ metric libraries and first score {statistics.median(full):.3f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=400)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    engine_overhead(2000, 5)
    run_efficiency(args.records, args.latency_ms, args.concurrency)
    run_efficiency(args.records, args.latency_ms, 2 * args.concurrency)
    cold_start()
    metric_throughput(500)


if __name__ == "__main__":
    main()
