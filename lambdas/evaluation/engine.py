"""The steps of a run that the Lambdas and the command line share."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from common.evaluation_dataset import EvaluationRecord
from common.model_gateway import ModelClient
from evaluation.scoring import ScoredRecord, ScoringContext, score_records
from evaluation.store import ResultStore, batch_key


def label_set(records: Iterable[EvaluationRecord]) -> list[str]:
    """Every label the dataset uses: the answers a discrete-label model may give."""
    return sorted({label for record in records for label in record.labels})


def run_batch(
    records: Sequence[EvaluationRecord],
    models: Sequence[ModelClient],
    ctx: ScoringContext,
    store: ResultStore,
    *,
    workers: int = 1,
) -> list[ScoredRecord]:
    """Score one batch idempotently: rows that succeeded before are kept, only failures are redone."""
    key = batch_key([r.id for r in records])
    previous = {(row.model, row.record_id): row for row in store.get_batch(ctx.run_id, key) or []}
    done = {k for k, row in previous.items() if row.error is None}
    todo = [r for r in records if any((m.name, r.id) not in done for m in models)]
    fresh = {(row.model, row.record_id): row for row in score_records(todo, models, ctx, workers=workers)}
    rows = [
        previous[(m.name, r.id)] if (m.name, r.id) in done else fresh[(m.name, r.id)]
        for r in records
        for m in models
    ]
    if todo or not previous:
        store.put_batch(ctx.run_id, key, rows)
    return rows


def deduplicate(rows: Iterable[ScoredRecord]) -> list[ScoredRecord]:
    """One row per (model, record id); a success beats an error from another attempt."""
    best: dict[tuple[str, str], ScoredRecord] = {}
    for row in rows:
        key = (row.model, row.record_id)
        if key not in best or (best[key].error is not None and row.error is None):
            best[key] = row
    return [best[k] for k in sorted(best)]


MISSING_ROW_ERROR = "missing: no scored row for this record (its map batch failed)"


def add_missing_rows(
    rows: Sequence[ScoredRecord],
    records: Iterable[EvaluationRecord],
    *,
    run_id: str,
    models: Iterable[str] = (),
) -> list[ScoredRecord]:
    """`rows` plus an error row for each record x model that no batch scored.

    A Distributed Map tolerates some failed batches; their records leave no row at all, so without
    this the error rate (and the gate) would only see the batches that succeeded.
    """
    names = sorted({row.model for row in rows} | set(models))
    scored = {(row.model, row.record_id) for row in rows}
    missing = [
        ScoredRecord(run_id=run_id, record_id=r.id, model=name, category=r.category, error=MISSING_ROW_ERROR)
        for r in records
        for name in names
        if (name, r.id) not in scored
    ]
    return [*rows, *missing]
