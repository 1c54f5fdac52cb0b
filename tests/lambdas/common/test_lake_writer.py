from types import SimpleNamespace

import boto3
import botocore.endpoint
import pytest
from botocore.awsrequest import AWSResponse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.lake_layout import LakeLayoutError, Zone
from common.lake_records import (
    EvaluationResultRecord,
    FilterDecisionRecord,
    Finding,
    LakeRecord,
    RatingRecord,
)
from common.lake_writer import LakeRecordError, LakeWriteError, LakeWriter, retrying_s3_client
from tests.lambdas.common.lake_samples import BUCKET, evaluation_result, filter_decision, rating


def read_lines(s3, key):
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode().splitlines()


def test_flush_writes_one_jsonl_object_per_table_partition(s3):
    writer = LakeWriter(BUCKET, stage="prod", s3_client=s3)
    records = [
        evaluation_result("r1"),
        evaluation_result("r2"),
        evaluation_result("r3", day=2),
        evaluation_result("r4", model_id="meta.llama3"),
        rating(),
        filter_decision(),
    ]
    for record in records:
        writer.append(record)
    assert writer.pending_records == 6

    keys = writer.flush()

    prefixes = sorted(key.rsplit("/", 1)[0] + "/" for key in keys)
    assert prefixes == [
        "finance/prod/evaluation_results/dt=2024-05-01/model=anthropic.claude-3_0/",
        "finance/prod/evaluation_results/dt=2024-05-01/model=meta.llama3/",
        "finance/prod/evaluation_results/dt=2024-05-02/model=anthropic.claude-3_0/",
        "finance/prod/filter_decisions/dt=2024-05-01/model=m1/",
        "finance/prod/ratings/dt=2024-05-01/model=m1/",
    ]
    assert all(key.endswith(".jsonl") for key in keys)
    listed = s3.list_objects_v2(Bucket=BUCKET)["Contents"]
    assert sorted(obj["Key"] for obj in listed) == sorted(keys)
    first = read_lines(s3, keys[0])
    assert [EvaluationResultRecord.model_validate_json(line) for line in first] == records[:2]
    decision_key = next(key for key in keys if "/filter_decisions/" in key)
    assert [FilterDecisionRecord.model_validate_json(line) for line in read_lines(s3, decision_key)] == [
        records[5]
    ]
    assert writer.pending_records == 0
    assert writer.flush() == []


def test_a_partition_is_split_into_objects_of_max_batch_records(s3):
    writer = LakeWriter(BUCKET, stage="prod", s3_client=s3, max_batch_records=2)
    for n in range(5):
        writer.append(evaluation_result(f"r{n}"))

    keys = writer.flush()

    assert len(keys) == 3
    lines = [line for key in keys for line in read_lines(s3, key)]
    assert [EvaluationResultRecord.model_validate_json(line).record_id for line in lines] == [
        "r0",
        "r1",
        "r2",
        "r3",
        "r4",
    ]


def test_objects_are_encrypted_with_the_given_kms_key(s3):
    key_id = boto3.client("kms", region_name="us-east-1").create_key()["KeyMetadata"]["Arn"]
    writer = LakeWriter(BUCKET, stage="prod", s3_client=s3, kms_key_id=key_id)
    writer.append(rating())

    [key] = writer.flush()

    head = s3.head_object(Bucket=BUCKET, Key=key)
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == key_id
    assert head["ContentType"] == "application/x-ndjson"


def test_without_a_key_id_it_sends_no_encryption_header_and_the_bucket_default_applies(s3):
    # With "aws:kms" but no key id, S3 would pick the writer account's aws/s3 key: unusable cross-account.
    lake_key = boto3.client("kms", region_name="us-east-1").create_key()["KeyMetadata"]["Arn"]
    s3.put_bucket_encryption(
        Bucket=BUCKET,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": lake_key,
                    },
                    "BucketKeyEnabled": True,
                }
            ]
        },
    )
    sent = []
    s3.meta.events.register("provide-client-params.s3.PutObject", lambda params, **_: sent.append(params))
    writer = LakeWriter(BUCKET, stage="prod", s3_client=s3)
    writer.append(rating())

    [key] = writer.flush()

    assert "ServerSideEncryption" not in sent[0]
    assert "SSEKMSKeyId" not in sent[0]
    head = s3.head_object(Bucket=BUCKET, Key=key)
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == lake_key


def test_a_failed_put_loses_nothing_and_the_retry_lands_on_the_same_keys(s3):
    expected = LakeWriter(BUCKET, stage="prod", s3_client=s3)
    failing = LakeWriter("lake-bucket-not-created-yet", stage="prod", s3_client=s3)
    for writer in (expected, failing):
        writer.append(evaluation_result("r1"))
        writer.append(rating())
    expected_keys = expected.flush()

    with pytest.raises(LakeWriteError) as caught:
        failing.flush()

    assert caught.value.pending_records == 2
    assert caught.value.written_keys == []
    assert isinstance(caught.value.__cause__, s3.exceptions.NoSuchBucket)
    assert failing.pending_records == 2
    s3.create_bucket(Bucket="lake-bucket-not-created-yet")
    assert failing.flush() == expected_keys
    assert failing.pending_records == 0


def test_keys_written_before_a_failure_are_returned_by_the_next_flush(s3):
    writer = LakeWriter(BUCKET, stage="prod", s3_client=s3)
    writer.append(evaluation_result("r1"))
    writer.append(rating())
    calls = []

    def deny_ratings(request, **_):
        calls.append(request.url)
        if "/ratings/" in request.url and len(calls) < 3:
            return AWSResponse(request.url, 403, {}, _Raw(b"<Error><Code>AccessDenied</Code></Error>"))
        return None

    s3.meta.events.register_first("before-send.s3.PutObject", deny_ratings)
    with pytest.raises(LakeWriteError) as caught:
        writer.flush()
    assert "/ratings/" in caught.value.key
    assert [k.split("/")[2] for k in caught.value.written_keys] == ["evaluation_results"]
    assert writer.pending_records == 1

    keys = writer.flush()

    assert [k.split("/")[2] for k in keys] == ["evaluation_results", "ratings"]
    assert keys[1] == caught.value.key


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_):
        yield self._body


def test_default_client_retries_throttling_with_botocores_standard_mode(s3, monkeypatch):
    sleeps: list[float] = []
    monkeypatch.setattr(botocore.endpoint, "time", SimpleNamespace(sleep=sleeps.append))
    client = retrying_s3_client()
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 5}
    attempts = []

    def slow_down_twice(request, **_):
        attempts.append(request.url)
        if len(attempts) <= 2:
            return AWSResponse(request.url, 503, {}, _Raw(b"<Error><Code>SlowDown</Code></Error>"))
        return None

    client.meta.events.register_first("before-send.s3.PutObject", slow_down_twice)
    writer = LakeWriter(BUCKET, stage="prod", s3_client=client)
    writer.append(rating())

    [key] = writer.flush()

    assert len(attempts) == 3
    assert len(sleeps) == 2
    assert [RatingRecord.model_validate_json(line) for line in read_lines(s3, key)] == [rating()]


def test_writer_builds_the_retrying_client_lazily(s3):
    writer = LakeWriter(BUCKET, stage="prod")
    assert writer._s3_client is None
    assert writer.s3_client.meta.config.retries["mode"] == "standard"


def test_a_dict_is_refused_naming_the_record():
    writer = LakeWriter(BUCKET, stage="prod", s3_client=object())
    with pytest.raises(LakeRecordError) as caught:
        writer.append(evaluation_result().model_dump())
    assert caught.value.field == "record"
    assert "EvaluationResultRecord" in str(caught.value)
    assert writer.pending_records == 0


def test_a_record_built_around_validation_is_refused_naming_the_field():
    writer = LakeWriter(BUCKET, stage="prod", s3_client=object())
    good = rating().model_dump()
    with pytest.raises(LakeRecordError) as caught:
        writer.append(RatingRecord.model_construct(**(good | {"value": 9})))
    assert caught.value.field == "value"
    with pytest.raises(LakeRecordError) as caught:
        writer.append(
            FilterDecisionRecord.model_construct(
                **(
                    filter_decision().model_dump()
                    | {"findings": [Finding.model_construct(layer="x", type="y", score="high")]}
                )
            )
        )
    assert caught.value.field == "findings.0.score"
    without_tenant = {k: v for k, v in good.items() if k != "tenant_id"}
    with pytest.raises(LakeRecordError) as caught:
        writer.append(RatingRecord.model_construct(**without_tenant))
    assert caught.value.field == "tenant_id"
    assert writer.pending_records == 0


def test_a_record_without_a_known_table_is_refused():
    class Unknown(LakeRecord):
        TABLE = "secrets"

    writer = LakeWriter(BUCKET, stage="prod", s3_client=object())
    base = LakeRecord(**{k: v for k, v in rating().model_dump().items() if k in LakeRecord.model_fields})
    for record in (base, Unknown(**base.model_dump())):
        with pytest.raises(LakeRecordError) as caught:
            writer.append(record)
        assert caught.value.field == "TABLE"
    assert writer.pending_records == 0


def test_a_zone_writer_refuses_tables_of_other_zones():
    writer = LakeWriter(BUCKET, stage="prod", s3_client=object(), zone=Zone.FEEDBACK)
    writer.append(rating())
    with pytest.raises(LakeRecordError) as caught:
        writer.append(evaluation_result())
    assert caught.value.field == "TABLE"
    assert writer.pending_records == 1


def test_a_model_id_that_would_leave_its_partition_is_refused_naming_model_id():
    writer = LakeWriter(BUCKET, stage="prod", s3_client=object())
    with pytest.raises(LakeRecordError) as caught:
        writer.append(evaluation_result(model_id=".."))
    assert caught.value.field == "model_id"
    writer.append(evaluation_result(model_id="../../other-bu"))  # slashes become underscores
    assert writer.pending_records == 1


def test_max_batch_records_must_be_positive():
    with pytest.raises(ValueError, match="max_batch_records"):
        LakeWriter(BUCKET, stage="prod", max_batch_records=0)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    field=st.sampled_from(["value", "rating_type", "tenant_id", "business_unit", "event_time", "comment"]),
    bad=st.one_of(
        st.none(), st.integers(), st.text(max_size=30), st.floats(allow_nan=True), st.lists(st.integers())
    ),
)
def test_any_bad_field_value_is_refused_naming_that_field_and_buffers_nothing(field, bad):
    good = rating().model_dump()
    try:
        RatingRecord(**(good | {field: bad}))
    except ValueError:
        pass
    else:
        return  # hypothesis drew a valid value
    writer = LakeWriter(BUCKET, stage="prod", s3_client=object())
    with pytest.raises(LakeRecordError) as caught:
        writer.append(RatingRecord.model_construct(**(good | {field: bad})))
    assert caught.value.field == field
    assert writer.pending_records == 0


def test_the_writer_writes_under_its_stage_from_the_environment(s3, monkeypatch):
    monkeypatch.setenv("LAKE_STAGE", "dev")
    writer = LakeWriter(BUCKET, s3_client=s3)
    writer.append(rating())
    (key,) = writer.flush()
    assert key.startswith("finance/dev/ratings/dt=")


@pytest.mark.parametrize("stage", [None, "", "shared", "production", "../prod"])
def test_a_writer_without_a_stage_of_its_own_is_refused_naming_stage(monkeypatch, stage):
    monkeypatch.delenv("LAKE_STAGE", raising=False)
    if stage is not None:
        monkeypatch.setenv("LAKE_STAGE", stage)
    with pytest.raises(LakeLayoutError) as caught:
        LakeWriter(BUCKET, s3_client=object())
    assert caught.value.field == "stage"
    with pytest.raises(LakeLayoutError):
        LakeWriter(BUCKET, s3_client=object(), stage=stage or "staging")
