"""The usage writer: usage records from SQS into the lake's model_usage table, in batches, nothing lost."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from model_usage.core import write_usage

from common.lake_layout import Zone
from common.lake_writer import LakeWriter

from .conftest import BU, USAGE_BUCKET, lake_rows, sqs_event, usage_record


def writer() -> LakeWriter:
    return LakeWriter(USAGE_BUCKET, zone=Zone.MODEL_METADATA)


def test_a_batch_becomes_one_object_per_partition(aws: None) -> None:
    event = sqs_event(*(usage_record(f"r{i}", f"tenant-{i % 2}").model_dump_json() for i in range(5)))
    answer = write_usage(event["Records"], business_unit=BU, sink=writer())
    assert answer == {"batchItemFailures": []}
    rows = lake_rows(USAGE_BUCKET)
    assert {key.rsplit("/", 1)[0] for key, _ in rows} == {
        "finance/prod/model_usage/dt=2026-11-26/model=amazon.nova-lite-v1_0"
    }
    assert len({key for key, _ in rows}) == 1
    assert sorted(row["request_id"] for _, row in rows) == [f"r{i}" for i in range(5)]
    assert rows[0][1]["cost_usd"] == pytest.approx(0.0000156)


def test_a_bad_message_is_reported_and_the_others_are_written(aws: None) -> None:
    event = sqs_event(
        usage_record("r1").model_dump_json(),
        "{not json",
        usage_record("r2").model_dump_json().replace('"tenant-a"', '"../other"'),
    )
    answer = write_usage(event["Records"], business_unit=BU, sink=writer())
    assert answer == {"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m2"}]}
    assert [row["request_id"] for _, row in lake_rows(USAGE_BUCKET)] == ["r1"]


def test_another_business_units_record_is_refused(aws: None) -> None:
    event = sqs_event(usage_record("r1", business_unit="retail").model_dump_json())
    answer = write_usage(event["Records"], business_unit=BU, sink=writer())
    assert answer == {"batchItemFailures": [{"itemIdentifier": "m0"}]}
    assert lake_rows(USAGE_BUCKET) == []


def test_a_failed_lake_write_returns_every_message_for_redelivery(aws: None) -> None:
    boto3.client("s3").delete_bucket(Bucket=USAGE_BUCKET)
    event = sqs_event(usage_record("r1").model_dump_json(), usage_record("r2").model_dump_json())
    answer = write_usage(event["Records"], business_unit=BU, sink=writer())
    assert answer == {"batchItemFailures": [{"itemIdentifier": "m0"}, {"itemIdentifier": "m1"}]}


def test_a_redelivered_batch_lands_on_the_same_object(aws: None) -> None:
    event = sqs_event(usage_record("r1").model_dump_json())
    write_usage(event["Records"], business_unit=BU, sink=writer())
    write_usage(event["Records"], business_unit=BU, sink=writer())
    assert len(lake_rows(USAGE_BUCKET)) == 1


class RecordingSink:
    def __init__(self) -> None:
        self.appended: list[Any] = []

    def append(self, record: Any) -> None:
        self.appended.append(record)

    def flush(self) -> list[str]:
        return []


@hypothesis_settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.one_of(st.text(max_size=200), st.dictionaries(st.text(max_size=10), st.integers()).map(str)))
def test_arbitrary_bodies_are_reported_never_written(body: str) -> None:
    sink = RecordingSink()
    answer = write_usage([{"messageId": "x", "body": body}], business_unit=BU, sink=sink)
    assert answer == {"batchItemFailures": [{"itemIdentifier": "x"}]}
    assert sink.appended == []
