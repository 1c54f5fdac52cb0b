"""The raw-upload trigger (Stubber: StartPipelineExecution) and the pure parts of the pipeline's jobs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from fine_tuning_jobs.evaluate import report
from fine_tuning_jobs.preprocess import split
from fine_tuning_jobs.train import load_hyperparameters
from fine_tuning_trigger.core import Upload, start_pipeline, tenant_of
from hypothesis import given
from hypothesis import strategies as st


@pytest.fixture
def sagemaker() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("sagemaker", region_name="eu-west-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def test_a_tenant_upload_starts_the_pipeline_with_its_tenant_id(sagemaker: Any) -> None:
    client, stubber = sagemaker
    arn = "arn:aws:sagemaker:eu-west-1:333333333331:pipeline/exco-retail-dev-fine-tuning/execution/abc"
    stubber.add_response(
        "start_pipeline_execution",
        {"PipelineExecutionArn": arn},
        {
            "PipelineName": "exco-retail-dev-fine-tuning",
            "PipelineExecutionDisplayName": "tenant-acme",
            "PipelineParameters": [
                {"Name": "TenantId", "Value": "acme"},
                {"Name": "InputDataUri", "Value": "s3://raw/retail/dev/tenant=acme/"},
            ],
            "ClientRequestToken": ANY,
        },
    )
    upload = Upload("raw", "retail/dev/tenant=acme/uploads/data.jsonl")
    assert (
        start_pipeline(
            client,
            pipeline_name="exco-retail-dev-fine-tuning",
            business_unit="retail",
            stage="dev",
            upload=upload,
        )
        == arn
    )


@pytest.mark.parametrize(
    "key",
    [
        "finance/dev/tenant=acme/data.jsonl",
        "retail/dev/data.jsonl",
        "retail/dev/tenant=acme/notes.txt",
        "retail/dev/tenant=../x.jsonl",
        # another stage's upload, the stage-less layout, the shared prefix: never this stage's tenant
        "retail/prod/tenant=acme/data.jsonl",
        "retail/tenant=acme/data.jsonl",
        "retail/shared/tenant=acme/data.jsonl",
    ],
)
def test_other_keys_start_nothing(sagemaker: Any, key: str) -> None:
    client, _ = sagemaker
    assert (
        start_pipeline(
            client, pipeline_name="p", business_unit="retail", stage="dev", upload=Upload("raw", key)
        )
        is None
    )


@given(st.text(max_size=80))
def test_tenant_of_never_returns_a_path_segment_with_a_slash(key: str) -> None:
    tenant = tenant_of(key, "retail", "dev")
    assert tenant is None or ("/" not in tenant and key.startswith(f"retail/dev/tenant={tenant}/"))


def test_split_is_deterministic_and_covers_every_record() -> None:
    lines = [json.dumps({"prompt": f"q{i}", "reference": f"a{i}"}) for i in range(400)]
    first, second = split(lines, 0.1), split(lines, 0.1)
    assert first == second
    assert sum(len(v) for v in first.values()) == 400
    assert 20 <= len(first["heldout"]) <= 60 and 20 <= len(first["validation"]) <= 60


def test_split_names_the_bad_line() -> None:
    with pytest.raises(ValueError, match="line 2: needs string fields"):
        split(['{"prompt": "q", "reference": "a"}', '{"prompt": "q"}'], 0.1)


def test_report_averages_the_evaluation_engines_metrics() -> None:
    result = report([("the cat sat", "the cat sat"), ("a dog", "the cat sat")], ["exact_match", "token_f1"])
    assert result["metrics"]["exact_match"]["value"] == 0.5
    assert result["metrics"]["token_f1"]["value"] == 0.5  # "dog" shares no token with "cat sat"


def test_hyperparameters_default_when_absent(tmp_path: Any) -> None:
    path = tmp_path / "hp.json"
    path.write_text(json.dumps({"lora_rank": "8"}))
    assert load_hyperparameters(path)["lora_rank"] == 8.0
    assert load_hyperparameters(tmp_path / "missing.json")["epochs"] == 3.0
