from __future__ import annotations

import json
from typing import Any

import boto3

from common.evaluation_dataset import read_records
from tests.lambdas.prompt_catalog.conftest import DATASET_BUCKET, RELEASE, prompt_body

RECORDS: list[dict[str, Any]] = [
    {
        "id": "r1",
        "prompt_ref": "greet:prod",
        "variables": {"who": "Ann"},
        "reference_output": "Hi Ann",
        "category": "smoke",
    },
    {"id": "r2", "input": "Say hello", "labels": ["polite"]},
    {"id": "r3", "input": "Unlabeled question"},
]


def setup_prompt(call):
    call("POST", "/prompts", prompt_body())
    call("PUT", "/prompts/greet/aliases/prod", {"version": 1}, caller=RELEASE["prod"])


def test_dataset_is_stored_as_json_lines_in_s3_and_versioned(call):
    setup_prompt(call)
    status, _ = call("POST", "/datasets", {"name": "greeting-eval", "records": RECORDS})
    assert status == 201
    status, v1 = call("GET", "/datasets/greeting-eval/versions/1")
    summary = v1["content"]
    assert (summary["record_count"], summary["labeled_count"]) == (3, 2)
    assert summary["categories"] == {"smoke": 1, "default": 2}
    # The one home of evaluation datasets: the lake's evaluation_datasets zone, one folder per version.
    assert summary["records_key"] == "bu-a/shared/datasets/greeting-eval/1/dataset.jsonl"
    body = (
        boto3.client("s3")
        .get_object(Bucket=DATASET_BUCKET, Key=summary["records_key"])["Body"]
        .read()
        .decode()
    )
    assert [r.id for r in read_records(body.splitlines())] == ["r1", "r2", "r3"]

    jsonl = "\n".join(json.dumps(r) for r in RECORDS[1:]) + "\n"
    status, v2 = call("POST", "/datasets/greeting-eval/versions", {"jsonl": jsonl, "comment": "drop r1"})
    assert (status, v2["version"], v2["content"]["record_count"]) == (201, 2, 2)
    assert v2["content"]["records_key"] == "bu-a/shared/datasets/greeting-eval/2/dataset.jsonl"
    # Version 1 is untouched by version 2.
    again = boto3.client("s3").get_object(Bucket=DATASET_BUCKET, Key=summary["records_key"])["Body"].read()
    assert again.decode() == body


def test_accepted_records_make_a_new_version_that_records_who_accepted(call):
    setup_prompt(call)
    call("POST", "/datasets", {"name": "greeting-eval", "records": RECORDS})
    new = {"id": "rating-7", "prompt_ref": "greet:prod", "variables": {"who": "Bo"}, "category": "rated-bad"}
    body = {"records": [new], "accepted_by": "arn:aws:iam::111122223333:role/tester", "source": "ratings"}
    status, v2 = call("POST", "/datasets/greeting-eval/records", body)
    assert (status, v2["version"], v2["content"]["record_count"]) == (201, 2, 4)
    assert v2["content"]["accepted"] == {
        "by": "arn:aws:iam::111122223333:role/tester",
        "through": v2["created_by"],
        "source": "ratings",
        "record_ids": ["rating-7"],
        "base_version": 1,
    }
    text = (
        boto3.client("s3").get_object(Bucket=DATASET_BUCKET, Key=v2["content"]["records_key"])["Body"].read()
    )
    assert [r.id for r in read_records(text.decode().splitlines())] == ["r1", "r2", "r3", "rating-7"]

    status, error = call("POST", "/datasets/greeting-eval/records", body)  # the same id again
    assert status == 409 and error["field"] == "body.records[0].id"
    status, error = call("POST", "/datasets/greeting-eval/records", {**body, "records": [{"id": "x"}]})
    assert status == 400 and error["field"].startswith("body.records")
    assert call("GET", "/datasets/greeting-eval")[1]["latest_version"] == 2  # refusals added nothing


def test_a_version_number_whose_object_exists_with_other_content_is_a_conflict(call):
    setup_prompt(call)
    call("POST", "/datasets", {"name": "greeting-eval", "records": RECORDS})
    # A concurrent request already wrote version 2 (its catalog entry not yet committed).
    s3 = boto3.client("s3")
    s3.put_object(
        Bucket=DATASET_BUCKET, Key="bu-a/shared/datasets/greeting-eval/2/dataset.jsonl", Body=b"{}\n"
    )
    status, error = call("POST", "/datasets/greeting-eval/versions", {"records": RECORDS[1:]})
    assert status == 409 and "concurrent" in error["message"]
    body = s3.get_object(Bucket=DATASET_BUCKET, Key="bu-a/shared/datasets/greeting-eval/2/dataset.jsonl")[
        "Body"
    ]
    assert body.read() == b"{}\n"  # never overwritten
    assert call("GET", "/datasets/greeting-eval")[1]["latest_version"] == 1


def test_dataset_render_resolves_prompt_refs(call):
    setup_prompt(call)
    call("POST", "/datasets", {"name": "greeting-eval", "records": RECORDS})
    status, out = call("POST", "/datasets/greeting-eval/render", {"version": 1})
    assert status == 200
    assert [(r["id"], r["input"]) for r in out["records"]] == [
        ("r1", "Hello Ann!"),
        ("r2", "Say hello"),
        ("r3", "Unlabeled question"),
    ]
    assert out["records"][0]["prompt_version"] == 1


def test_bad_records_name_the_line_or_record_and_store_nothing(call):
    setup_prompt(call)
    status, err = call(
        "POST", "/datasets", {"name": "d", "jsonl": '{"id": "a", "input": "x"}\n{"id": "b"}\n'}
    )
    assert status == 400 and err["field"] == "body.jsonl" and err["message"].startswith("body.jsonl: line 2")
    status, err = call(
        "POST", "/datasets", {"name": "d", "records": [RECORDS[1], {"id": "r2", "input": "dup"}]}
    )
    assert (status, err["field"]) == (400, "body.records[1]")
    bad_vars = {**RECORDS[0], "variables": {"whom": "x"}}
    status, err = call("POST", "/datasets", {"name": "d", "records": [bad_vars]})
    assert (status, err["field"]) == (400, "body.records[r1].variables.whom")
    missing_prompt = {**RECORDS[0], "prompt_ref": "nope@1"}
    status, err = call("POST", "/datasets", {"name": "d", "records": [missing_prompt]})
    assert (status, err["field"]) == (400, "body.records[r1].prompt_ref")
    status, err = call("POST", "/datasets", {"name": "d", "records": []})
    assert (status, err["field"]) == (400, "body.records")
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket=DATASET_BUCKET)
    assert call("GET", "/datasets")[1]["items"] == []
