"""Journey: a vetted base model -> model intake -> the buckets the serving endpoint and the fine-tuning jobs
read -> each reader's role may read exactly what the intake wrote, where its container looks for it.

Negative: another stage's endpoint, another business unit's endpoint and the deployer (mme/ only) may not
read those weights; a tampered file leaves nothing behind for anyone to read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from stacks.settings import load_config
from tests._model_intake import FILES, create_bucket, moto_s3, vet
from tests.conftest import SynthesizedPlatform
from tests.journeys._serving import bucket_name, only_bucket, resolve, role_allows, role_statements
from tools.model_intake import main as intake

SERVING = "exco-retail-preprod-serving"
TUNING = "exco-retail-dev-fine-tuning"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with moto_s3(monkeypatch) as client:
        create_bucket(client, "vetted-models")
        yield client


def serving_side(
    platform: SynthesizedPlatform, stack: str
) -> tuple[dict[str, Any], str, list[dict[str, Any]]]:
    """(base model container, its s3 uri, the endpoint role's statements)."""
    template = platform.template(stack)
    model = template["Resources"]["BaseModel"]["Properties"]
    uri = resolve(model["PrimaryContainer"]["ModelDataSource"]["S3DataSource"]["S3Uri"], template, stack)
    role_id = model["ExecutionRoleArn"]["Fn::GetAtt"][0]
    return model["PrimaryContainer"], uri, role_statements(template, stack, role_id)


def tuning_side(platform: SynthesizedPlatform) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    """(BaseModelUri default with the bucket filled in, the job role's statements, the definition)."""
    template = platform.template(TUNING)
    (pipeline,) = [
        r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::SageMaker::Pipeline"
    ]
    body, variables = pipeline["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    definition = json.loads(body)
    (parameter,) = [p for p in definition["Parameters"] if p["Name"] == "BaseModelUri"]
    uri = parameter["DefaultValue"].replace("${Bucket}", resolve(variables["Bucket"], template, TUNING))
    role_id = variables["RoleArn"]["Fn::GetAtt"][0]
    return uri, role_statements(template, TUNING, role_id), definition


def test_the_intake_puts_the_weights_where_the_endpoint_and_the_jobs_read_them(
    default_platform: SynthesizedPlatform, s3: Any
) -> None:
    container, serving_uri, endpoint_role = serving_side(default_platform, SERVING)
    tuning_uri, job_role, definition = tuning_side(default_platform)
    retail = next(bu for bu in load_config().business_units if bu.name == "retail")
    # Hop 1: the config's prefixes are the ones the templates read from.
    serving_bucket = bucket_name(SERVING, only_bucket(default_platform.template(SERVING), "Models"))
    assert serving_uri == f"s3://{serving_bucket}/{retail.serving.base_model_prefix}"
    assert tuning_uri.endswith(f"/{retail.fine_tuning.base_model_prefix}")
    # Hop 2: the intake copies the vetted model into both.
    vet(s3, "vetted-models")
    for uri in (serving_uri, tuning_uri):
        create_bucket(s3, uri.removeprefix("s3://").split("/")[0])
    assert (
        intake(["--from", "s3://vetted-models/llama/", "--to", serving_uri, "--to", tuning_uri], s3=s3) == 0
    )
    # Hop 3: the endpoint's container mounts the prefix uncompressed at HF_MODEL_ID; its role reads every file.
    assert container["ModelDataSource"]["S3DataSource"]["CompressionType"] == "None"
    assert container["Environment"]["HF_MODEL_ID"] == "/opt/ml/model"
    written = s3.list_objects_v2(Bucket=serving_bucket)["Contents"]
    assert sorted(o["Key"] for o in written) == sorted(
        f"{retail.serving.base_model_prefix}{n}" for n in [*FILES, "manifest.json"]
    )
    for item in written:
        assert role_allows(endpoint_role, "s3:GetObject", f"arn:aws:s3:::{serving_bucket}/{item['Key']}")
    assert role_allows(endpoint_role, "s3:ListBucket", f"arn:aws:s3:::{serving_bucket}")
    # Hop 4: the training job's base_model channel and the evaluate job read BaseModelUri; the job role may.
    steps = {s["Name"]: s for s in definition["Steps"]}
    channels = {c["ChannelName"]: c for c in steps["FineTune"]["Arguments"]["InputDataConfig"]}
    assert channels["base_model"]["DataSource"]["S3DataSource"]["S3Uri"] == {"Get": "Parameters.BaseModelUri"}
    tuning_bucket = tuning_uri.removeprefix("s3://").split("/")[0]
    for item in s3.list_objects_v2(Bucket=tuning_bucket)["Contents"]:
        assert role_allows(job_role, "s3:GetObject", f"arn:aws:s3:::{tuning_bucket}/{item['Key']}")


def test_other_stages_business_units_and_the_deployer_cannot_read_those_weights(
    default_platform: SynthesizedPlatform,
) -> None:
    serving_bucket = bucket_name(SERVING, only_bucket(default_platform.template(SERVING), "Models"))
    weights = f"arn:aws:s3:::{serving_bucket}/base-models/default/model.safetensors"
    _, _, own = serving_side(default_platform, SERVING)
    assert role_allows(own, "s3:GetObject", weights)  # the same check allows the owner ...
    _, _, other_stage = serving_side(default_platform, "exco-retail-prod-serving")
    assert not role_allows(other_stage, "s3:GetObject", weights)  # ... not prod's endpoint
    finance = default_platform.template("exco-finance-prod-serving")
    (mme_model,) = [
        r["Properties"] for r in finance["Resources"].values() if r["Type"] == "AWS::SageMaker::Model"
    ]
    finance_role = role_statements(
        finance, "exco-finance-prod-serving", mme_model["ExecutionRoleArn"]["Fn::GetAtt"][0]
    )
    assert not role_allows(finance_role, "s3:GetObject", weights)
    serving = default_platform.template(SERVING)
    deployer = role_statements(
        serving,
        SERVING,
        next(
            lid
            for lid in serving["Resources"]
            if lid.startswith("DeployerRole") and serving["Resources"][lid]["Type"] == "AWS::IAM::Role"
        ),
    )
    # The deployer writes its checksum-verified adapter copies under adapters/ (inference components).
    assert role_allows(
        deployer, "s3:PutObject", f"arn:aws:s3:::{serving_bucket}/adapters/tenants/t/personal/v1/model.tar.gz"
    )
    assert not role_allows(deployer, "s3:GetObject", weights)


def test_a_tampered_file_leaves_nothing_for_the_endpoint_to_load(
    default_platform: SynthesizedPlatform, s3: Any
) -> None:
    _, serving_uri, _ = serving_side(default_platform, SERVING)
    vet(s3, "vetted-models")
    s3.put_object(Bucket="vetted-models", Key="llama/model.safetensors", Body=b"swapped after vetting")
    bucket = serving_uri.removeprefix("s3://").split("/")[0]
    create_bucket(s3, bucket)
    assert intake(["--from", "s3://vetted-models/llama/", "--to", serving_uri], s3=s3) == 2
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
