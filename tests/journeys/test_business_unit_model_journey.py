"""Journey: a business unit's own model, dev pipeline -> central registry -> preprod serves it and runs the
evaluation engine on it as its gate -> the gate's signed record on the version -> manual approval -> prod,
hop by hop over the synthesized templates and the real handlers (deployer, evaluation steps, gate recorder).

A registered (pending) version reaches preprod and never prod; only the approval's event reaches prod, and
prod serves it only when the preprod gate passed for that exact version and checksum. Negative journeys: a
version that failed the gate is rejected and, approved anyway, not served in prod; the dev account cannot
write a gate record (nor forge one at registration); another business unit's gate record does not count.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from evaluation import service
from evaluation.gate_record import record_gate
from evaluation.settings import EvaluationSettings
from evaluation.store import S3ResultStore
from serving_deployer import handler as deployer_handler

from common.evaluation_dataset import dataset_version_key
from common.preprod_gate import GateRecord
from tests.conftest import SynthesizedPlatform
from tests.journeys._consumer import function_env, run_main_path
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
    with_bucket_names,
)
from tests.journeys._moto_account import in_account, lambda_context
from tests.lambdas.serving_runtime._artifacts import adapter_artifact
from tests.stacks.policy_eval import resolve

# The pipeline's peft layout: the deployer serves the package built from it (inference components).
RETAIL_ADAPTER = adapter_artifact(base_model_name_or_path="retail")
REGION = "eu-west-1"
TOOLING = "111111111111"
DEV, PREPROD, PROD = "333333333331", "333333333332", "333333333333"
FINANCE_PREPROD = "444444444442"
GROUP = "exco-retail-product-qa"
USE_CASE = "product-qa"
RUNS_BUCKET = "retail-preprod-evaluation-runs"  # the evaluation stack's RunArtifacts bucket (generated name)
APPROVER = f"arn:aws:iam::{TOOLING}:role/exco-model-approver-retail"
DATASET = [
    {"id": "q1", "input": "How long is the return window?", "reference_output": "30 days from delivery"},
    {"id": "q2", "input": "What warranty do devices get?", "reference_output": "two years on every device"},
    {"id": "q3", "input": "Do you ship to Norway?", "reference_output": "yes within five days"},
]
GOOD = {r["input"]: r["reference_output"] for r in DATASET}
CONTEXT = lambda_context(region=REGION, account=PREPROD)


@pytest.fixture(scope="module")
def templates(default_platform: SynthesizedPlatform) -> dict[str, dict[str, Any]]:
    names = {
        "dev": "exco-retail-dev-fine-tuning",
        "tooling": "exco-tooling",
        "preprod_events": "exco-retail-preprod-registry-events",
        "prod_events": "exco-retail-prod-registry-events",
        "preprod": "exco-retail-preprod-serving",
        "evaluation": "exco-retail-preprod-evaluation",
        "prod": "exco-retail-prod-serving",
        "finance_evaluation": "exco-finance-preprod-evaluation",
    }
    return {k: default_platform.template(v) for k, v in names.items()}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with in_account(monkeypatch, region=REGION, account=TOOLING):
        yield


def _body(text: str) -> StreamingBody:
    return StreamingBody(io.BytesIO(text.encode()), len(text))


class KeepsApprovalStatus:
    """The moto registry, closer to SageMaker: an UpdateModelPackage without ModelApprovalStatus keeps the
    version's status (moto clears it). Everything else is moto's."""

    def __init__(self, registry: Any) -> None:
        self._registry = registry

    def update_model_package(self, **params: Any) -> dict[str, Any]:
        if "ModelApprovalStatus" not in params:
            current = self._registry.describe_model_package(ModelPackageName=params["ModelPackageArn"])
            params["ModelApprovalStatus"] = current["ModelApprovalStatus"]
        return dict(self._registry.update_model_package(**params))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._registry, name)


@dataclass
class Journey:
    templates: dict[str, dict[str, Any]]
    monkeypatch: pytest.MonkeyPatch
    registry: Any = None
    s3: Any = None
    kms: Any = None
    arn: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    object_arn: str = ""
    gate_key: str = ""
    started: list[dict[str, Any]] = field(default_factory=list)

    # ---- hops 1-3: dev registers, the registry's event reaches preprod --------------------------------

    def register(self, weights: bytes = RETAIL_ADAPTER, **extra: str) -> dict[str, Any]:
        dev, tooling = self.templates["dev"], self.templates["tooling"]
        (pipeline,) = [r["Properties"] for r in resources(dev, "AWS::SageMaker::Pipeline").values()]
        body, variables = pipeline["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
        definition = json.loads(body)
        defaults = {p["Name"]: p.get("DefaultValue") for p in definition["Parameters"]}
        group_arn = f"{resolve(variables['RegistryArnPrefix'], dev)}{defaults['UseCase']}"
        assert group_arn == f"arn:aws:sagemaker:{REGION}:{TOOLING}:model-package-group/{GROUP}"
        # The definition fixes the status (no parameter); the job role may register it, never Approved.
        status = registration_for(definition, defaults)["Arguments"]["ModelApprovalStatus"]
        assert status == "PendingManualApproval"
        job_policy = role_statements(dev, pipeline["RoleArn"]["Fn::GetAtt"][0])
        create = "sagemaker:CreateModelPackage"
        assert identity_allows(job_policy, create, group_arn, **{"sagemaker:ModelApprovalStatus": status})
        assert not identity_allows(
            job_policy, create, group_arn, **{"sagemaker:ModelApprovalStatus": "Approved"}
        )
        assert resource_allows(self.group_policy(), DEV, "sagemaker:CreateModelPackage", group_arn)
        assert not resource_allows(self.group_policy(), PROD, "sagemaker:CreateModelPackage", group_arn)
        # The group's own policy holds too, whatever dev's role says: dev registers the definition's status,
        # never Approved (only the approver approves).
        assert resource_allows(
            self.group_policy(), DEV, create, group_arn, **{"sagemaker:ModelApprovalStatus": status}
        )
        assert not resource_allows(
            self.group_policy(), DEV, create, group_arn, **{"sagemaker:ModelApprovalStatus": "Approved"}
        )
        bucket = next(
            r["Properties"]["BucketName"]
            for r in resources(dev, "AWS::S3::Bucket").values()
            if "-ft-" in r["Properties"].get("BucketName", "")
        )
        key = f"models/retail/business-unit/pipelines-{len(weights)}-FineTune/output/model.tar.gz"
        self.s3 = boto3.client("s3", region_name=REGION)
        if bucket not in [b["Name"] for b in self.s3.list_buckets()["Buckets"]]:
            self.s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        self.s3.put_object(Bucket=bucket, Key=key, Body=weights)
        self.object_arn = f"arn:aws:s3:::{bucket}/{key}"
        moto_registry = boto3.client("sagemaker", region_name=REGION)
        if not moto_registry.list_model_package_groups(NameContains=GROUP)["ModelPackageGroupSummaryList"]:
            moto_registry.create_model_package_group(ModelPackageGroupName=GROUP)
        self.registry = KeepsApprovalStatus(moto_registry)
        self.metadata = {
            "BusinessUnit": "retail",
            "Stage": "dev",
            "ArtifactSha256": hashlib.sha256(weights).hexdigest(),
            **extra,
        }
        self.arn = self.registry.create_model_package(
            ModelPackageGroupName=GROUP,
            ModelApprovalStatus=status,
            CustomerMetadataProperties=self.metadata,
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
        registered = self.event()
        # Tooling forwards the registry's events to preprod and prod; preprod's bus admits them.
        (forward,) = [r for r in rules(tooling) if matches(r["EventPattern"], registered)]
        targets = {resolve(t["Arn"], tooling) for t in forward["Targets"]}
        assert targets == {f"arn:aws:events:{REGION}:{a}:event-bus/default" for a in (PREPROD, PROD)}
        events = self.templates["preprod_events"]
        (receiver,) = [r["Properties"] for r in resources(events, "AWS::Events::EventBusPolicy").values()]
        assert resource_allows(
            [resolve(receiver["Statement"], events)],
            TOOLING,
            "events:PutEvents",
            f"arn:aws:events:{REGION}:{PREPROD}:event-bus/default",
            **{
                "events:source": "aws.sagemaker",
                "events:detail-type": "SageMaker Model Package State Change",
            },
        )
        return registered

    def event(self) -> dict[str, Any]:
        return model_package_state_change(
            TOOLING, REGION, self.registry.describe_model_package(ModelPackageName=self.arn)
        )

    def group_policy(self) -> list[dict[str, Any]]:
        tooling = self.templates["tooling"]
        (central,) = [
            r["Properties"]
            for r in resources(tooling, "AWS::SageMaker::ModelPackageGroup").values()
            if r["Properties"]["ModelPackageGroupName"] == GROUP
        ]
        return list(resolve(json.loads(json.dumps(central["ModelPackageGroupPolicy"])), tooling)["Statement"])

    # ---- deployers --------------------------------------------------------------------------------------

    def deploy(
        self, stage: str, event: dict[str, Any], *, retire: bool = False
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Run the stage's deployer handler with the environment its template gives it."""
        account = PREPROD if stage == "preprod" else PROD
        serving = self.templates[stage]
        _, deployer = function_by_handler(serving, "serving_deployer.")
        bucket_id = deployer["Environment"]["Variables"]["MODEL_BUCKET"]["Ref"]
        serving_bucket, table = f"serving-{account}", f"records-{account}"
        if serving_bucket not in [b["Name"] for b in self.s3.list_buckets()["Buckets"]]:
            self.s3.create_bucket(
                Bucket=serving_bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
            )
            boto3.resource("dynamodb", region_name=REGION).create_table(
                TableName=table,
                BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")],
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
            )
        for name in ("GATE_STATE_MACHINE_ARN", "GATE_USE_CASES", "PREPROD_GATE_KEY_ARN"):
            self.monkeypatch.delenv(name, raising=False)
        for name, value in deployer["Environment"]["Variables"].items():
            refs = {"MODEL_BUCKET": serving_bucket, "RECORDS_TABLE": table}
            self.monkeypatch.setenv(
                name, refs.get(name, value if isinstance(value, str) else resolve(value, serving))
            )
        runtime = boto3.client("sagemaker-runtime", region_name=REGION)
        original = boto3.client
        self.monkeypatch.setattr(
            boto3,
            "client",
            lambda service, *a, **k: (
                runtime if service == "sagemaker-runtime" else original(service, *a, **k)
            ),
        )
        components = boto3.client("sagemaker", region_name=REGION)
        sfn = original("stepfunctions", region_name=REGION)
        sfn.meta.events.register(
            "provide-client-params.sfn.StartExecution", lambda params, **_: self.started.append(dict(params))
        )
        self.monkeypatch.setattr(
            deployer_handler, "sagemaker_client", lambda: SplitSageMaker(self.registry, components)
        )
        self.monkeypatch.setattr(deployer_handler, "kms_client", lambda: self.kms)
        self.monkeypatch.setattr(deployer_handler, "stepfunctions_client", lambda: sfn)
        deployer_handler.serving_target.cache_clear()
        deployer_handler.records.cache_clear()
        endpoint = f"exco-retail-{stage}-serving"
        try:
            with Stubber(runtime) as probes, Stubber(components) as component_stub, Stubber(sfn) as runs:
                if retire:
                    component_stub.add_response(
                        "delete_inference_component", {}, {"InferenceComponentName": ANY}
                    )
                else:
                    expect_adapter(component_stub, endpoint, account, REGION)  # retail serves adapters
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
                runs.add_response(
                    "start_execution",
                    {
                        "executionArn": f"arn:aws:states:{REGION}:{account}:execution:m:e",
                        "startDate": "2026-01-01",
                    },
                    {"stateMachineArn": ANY, "name": ANY, "input": ANY},
                )
                outcome = deployer_handler.lambda_handler(event, CONTEXT)
        finally:
            deployer_handler.serving_target.cache_clear()
            deployer_handler.records.cache_clear()
            self.monkeypatch.setattr(boto3, "client", original)
        named = with_bucket_names(serving, {bucket_id: serving_bucket})
        return outcome, function_role_statements(named, "serving_deployer.")

    def deployment(self, stage: str) -> dict[str, Any] | None:
        account = PREPROD if stage == "preprod" else PROD
        version = self.arn.rsplit("/", 1)[1]
        item = (
            boto3.resource("dynamodb", region_name=REGION)
            .Table(f"records-{account}")
            .get_item(Key={"pk": f"GROUP#{GROUP}", "sk": f"DEPLOYMENT#{GROUP}#{version}"})
            .get("Item")
        )
        return dict(item) if item else None

    # ---- hop 5: the evaluation engine on the served version -------------------------------------------

    def evaluate(
        self, execution: dict[str, Any], answers: dict[str, str]
    ) -> tuple[dict[str, Any], list[str]]:
        template = self.templates["evaluation"]
        run = json.loads(execution["input"])
        candidate = run["candidate"]
        env = function_env(template, "ScoreBatchFunction")
        prepare_env = function_env(template, "PrepareFunction")
        # The use case's catalog dataset, the consumer gate's format and home.
        lake = prepare_env["DEFAULT_DATASET_BUCKET"]
        self.s3.create_bucket(Bucket=lake, CreateBucketConfiguration={"LocationConstraint": REGION})
        self.s3.put_object(
            Bucket=lake,
            Key=dataset_version_key("retail", USE_CASE, 1),
            Body="".join(json.dumps(r) + "\n" for r in DATASET).encode(),
        )
        self.s3.create_bucket(Bucket=RUNS_BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        # score_batch may call exactly the served version: this stage's endpoint and its components.
        invoke = function_role_statements(template, "evaluation.handler.score_batch")
        endpoint_arn = f"arn:aws:sagemaker:{REGION}:{PREPROD}:endpoint/{candidate['endpoint_name']}"
        component_arn = (
            f"arn:aws:sagemaker:{REGION}:{PREPROD}:inference-component/{candidate['inference_component']}"
        )
        assert identity_allows(invoke, "sagemaker:InvokeEndpoint", endpoint_arn)
        assert identity_allows(invoke, "sagemaker:InvokeEndpoint", component_arn)
        assert not identity_allows(
            invoke, "sagemaker:InvokeEndpoint", f"arn:aws:sagemaker:{REGION}:{PREPROD}:endpoint/other"
        )
        runtime = boto3.client("sagemaker-runtime", region_name=REGION)
        rt = service.Runtime(
            settings=EvaluationSettings.model_validate_json(env["EVALUATION_SETTINGS"]),
            business_unit=env["BUSINESS_UNIT"],
            store=S3ResultStore(RUNS_BUCKET, f"{env['BUSINESS_UNIT']}/evaluation_runs", s3_client=self.s3),
            sink_factory=_Sink,
            clients={"sagemaker": runtime},
            default_dataset_bucket=lake,
            now=lambda: datetime(2026, 11, 26, tzinfo=UTC),
            sleep=lambda _: None,
        )
        with Stubber(runtime) as calls:
            for record in DATASET:
                text = answers[str(record["input"])]
                calls.add_response(
                    "invoke_endpoint",
                    {
                        "Body": _body(json.dumps([{"generated_text": text}])),
                        "ContentType": "application/json",
                    },
                    {
                        "EndpointName": candidate["endpoint_name"],
                        "InferenceComponentName": candidate["inference_component"],
                        "ContentType": "application/json",
                        "Accept": "application/json",
                        "Body": ANY,
                    },
                )
            state, order = _run_or_fail(template, run, rt, self.s3)
            calls.assert_no_pending_responses()  # every record was scored against the served component
        return state, order

    # ---- hop 6: the gate recorder writes the signed result onto the version ---------------------------

    def create_gate_key(self) -> str:
        template = self.templates["evaluation"]
        (alias,) = [r["Properties"]["AliasName"] for r in resources(template, "AWS::KMS::Alias").values()]
        (key,) = [
            r["Properties"]
            for r in resources(template, "AWS::KMS::Key").values()
            if r["Properties"].get("KeySpec") == "HMAC_256"
        ]
        assert key["KeyUsage"] == "GENERATE_VERIFY_MAC"
        self.kms = boto3.client("kms", region_name=REGION)
        key_id = self.kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["Arn"]
        self.kms.create_alias(AliasName=alias, TargetKeyId=key_id)
        self.gate_key = key_id
        return str(key_id)

    def record(
        self, execution: dict[str, Any], state: dict[str, Any], status: str, *, events: Any = None
    ) -> Any:
        template = self.templates["evaluation"]
        (machine_id,) = resources(template, "AWS::StepFunctions::StateMachine")
        machine_name = template["Resources"][machine_id]["Properties"]["StateMachineName"]
        machine_arn = f"arn:aws:states:{REGION}:{PREPROD}:stateMachine:{machine_name}"
        assert execution["stateMachineArn"] == machine_arn  # the deployer started the gate's state machine
        execution_arn = f"arn:aws:states:{REGION}:{PREPROD}:execution:{machine_name}:{execution['name']}"
        described = {
            "executionArn": execution_arn,
            "stateMachineArn": machine_arn,
            "name": execution["name"],
            "status": status,
            "startDate": "2026-11-26T00:00:00Z",
            "input": execution["input"],
        }
        if status == "SUCCEEDED":
            described["output"] = json.dumps(state["output"])
        else:
            described["error"] = "EvaluationGateFailed"
            described["cause"] = json.dumps(state["gate"])
        ended = {
            "version": "0",
            "id": "b2a1c7e0-0000-4000-8000-000000000001",
            "detail-type": "Step Functions Execution Status Change",
            "source": "aws.states",
            "account": PREPROD,
            "time": "2026-11-26T00:10:00Z",
            "region": REGION,
            "resources": [execution_arn],
            "detail": {k: v for k, v in described.items() if k not in ("error", "cause")},
        }
        (rule,) = [
            r
            for r in rules(template)
            if r.get("EventPattern", {}).get("detail-type") == ["Step Functions Execution Status Change"]
        ]
        pattern = json.loads(
            json.dumps(rule["EventPattern"]).replace(json.dumps({"Ref": machine_id}), json.dumps(machine_arn))
        )
        assert matches(pattern, ended)
        (target,) = rule["Targets"]
        recorder_id, _ = function_by_handler(template, "evaluation.handler.record_gate")
        assert target["Arn"]["Fn::GetAtt"][0] == recorder_id
        policy = function_role_statements(template, "evaluation.handler.record_gate")
        assert identity_allows(policy, "states:DescribeExecution", execution_arn)
        assert identity_allows(policy, "sagemaker:DescribeModelPackage", self.arn)
        assert identity_allows(policy, "sagemaker:UpdateModelPackage", self.arn)  # the record itself
        assert identity_allows(
            policy, "sagemaker:UpdateModelPackage", self.arn, **{"sagemaker:ModelApprovalStatus": "Rejected"}
        )
        assert not identity_allows(
            policy, "sagemaker:UpdateModelPackage", self.arn, **{"sagemaker:ModelApprovalStatus": "Approved"}
        )
        # The registry admits preprod's record and rejection, never its approval.
        statements = self.group_policy()
        assert resource_allows(statements, PREPROD, "sagemaker:UpdateModelPackage", self.arn)
        assert resource_allows(
            statements,
            PREPROD,
            "sagemaker:UpdateModelPackage",
            self.arn,
            **{"sagemaker:ModelApprovalStatus": "Rejected"},
        )
        assert not resource_allows(
            statements,
            PREPROD,
            "sagemaker:UpdateModelPackage",
            self.arn,
            **{"sagemaker:ModelApprovalStatus": "Approved"},
        )
        env = function_env(template, "GateRecorderFunction")
        key_ref = env["GATE_KEY_ARN"]["Fn::GetAtt"][0]
        assert identity_allows(policy, "kms:GenerateMac", f"<{key_ref}.Arn>")
        sfn = boto3.client("stepfunctions", region_name=REGION)
        with Stubber(sfn) as stub:
            stub.add_response("describe_execution", described, {"executionArn": execution_arn})
            return record_gate(
                ended,
                sfn=sfn,
                sagemaker=self.registry,
                kms=self.kms,
                key_id=self.gate_key,
                groups=frozenset(json.loads(resolve(env["GATE_GROUPS"], template))),
                events=events,
                source=env["GATE_PASSED_SOURCE"],
            )

    # ---- hop 7: the approver approves; prod hears it and checks the record -----------------------------

    def approve(self) -> dict[str, Any]:
        tooling = self.templates["tooling"]
        statements = self.group_policy()
        approve = {"sagemaker:ModelApprovalStatus": "Approved"}
        assert not _denied(statements, TOOLING, self.arn, aws_principal=APPROVER, **approve)
        assert _denied(
            statements, TOOLING, self.arn, aws_principal=f"arn:aws:iam::{TOOLING}:role/someone", **approve
        )
        for account in (DEV, PREPROD, PROD):
            assert _denied(
                statements, account, self.arn, aws_principal=f"arn:aws:iam::{account}:role/x", **approve
            )
        (approver,) = [
            k
            for k, r in resources(tooling, "AWS::IAM::Role").items()
            if r["Properties"].get("RoleName") == APPROVER.rsplit("/", 1)[1]
        ]
        assert identity_allows(
            role_statements(tooling, approver), "sagemaker:UpdateModelPackage", self.arn, **approve
        )
        current = self.registry.describe_model_package(ModelPackageName=self.arn)
        # (moto's UpdateModelPackage drops the metadata SageMaker keeps: the call restates it.)
        self.registry.update_model_package(
            ModelPackageArn=self.arn,
            ModelApprovalStatus="Approved",
            CustomerMetadataProperties=current.get("CustomerMetadataProperties") or {},
        )
        approved = self.event()
        (prod_rule,) = [
            r for r in rules(self.templates["prod"]) if r["EventPattern"].get("source") == ["aws.sagemaker"]
        ]
        assert matches(prod_rule["EventPattern"], approved)
        return approved

    def prod_may_verify(self) -> None:
        """Prod's deployer verifies with the preprod key (by its alias); the key admits prod to verify only."""
        prod = self.templates["prod"]
        _, deployer = function_by_handler(prod, "serving_deployer.")
        alias_arn = resolve(deployer["Environment"]["Variables"]["PREPROD_GATE_KEY_ARN"], prod)
        (alias,) = [
            r["Properties"]["AliasName"]
            for r in resources(self.templates["evaluation"], "AWS::KMS::Alias").values()
        ]
        assert alias_arn == f"arn:aws:kms:{REGION}:{PREPROD}:{alias}"
        key_arn = f"arn:aws:kms:{REGION}:{PREPROD}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        policy = function_role_statements(prod, "serving_deployer.")
        assert identity_allows(policy, "kms:VerifyMac", key_arn, **{"kms:ResourceAliases": alias})
        assert not identity_allows(policy, "kms:VerifyMac", key_arn, **{"kms:ResourceAliases": "alias/other"})
        key_policy = self.key_policy()
        mac = {"kms:MacAlgorithm": "HMAC_SHA_256"}
        assert resource_allows(key_policy, PROD, "kms:VerifyMac", key_arn, **mac)
        assert not resource_allows(key_policy, PROD, "kms:GenerateMac", key_arn, **mac)

    # ---- hop 8 (approval before the record): the recorder's announcement reaches prod's deployer --------

    def gate_passed_to_prod(self, entry: dict[str, Any], *, sender: str = PREPROD) -> dict[str, Any]:
        """The recorder's PutEvents entry, as EventBridge delivers it: preprod's bus -> its forwarding rule ->
        prod's bus (its policy admits preprod) -> prod's rule -> prod's deployer. Returns the event."""
        evaluation, prod_events, prod = (
            self.templates["evaluation"],
            self.templates["prod_events"],
            self.templates["prod"],
        )
        own_bus, prod_bus = (f"arn:aws:events:{REGION}:{a}:event-bus/default" for a in (PREPROD, PROD))
        kind = {"events:source": entry["Source"], "events:detail-type": entry["DetailType"]}
        recorder = function_role_statements(evaluation, "evaluation.handler.record_gate")
        assert identity_allows(recorder, "events:PutEvents", own_bus, **kind)
        assert not identity_allows(recorder, "events:PutEvents", own_bus, **{**kind, "events:source": "x"})
        event = {
            "version": "0",
            "id": "c3b2a1d0-0000-4000-8000-000000000002",
            "detail-type": entry["DetailType"],
            "source": entry["Source"],
            "account": sender,
            "time": "2026-11-26T00:11:00Z",
            "region": REGION,
            "resources": entry["Resources"],
            "detail": json.loads(entry["Detail"]),
        }
        (forward,) = [
            r
            for r in rules(evaluation)
            if "EventPattern" in r and matches(r["EventPattern"], {**event, "account": PREPROD})
        ]
        (target,) = forward["Targets"]
        assert resolve(target["Arn"], evaluation) == prod_bus
        forwarder = role_statements(evaluation, target["RoleArn"]["Fn::GetAtt"][0])
        assert identity_allows(forwarder, "events:PutEvents", prod_bus)
        policies = [
            resolve(r["Properties"]["Statement"], prod_events)
            for r in resources(prod_events, "AWS::Events::EventBusPolicy").values()
        ]
        assert resource_allows(policies, PREPROD, "events:PutEvents", prod_bus, **kind)
        for other in (DEV, FINANCE_PREPROD):  # dev and another business unit cannot send it
            assert not resource_allows(policies, other, "events:PutEvents", prod_bus, **kind)
        (rule,) = [
            r for r in rules(prod) if r.get("EventPattern", {}).get("detail-type") == [entry["DetailType"]]
        ]
        deployer_id, _ = function_by_handler(prod, "serving_deployer.")
        assert [t["Arn"]["Fn::GetAtt"][0] for t in rule["Targets"]] == [deployer_id]
        if not matches(rule["EventPattern"], event):
            raise AssertionError(f"prod's rule does not admit {event['account']}/{event['detail']}")
        return event

    def serving(self, stage: str) -> dict[str, Any] | None:
        account = PREPROD if stage == "preprod" else PROD
        table = boto3.resource("dynamodb", region_name=REGION).Table(f"records-{account}")
        item = table.get_item(Key={"pk": f"GROUP#{GROUP}", "sk": "MODEL#default"}).get("Item")
        return dict(item) if item else None

    def key_policy(self) -> list[dict[str, Any]]:
        template = self.templates["evaluation"]
        (key,) = [
            r["Properties"]
            for r in resources(template, "AWS::KMS::Key").values()
            if r["Properties"].get("KeySpec") == "HMAC_256"
        ]
        return list(resolve(key["KeyPolicy"], template)["Statement"])


class _Sink:
    def append(self, record: Any) -> None:
        pass

    def flush(self) -> list[str]:
        return ["lake-key"]


def _run_or_fail(
    template: dict[str, Any], run: dict[str, Any], rt: Any, s3: Any
) -> tuple[dict[str, Any], list[str]]:
    """The main path; a failed gate ends in GateFailed, whose cause is the gate's JSON."""
    try:
        return run_main_path(template, run, rt, s3, RUNS_BUCKET)
    except AssertionError as exc:
        if "GateDecision" not in str(exc):
            raise
        gate = service.gate_run({"run_id": run["run_id"], "use_case": run["use_case"]}, rt)
        return {"gate": gate}, ["GateFailed"]


def _denied(
    statements: list[dict[str, Any]], account: str, arn: str, *, aws_principal: str, **context: str
) -> bool:
    from tests.stacks.policy_eval import Request, decide

    request = Request(
        account, "sagemaker:UpdateModelPackage", arn, {"aws:PrincipalArn": aws_principal, **context}
    )
    return decide(statements, request) == "deny"


@pytest.fixture
def journey(templates: dict[str, dict[str, Any]], aws: None, monkeypatch: pytest.MonkeyPatch) -> Journey:
    return Journey(templates, monkeypatch)


def _through_preprod(
    journey: Journey, answers: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Hops 1-5: registration -> preprod serves and probes the version -> its gate run."""
    registered = journey.register()
    (preprod_rule,) = [
        r for r in rules(journey.templates["preprod"]) if r["EventPattern"].get("source") == ["aws.sagemaker"]
    ]
    (prod_rule,) = [
        r for r in rules(journey.templates["prod"]) if r["EventPattern"].get("source") == ["aws.sagemaker"]
    ]
    assert matches(preprod_rule["EventPattern"], registered)
    assert not matches(prod_rule["EventPattern"], registered)  # a pending version never reaches prod
    journey.create_gate_key()
    outcome, policy = journey.deploy("preprod", registered)
    assert outcome["action"] == "deployed" and outcome["slot"] == [f"GROUP#{GROUP}", "MODEL#default"]
    assert identity_allows(policy, "s3:GetObject", journey.object_arn, **{"s3:ResourceAccount": DEV})
    # ---- hop 4 -> 5: the deployer started the gate run of exactly the version it served ----
    (execution,) = journey.started
    run = json.loads(execution["input"])
    assert run["gate"] is True and run["use_case"] == USE_CASE and run["run_id"] == execution["name"]
    assert run["candidate"]["model_package_arn"] == journey.arn
    assert run["candidate"]["artifact_sha256"] == journey.metadata["ArtifactSha256"]
    assert run["candidate"]["inference_component"] == outcome["served"]["inference_component"]
    assert identity_allows(policy, "states:StartExecution", execution["stateMachineArn"])
    state, order = journey.evaluate(execution, answers)
    return execution, state, order


def test_a_business_unit_version_passes_the_preprod_gate_and_reaches_prod_after_approval(
    journey: Journey,
) -> None:
    execution, state, order = _through_preprod(journey, GOOD)
    assert order[-4:] == ["AwaitingHumanReview", "Gate", "GateDecision", "GatePassed"]
    assert state["output"]["passed"] is True
    assert state["output"]["model"] == f"{GROUP}-v1"  # the served version was gated, nothing else
    assert state["output"]["candidate"]["model_package_arn"] == journey.arn

    recorded = journey.record(execution, state, "SUCCEEDED")
    assert recorded.action == "recorded" and recorded.result == "passed"
    metadata = journey.registry.describe_model_package(ModelPackageName=journey.arn)[
        "CustomerMetadataProperties"
    ]
    assert metadata["PreprodGate"] == "passed"
    assert metadata["PreprodGateSha256"] == journey.metadata["ArtifactSha256"]
    assert metadata["ArtifactSha256"] == journey.metadata["ArtifactSha256"]  # the registration is kept

    approved = journey.approve()
    journey.prod_may_verify()
    outcome, _ = journey.deploy("prod", approved)
    assert outcome["action"] == "deployed"
    assert journey.deployment("prod")["status"] == "serving"


def test_negative_a_version_that_failed_the_gate_is_rejected_and_never_served_in_prod(
    journey: Journey,
) -> None:
    wrong = {question: "no idea" for question in GOOD}
    execution, state, order = _through_preprod(journey, wrong)
    assert order == ["GateFailed"] and state["gate"]["passed"] is False
    recorded = journey.record(execution, state, "FAILED")
    assert recorded.result == "failed"
    described = journey.registry.describe_model_package(ModelPackageName=journey.arn)
    assert described["ModelApprovalStatus"] == "Rejected"
    assert described["ApprovalDescription"].startswith("preprod gate: gate failed: ")
    assert "token_f1" in described["ApprovalDescription"]  # says why
    # The rejection reaches preprod's deployer, which retires the version it served.
    outcome, _ = journey.deploy("preprod", journey.event(), retire=True)
    assert outcome["action"] == "retired"
    # Approved anyway by the approver: prod hears it and refuses it.
    outcome, _ = journey.deploy("prod", journey.approve())
    assert outcome["action"] == "refused"
    assert "did not pass" in outcome["error"]
    assert journey.deployment("prod")["status"] == "refused"


def test_negative_dev_cannot_write_a_gate_record_nor_forge_one_at_registration(journey: Journey) -> None:
    # The registry lets dev register, never update; the gate key lets dev neither sign nor verify.
    statements = journey.group_policy()
    arn = f"arn:aws:sagemaker:{REGION}:{TOOLING}:model-package/{GROUP}/1"
    assert not resource_allows(statements, DEV, "sagemaker:UpdateModelPackage", arn)
    key_policy = journey.key_policy()
    key_arn = f"arn:aws:kms:{REGION}:{PREPROD}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    for action in ("kms:GenerateMac", "kms:VerifyMac"):
        assert not resource_allows(key_policy, DEV, action, key_arn, **{"kms:MacAlgorithm": "HMAC_SHA_256"})
    # Dev registers a version whose metadata claims a passed gate, signed with a key it controls.
    journey.create_gate_key()
    own_key = boto3.client("kms", region_name=REGION).create_key(
        KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC"
    )
    weights = adapter_artifact(base_model_name_or_path="retail, unevaluated")
    sha = hashlib.sha256(weights).hexdigest()
    forged = GateRecord(
        f"arn:aws:sagemaker:{REGION}:{TOOLING}:model-package/{GROUP}/1", GROUP, sha, "passed", "bu-gate-x"
    )
    mac = journey.kms.generate_mac(
        KeyId=own_key["KeyMetadata"]["KeyId"], MacAlgorithm="HMAC_SHA_256", Message=forged.message()
    )["Mac"]
    journey.register(weights, **forged.properties(mac))
    assert journey.arn == forged.model_package_arn
    outcome, _ = journey.deploy("prod", journey.approve())
    assert outcome["action"] == "refused"
    assert "not written by this business unit's preprod gate" in outcome["error"]
    assert journey.deployment("prod")["status"] == "refused"


def test_negative_another_business_units_gate_record_does_not_count(journey: Journey) -> None:
    execution, state, order = _through_preprod(journey, GOOD)
    assert order[-1] == "GatePassed", (order, state.get("gate"))
    # Finance's preprod gate has its own key; a record it signs for retail's version does not verify.
    finance = journey.templates["finance_evaluation"]
    handlers = [r["Properties"]["Handler"] for r in resources(finance, "AWS::Lambda::Function").values()]
    assert handlers and not [h for h in handlers if h.endswith("record_gate")]  # finance trains no own models
    other_key = journey.kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"][
        "KeyId"
    ]
    foreign = GateRecord(journey.arn, GROUP, journey.metadata["ArtifactSha256"], "passed", execution["name"])
    mac = journey.kms.generate_mac(KeyId=other_key, MacAlgorithm="HMAC_SHA_256", Message=foreign.message())[
        "Mac"
    ]
    journey.registry.update_model_package(
        ModelPackageArn=journey.arn,
        CustomerMetadataProperties={**journey.metadata, **foreign.properties(mac)},
    )
    assert not resource_allows(
        journey.group_policy(), FINANCE_PREPROD, "sagemaker:UpdateModelPackage", journey.arn
    )
    outcome, _ = journey.deploy("prod", journey.approve())
    assert outcome["action"] == "refused"
    # A record retail's gate signed for another version does not count for this one either.
    journey.record(execution, state, "SUCCEEDED")
    metadata = journey.registry.describe_model_package(ModelPackageName=journey.arn)[
        "CustomerMetadataProperties"
    ]
    assert base64.b64decode(metadata["PreprodGateMac"])  # a real MAC now, for version 1
    copied = {**metadata}
    second = journey.register(adapter_artifact(base_model_name_or_path="retail, version 2 of the adapter"))
    assert second["detail"]["ModelPackageVersion"] == 2
    journey.registry.update_model_package(
        ModelPackageArn=journey.arn,
        CustomerMetadataProperties={
            **journey.metadata,
            **{k: v for k, v in copied.items() if k.startswith("PreprodGate")},
        },
    )
    outcome, _ = journey.deploy("prod", journey.approve())
    assert outcome["action"] == "refused"


# ---- an approval given before the gate record exists: the record's arrival completes the promotion ----


def _announcements() -> tuple[Any, list[dict[str, Any]]]:
    """The recorder's events client (moto) and the entries it puts."""
    client = boto3.client("events", region_name=REGION)
    sent: list[dict[str, Any]] = []
    client.meta.events.register(
        "provide-client-params.events.PutEvents", lambda params, **_: sent.extend(params["Entries"])
    )
    return client, sent


def test_an_approval_before_the_gate_record_is_served_in_prod_when_the_passing_record_lands(
    journey: Journey,
) -> None:
    execution, state, order = _through_preprod(journey, GOOD)
    assert order[-1] == "GatePassed"
    # The approver approves while the gate run is still going: prod has no record to verify yet.
    outcome, _ = journey.deploy("prod", journey.approve())
    assert outcome["action"] == "refused" and "no preprod gate record" in outcome["error"]
    assert journey.deployment("prod")["status"] == "refused" and journey.serving("prod") is None
    # The run ends: the recorder writes the passing record and, the version being Approved, announces it.
    events, sent = _announcements()
    recorded = journey.record(execution, state, "SUCCEEDED", events=events)
    assert recorded.result == "passed" and recorded.announced is True
    (entry,) = sent
    assert json.loads(entry["Detail"]) == {
        "ModelPackageArn": journey.arn,
        "ModelPackageGroupName": GROUP,
        "ModelPackageVersion": 1,
    }
    outcome, _ = journey.deploy("prod", journey.gate_passed_to_prod(entry))
    assert outcome["action"] == "deployed" and outcome["version"] == 1
    assert journey.deployment("prod")["status"] == "serving"
    assert journey.serving("prod")["model_package_arn"] == journey.arn
    # The approval's own event, redelivered now, finds it served: nothing is installed twice.
    outcome, _ = journey.deploy("prod", journey.event())
    assert outcome["action"] == "already_serving"


def test_a_passing_record_before_any_approval_announces_nothing(journey: Journey) -> None:
    execution, state, _ = _through_preprod(journey, GOOD)
    events, sent = _announcements()
    recorded = journey.record(execution, state, "SUCCEEDED", events=events)
    assert recorded.result == "passed" and recorded.announced is False and sent == []
    # The approval, when it comes, carries its own event and finds the record (the first journey).
    outcome, _ = journey.deploy("prod", journey.approve())
    assert outcome["action"] == "deployed"


def test_negative_a_failed_record_after_the_approval_serves_nothing_in_prod(journey: Journey) -> None:
    wrong = {question: "no idea" for question in GOOD}
    execution, state, order = _through_preprod(journey, wrong)
    assert order == ["GateFailed"]
    outcome, _ = journey.deploy("prod", journey.approve())
    assert outcome["action"] == "refused"
    events, sent = _announcements()
    recorded = journey.record(execution, state, "FAILED", events=events)
    assert recorded.result == "failed" and recorded.announced is False and sent == []
    rejected = journey.event()
    assert rejected["detail"]["ModelApprovalStatus"] == "Rejected"
    outcome, _ = journey.deploy("prod", rejected)
    assert outcome["action"] == "ignored"
    # Even an announcement sent from preprod for this version (none was) serves nothing: it is Rejected.
    entry = {
        "Source": "exco.preprod-gate",
        "DetailType": "Preprod Gate Passed",
        "Resources": [journey.arn],
        "Detail": json.dumps(
            {"ModelPackageArn": journey.arn, "ModelPackageGroupName": GROUP, "ModelPackageVersion": 1}
        ),
    }
    outcome, _ = journey.deploy("prod", journey.gate_passed_to_prod(entry))
    assert outcome["action"] == "ignored" and "Rejected" in outcome["error"]
    assert journey.serving("prod") is None


def test_negative_an_announcement_for_another_version_or_from_elsewhere_serves_nothing(
    journey: Journey,
) -> None:
    execution, state, _ = _through_preprod(journey, GOOD)
    first_arn = journey.arn
    journey.deploy("prod", journey.approve())  # refused: no record yet
    events, sent = _announcements()
    journey.record(execution, state, "SUCCEEDED", events=events)
    (first_entry,) = sent
    journey.deploy("prod", journey.gate_passed_to_prod(first_entry))
    assert journey.serving("prod")["model_package_arn"] == first_arn
    # Version 2 is approved before any gate ran on it; version 1's record copied onto it does not verify.
    copied = {
        k: v
        for k, v in journey.registry.describe_model_package(ModelPackageName=first_arn)[
            "CustomerMetadataProperties"
        ].items()
        if k.startswith("PreprodGate")
    }
    journey.register(adapter_artifact(base_model_name_or_path="retail, version 2 of the adapter"))
    outcome, _ = journey.deploy("prod", journey.approve())
    assert outcome["action"] == "refused"
    # (restated for version 2's checksum, so only the MAC, bound to version 1's ARN, can tell)
    copied["PreprodGateSha256"] = journey.metadata["ArtifactSha256"]
    journey.registry.update_model_package(
        ModelPackageArn=journey.arn, CustomerMetadataProperties={**journey.metadata, **copied}
    )
    second = {
        **first_entry,
        "Resources": [journey.arn],
        "Detail": json.dumps(
            {"ModelPackageArn": journey.arn, "ModelPackageGroupName": GROUP, "ModelPackageVersion": 2}
        ),
    }
    outcome, _ = journey.deploy("prod", journey.gate_passed_to_prod(second))
    assert (
        outcome["action"] == "refused"
        and "not written by this business unit's preprod gate" in outcome["error"]
    )
    assert journey.serving("prod")["model_package_arn"] == first_arn  # version 1 keeps serving
    # The same announcement from the dev account or another business unit's preprod never reaches prod.
    for sender in (DEV, FINANCE_PREPROD):
        with pytest.raises(AssertionError, match="does not admit"):
            journey.gate_passed_to_prod(second, sender=sender)
    # Nor does one naming another business unit's group.
    other_group = {**json.loads(second["Detail"]), "ModelPackageGroupName": "exco-finance-product-qa"}
    with pytest.raises(AssertionError, match="does not admit"):
        journey.gate_passed_to_prod({**second, "Detail": json.dumps(other_group)})
