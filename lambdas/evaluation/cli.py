"""Run an evaluation locally over a JSON-lines dataset (from `lambdas/`):

    python -m evaluation.cli --dataset data.jsonl --outputs outputs.jsonl --report report.html
    python -m evaluation.cli --dataset data.jsonl --settings evaluation.json --live   # calls the models

Same engine as the Lambdas: scoring, aggregation, ranking and gate; results stay on disk.
Exit status: 0 when the gate passes; 1 when it fails (unless --report-only) or when nothing was scored;
2 for bad input (the message names the file, line or option).
"""

from __future__ import annotations

import argparse
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
from evaluation.prompts import PinnedPrompts, PromptResolutionError
from evaluation.report import render_report
from evaluation.scoring import ScoredRecord, ScoringContext, score_records
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
        "--prompts",
        type=Path,
        help="catalog prompts for prompt_ref records: JSON object ref -> {name, version, content} as the catalog "
        "API returns a version",
    )
    parser.add_argument(
        "--catalog-url", help="fetch prompt_ref prompts from this catalog API (SigV4, your credentials)"
    )
    parser.add_argument("--region", help="region of --catalog-url (default: AWS_REGION)")
    strictness = parser.add_mutually_exclusive_group()
    strictness.add_argument("--strict", dest="strict", action="store_true", default=None)
    strictness.add_argument("--skip-bad-lines", dest="strict", action="store_false")
    parser.add_argument("--run-id", default="local")
    parser.add_argument("--report", type=Path, help="write the HTML report here")
    parser.add_argument("--results", type=Path, help="write per-record results (JSON lines) here")
    parser.add_argument("--report-only", action="store_true", help="exit 0 even when the gate fails")
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


def load_prompts(args: argparse.Namespace, refs: set[str]) -> PinnedPrompts | None:
    """The catalog prompts the records refer to, from an export (--prompts) or the catalog API."""
    if not refs:
        return None
    if args.prompts:
        prompts = PinnedPrompts.from_json(args.prompts.read_text(encoding="utf-8"))
        missing = sorted(refs - set(prompts.prompts))
        if missing:
            raise PromptResolutionError(f"{args.prompts}: no prompt for {', '.join(missing)}")
        return prompts
    if args.catalog_url:
        import os

        from common.prompt_client import PromptClient

        region = args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if not region:
            raise PromptResolutionError("--region: required with --catalog-url (or set AWS_REGION)")
        return PinnedPrompts.resolve(PromptClient(args.catalog_url, region=region), refs)
    raise PromptResolutionError(
        f"--prompts or --catalog-url: required, the dataset refers to catalog prompts {', '.join(sorted(refs))}"
    )


def nothing_scored(rows: Sequence[ScoredRecord]) -> bool:
    return not any(r.error is None and r.metrics for r in rows)


def report_counts(rows: Sequence[ScoredRecord], unknown_ids: Sequence[str]) -> list[str]:
    """Lines for stderr: what was not scored and why, never silently."""
    lines = []
    errors = [r for r in rows if r.error]
    if errors:
        first = errors[0]
        lines.append(
            f"{len(errors)} of {len(rows)} rows errored; first: {first.record_id} x {first.model}: {first.error}"
        )
    unscored = [r for r in rows if r.error is None and not r.metrics]
    if unscored:
        lines.append(
            f"{len(unscored)} rows unscored (no reference, no labels and no judge), e.g. {unscored[0].record_id}"
        )
    if unknown_ids:
        lines.append(
            f"{len(unknown_ids)} output ids are in no dataset record and were ignored: {', '.join(unknown_ids[:10])}"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.live and not args.settings:
        print("--live: needs --settings naming the candidate models to call", file=sys.stderr)
        return 2
    try:
        settings = (
            EvaluationSettings.model_validate_json(args.settings.read_text())
            if args.settings
            else EvaluationSettings()
        )
    except ValidationError as exc:
        print(f"{args.settings}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"--settings: {exc}", file=sys.stderr)
        return 2
    strict = settings.strict_dataset if args.strict is None else args.strict
    line_errors: list[DatasetLineError] = []
    try:
        with args.dataset.open(encoding="utf-8") as lines:
            records = list(read_records(lines, strict=strict, errors=line_errors))
    except DatasetFormatError as exc:
        print(f"{args.dataset}: {exc} (use --skip-bad-lines to skip malformed lines)", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"--dataset: {exc}", file=sys.stderr)
        return 2
    for error in line_errors:
        print(f"{args.dataset}: skipped line {error.line_number}: {error.message}", file=sys.stderr)

    models: list[ModelClient]
    unknown_ids: list[str] = []
    if args.outputs:
        try:
            with args.outputs.open(encoding="utf-8") as lines:
                precomputed = load_precomputed(lines)
        except (ValueError, OSError) as exc:
            print(f"{args.outputs}: {exc}", file=sys.stderr)
            return 2
        models = list(precomputed.values())
        ids = {r.id for r in records}
        unknown_ids = sorted({i for m in precomputed.values() for i in m.outputs if i not in ids})
    else:
        models = build_candidates(settings)
    if not records:
        print(f"{args.dataset}: no valid record to evaluate", file=sys.stderr)
        return 2
    if not models:
        source = args.outputs or args.settings
        print(f"{source}: no model to evaluate (no outputs lines / no candidates)", file=sys.stderr)
        return 2
    try:
        prompts = load_prompts(args, {r.prompt_ref for r in records if r.prompt_ref is not None})
    except (PromptResolutionError, ValueError, OSError) as exc:
        print(str(exc), file=sys.stderr)
        return 2

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
    for line in report_counts(rows, unknown_ids):
        print(line, file=sys.stderr)
    if args.results:
        args.results.write_text(dumps(rows), encoding="utf-8")
    if args.report:
        info = {"dataset": str(args.dataset)}
        if prompts is not None:
            info.update({f"prompt {ref}": f"version {v}" for ref, v in prompts.versions().items()})
        if unknown_ids:
            info["outputs with unknown ids"] = f"{len(unknown_ids)} ignored: {', '.join(unknown_ids[:10])}"
        html = render_report(f"Evaluation {args.run_id}", summaries, ranking, gate, run_info=info)
        args.report.write_text(html, "utf-8")
    if nothing_scored(rows):
        print("nothing was scored: every row errored or had nothing to score against", file=sys.stderr)
        return 1
    return 0 if gate.passed or args.report_only else 1


if __name__ == "__main__":
    sys.exit(main())
