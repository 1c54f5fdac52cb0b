"""Per-record results as data lake rows (`EvaluationResultRecord`) through any RecordSink."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from common.lake_records import EvaluationResultRecord, LakeRecord
from evaluation.scoring import ScoredRecord


class RecordSink(Protocol):
    """What `common.lake_writer.LakeWriter` offers; tests use a list-backed sink."""

    def append(self, record: LakeRecord) -> None: ...

    def flush(self) -> list[str]: ...


def to_lake_record(
    row: ScoredRecord, *, business_unit: str, use_case: str, event_time: datetime
) -> EvaluationResultRecord:
    return EvaluationResultRecord(
        business_unit=business_unit,
        model_id=row.model,
        event_time=event_time,
        run_id=row.run_id,
        record_id=row.record_id,
        use_case=use_case,
        category=row.category,
        metrics=row.metrics,
        judge_score=row.judge_score,
        judge_justification=row.judge_justification,
        human_score=row.human_score,
        latency_ms=row.latency_ms,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        cost_usd=row.cost_usd,
        error=row.error,
    )


def write_results(
    rows: Iterable[ScoredRecord], sink: RecordSink, *, business_unit: str, use_case: str, event_time: datetime
) -> list[str]:
    for row in rows:
        sink.append(
            to_lake_record(row, business_unit=business_unit, use_case=use_case, event_time=event_time)
        )
    return sink.flush()
