"""Run an evaluation locally over a JSON-lines dataset (from `lambdas/`):

    python -m evaluation.cli --dataset data.jsonl --outputs outputs.jsonl --report report.html
    python -m evaluation.cli --dataset data.jsonl --settings evaluation.json --live   # calls the models

Same engine as the Lambdas: scoring, aggregation, ranking and gate; results stay on disk.
Exit status: 0, 1 when --gate is given and the gate fails, 2 for bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from common.evaluation_dataset import DatasetFormatError, DatasetLineError, read_records
from common.model_gateway import ModelClient, load_precomputed
from evaluation.aggregate import ModelSummary, summarize
from evaluation.engine import label_set
from evaluation.models import build_candidates, build_judge
from evaluation.report import render_report
from evaluation.scoring import ScoredRecord, ScoringContext, TemplatePrompts, score_records
from evaluation.selection import Ranking, evaluate_gate, rank_models
from evaluation.settings import EvaluationSettings
from evaluation.store import dumps


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m evaluation.cli", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, type=Path, help="evaluation dataset (JSON lines)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--outputs", type=Path, help="precomputed outputs: JSON lines of {id, model, output}")
    source.add_argument("--live", action="store_true", help="call the candidate models of --settings")
    parser.add_argument("--settings", type=Path, help="EvaluationSettings as JSON")
    parser.add_argument(
        "--prompts", type=Path, help="JSON object prompt_ref -> template, for prompt_ref records"
    )
    strictness = parser.add_mutually_exclusive_group()
    strictness.add_argument("--strict", dest="strict", action="store_true", default=None)
    strictness.add_argument("--skip-bad-lines", dest="strict", action="store_false")
    parser.add_argument("--run-id", default="local")
    parser.add_argument("--report", type=Path, help="write the HTML report here")
    parser.add_argument("--results", type=Path, help="write per-record results (JSON lines) here")
    parser.add_argument("--gate", action="store_true", help="exit 1 when the gate fails")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser.parse_args(argv)


def leaderboard_text(summaries: Sequence[ModelSummary], ranking: Ranking) -> str:
    by_name = {s.model: s for s in summaries}
    metric = ranking.quality_metric or "-"
    lines = [f"{'#':>2}  {'model':<28} {'score':>6} {metric:>14} {'p50 ms':>8} {'$/1k rec':>9} {'errors':>6}"]
    for m in ranking.models:
        s = by_name[m.model]
        quality = "-" if m.quality is None else f"{m.quality:.3f}"
        p50 = "-" if s.latency_p50_ms is None else f"{s.latency_p50_ms:.0f}"
        cost = "-" if s.cost_per_1k_records_usd is None else f"{s.cost_per_1k_records_usd:.4f}"
        lines.append(
            f"{m.rank:>2}  {m.model:<28} {m.score:>6.3f} {quality:>14} {p50:>8} {cost:>9} {s.errors:>6}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = (
            EvaluationSettings.model_validate_json(args.settings.read_text())
            if args.settings
            else EvaluationSettings()
        )
    except ValidationError as exc:
        print(f"settings: {exc}", file=sys.stderr)
        return 2
    strict = settings.strict_dataset if args.strict is None else args.strict
    line_errors: list[DatasetLineError] = []
    try:
        with args.dataset.open(encoding="utf-8") as lines:
            records = list(read_records(lines, strict=strict, errors=line_errors))
    except DatasetFormatError as exc:
        print(f"{args.dataset}: {exc} (use --skip-bad-lines to skip malformed lines)", file=sys.stderr)
        return 2
    for error in line_errors:
        print(f"{args.dataset}: skipped line {error.line_number}: {error.message}", file=sys.stderr)

    models: list[ModelClient]
    if args.outputs:
        try:
            with args.outputs.open(encoding="utf-8") as lines:
                models = list(load_precomputed(lines).values())
        except ValueError as exc:
            print(f"{args.outputs}: {exc}", file=sys.stderr)
            return 2
    else:
        models = build_candidates(settings)
    if not models or not records:
        print("nothing to evaluate: no models or no valid records", file=sys.stderr)
        return 2

    prompts = TemplatePrompts(json.loads(args.prompts.read_text())) if args.prompts else None
    ctx = ScoringContext(
        run_id=args.run_id,
        settings=settings,
        judge=build_judge(settings),
        prompts=prompts,
        label_set=label_set(records),
    )
    total, done, lock = len(records) * len(models), [0], threading.Lock()
    step = max(1, total // 20)

    def progress(_row: ScoredRecord) -> None:
        with lock:
            done[0] += 1
            if not args.quiet and (done[0] % step == 0 or done[0] == total):
                print(f"scored {done[0]}/{total}", file=sys.stderr)

    rows = score_records(records, models, ctx, workers=settings.concurrency_limit, on_done=progress)
    summaries = summarize(rows)
    ranking = rank_models(summaries, settings)
    gate = evaluate_gate(summaries, ranking, settings.gate)

    print(leaderboard_text(summaries, ranking))
    print()
    print(ranking.explanation)
    print(f"\ngate ({gate.model}): {'PASS' if gate.passed else 'FAIL'} - {gate.reason}")
    if args.results:
        args.results.write_text(dumps(rows), encoding="utf-8")
    if args.report:
        args.report.write_text(render_report(f"Evaluation {args.run_id}", summaries, ranking, gate), "utf-8")
    return 1 if args.gate and not gate.passed else 0


if __name__ == "__main__":
    sys.exit(main())
