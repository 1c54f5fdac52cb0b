"""Journey: a business unit's own model, dev pipeline -> central registry -> preprod (served on registration)
-> approval -> prod, hop by hop over the synthesized templates and the real deployer handler.

A registered (pending) version reaches preprod and never prod; only the approval's event reaches prod.
Artifacts are copied from the dev fine-tuning bucket, whose policy and the deployers' policies agree on the
exact bucket, prefix and owning account.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from moto import mock_aws
from serving_deployer import handler as deployer_handler

from tests.conftest import SynthesizedPlatform
from tests.journeys._fine_tuning import (
    SplitSageMaker,
    expect_adapter,
    function_by_handler,
    function_role_statements,
    identity_allows,
    matches,
    model_package_state_change,
    resource_allows,
    resources,
    role_statements,
    rules,
    with_bucket_names,
)
from tests.lambdas.serving_runtime._artifacts import adapter_artifact
from tests.stacks.policy_eval import resolve

REGION = "eu-west-1"
TOOLING = "111111111111"
DEV, PREPROD, PROD = "333333333331", "333333333332", "333333333333"
GROUP = "exco-retail-product-qa"


class Context:
    function_name = "journey"
    memory_limit_in_mb = 512
    invoked_function_arn = f"arn:aws:lambda:{REGION}:{PREPROD}:function:journey"
    aws_request_id = "req-1"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "MOTO_ACCOUNT_ID": TOOLING,
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_METRICS_NAMESPACE": "journey",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield


def _body(text: str) -> StreamingBody:
    return StreamingBody(io.BytesIO(text.encode()), len(text))


def _deploy(
    serving: dict[str, Any],
    event: dict[str, Any],
    registry: Any,
    monkeypatch: pytest.MonkeyPatch,
    account: str,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the stage's deployer handler with the environment its template gives it."""
    _, deployer = function_by_handler(serving, "serving_deployer.")
    bucket_id = deployer["Environment"]["Variables"]["MODEL_BUCKET"]["Ref"]
    serving_bucket = f"serving-{account}"
    boto3.client("s3", region_name=REGION).create_bucket(
        Bucket=serving_bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    boto3.resource("dynamodb", region_name=REGION).create_table(
        TableName=f"records-{account}",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    )
    for name, value in deployer["Environment"]["Variables"].items():
        refs = {"MODEL_BUCKET": serving_bucket, "RECORDS_TABLE": f"records-{account}"}
        monkeypatch.setenv(name, refs.get(name, value))
    runtime = boto3.client("sagemaker-runtime", region_name=REGION)
    original = boto3.client
    monkeypatch.setattr(
        boto3,
        "client",
        lambda service, *a, **k: runtime if service == "sagemaker-runtime" else original(service, *a, **k),
    )
    components = boto3.client("sagemaker", region_name=REGION)
    monkeypatch.setattr(deployer_handler, "sagemaker_client", lambda: SplitSageMaker(registry, components))
    deployer_handler.serving_target.cache_clear()
    deployer_handler.records.cache_clear()
    endpoint = f"exco-retail-{'preprod' if account == PREPROD else 'prod'}-serving"
    try:
        with Stubber(runtime) as probes, Stubber(components) as component_stub:
            expect_adapter(component_stub, endpoint, account, REGION)  # retail serves adapters as components
            probes.add_response(
                "invoke_endpoint",
                {"Body": _body('[{"generated_text": "ok"}]'), "ContentType": "application/json"},
                {
                    "EndpointName": endpoint,
                    "InferenceComponentName": ANY,
                    "ContentType": "application/json",
                    "Body": ANY,
                },
            )
            outcome = deployer_handler.lambda_handler(event, Context())
    finally:
        deployer_handler.serving_target.cache_clear()
        deployer_handler.records.cache_clear()
    named = with_bucket_names(serving, {bucket_id: serving_bucket})
    return outcome, function_role_statements(named, "serving_deployer.")


def test_a_business_unit_version_is_served_in_preprod_on_registration_and_in_prod_only_after_approval(
    default_platform: SynthesizedPlatform, aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    dev = default_platform.template("exco-retail-dev-fine-tuning")
    tooling = default_platform.template("exco-tooling")
    preprod_events = default_platform.template("exco-retail-preprod-registry-events")
    preprod = default_platform.template("exco-retail-preprod-serving")
    prod = default_platform.template("exco-retail-prod-serving")

    # ---- hop 1: dev's business-unit pipeline registers into the central group, which admits dev ----
    (pipeline,) = [r["Properties"] for r in resources(dev, "AWS::SageMaker::Pipeline").values()]
    body, variables = pipeline["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    definition = json.loads(body)
    defaults = {p["Name"]: p.get("DefaultValue") for p in definition["Parameters"]}
    group_arn = f"{resolve(variables['RegistryArnPrefix'], dev)}{defaults['UseCase']}"
    assert group_arn == f"arn:aws:sagemaker:{REGION}:{TOOLING}:model-package-group/{GROUP}"
    assert identity_allows(
        role_statements(dev, pipeline["RoleArn"]["Fn::GetAtt"][0]), "sagemaker:CreateModelPackage", group_arn
    )
    (central,) = [
        r["Properties"]
        for r in resources(tooling, "AWS::SageMaker::ModelPackageGroup").values()
        if r["Properties"]["ModelPackageGroupName"] == GROUP
    ]
    group_policy = resolve(json.loads(json.dumps(central["ModelPackageGroupPolicy"])), tooling)
    assert resource_allows(group_policy["Statement"], DEV, "sagemaker:CreateModelPackage", group_arn)
    assert not resource_allows(group_policy["Statement"], PROD, "sagemaker:CreateModelPackage", group_arn)

    # ---- hop 2: the version, as SageMaker records it (moto, tooling account) ----
    bucket = next(
        r["Properties"]["BucketName"]
        for r in resources(dev, "AWS::S3::Bucket").values()
        if "-ft-" in r["Properties"].get("BucketName", "")
    )
    training = next(s for s in definition["Steps"] if s["Name"] == "FineTune")["Arguments"]
    output = training["OutputDataConfig"]["S3OutputPath"]["Std:Join"]["Values"]
    assert output[1:] == ["models/", {"Get": "Parameters.BusinessUnit"}, "/business-unit"]
    key = "models/retail/business-unit/pipelines-1-FineTune/output/model.tar.gz"
    weights = adapter_artifact(base_model_name_or_path="retail")  # the pipeline's peft layout: it is packaged
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket=bucket, Key=key, Body=weights)
    registry = boto3.client("sagemaker", region_name=REGION)
    registry.create_model_package_group(ModelPackageGroupName=GROUP)
    metadata = {
        "BusinessUnit": "retail",
        "Stage": "dev",
        "ArtifactSha256": hashlib.sha256(weights).hexdigest(),
    }
    arn = registry.create_model_package(
        ModelPackageGroupName=GROUP,
        ModelApprovalStatus=defaults["ModelApprovalStatus"],
        CustomerMetadataProperties=metadata,
        InferenceSpecification={
            "Containers": [
                {
                    "Image": f"{TOOLING}.dkr.ecr.{REGION}.amazonaws.com/s:1",
                    "ModelDataUrl": f"s3://{bucket}/{key}",
                }
            ],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
    )["ModelPackageArn"]
    assert defaults["ModelApprovalStatus"] == "PendingManualApproval"
    registered = model_package_state_change(
        TOOLING, REGION, registry.describe_model_package(ModelPackageName=arn)
    )

    # ---- hop 3: tooling forwards the registry's events to preprod and prod; preprod's bus admits them ----
    (forward,) = [r for r in rules(tooling) if matches(r["EventPattern"], registered)]
    targets = {resolve(t["Arn"], tooling) for t in forward["Targets"]}
    assert targets == {f"arn:aws:events:{REGION}:{a}:event-bus/default" for a in (PREPROD, PROD)}
    (receiver,) = [r["Properties"] for r in resources(preprod_events, "AWS::Events::EventBusPolicy").values()]
    assert resource_allows(
        [resolve(receiver["Statement"], preprod_events)],
        TOOLING,
        "events:PutEvents",
        f"arn:aws:events:{REGION}:{PREPROD}:event-bus/default",
        **{"events:source": "aws.sagemaker", "events:detail-type": "SageMaker Model Package State Change"},
    )

    # ---- hop 4: preprod serves the registered version; prod's rule does not even hear it ----
    (preprod_rule,) = [r for r in rules(preprod) if r["EventPattern"].get("source") == ["aws.sagemaker"]]
    (prod_rule,) = [r for r in rules(prod) if r["EventPattern"].get("source") == ["aws.sagemaker"]]
    assert matches(preprod_rule["EventPattern"], registered)
    assert not matches(prod_rule["EventPattern"], registered)
    # The dev bucket lets preprod's business-unit roles read exactly this prefix.
    (bucket_policy,) = [r["Properties"] for r in resources(dev, "AWS::S3::BucketPolicy").values()]
    object_arn = f"arn:aws:s3:::{bucket}/{key}"
    statements = resolve(bucket_policy["PolicyDocument"]["Statement"], with_bucket_names(dev, {}))
    tagged = {"aws:PrincipalTag/BusinessUnit": "retail", "aws:SecureTransport": "true"}
    assert resource_allows(statements, PREPROD, "s3:GetObject", object_arn, **tagged)
    outcome, policy = _deploy(preprod, registered, registry, monkeypatch, PREPROD)
    assert outcome["action"] == "deployed" and outcome["slot"] == [f"GROUP#{GROUP}", "MODEL#default"]
    assert identity_allows(policy, "s3:GetObject", object_arn, **{"s3:ResourceAccount": DEV})
    assert not identity_allows(policy, "s3:GetObject", object_arn, **{"s3:ResourceAccount": "999999999999"})
    assert identity_allows(policy, "sagemaker:DescribeModelPackage", arn)

    # ---- hop 5: the approval in the tooling account is what reaches prod ----
    # (moto's UpdateModelPackage drops the metadata SageMaker keeps: the call restates it.)
    registry.update_model_package(
        ModelPackageArn=arn, ModelApprovalStatus="Approved", CustomerMetadataProperties=metadata
    )
    approved = model_package_state_change(
        TOOLING, REGION, registry.describe_model_package(ModelPackageName=arn)
    )
    assert matches(prod_rule["EventPattern"], approved)
    outcome, policy = _deploy(prod, approved, registry, monkeypatch, PROD)
    assert outcome["action"] == "deployed"
    assert resource_allows(statements, PROD, "s3:GetObject", object_arn, **tagged)
    assert not resource_allows(
        statements, PROD, "s3:GetObject", f"arn:aws:s3:::{bucket}/models/retail/tenant=ann/x.tar.gz", **tagged
    )
