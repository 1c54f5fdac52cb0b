import json

import boto3
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
