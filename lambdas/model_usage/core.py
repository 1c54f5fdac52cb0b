"""What the two queue consumers do, with every AWS dependency injected (tests pass moto or Stubber).

- `write_usage`: usage records from the application backend -> the lake's `model_usage` table, one
  object per partition per batch (not one per request: Athena reads fewer, larger files).
- `judge_samples`: sampled production exchanges -> the offline evaluation judge (`evaluation.judge`, the
  same prompt, rubric and parsing) -> an `evaluation_results` row (run id `online-<day>`), the online
  judge-score metric, and the human review queue when the score is low.

Both return the SQS partial-batch answer: a message that cannot be processed is reported, SQS delivers
it again and, after the queue's receive limit, moves it to the dead-letter queue (alarmed). Nothing is
dropped silently.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from evaluation.judge import JudgeError, judge_answer
from evaluation.lake import to_lake_record
from evaluation.scoring import ScoredRecord
from evaluation.settings import JudgeSettings
from pydantic import ValidationError

from common.evaluation_dataset import EvaluationRecord
from common.lake_records import LakeRecord, UsageRecord
from common.model_gateway import ModelClient, ModelError, ModelRequest, ModelResponse, invoke_with_retry
from common.model_usage import OnlineSample
from common.quality_metrics import emit_online_judge_score

logger = logging.getLogger(__name__)
ONLINE_CATEGORY = "online"


class RecordSink(Protocol):
    """`common.lake_writer.LakeWriter` satisfies this."""

    def append(self, record: LakeRecord) -> None: ...

    def flush(self) -> list[str]: ...


class ReviewQueue(Protocol):
    """`evaluation.review.SqsReviewQueue` satisfies this."""

    def submit(
        self, rows: Iterable[ScoredRecord], records: Mapping[str, EvaluationRecord] | None = None
    ) -> int: ...


class MessageError(ValueError):
    """A message that no retry can fix (wrong schema, another business unit)."""


def online_run_id(day: datetime) -> str:
    """All online samples of one day form one run: reviewers' scores land under its reviews/ prefix."""
    return f"online-{day.astimezone(UTC).strftime('%Y-%m-%d')}"


def _parse(model: type[Any], body: str, business_unit: str) -> Any:
    try:
        message = model.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        raise MessageError(f"{field}: {first['msg']}") from None
    if message.business_unit != business_unit:
        raise MessageError(
            f"business_unit: {message.business_unit!r} is not this function's {business_unit!r}"
        )
    return message


def _failures(ids: Iterable[str]) -> dict[str, list[dict[str, str]]]:
    return {"batchItemFailures": [{"itemIdentifier": i} for i in ids]}


def write_usage(records: list[Mapping[str, Any]], *, business_unit: str, sink: RecordSink) -> dict[str, Any]:
    """SQS records -> one lake write per batch; bad messages and a failed write are reported back."""
    failed: list[str] = []
    appended: list[str] = []
    for message in records:
        try:
            usage: UsageRecord = _parse(UsageRecord, message["body"], business_unit)
            sink.append(usage)
            appended.append(message["messageId"])
        except (MessageError, ValueError) as exc:
            logger.error("usage message %s refused: %s", message.get("messageId"), exc)
            failed.append(message["messageId"])
    if appended:
        try:
            sink.flush()
        except Exception:
            # The writer keeps its buffer; SQS redelivers these messages to a fresh invocation.
            logger.exception("usage records not written; %d messages will be delivered again", len(appended))
            failed.extend(appended)
    return _failures(failed)


@dataclass
class OnlineJudge:
    business_unit: str
    judge: ModelClient
    settings: JudgeSettings
    low_score_below: float
    sink: RecordSink
    review_queue: ReviewQueue | None = None
    max_attempts: int = 5
    sleep: Callable[[float], None] | None = None

    def _call(self, model: ModelClient, request: ModelRequest) -> ModelResponse:
        if self.sleep is None:
            return invoke_with_retry(model, request, max_attempts=self.max_attempts)
        return invoke_with_retry(model, request, max_attempts=self.max_attempts, sleep=self.sleep)

    def score(self, sample: OnlineSample) -> ScoredRecord:
        """Judge one sample; a verdict that never parses is kept as the row's error (not retried)."""
        row = ScoredRecord(
            run_id=online_run_id(sample.event_time),
            record_id=sample.request_id,
            model=sample.model_id,
            category=ONLINE_CATEGORY,
            output=sample.answer,
        )
        try:
            result = judge_answer(
                self.judge,
                sample.question,
                sample.answer,
                samples=self.settings.samples,
                max_parse_attempts=self.settings.max_parse_attempts,
                call=self._call,
            )
        except JudgeError as exc:
            row.error = f"judge: {exc}"
            return row
        row.metrics.update(result.as_metrics())
        row.judge_score = result.overall_mean
        row.judge_justification = result.justification
        row.human_review = row.judge_score < self.low_score_below
        return row

    def handle(self, records: list[Mapping[str, Any]]) -> dict[str, Any]:
        failed: list[str] = []
        for message in records:
            message_id = message["messageId"]
            try:
                sample: OnlineSample = _parse(OnlineSample, message["body"], self.business_unit)
                row = self.score(sample)
                self.sink.append(
                    to_lake_record(
                        row,
                        business_unit=self.business_unit,
                        use_case=sample.use_case,
                        # The request's time, not now: a redelivered sample rewrites the same object.
                        event_time=sample.event_time,
                    )
                )
                self.sink.flush()
            except MessageError as exc:
                logger.error("online sample %s refused: %s", message_id, exc)
                failed.append(message_id)
                continue
            except ModelError:
                # Throttled or failing judge after the retries: let SQS deliver the sample again later.
                logger.exception("judge unavailable for sample %s", message_id)
                failed.append(message_id)
                continue
            except Exception:
                logger.exception("score of sample %s not written", message_id)
                failed.append(message_id)
                continue
            if row.judge_score is not None:
                emit_online_judge_score(self.business_unit, sample.model_id, row.judge_score)
            if row.human_review and self.review_queue is not None:
                record = EvaluationRecord(
                    id=sample.request_id, input=sample.question, category=ONLINE_CATEGORY
                )
                try:
                    self.review_queue.submit([row], {sample.request_id: record})
                except Exception:
                    # Delivered again: the judge runs again, and its row lands on the same lake key.
                    logger.exception("low-scored sample %s not queued for review", message_id)
                    failed.append(message_id)
        return _failures(failed)


def sqs_records(event: object) -> list[Mapping[str, Any]]:
    """The SQS event's records; anything else is a wiring mistake worth failing loudly."""
    if not isinstance(event, dict) or not isinstance(event.get("Records"), list):
        raise MessageError("event: expected an SQS event with 'Records'")
    records = event["Records"]
    for index, record in enumerate(records):
        if (
            not isinstance(record, dict)
            or not isinstance(record.get("messageId"), str)
            or "body" not in record
        ):
            raise MessageError(f"Records[{index}]: expected an SQS message with 'messageId' and 'body'")
    return records
