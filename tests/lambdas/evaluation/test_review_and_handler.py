import json

import boto3
import pytest
from evaluation.review import SqsReviewQueue
from evaluation.scoring import ScoredRecord
from moto import mock_aws


def test_review_queue_sends_flagged_rows_in_batches_of_ten():
    with mock_aws():
        sqs = boto3.client("sqs")
        url = sqs.create_queue(QueueName="reviews")["QueueUrl"]
        rows = [
            ScoredRecord(run_id="r", record_id=f"id{i}", model="m", output="x", human_review=i % 2 == 0)
            for i in range(25)
        ]
        rows.append(ScoredRecord(run_id="r", record_id="err", model="m", human_review=True, error="boom"))
        assert SqsReviewQueue(url, sqs_client=sqs).submit(rows) == 13
        received = []
        while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            received += [json.loads(m["Body"])["record_id"] for m in batch]
            for m in batch:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        assert sorted(received) == sorted(f"id{i}" for i in range(0, 25, 2))


def test_handler_reads_settings_from_the_environment(monkeypatch):
    from evaluation import handler

    monkeypatch.setenv("EVALUATION_SETTINGS", '{"batch_size": 7}')
    monkeypatch.setenv("BUSINESS_UNIT", "retail")
    monkeypatch.setenv("RESULTS_BUCKET", "bucket")
    handler.runtime.cache_clear()
    try:
        rt = handler.runtime()
        assert rt.settings.batch_size == 7
        assert rt.store.run_prefix("run-1") == "retail/evaluation_runs/run-1/"
    finally:
        handler.runtime.cache_clear()


@pytest.fixture
def handler_env(monkeypatch):
    monkeypatch.setenv("BUSINESS_UNIT", "retail")
    monkeypatch.setenv("RESULTS_BUCKET", "working-bucket")


def test_lake_rows_go_to_the_lake_results_bucket_not_the_working_bucket(monkeypatch, handler_env):
    from evaluation import handler

    from common.lake_layout import Zone
    from common.lake_writer import LakeWriter

    monkeypatch.setenv("LAKE_RESULTS_BUCKET", "exco-lake-evaluation-results-222222222222-eu-west-1")
    monkeypatch.setenv("LAKE_STAGE", "preprod")
    handler.runtime.cache_clear()
    try:
        sink = handler.runtime().sink_factory()
        assert isinstance(sink, LakeWriter)
        assert sink.bucket == "exco-lake-evaluation-results-222222222222-eu-west-1"
        assert sink.zone == Zone.EVALUATION_RESULTS
        assert sink.stage == "preprod"  # rows land under <bu>/preprod/evaluation_results/
        assert sink.kms_key_id is None
    finally:
        handler.runtime.cache_clear()


def test_lake_sink_without_its_bucket_names_the_variable(monkeypatch, handler_env):
    from evaluation import handler

    monkeypatch.delenv("LAKE_RESULTS_BUCKET", raising=False)
    handler.runtime.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="LAKE_RESULTS_BUCKET"):
            handler.runtime().sink_factory()
    finally:
        handler.runtime.cache_clear()
