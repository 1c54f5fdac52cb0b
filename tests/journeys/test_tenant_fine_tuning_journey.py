"""Journey: a prod tenant's upload becomes that tenant's served model, hop by hop, for two tenants at once.

app upload key -> raw zone (EventBridge on) -> lake rule -> prod bus policy -> prod rule -> FIFO queue ->
trigger handler (starts the prod pipeline for the tenant) -> job role reads the upload -> the pipeline
registers into prod's tenant group (moto) -> "Model Package State Change" -> deployer rule -> deployer
handler (checksum-pinned copy, probe, record) -> /invoke of that tenant uses its model; the other tenant's
approval never evicts it; a revoked approval returns the tenant to the base model.
Negative journeys: the prod upload starts nothing in another stage; no dev role can read prod tenant data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from app_backend import wiring
from app_backend.fine_tunes import SageMakerPipeline
from app_backend.models import FineTuneBody, InvokeBody
from app_backend.service import AppService
from app_backend.settings import ApplicationSettings, EndUserCatalog
from app_backend.store import AppStore
from app_backend.uploads import uploads_prefix
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from fine_tuning_trigger import core as trigger_core
from fine_tuning_trigger import handler as trigger_handler
from serving_deployer import handler as deployer_handler
from serving_runtime.packaging import read_artifact

from common.fine_tuning_runs import (
    RESERVATION_SECONDS,
    AtCapacityError,
    PipelineRef,
    RunLeases,
    TenantUseCases,
)
from common.lake_layout import Zone
from stacks.blocks.lake_access import lake_bucket_name
from stacks.blocks.upload_events import tenant_fine_tuning_stages
from tests.conftest import SynthesizedPlatform
from tests.journeys._fine_tuning import (
    SplitSageMaker,
    expect_adapter,
    function_by_handler,
    function_role_statements,
    identity_allows,
    matches,
    model_package_state_change,
    registration_for,
    resource_allows,
    resources,
    role_statements,
    rules,
    s3_object_created,
    service_allows,
    with_bucket_names,
)
from tests.journeys._moto_account import in_account, lambda_context
from tests.journeys._tenant_review import register_tenant_version
from tests.journeys._usage import References
from tests.lambdas.app_backend.conftest import (
    CANDIDATES,
    FakeCatalog,
    ListSink,
    RecordingFilter,
    RecordingModel,
)
from tests.lambdas.evaluation._api_events import api_event
from tests.lambdas.fine_tuning._leases import OneRequestAtATime, create_leases_table
from tests.lambdas.serving_runtime._artifacts import adapter_artifact
from tests.stacks.policy_eval import resolve

REGION = "eu-west-1"
LAKE = "222222222222"
DEV, PREPROD, PROD = "333333333331", "333333333332", "333333333333"
TENANTS = ("ann", "ben")
CONTEXT = lambda_context(region=REGION, account=PROD)


@dataclasses.dataclass
class Stage:
    """The synthesized prod templates of the retail business unit, plus the lake's."""

    platform: SynthesizedPlatform

    def template(self, name: str) -> dict[str, Any]:
        return self.platform.template(name)

    @property
    def raw(self) -> str:
        return lake_bucket_name(self.platform.config, Zone.RAW)


@pytest.fixture(scope="module")
def stage(default_platform: SynthesizedPlatform) -> Stage:
    return Stage(default_platform)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with in_account(monkeypatch, region=REGION, account=PROD):
        yield


def evaluate(expression: Any, parameters: dict[str, Any], variables: dict[str, str]) -> Any:
    """The pipeline definition's expressions for one execution: Get Parameters.*, Std:Join, ${placeholders}."""
    if isinstance(expression, dict) and "Get" in expression:
        return parameters[expression["Get"].removeprefix("Parameters.")]
    if isinstance(expression, dict) and "Std:Join" in expression:
        join = expression["Std:Join"]
        return join["On"].join(str(evaluate(v, parameters, variables)) for v in join["Values"])
    if isinstance(expression, str):
        for name, value in variables.items():
            expression = expression.replace(f"${{{name}}}", value)
    return expression


def env_of(function: dict[str, Any], **refs: str) -> dict[str, str]:
    """A function's environment from the template; Ref/GetAtt values replaced by the names moto uses."""
    found = {}
    for name, value in function["Environment"]["Variables"].items():
        found[name] = refs.get(name, value)
        assert isinstance(found[name], str), (name, value)
    return found


def test_a_prod_tenants_upload_becomes_its_served_model_and_the_next_tenant_never_evicts_it(
    stage: Stage, aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = stage.template("exco-data-lake")
    fine_tuning = stage.template("exco-retail-prod-fine-tuning")
    serving = stage.template("exco-retail-prod-serving")
    application = stage.template("exco-retail-prod-application")

    # ---- hop 1: the app's presigned upload lands under the tenant's prefix, which its session may write ----
    upload_role = next(
        k
        for k, r in resources(application, "AWS::IAM::Role").items()
        if "Presigned uploads" in r["Properties"].get("Description", "")
    )
    upload_policy = role_statements(application, upload_role)
    keys = {tenant: f"{uploads_prefix('retail', 'prod', tenant)}0001/data.jsonl" for tenant in TENANTS}
    for tenant, key in keys.items():
        arn = f"arn:aws:s3:::{stage.raw}/{key}"
        assert identity_allows(upload_policy, "s3:PutObject", arn, **{"aws:PrincipalTag/TenantId": tenant})
        other = next(t for t in TENANTS if t != tenant)
        assert not identity_allows(upload_policy, "s3:PutObject", arn, **{"aws:PrincipalTag/TenantId": other})

    # ---- hop 2: the raw zone emits "Object Created" to EventBridge; the lake forwards prod's prefix to prod ----
    (raw_bucket,) = [
        r["Properties"]
        for r in resources(lake, "AWS::S3::Bucket").values()
        if r["Properties"].get("BucketName") == stage.raw
    ]
    assert raw_bucket["NotificationConfiguration"]["EventBridgeConfiguration"]["EventBridgeEnabled"] is True
    events = {t: s3_object_created(LAKE, REGION, stage.raw, key) for t, key in keys.items()}
    forwarding = [r for r in rules(lake) if all(matches(r["EventPattern"], e) for e in events.values())]
    assert len(forwarding) == 1, "exactly one lake rule forwards prod tenant uploads"
    (target,) = forwarding[0]["Targets"]
    assert resolve(target["Arn"], lake) == f"arn:aws:events:{REGION}:{PROD}:event-bus/default"
    role_id = target["RoleArn"]["Fn::GetAtt"][0]
    role_name = resources(lake, "AWS::IAM::Role")[role_id]["Properties"]["RoleName"]
    assert identity_allows(
        role_statements(lake, role_id),
        "events:PutEvents",
        f"arn:aws:events:{REGION}:{PROD}:event-bus/default",
    )

    # ---- hop 3: prod's bus policy admits exactly that role of the lake account, for S3 events ----
    (bus_policy,) = [r["Properties"] for r in resources(fine_tuning, "AWS::Events::EventBusPolicy").values()]
    statement = resolve(bus_policy["Statement"], fine_tuning)
    sender = {
        "aws:PrincipalArn": f"arn:aws:iam::{LAKE}:role/{role_name}",
        "events:source": "aws.s3",
        "events:detail-type": "Object Created",
    }
    bus = f"arn:aws:events:{REGION}:{PROD}:event-bus/default"
    assert resource_allows([statement], LAKE, "events:PutEvents", bus, **sender)
    foreign_role = {**sender, "aws:PrincipalArn": f"arn:aws:iam::{LAKE}:role/someone-else"}
    assert not resource_allows([statement], LAKE, "events:PutEvents", bus, **foreign_role)

    # ---- hop 4: prod's rule -> FIFO queue -> trigger starts the prod pipeline for each tenant (cap 2) ----
    (upload_rule,) = [r for r in rules(fine_tuning) if r["EventPattern"].get("source") == ["aws.s3"]]
    assert all(matches(upload_rule["EventPattern"], e) for e in events.values())
    trigger = _function(fine_tuning, "fine_tuning_trigger.handler.lambda_handler")
    leases_table = _leases_table(fine_tuning)
    create_leases_table(REGION, "leases")
    for name, value in env_of(trigger, RUN_LEASES_TABLE="leases").items():
        monkeypatch.setenv(name, value)
    # The trigger takes a slot of the cap in the stage's lease table before it starts a run.
    trigger_policy = function_role_statements(fine_tuning, "fine_tuning_trigger.handler.lambda_handler")
    assert _allows_on_table(trigger_policy, leases_table, "dynamodb:PutItem", "dynamodb:UpdateItem")
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    executions: dict[str, list[dict[str, str]]] = {}
    with Stubber(sagemaker) as stub:
        for tenant in TENANTS:
            input_uri = f"s3://{stage.raw}/retail/prod/tenant={tenant}/uploads/"
            assert f"s3://{stage.raw}/{keys[tenant]}".startswith(input_uri)  # the run reads what was uploaded
            executions[tenant] = [
                {"Name": "TenantId", "Value": tenant},
                {"Name": "ModelName", "Value": "personal"},
                {"Name": "InputDataUri", "Value": input_uri},
                # An upload trains the business unit's default use case; no starter names a registry status.
                {"Name": "UseCase", "Value": "product-qa"},
            ]
            stub.add_response(
                "start_pipeline_execution",
                {"PipelineExecutionArn": f"arn:aws:sagemaker:{REGION}:{PROD}:pipeline/p/execution/{tenant}"},
                {
                    "PipelineName": "exco-retail-prod-fine-tuning",
                    "PipelineExecutionDisplayName": f"tenant-{tenant}",
                    "PipelineParameters": executions[tenant],
                    "ClientRequestToken": ANY,
                },
            )
        monkeypatch.setattr(trigger_handler, "sagemaker_client", lambda: sagemaker)
        monkeypatch.setattr(
            trigger_handler, "dynamodb_client", lambda: boto3.client("dynamodb", region_name=REGION)
        )
        for index, tenant in enumerate(TENANTS):
            message = {"messageId": f"m{index}", "body": json.dumps(events[tenant])}
            assert trigger_handler.lambda_handler({"Records": [message]}, CONTEXT) == {
                "batchItemFailures": []
            }
        stub.assert_no_pending_responses()

    # ---- hop 5: the run's job role reads the tenant's upload ----
    (pipeline,) = [r["Properties"] for r in resources(fine_tuning, "AWS::SageMaker::Pipeline").values()]
    body, variables = pipeline["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    job_role = pipeline["RoleArn"]["Fn::GetAtt"][0]
    job_policy = role_statements(fine_tuning, job_role)
    for key in keys.values():
        assert identity_allows(job_policy, "s3:GetObject", f"arn:aws:s3:::{stage.raw}/{key}")

    # ---- hop 6: the run registers into prod's own tenant group, with the tenant and checksum ----
    definition = json.loads(body)
    defaults = {p["Name"]: p.get("DefaultValue") for p in definition["Parameters"]}
    (models_bucket_id,) = [
        k
        for k, r in resources(fine_tuning, "AWS::S3::Bucket").items()
        if "-ft-" in r["Properties"].get("BucketName", "")
    ]
    ft_bucket = resources(fine_tuning, "AWS::S3::Bucket")[models_bucket_id]["Properties"]["BucketName"]
    assert variables["Bucket"] == {"Ref": models_bucket_id}
    prefix = resolve(variables["RegistryArnPrefix"], fine_tuning)
    (use_case,) = {p["Value"] for e in executions.values() for p in e if p["Name"] == "UseCase"}
    group_arn = f"{prefix}{use_case}"
    group = group_arn.rsplit("/", 1)[1]
    assert group in [
        g["Properties"]["ModelPackageGroupName"]
        for g in resources(fine_tuning, "AWS::SageMaker::ModelPackageGroup").values()
    ]
    s3 = boto3.client("s3", region_name=REGION)
    for bucket in (ft_bucket, "serving-models"):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    registry = boto3.client("sagemaker", region_name=REGION)
    registry.create_model_package_group(ModelPackageGroupName=group)
    training = next(s for s in definition["Steps"] if s["Name"] == "FineTune")["Arguments"]
    packages: dict[str, str] = {}
    metadatas: dict[str, dict[str, str]] = {}
    artifacts: dict[str, bytes] = {}
    for tenant in TENANTS:
        parameters = {**defaults, **{p["Name"]: p["Value"] for p in executions[tenant]}}
        # The registration the pipeline picks for this run's use case, and the job role may make it.
        arguments = registration_for(definition, parameters)["Arguments"]
        approval = {"sagemaker:ModelApprovalStatus": arguments["ModelApprovalStatus"]}
        assert identity_allows(job_policy, "sagemaker:CreateModelPackage", group_arn, **approval)
        output = evaluate(training["OutputDataConfig"]["S3OutputPath"], parameters, {"Bucket": ft_bucket})
        artifact = f"{output}/pipelines-{tenant}-FineTune/output/model.tar.gz"
        weights = adapter_artifact(base_model_name_or_path=f"adapter-of-{tenant}")  # the pipeline's layout
        artifacts[tenant] = weights
        s3.put_object(Bucket=ft_bucket, Key=artifact.removeprefix(f"s3://{ft_bucket}/"), Body=weights)
        report = {"artifact": {"sha256": hashlib.sha256(weights).hexdigest()}}
        metadata = {}
        for name, value in arguments["CustomerMetadataProperties"].items():
            if isinstance(value, dict) and "Std:JsonGet" in value:
                path = value["Std:JsonGet"]["Path"].split(".")
                metadata[name] = report[path[0]][path[1]]
            else:
                metadata[name] = evaluate(value, parameters, {})
        assert metadata["TenantId"] == tenant and metadata["Stage"] == "prod"
        registered = registry.create_model_package(
            ModelPackageGroupName=group,
            ModelApprovalStatus=evaluate(arguments["ModelApprovalStatus"], parameters, {}),
            CustomerMetadataProperties=metadata,
            InferenceSpecification={
                "Containers": [
                    {"Image": f"{PROD}.dkr.ecr.{REGION}.amazonaws.com/serving:1", "ModelDataUrl": artifact}
                ],
                "SupportedContentTypes": ["application/json"],
                "SupportedResponseMIMETypes": ["application/json"],
            },
        )
        packages[tenant] = registered["ModelPackageArn"]
        metadatas[tenant] = metadata
    # product-qa's promotion policy is `automatic`: a version that passed the held-out thresholds is approved.
    assert {
        registry.describe_model_package(ModelPackageName=p)["ModelApprovalStatus"] for p in packages.values()
    } == {"Approved"}

    # ---- hop 7: the approval event reaches the deployer, which serves each tenant in its own slot ----
    (deploy_rule,) = [r for r in rules(serving) if r["EventPattern"].get("source") == ["aws.sagemaker"]]
    _, deployer = function_by_handler(serving, "serving_deployer.")
    records_table = boto3.resource("dynamodb", region_name=REGION).create_table(
        TableName="records",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    )
    for name, value in env_of(deployer, MODEL_BUCKET="serving-models", RECORDS_TABLE="records").items():
        monkeypatch.setenv(name, value)
    # The serving bucket's name is generated at deploy time: name it as moto does to resolve its ARNs.
    named = with_bucket_names(serving, {_serving_bucket(serving): "serving-models"})
    deployer_policy = function_role_statements(named, "serving_deployer.")
    # retail serves LoRA adapters as inference components (config/platform.yaml).
    assert (
        json.loads(deployer["Environment"]["Variables"]["SERVING_SETTINGS"])["mode"] == "inference_components"
    )
    runtime = boto3.client("sagemaker-runtime", region_name=REGION)
    components = boto3.client("sagemaker", region_name=REGION)
    component_stub = Stubber(components)
    component_stub.activate()
    monkeypatch.setattr(deployer_handler, "sagemaker_client", lambda: SplitSageMaker(registry, components))
    deployer_handler.serving_target.cache_clear()
    deployer_handler.records.cache_clear()
    monkeypatch.setattr(boto3, "client", _with_runtime(boto3.client, runtime))
    served: dict[str, str] = {}
    with Stubber(runtime) as probes:
        for tenant in TENANTS:
            described = registry.describe_model_package(ModelPackageName=packages[tenant])
            event = model_package_state_change(PROD, REGION, described)
            assert matches(deploy_rule["EventPattern"], event)
            artifact = described["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
            assert identity_allows(
                deployer_policy, "s3:GetObject", artifact.replace("s3://", "arn:aws:s3:::")
            )
            assert identity_allows(deployer_policy, "sagemaker:DescribeModelPackage", packages[tenant])
            expect_adapter(component_stub, "exco-retail-prod-serving", PROD, REGION)
            probes.add_response(
                "invoke_endpoint",
                {"Body": _body('[{"generated_text": "ok"}]'), "ContentType": "application/json"},
                {
                    "EndpointName": "exco-retail-prod-serving",
                    "InferenceComponentName": ANY,
                    "ContentType": "application/json",
                    "Body": ANY,
                },
            )
            outcome = deployer_handler.lambda_handler(event, CONTEXT)
            assert outcome["action"] == "deployed", outcome
            served[tenant] = outcome["served"]["inference_component"]
    deployer_handler.serving_target.cache_clear()
    deployer_handler.records.cache_clear()
    # The second tenant's approval left the first tenant's model serving.
    assert served["ann"] != served["ben"]
    copies = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="serving-models")["Contents"])
    assert copies == [f"adapters/tenants/{t}/personal/v{v}/model.tar.gz" for t, v in (("ann", 1), ("ben", 2))]
    for key in copies:
        assert identity_allows(deployer_policy, "s3:PutObject", f"arn:aws:s3:::serving-models/{key}")
    # What each component loads is the serving package of the registered artifact: its manifest pins the
    # artifact's SHA-256 (the registry's ArtifactSha256) and every file's; the record pins the package's.
    for tenant, key in zip(TENANTS, copies, strict=True):
        package = s3.get_object(Bucket="serving-models", Key=key)
        archive = package["Body"].read()
        manifest = json.loads(read_artifact(archive)["manifest.json"])
        assert manifest["source_sha256"] == metadatas[tenant]["ArtifactSha256"]
        assert manifest["source_sha256"] == hashlib.sha256(artifacts[tenant]).hexdigest()
        assert package["Metadata"]["sha256"] == hashlib.sha256(archive).hexdigest()
        record = records_table.get_item(Key={"pk": f"TENANT#{tenant}", "sk": "MODEL#personal"})["Item"]
        assert record["package_sha256"] == hashlib.sha256(archive).hexdigest()

    # ---- hop 8: each tenant's next /invoke uses its own model; the app may read the records table ----
    backend_policy = function_role_statements(application, "app_backend.")
    reads = [s for s in backend_policy if "dynamodb:Query" in json.dumps(s.get("Action"))]
    assert any("ModelRecords" in json.dumps(s["Resource"]) for s in reads)
    service, tenant_runtime = _app(records_table)
    with Stubber(tenant_runtime) as answers:
        for tenant in TENANTS:
            answers.add_response(
                "invoke_endpoint",
                {
                    "Body": _body(f'[{{"generated_text": "hello from {tenant}"}}]'),
                    "ContentType": "application/json",
                },
                {
                    "EndpointName": "exco-retail-prod-serving",
                    "InferenceComponentName": served[tenant],
                    "ContentType": "application/json",
                    "Accept": "application/json",
                    "Body": ANY,
                },
            )
            answer = service.invoke(tenant, InvokeBody(prompt="greet", variables={"name": "x"}))
            assert answer["model"] == "tenant-model-personal"
    # ---- revoked approval: the record and the copy go, the tenant is back on the base model ----
    # (moto's UpdateModelPackage drops the metadata SageMaker keeps: the call restates it.)
    registry.update_model_package(
        ModelPackageArn=packages["ann"],
        ModelApprovalStatus="Rejected",
        CustomerMetadataProperties=metadatas["ann"],
    )
    described = registry.describe_model_package(ModelPackageName=packages["ann"])
    event = model_package_state_change(PROD, REGION, described)
    assert matches(deploy_rule["EventPattern"], event)
    component_stub.add_response("delete_inference_component", {}, {"InferenceComponentName": served["ann"]})
    assert deployer_handler.lambda_handler(event, CONTEXT)["action"] == "retired"
    component_stub.assert_no_pending_responses()
    component_stub.deactivate()
    deployer_handler.serving_target.cache_clear()
    deployer_handler.records.cache_clear()
    assert service.invoke("ann", InvokeBody(prompt="greet", variables={"name": "x"}))["model"] == "fake-model"
    remaining = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="serving-models")["Contents"])
    assert remaining == ["adapters/tenants/ben/personal/v2/model.tar.gz"]


def _function(template: dict[str, Any], handler: str) -> dict[str, Any]:
    (function,) = [
        r["Properties"]
        for r in resources(template, "AWS::Lambda::Function").values()
        if r["Properties"].get("Handler") == handler
    ]
    return function


def _leases_table(template: dict[str, Any]) -> str:
    (table,) = resources(template, "AWS::DynamoDB::Table")
    return table


def _allows_on_table(statements: list[dict[str, Any]], table: str, *actions: str) -> bool:
    arn = f"arn:aws:dynamodb:{REGION}:{PROD}:table/leases"
    named = [
        json.loads(
            json.dumps(s)
            .replace(json.dumps({"Fn::GetAtt": [table, "Arn"]}), json.dumps(arn))
            .replace(json.dumps(f"<{table}.Arn>"), json.dumps(arn))
        )
        for s in statements
    ]
    return all(identity_allows(named, action, arn) for action in actions)


def _with_runtime(original: Any, runtime: Any) -> Any:
    def client(service: str, *args: Any, **kwargs: Any) -> Any:
        return runtime if service == "sagemaker-runtime" else original(service, *args, **kwargs)

    return client


def _serving_bucket(template: dict[str, Any]) -> str:
    _, deployer = function_by_handler(template, "serving_deployer.")
    return str(deployer["Environment"]["Variables"]["MODEL_BUCKET"]["Ref"])


def _body(text: str) -> StreamingBody:
    return StreamingBody(io.BytesIO(text.encode()), len(text))


def _app(records_table: Any) -> tuple[AppService, Any]:
    dynamodb = boto3.resource("dynamodb", region_name=REGION)
    requests = dynamodb.create_table(
        TableName="app-requests",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    )
    runtime = boto3.client("sagemaker-runtime", region_name=REGION)
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=CANDIDATES, CreateBucketConfiguration={"LocationConstraint": REGION})

    def tenant_model(item: Any) -> Any:
        return dataclasses.replace(wiring.tenant_model(item), client=runtime)

    service = AppService(
        # As a real config would: /invoke serves only what `application.end_user_catalog` offers.
        settings=ApplicationSettings(end_user_catalog=EndUserCatalog(prompts=["greet"])),
        business_unit="retail",
        use_case="product-qa",
        stage="prod",
        guard=RecordingFilter(),
        catalog=FakeCatalog(),
        store=AppStore(requests, records_table),
        default_model=RecordingModel(),
        tenant_model=tenant_model,
        ratings=ListSink(),
        candidates=wiring.S3Candidates(CANDIDATES, s3),
    )
    return service, runtime


# ---- negative journeys ------------------------------------------------------------------------------------


def test_a_prod_tenants_upload_starts_no_pipeline_in_another_stage(
    stage: Stage, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = stage.template("exco-data-lake")
    event = s3_object_created(LAKE, REGION, stage.raw, "retail/prod/tenant=ann/uploads/0001/data.jsonl")
    forwarded_to = {
        resolve(t["Arn"], lake)
        for r in rules(lake)
        if matches(r["EventPattern"], event)
        for t in r["Targets"]
    }
    assert forwarded_to == {f"arn:aws:events:{REGION}:{PROD}:event-bus/default"}
    preprod = stage.template("exco-retail-preprod-fine-tuning")
    (upload_rule,) = [r for r in rules(preprod) if r["EventPattern"].get("source") == ["aws.s3"]]
    assert not matches(upload_rule["EventPattern"], event)
    # preprod's bus refuses prod's forwarding role, and dev has no tenant pipeline at all.
    (bus_policy,) = [r["Properties"] for r in resources(preprod, "AWS::Events::EventBusPolicy").values()]
    prod_role = next(
        r["Properties"]["RoleName"]
        for r in resources(lake, "AWS::IAM::Role").values()
        if r["Properties"].get("RoleName", "").endswith("-retail-prod-upload-events")
    )
    assert not resource_allows(
        [resolve(bus_policy["Statement"], preprod)],
        LAKE,
        "events:PutEvents",
        f"arn:aws:events:{REGION}:{PREPROD}:event-bus/default",
        **{
            "aws:PrincipalArn": f"arn:aws:iam::{LAKE}:role/{prod_role}",
            "events:source": "aws.s3",
            "events:detail-type": "Object Created",
        },
    )
    dev = stage.template("exco-retail-dev-fine-tuning")
    assert [r for r in rules(dev) if r["EventPattern"].get("source") == ["aws.s3"]] == []
    # Even handed the event, preprod's trigger (with preprod's environment) starts nothing.
    _, trigger = function_by_handler(preprod, "fine_tuning_trigger.handler.lambda_handler")
    for name, value in env_of(trigger, RUN_LEASES_TABLE="leases").items():  # never read: nothing starts
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    client = boto3.client("sagemaker", region_name=REGION)
    leases = boto3.client("dynamodb", region_name=REGION)
    with Stubber(client), Stubber(leases):  # any call would fail: none is expected, not even a lease
        monkeypatch.setattr(trigger_handler, "sagemaker_client", lambda: client)
        monkeypatch.setattr(trigger_handler, "dynamodb_client", lambda: leases)
        result = trigger_handler.lambda_handler(
            {"Records": [{"messageId": "m", "body": json.dumps(event)}]}, CONTEXT
        )
    assert result == {"batchItemFailures": []}


def test_no_dev_role_can_read_prod_tenant_data(stage: Stage) -> None:
    key = f"arn:aws:s3:::{stage.raw}/retail/prod/tenant=ann/uploads/0001/data.jsonl"
    artifact = "arn:aws:s3:::exco-retail-prod-ft-333333333333/models/retail/tenant=ann/x/output/model.tar.gz"
    checked = 0
    for stack in stage.platform.stacks():
        if not stack.stack_name.startswith("exco-retail-dev-"):
            continue
        template = stack.template
        for role_id in resources(template, "AWS::IAM::Role"):
            statements = role_statements(template, role_id)
            checked += 1
            for resource in (key, artifact):
                assert not identity_allows(
                    statements,
                    "s3:GetObject",
                    resource,
                    **{"aws:PrincipalTag/BusinessUnit": "retail", "aws:PrincipalTag/Stage": "dev"},
                ), (stack.stack_name, role_id, resource)
    assert checked > 10


# ---- reviewed use cases: the human review queue, a reviewer of the business unit, then serving -------------

FT_STACK, EVAL_STACK = "exco-retail-prod-fine-tuning", "exco-retail-prod-evaluation"
REVIEWER = f"arn:aws:sts::{PROD}:assumed-role/retail-tenant-reviewer/alice"
REVIEW_ROUTE = "execute-api:/v1/POST/tenant-models/decisions"


def _rule_named(template: dict[str, Any], suffix: str) -> dict[str, Any]:
    (rule,) = [r for r in rules(template) if r.get("Name", "").endswith(suffix)]
    return rule


def _reviewed_use_case(stage: Stage) -> str:
    """retail's use case whose promotion policy is `reviewed` (config/platform.yaml); it is not the default."""
    retail = next(b for b in stage.platform.config.business_units if b.name == "retail")
    return next(u for u in retail.use_cases if retail.fine_tuning.promotion_for(u) == "reviewed")


def _started_by_the_app(
    stage: Stage, service: AppService, tenant: str, use_case: str
) -> list[dict[str, str]]:
    """POST /fine-tunes of `tenant` for `use_case` through the app's real starter, built from the backend's
    synthesized environment (the use cases and their policies): the parameters it starts the pipeline with."""
    _, backend = function_by_handler(stage.template("exco-retail-prod-application"), "app_backend.")
    env = backend["Environment"]["Variables"]
    ref = PipelineRef(
        env["FINE_TUNING_PIPELINE"],
        env["BUSINESS_UNIT"],
        env["LAKE_STAGE"],
        max_concurrent_runs=int(env["MAX_CONCURRENT_RUNS"]),
        max_runtime_hours=int(env["MAX_RUNTIME_HOURS"]),
        use_cases=TenantUseCases.from_json(env[TenantUseCases.ENV]),
    )
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    starter = SageMakerPipeline(
        RunLeases(create_leases_table(REGION, "app-leases"), "app-leases", ref),
        sagemaker,
        raw_bucket=stage.raw,
        uploads_prefix=lambda t: uploads_prefix("retail", "prod", t),
    )
    # Exactly these parameters or the stub fails the start: the use case picks the group (and, inside the
    # pipeline, the status); no starter sends a status.
    sent = [
        {"Name": "TenantId", "Value": tenant},
        {"Name": "ModelName", "Value": "personal"},
        {"Name": "InputDataUri", "Value": f"s3://{stage.raw}/{uploads_prefix('retail', 'prod', tenant)}"},
        {"Name": "UseCase", "Value": use_case},
    ]
    with Stubber(sagemaker) as stub:
        stub.add_response(
            "start_pipeline_execution",
            {"PipelineExecutionArn": f"arn:aws:sagemaker:{REGION}:{PROD}:pipeline/p/execution/exec-{tenant}"},
            {
                "PipelineName": FT_STACK,
                "PipelineExecutionDisplayName": f"tenant-{tenant}",
                "PipelineParameters": sent,
                "ClientRequestToken": ANY,
            },
        )
        started = dataclasses.replace(service, fine_tunes=starter).start_fine_tune(
            tenant, FineTuneBody(model_name="personal", use_case=use_case)
        )
        stub.assert_no_pending_responses()
    assert started["use_case"] == use_case
    return sent


def _reviewed_registration(stage: Stage, tenant: str, started: list[dict[str, str]]) -> dict[str, Any]:
    """What the prod pipeline's Register step does for the run the app started (`started`: its parameters):
    its group, status and the key of its evaluation report, evaluated from the synthesized definition."""
    template = stage.template(FT_STACK)
    (pipeline,) = [r["Properties"] for r in resources(template, "AWS::SageMaker::Pipeline").values()]
    body, variables = pipeline["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    definition = json.loads(body)
    parameters = {
        **{p["Name"]: p.get("DefaultValue") for p in definition["Parameters"]},
        **{p["Name"]: p["Value"] for p in started},
        "Execution.PipelineExecutionId": f"exec-{tenant}",
    }
    use_case = parameters["UseCase"]
    steps = {s["Name"]: s for s in definition["Steps"]}
    register = registration_for(definition, parameters)["Arguments"]
    (report,) = [
        o["S3Output"]["S3Uri"]
        for o in steps["Evaluate"]["Arguments"]["ProcessingOutputConfig"]["Outputs"]
        if o["OutputName"] == "evaluation"
    ]
    bucket = f"exco-retail-prod-ft-{PROD}"
    return {
        "group_arn": f"{resolve(variables['RegistryArnPrefix'], template)}{use_case}",
        "group": f"{resolve(variables['RegistryArnPrefix'], template)}{use_case}".rsplit("/", 1)[1],
        "status": evaluate(register["ModelApprovalStatus"], parameters, {}),
        "report_key": f"{evaluate(report, parameters, {'Bucket': bucket})}/evaluation.json".removeprefix(
            f"s3://{bucket}/"
        ),
        "bucket": bucket,
    }


def test_a_reviewed_tenant_version_is_served_only_after_a_reviewer_of_its_business_unit_approves_it(
    stage: Stage, aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evaluation import handler as evaluation_handler
    from evaluation import review_api
    from tenant_review import handler as review_requests

    refs = References(stage.platform)
    fine_tuning, evaluation = stage.template(FT_STACK), stage.template(EVAL_STACK)

    # ---- hop 0: the tenant asks POST /fine-tunes for retail's other use case, whose policy is `reviewed`
    # (the default use case, product-qa, promotes automatically: the first journey) ----
    use_case = _reviewed_use_case(stage)
    backend_env = refs.function_env("exco-retail-prod-application", "Backend")
    assert TenantUseCases.from_json(backend_env[TenantUseCases.ENV]).default != use_case
    records = _records_table("reviewed-records")
    service, _ = _app(records)
    started = _started_by_the_app(stage, service, "cara", use_case)

    # ---- hop 1: that run registers into the use case's own tenant group as PendingManualApproval ----
    registration = _reviewed_registration(stage, "cara", started)
    assert registration["status"] == "PendingManualApproval"
    assert registration["group"] == f"exco-retail-prod-tenants-{use_case}"
    # The job role may register into every tenant group of prod, and into no other stage's.
    job_role = next(iter(resources(fine_tuning, "AWS::SageMaker::Pipeline").values()))["Properties"][
        "RoleArn"
    ]
    job_policy = role_statements(fine_tuning, job_role["Fn::GetAtt"][0])
    group_arn = registration["group_arn"]
    pending = {"sagemaker:ModelApprovalStatus": registration["status"]}
    for arn in (group_arn, group_arn.replace(f"-tenants-{use_case}", "-tenants-product-qa")):
        assert identity_allows(job_policy, "sagemaker:CreateModelPackage", arn, **pending)
    for other in ("preprod", "dev"):
        foreign = group_arn.replace("-prod-tenants-", f"-{other}-tenants-")
        assert not identity_allows(job_policy, "sagemaker:CreateModelPackage", foreign, **pending)
    assert registration["report_key"] == "retail/tenant=cara/exec-cara/evaluate/evaluation/evaluation.json"
    group, bucket = registration["group"], registration["bucket"]
    s3 = boto3.client("s3", region_name=REGION)
    registry = boto3.client("sagemaker", region_name=REGION)
    for name in (bucket, "results", "serving-models"):
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    artifact = adapter_artifact(base_model_name_or_path="adapter-of-cara")
    versions = {
        tenant: register_tenant_version(
            registry,
            s3,
            group=group,
            bucket=bucket,
            tenant=tenant,
            artifact_key=f"models/retail/tenant={tenant}/pipelines-{tenant}-FineTune/output/model.tar.gz",
            artifact=artifact,
        )
        for tenant in ("cara", "dan")
    }

    # ---- hop 2: the registry's event matches the review rule, never the prod deployer's ----
    described = registry.describe_model_package(ModelPackageName=versions["cara"])
    event = model_package_state_change(PROD, REGION, described)
    assert matches(_rule_named(fine_tuning, "-tenant-review-requests")["EventPattern"], event)
    (deploy_rule,) = [
        r
        for r in rules(stage.template("exco-retail-prod-serving"))
        if r["EventPattern"].get("source") == ["aws.sagemaker"]
    ]
    assert not matches(deploy_rule["EventPattern"], event)  # a version awaiting review is never served

    # ---- hop 3: the forwarder may read the version and its report and write to the review queue ----
    queue_id, _ = refs.one(EVAL_STACK, "AWS::SQS::Queue", "ReviewQueue")
    env = refs.function_env(FT_STACK, "TenantReviewRequests")
    assert env["REVIEW_QUEUE_URL"] == f"{EVAL_STACK}/{queue_id}"  # the evaluation stack's review queue
    forwarder = refs.role_statements(FT_STACK, "TenantReviewRequests")
    models_id, _ = refs.one(FT_STACK, "AWS::S3::Bucket", "Models")
    assert identity_allows(forwarder, "sagemaker:DescribeModelPackage", versions["cara"])
    assert identity_allows(
        forwarder, "s3:GetObject", f"{FT_STACK}/{models_id}.Arn/{registration['report_key']}"
    )
    assert identity_allows(forwarder, "sqs:SendMessage", f"{EVAL_STACK}/{queue_id}.Arn")

    # ---- hop 4: the forwarder puts the version on the queue with metrics and sample answers ----
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="reviews")["QueueUrl"]
    for name, value in {**env, "REVIEW_QUEUE_URL": url}.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.setattr(review_requests, "clients", lambda: (registry, s3, sqs))
    for tenant in ("cara", "dan"):
        described = registry.describe_model_package(ModelPackageName=versions[tenant])
        event = model_package_state_change(PROD, REGION, described)
        assert review_requests.lambda_handler(event, CONTEXT) == {"queued": True}

    # ---- hop 5: GET /fine-tunes/{id} tells the tenant its model awaits review ----
    executions = boto3.client("sagemaker", region_name=REGION)
    execution = f"arn:aws:sagemaker:{REGION}:{PROD}:pipeline/exco-retail-prod-fine-tuning/execution/exec-cara"
    pipeline = SageMakerPipeline(
        RunLeases(boto3.client("dynamodb", region_name=REGION), "unused", _pipeline_ref(stage)),
        SplitExecutions(registry, executions),
        raw_bucket=stage.raw,
        uploads_prefix=lambda t: uploads_prefix("retail", "prod", t),
    )
    service = dataclasses.replace(service, fine_tunes=pipeline)
    with Stubber(executions) as runs:
        _expect_registered(runs, execution, versions["cara"])
        assert service._fine_tune_status("cara", execution)["status"] == "awaiting_review"

    # ---- hop 6: only reviewers tagged with this business unit may call the decision route ----
    _, api = refs.one(EVAL_STACK, "AWS::ApiGateway::RestApi", "ReviewApi")
    policy = resolve(api["Properties"]["Policy"]["Statement"], evaluation)
    retail_reviewer = {"aws:PrincipalTag/BusinessUnit": "retail"}
    assert resource_allows(policy, PROD, "execute-api:Invoke", REVIEW_ROUTE, **retail_reviewer)
    for other in ({"aws:PrincipalTag/BusinessUnit": "finance"}, {}):  # another business unit's, or untagged
        assert not resource_allows(policy, PROD, "execute-api:Invoke", REVIEW_ROUTE, **other)
    methods = [
        m["Properties"]
        for m in resources(evaluation, "AWS::ApiGateway::Method").values()
        if m["Properties"]["HttpMethod"] == "POST"
        and resources(evaluation, "AWS::ApiGateway::Resource")
        .get(m["Properties"]["ResourceId"].get("Ref", ""), {})
        .get("Properties", {})
        .get("PathPart")
        == "decisions"
    ]
    assert [m["AuthorizationType"] for m in methods] == ["AWS_IAM"]
    # The review API's role may decide exactly this stage's tenant versions.
    review_role = refs.role_statements(EVAL_STACK, "ReviewApiFunction")
    assert identity_allows(review_role, "sagemaker:UpdateModelPackage", versions["cara"])
    for foreign in (
        versions["cara"].replace(PROD, PREPROD).replace("-prod-", "-preprod-"),  # another stage's tenants
        f"arn:aws:sagemaker:{REGION}:111111111111:model-package/exco-retail-product-qa/1",  # business unit
    ):
        assert not identity_allows(review_role, "sagemaker:UpdateModelPackage", foreign)

    # ---- hop 7: the reviewer takes the version; a decision naming another tenant's version does nothing ----
    review_env = refs.function_env(EVAL_STACK, "ReviewApiFunction")
    assert json.loads(review_env["TENANT_GROUPS"]) == [
        g["Properties"]["ModelPackageGroupName"]
        for g in resources(fine_tuning, "AWS::SageMaker::ModelPackageGroup").values()
    ]
    for name, value in {
        "BUSINESS_UNIT": "retail",
        "RESULTS_BUCKET": "results",
        "REVIEW_QUEUE_URL": url,
        "TENANT_GROUPS": review_env["TENANT_GROUPS"],
    }.items():
        monkeypatch.setenv(name, value)
    review_api.review_service.cache_clear()
    review_api.tenant_decisions.cache_clear()
    keeping = KeepsMetadata(registry)
    monkeypatch.setattr(review_api.TenantModelDecisions, "sagemaker", property(lambda self: keeping))

    def call(method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        answer = evaluation_handler.review_api(api_event(method, path, body, principal=REVIEWER), CONTEXT)
        return answer["statusCode"], json.loads(answer["body"] or "{}")

    status, review = call("GET", "/reviews/next")
    assert status == 200 and review["kind"] == "tenant_model"
    assert review["metrics"] and review["samples"] and review["use_case"] == group.rpartition("-tenants-")[2]
    other = next(t for t in ("cara", "dan") if t != review["tenant_id"])
    decision = {"receipt_handle": review["receipt_handle"], "decision": "approve"}
    status, _ = call("POST", "/tenant-models/decisions", {**decision, "model_package_arn": versions[other]})
    assert status == 400
    assert registry.describe_model_package(ModelPackageName=versions[other])["ModelApprovalStatus"] == (
        "PendingManualApproval"
    )
    # ---- hop 8: the reviewer's approval sets Approved through the review API's role ----
    tenant = review["tenant_id"]
    status, body = call(
        "POST", "/tenant-models/decisions", {**decision, "model_package_arn": versions[tenant]}
    )
    assert (status, body["status"]) == (200, "Approved")
    review_api.review_service.cache_clear()
    review_api.tenant_decisions.cache_clear()

    # ---- hop 9: the approval reaches the deployer, which serves the tenant's package ----
    described = registry.describe_model_package(ModelPackageName=versions[tenant])
    assert (
        described["ApprovalDescription"]
        == "approved by arn:aws:iam::333333333333:role/retail-tenant-reviewer"
    )
    event = model_package_state_change(PROD, REGION, described)
    assert matches(deploy_rule["EventPattern"], event)
    outcome = _serve(stage, registry, event, monkeypatch)
    assert outcome["action"] == "deployed" and outcome["slot"] == [f"TENANT#{tenant}", "MODEL#personal"]
    assert registry.describe_model_package(ModelPackageName=versions[other])["ModelApprovalStatus"] == (
        "PendingManualApproval"
    )


def test_a_caller_that_asks_for_approved_gets_a_reviewed_use_cases_version_reviewed_anyway(
    stage: Stage, aws: None
) -> None:
    """Negative journey: anyone allowed to start the pipeline passes ModelApprovalStatus=Approved for a
    `reviewed` use case. The definition reads no such parameter and registers for review; the job role could
    not register Approved there even from a changed definition; no starter may register or approve itself."""
    fine_tuning = stage.template(FT_STACK)
    use_case = _reviewed_use_case(stage)

    # ---- hop 1: POST /fine-tunes has no field for a status: the body is refused before anything starts ----
    with pytest.raises(ValueError, match="ModelApprovalStatus"):
        FineTuneBody.model_validate(
            {"model_name": "personal", "use_case": use_case, "ModelApprovalStatus": "x"}
        )

    # ---- hop 2: a caller with StartPipelineExecution adds the parameter: the pipeline declares none and
    # the registration its use case calls for is still PendingManualApproval ----
    service, _ = _app(_records_table("forged-records"))
    sent = _started_by_the_app(stage, service, "eve", use_case)
    (pipeline,) = [r["Properties"] for r in resources(fine_tuning, "AWS::SageMaker::Pipeline").values()]
    body, _ = pipeline["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    definition = json.loads(body)
    assert "ModelApprovalStatus" not in {p["Name"] for p in definition["Parameters"]}
    assert "Parameters.ModelApprovalStatus" not in body
    forged = [*sent, {"Name": "ModelApprovalStatus", "Value": "Approved"}]
    registration = _reviewed_registration(stage, "eve", forged)
    assert registration["status"] == "PendingManualApproval"

    # ---- hop 3: the job role's own policy holds even for a definition changed to register Approved ----
    tampered = json.loads(
        body.replace('"ModelApprovalStatus": "PendingManualApproval"', '"ModelApprovalStatus": "Approved"')
    )
    parameters = {p["Name"]: p["Value"] for p in forged}
    assert registration_for(tampered, parameters)["Arguments"]["ModelApprovalStatus"] == "Approved"
    job_policy = role_statements(fine_tuning, pipeline["RoleArn"]["Fn::GetAtt"][0])
    group_arn = registration["group_arn"]
    version = group_arn.replace(":model-package-group/", ":model-package/") + "/1"
    for arn in (group_arn, version):
        create = "sagemaker:CreateModelPackage"
        assert not identity_allows(job_policy, create, arn, **{"sagemaker:ModelApprovalStatus": "Approved"})
        assert identity_allows(
            job_policy, create, arn, **{"sagemaker:ModelApprovalStatus": "PendingManualApproval"}
        )
        # The automatic use case's group is unchanged: its versions register Approved.
        automatic = arn.replace(f"-tenants-{use_case}", "-tenants-product-qa")
        assert identity_allows(job_policy, create, automatic, **{"sagemaker:ModelApprovalStatus": "Approved"})
    # So the registry never holds an Approved version of that group: the review rule is its only way out.
    registry = boto3.client("sagemaker", region_name=REGION)
    registry.create_model_package_group(ModelPackageGroupName=registration["group"])
    assert (
        registry.list_model_packages(ModelPackageGroupName=registration["group"])["ModelPackageSummaryList"]
        == []
    )

    # ---- hop 4: no starter may register a version or approve one itself ----
    (start_policy,) = resources(fine_tuning, "AWS::IAM::ManagedPolicy").values()
    starters = [
        resolve(start_policy["Properties"]["PolicyDocument"]["Statement"], fine_tuning),
        function_role_statements(fine_tuning, "fine_tuning_trigger.handler.lambda_handler"),
    ]
    for statements in starters:
        pipeline_arn = f"arn:aws:sagemaker:{REGION}:{PROD}:pipeline/{FT_STACK}"
        assert identity_allows(statements, "sagemaker:StartPipelineExecution", pipeline_arn)
        for action in ("sagemaker:CreateModelPackage", "sagemaker:UpdateModelPackage"):
            assert not identity_allows(
                statements, action, version, **{"sagemaker:ModelApprovalStatus": "Approved"}
            )


class KeepsMetadata:
    """The registry as SageMaker behaves: UpdateModelPackage keeps the version's metadata (moto drops what
    the call does not restate, so this restates it)."""

    def __init__(self, registry: Any) -> None:
        self._registry = registry

    def __getattr__(self, name: str) -> Any:
        return getattr(self._registry, name)

    def update_model_package(self, **request: Any) -> Any:
        kept = self._registry.describe_model_package(ModelPackageName=request["ModelPackageArn"])
        metadata = kept.get("CustomerMetadataProperties") or {}
        return self._registry.update_model_package(**request, CustomerMetadataProperties=metadata)


class SplitExecutions:
    """The app backend's `sagemaker` client: executions from a Stubber (moto has no pipelines), versions
    from the moto registry."""

    def __init__(self, registry: Any, executions: Any) -> None:
        self._registry, self._executions = registry, executions

    def __getattr__(self, name: str) -> Any:
        return getattr(self._registry if name == "describe_model_package" else self._executions, name)


def _expect_registered(stub: Stubber, execution: str, package: str, step: str = "RegisterForReview") -> None:
    stub.add_response(
        "describe_pipeline_execution",
        {"PipelineExecutionStatus": "Succeeded"},
        {"PipelineExecutionArn": execution},
    )
    stub.add_response(
        "list_pipeline_execution_steps",
        {
            "PipelineExecutionSteps": [
                {
                    "StepName": step,
                    "StepStatus": "Succeeded",
                    "Metadata": {"RegisterModel": {"Arn": package}},
                }
            ]
        },
        {"PipelineExecutionArn": execution},
    )


def _pipeline_ref(stage: Stage) -> PipelineRef:
    """The prod tenant pipeline as the upload trigger's synthesized environment names it."""
    trigger = _function(stage.template(FT_STACK), "fine_tuning_trigger.handler.lambda_handler")
    use_cases = TenantUseCases.from_json(trigger["Environment"]["Variables"][TenantUseCases.ENV])
    return PipelineRef(
        FT_STACK, "retail", "prod", max_concurrent_runs=2, max_runtime_hours=12, use_cases=use_cases
    )


def _records_table(name: str) -> Any:
    return boto3.resource("dynamodb", region_name=REGION).create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    )


def _serve(
    stage: Stage, registry: Any, event: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """The prod deployer handles one registry event: components stubbed (moto has none), the probe answers."""
    serving = stage.template("exco-retail-prod-serving")
    _, deployer = function_by_handler(serving, "serving_deployer.")
    _records_table("serving-records")
    for name, value in env_of(
        deployer, MODEL_BUCKET="serving-models", RECORDS_TABLE="serving-records"
    ).items():
        monkeypatch.setenv(name, value)
    runtime = boto3.client("sagemaker-runtime", region_name=REGION)
    components = boto3.client("sagemaker", region_name=REGION)
    monkeypatch.setattr(deployer_handler, "sagemaker_client", lambda: SplitSageMaker(registry, components))
    monkeypatch.setattr(boto3, "client", _with_runtime(boto3.client, runtime))
    deployer_handler.serving_target.cache_clear()
    deployer_handler.records.cache_clear()
    with Stubber(components) as component_stub, Stubber(runtime) as probes:
        expect_adapter(component_stub, "exco-retail-prod-serving", PROD, REGION)
        probes.add_response(
            "invoke_endpoint",
            {"Body": _body('[{"generated_text": "ok"}]'), "ContentType": "application/json"},
        )
        outcome: dict[str, Any] = deployer_handler.lambda_handler(event, CONTEXT)
    deployer_handler.serving_target.cache_clear()
    deployer_handler.records.cache_clear()
    return outcome


# ---- the cap: an upload and a POST /fine-tunes at the same instant, through the synthesized wiring ----------


def test_an_upload_and_an_api_request_racing_for_the_last_slot_start_one_run(
    stage: Stage, aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app_backend.fine_tunes import SageMakerPipeline as ApiPipeline

    fine_tuning, application = stage.template(FT_STACK), stage.template("exco-retail-prod-application")
    table = _leases_table(fine_tuning)
    # Both starters name the same lease table and cap, and both may take and give back its slots.
    trigger_env = _function(fine_tuning, "fine_tuning_trigger.handler.lambda_handler")["Environment"][
        "Variables"
    ]
    _, backend = function_by_handler(application, "app_backend.")
    backend_env = backend["Environment"]["Variables"]
    refs = References(stage.platform)
    assert refs.canonical(backend_env["FINE_TUNING_LEASES_TABLE"], "exco-retail-prod-application") == (
        refs.canonical(trigger_env["RUN_LEASES_TABLE"], FT_STACK)
    )
    assert backend_env["MAX_CONCURRENT_RUNS"] == trigger_env["MAX_CONCURRENT_RUNS"] == "2"
    # ... and the same use cases with the same promotion policies (one map, computed from the config).
    assert backend_env[TenantUseCases.ENV] == trigger_env[TenantUseCases.ENV]
    (start_policy,) = resources(fine_tuning, "AWS::IAM::ManagedPolicy").values()
    assert _allows_on_table(
        start_policy["Properties"]["PolicyDocument"]["Statement"], table, "dynamodb:PutItem"
    )
    release = function_role_statements(fine_tuning, "fine_tuning_trigger.handler.release_handler")
    assert _allows_on_table(release, table, "dynamodb:DeleteItem")
    assert not _allows_on_table(release, table, "dynamodb:PutItem")  # the release never takes a slot

    cap = int(trigger_env["MAX_CONCURRENT_RUNS"])
    leases = RunLeases(
        OneRequestAtATime(create_leases_table(REGION, "leases")), "leases", _pipeline_ref(stage)
    )
    now = datetime.now(UTC)
    for token in range(cap - 1):  # every slot but one is taken by runs in progress
        leases.bind(leases.reserve(f"running-{token}", now=now), f"arn:running-{token}", now=now)
    started: list[str] = []

    class Pipelines:
        def start_pipeline_execution(self, **request: Any) -> dict[str, str]:
            time.sleep(0.01)  # the real call takes a while: both starters are past their reservation
            started.append(request["PipelineExecutionDisplayName"])
            return {"PipelineExecutionArn": f"arn:execution/{len(started)}"}

    api = ApiPipeline(
        leases,
        Pipelines(),
        raw_bucket=stage.raw,
        uploads_prefix=lambda t: uploads_prefix("retail", "prod", t),
    )
    upload = trigger_core.Upload(stage.raw, f"{uploads_prefix('retail', 'prod', 'ann')}0001/data.jsonl")
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def run(name: str, start: Any) -> None:
        barrier.wait()
        try:
            start()
            outcomes[name] = "started"
        except AtCapacityError:
            outcomes[name] = "waits"

    threads = [
        threading.Thread(
            target=run,
            args=(
                "upload",
                lambda: trigger_core.start_pipeline(Pipelines(), leases, upload, now=datetime.now(UTC)),
            ),
        ),
        threading.Thread(
            target=run, args=("api", lambda: api.start("ben", "b" * 32, "personal", "product-qa"))
        ),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes.values()) == ["started", "waits"]
    assert len(started) == 1 and len(leases.held(now=datetime.now(UTC))) == cap


# ---- dead letters of the trigger path raise an alarm on the stage's topic ----------------------------------


def test_an_upload_whose_start_outlived_its_reservation_stops_its_run_and_waits_while_the_api_keeps_the_slot(
    stage: Stage, aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the reservation's lifetime guards against, replayed: the trigger's StartPipelineExecution takes
    longer than the reservation, a POST /fine-tunes takes the last slot meanwhile. The trigger stops its own
    execution (its role may stop exactly that pipeline's executions), the upload's message comes back later,
    and the stopped run's end frees nothing of the API's slot."""
    fine_tuning = stage.template(FT_STACK)
    trigger = _function(fine_tuning, "fine_tuning_trigger.handler.lambda_handler")
    create_leases_table(REGION, "leases")
    for name, value in env_of(trigger, RUN_LEASES_TABLE="leases").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(
        trigger_handler, "dynamodb_client", lambda: boto3.client("dynamodb", region_name=REGION)
    )
    leases = trigger_handler.leases_from_env()
    now = datetime.now(UTC)
    cap = leases.pipeline.max_concurrent_runs
    for token in range(cap - 1):  # every slot but one is taken by runs in progress
        leases.bind(leases.reserve(f"running-{token}", now=now), f"arn:running-{token}", now=now)
    expired = now + timedelta(seconds=RESERVATION_SECONDS + 1)
    api_execution = f"arn:aws:sagemaker:{REGION}:{PROD}:pipeline/{FT_STACK}/execution/api-run"
    slow_execution = f"arn:aws:sagemaker:{REGION}:{PROD}:pipeline/{FT_STACK}/execution/slow-upload"

    sagemaker = boto3.client("sagemaker", region_name=REGION)

    class SlowStart:
        def start_pipeline_execution(self, **request: Any) -> Any:
            response = sagemaker.start_pipeline_execution(**request)
            # Meanwhile the reservation expired and POST /fine-tunes took and bound the slot.
            api = leases.reserve("api-request", now=expired)
            leases.bind(api, api_execution, now=expired)
            return response

        def stop_pipeline_execution(self, **request: Any) -> Any:
            return sagemaker.stop_pipeline_execution(**request)

    key = f"{uploads_prefix('retail', 'prod', 'ann')}0001/data.jsonl"
    message = {"messageId": "m0", "body": json.dumps(s3_object_created(LAKE, REGION, stage.raw, key))}
    with Stubber(sagemaker) as stub:
        stub.add_response("start_pipeline_execution", {"PipelineExecutionArn": slow_execution}, None)
        stub.add_response(
            "stop_pipeline_execution",
            {"PipelineExecutionArn": slow_execution},
            {"PipelineExecutionArn": slow_execution, "ClientRequestToken": ANY},
        )
        failures = trigger_handler.handle_records([message], leases, SlowStart())
        stub.assert_no_pending_responses()
    assert failures == [{"itemIdentifier": "m0"}]  # the upload's message comes back after 15 minutes
    held = leases.held(now=expired)
    assert len(held) == cap and "api-request" in [i["token"]["S"] for i in held]

    # The trigger's role may stop exactly this execution, and no other pipeline's.
    trigger_policy = function_role_statements(fine_tuning, "fine_tuning_trigger.handler.lambda_handler")
    assert identity_allows(trigger_policy, "sagemaker:StopPipelineExecution", slow_execution)
    other = slow_execution.replace("-prod-", "-preprod-").replace(PROD, PREPROD)
    assert not identity_allows(trigger_policy, "sagemaker:StopPipelineExecution", other)

    # The stopped run's end reaches the release rule, which frees no slot: the API's run keeps its own.
    stopped = {
        "version": "0",
        "id": "7c1b0e52-2d3e-4c55-8e0c-5f3a7c1e2b90",
        "detail-type": "SageMaker Model Building Pipeline Execution Status Change",
        "source": "aws.sagemaker",
        "account": PROD,
        "time": "2025-01-01T00:00:00Z",
        "region": REGION,
        "resources": [slow_execution.split("/execution/")[0], slow_execution],
        "detail": {
            "currentPipelineExecutionStatus": "Stopped",
            "previousPipelineExecutionStatus": "Stopping",
            "pipelineArn": slow_execution.split("/execution/")[0],
            "pipelineExecutionArn": slow_execution,
        },
    }
    release_rule = resolve(_rule_named(fine_tuning, "-fine-tuning-run-ended"), fine_tuning)
    assert matches(release_rule["EventPattern"], stopped)
    assert (
        trigger_core.release_ended_run(
            leases,
            pipeline_arn=stopped["detail"]["pipelineArn"],
            execution_arn=slow_execution,
            status="Stopped",
            now=expired,
        )
        == 0
    )
    assert "api-request" in [i["token"]["S"] for i in leases.held(now=expired)]


def test_an_upload_event_the_lake_cannot_forward_waits_in_a_dead_letter_queue_that_raises_an_alarm(
    stage: Stage,
) -> None:
    lake = stage.template("exco-data-lake")
    event = s3_object_created(LAKE, REGION, stage.raw, "retail/prod/tenant=ann/uploads/0001/data.jsonl")
    forwarding = {k: r["Properties"] for k, r in resources(lake, "AWS::Events::Rule").items()}
    ((rule_id, rule),) = [(k, r) for k, r in forwarding.items() if matches(r["EventPattern"], event)]
    (target,) = rule["Targets"]
    queue_id = target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0]
    queue = resources(lake, "AWS::SQS::Queue")[queue_id]["Properties"]

    # EventBridge may put this rule's undelivered events on the queue, encrypted with the lake key; the
    # key admits EventBridge for the lake's forwarding rules only.
    key_id = queue["KmsMasterKeyId"]["Fn::GetAtt"][0]
    key_policy = resolve(
        resources(lake, "AWS::KMS::Key")[key_id]["Properties"]["KeyPolicy"]["Statement"], lake
    )
    named_rule = f"arn:aws:events:{REGION}:{LAKE}:rule/{rule['Name']}"
    for action in ("kms:GenerateDataKey", "kms:Decrypt"):
        assert service_allows(
            key_policy, "events.amazonaws.com", action, "*", **{"aws:SourceArn": named_rule}
        )
    another_rule = f"arn:aws:events:{REGION}:{LAKE}:rule/exco-something-else"
    assert not service_allows(
        key_policy, "events.amazonaws.com", "kms:Decrypt", "*", **{"aws:SourceArn": another_rule}
    )
    (queue_policy,) = [
        r["Properties"]
        for r in resources(lake, "AWS::SQS::QueuePolicy").values()
        if {"Ref": queue_id} in r["Properties"]["Queues"]
    ]
    queue_statements = resolve(queue_policy["PolicyDocument"]["Statement"], lake)
    queue_arn = f"<{queue_id}.Arn>"
    assert service_allows(
        queue_statements,
        "events.amazonaws.com",
        "sqs:SendMessage",
        queue_arn,
        **{"aws:SourceArn": f"<{rule_id}.Arn>"},
    )
    assert not service_allows(
        queue_statements,
        "events.amazonaws.com",
        "sqs:SendMessage",
        queue_arn,
        **{"aws:SourceArn": "<Other.Arn>"},
    )
    # Every forwarding rule (each business unit x tenant fine-tuning stage) uses it: none loses events silently.
    assert len(forwarding) == len(tenant_fine_tuning_stages(stage.platform.config)) >= 2
    for other in forwarding.values():
        assert other["Targets"][0]["DeadLetterConfig"] == target["DeadLetterConfig"]
        other_arn = f"arn:aws:events:{REGION}:{LAKE}:rule/{other['Name']}"
        assert service_allows(
            key_policy, "events.amazonaws.com", "kms:GenerateDataKey", "*", **{"aws:SourceArn": other_arn}
        )

    # One message there raises an alarm on the lake account's topic, which CloudWatch of this account may
    # publish to (and use the key for); every business unit's monitoring subscribers are subscribed.
    (alarm,) = [
        r["Properties"]
        for r in resources(lake, "AWS::CloudWatch::Alarm").values()
        if r["Properties"]["Dimensions"]
        == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}]
    ]
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    (topic_ref,) = alarm["AlarmActions"]
    assert alarm["OKActions"] == [topic_ref]
    topic = resources(lake, "AWS::SNS::Topic")[topic_ref["Ref"]]["Properties"]
    assert topic["TopicName"] == "exco-lake-alarms"
    assert topic["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    for action in ("kms:GenerateDataKey", "kms:Decrypt"):
        assert service_allows(
            key_policy, "cloudwatch.amazonaws.com", action, "*", **{"aws:SourceAccount": LAKE}
        )
    assert not service_allows(
        key_policy, "cloudwatch.amazonaws.com", "kms:Decrypt", "*", **{"aws:SourceAccount": PROD}
    )
    (topic_policy,) = [
        r["Properties"]
        for r in resources(lake, "AWS::SNS::TopicPolicy").values()
        if r["Properties"]["Topics"] == [topic_ref]
    ]
    alarm_arn = f"arn:aws:cloudwatch:{REGION}:{LAKE}:alarm:{alarm['AlarmName']}"
    publish = resolve(topic_policy["PolicyDocument"]["Statement"], lake)
    topic_arn = f"<{topic_ref['Ref']}>"
    context = {"aws:SourceAccount": LAKE, "aws:SourceArn": alarm_arn}
    assert service_allows(publish, "cloudwatch.amazonaws.com", "sns:Publish", topic_arn, **context)
    foreign = {"aws:SourceAccount": PROD, "aws:SourceArn": alarm_arn.replace(LAKE, PROD)}
    assert not service_allows(publish, "cloudwatch.amazonaws.com", "sns:Publish", topic_arn, **foreign)
    subscribed = {
        r["Properties"]["Endpoint"]
        for r in resources(lake, "AWS::SNS::Subscription").values()
        if r["Properties"]["TopicArn"] == topic_ref
    }
    monitoring = [bu.monitoring for bu in stage.platform.config.business_units]
    assert subscribed == {e for m in monitoring for e in m.emails} | {
        str(u) for m in monitoring for u in m.https_endpoints
    }


def test_every_dead_letter_queue_of_the_trigger_path_raises_an_alarm_on_the_stages_topic(
    stage: Stage,
) -> None:
    refs = References(stage.platform)
    fine_tuning = stage.template(FT_STACK)
    dead_letters = set()
    for queue in resources(fine_tuning, "AWS::SQS::Queue").values():  # redrive targets of the queues
        target = queue["Properties"].get("RedrivePolicy", {}).get("deadLetterTargetArn")
        if target:
            dead_letters.add(target["Fn::GetAtt"][0])
    for rule in rules(fine_tuning):  # and of every rule's target
        for target in rule["Targets"]:
            dead_letters.add(target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0])
    assert len(dead_letters) == 4  # uploads, undelivered upload events, run ends, review requests
    monitoring = "exco-retail-prod-monitoring"
    (topic,) = resources(stage.template(monitoring), "AWS::SNS::Topic")
    alarmed = {}
    for alarm in resources(stage.template(monitoring), "AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        if props.get("MetricName") == "ApproximateNumberOfMessagesVisible":
            (dimension,) = props["Dimensions"]
            alarmed[refs.canonical(dimension["Value"], monitoring)] = props
    for queue in dead_letters:
        props = alarmed[f"{FT_STACK}/{queue}.QueueName"]
        assert (props["Threshold"], props["ComparisonOperator"]) == (1, "GreaterThanThreshold") or (
            props["Threshold"],
            props["ComparisonOperator"],
        ) == (1, "GreaterThanOrEqualToThreshold")
        assert props["AlarmActions"] == [{"Ref": topic}]
