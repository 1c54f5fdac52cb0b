"""The deployer: moto S3 and DynamoDB for copies and records, botocore Stubber for runtime and components."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import re
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from hypothesis import given
from hypothesis import strategies as st
from moto import mock_aws
from pydantic import ValidationError
from serving_deployer import handler
from serving_deployer.core import (
    DeploymentError,
    InferenceComponentTarget,
    ModelPackage,
    MultiModelTarget,
    handle_package,
    package_from_description,
)
from serving_deployer.records import DynamoRecords
from serving_deployer.settings import ServingMode, ServingSettings
from serving_runtime.packaging import read_artifact

from tests.lambdas.serving_runtime._artifacts import adapter_artifact

ENDPOINT = "exco-retail-prod-serving"
TENANT_GROUP = "exco-retail-prod-tenants-product-qa"
BU_GROUP = "exco-retail-product-qa"
SOURCE = "exco-retail-prod-ft-333333333333"
PAYLOAD = ServingSettings().test_payload
ACCOUNT_ARN = "arn:aws:sagemaker:eu-west-1:333333333333"


def body(text: str = '{"generated_text": "ok"}') -> StreamingBody:
    return StreamingBody(io.BytesIO(text.encode()), len(text))


@functools.cache  # gzip stamps the time: one artifact per tenant and version for the whole module
def weights(tenant: str, version: int) -> bytes:
    """A LoRA artifact in the pipeline's layout, different for every tenant and version."""
    return adapter_artifact(base_model_name_or_path=f"base-of-{tenant}-v{version}")


@pytest.fixture
def aws() -> Iterator[tuple[Any, DynamoRecords, Any]]:
    with mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-1")
        for bucket in ("serving-models", SOURCE):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        for tenant in ("ann", "ben"):
            for version in (1, 2, 3):
                s3.put_object(Bucket=SOURCE, Key=key(tenant, version), Body=weights(tenant, version))
        table = boto3.resource("dynamodb", region_name="eu-west-1").create_table(
            TableName="records",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")],
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
        )
        yield s3, DynamoRecords(table, clock=lambda: 1000), table


@pytest.fixture
def runtime() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("sagemaker-runtime", region_name="eu-west-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def key(tenant: str, version: int) -> str:
    return f"models/retail/tenant={tenant}/job-{version}/output/model.tar.gz"


def package(
    tenant: str, version: int, *, status: str = "Approved", sha256: str | None = None, model: str = "personal"
) -> ModelPackage:
    return ModelPackage(
        arn=f"{ACCOUNT_ARN}:model-package/{TENANT_GROUP}/{version}",
        group=TENANT_GROUP,
        version=version,
        status=status,
        artifact_url=f"s3://{SOURCE}/{key(tenant, version)}",
        sha256=sha256 if sha256 is not None else hashlib.sha256(weights(tenant, version)).hexdigest(),
        tenant_id=tenant,
        model_name=model,
    )


def unit_package(status: str) -> ModelPackage:
    """Version 4 of the business unit's group in the central registry (no tenant, its own slot)."""
    return ModelPackage(
        arn=f"arn:aws:sagemaker:eu-west-1:111111111111:model-package/{BU_GROUP}/4",
        group=BU_GROUP,
        version=4,
        status=status,
        artifact_url=f"s3://{SOURCE}/{key('ann', 1)}",
        sha256=hashlib.sha256(weights("ann", 1)).hexdigest(),
    )


def mme(s3: Any, runtime: Any) -> MultiModelTarget:
    return MultiModelTarget(
        s3=s3,
        runtime=runtime,
        endpoint_name=ENDPOINT,
        bucket="serving-models",
        prefix="mme/",
        test_payload=PAYLOAD,
    )


def copies(s3: Any) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket="serving-models").get("Contents", []))


def served_version(records: DynamoRecords, tenant: str) -> int | None:
    """The version /invoke serves for the tenant's model (its slot's record), None when it has none."""
    record = records.serving((f"TENANT#{tenant}", "MODEL#personal"))
    return None if record is None else int(record["version"])


def expect_probe(stubber: Stubber, target: str, *, fail: bool = False) -> None:
    params = {"EndpointName": ENDPOINT, "TargetModel": target, "ContentType": "application/json", "Body": ANY}
    if fail:
        stubber.add_client_error(
            "invoke_endpoint", "ModelError", "CUDA out of memory", 424, expected_params=params
        )
    else:
        stubber.add_response("invoke_endpoint", {"Body": body(), "ContentType": "application/json"}, params)


def target_of(tenant: str, version: int, model: str = "personal") -> str:
    return f"tenants/{tenant}/{model}/v{version}.tar.gz"


def test_approval_copies_the_verified_artifact_probes_it_and_only_then_writes_the_record(
    aws: Any, runtime: Any
) -> None:
    s3, records, _ = aws
    client, stubber = runtime
    expect_probe(stubber, target_of("ann", 1))
    outcome = handle_package(mme(s3, client), records, package("ann", 1), now=5)
    assert (outcome.action, outcome.served) == ("deployed", {"target_model": target_of("ann", 1)})
    assert copies(s3) == [f"mme/{target_of('ann', 1)}"]
    copied = s3.get_object(Bucket="serving-models", Key=f"mme/{target_of('ann', 1)}")
    assert copied["Body"].read() == weights("ann", 1)
    record = records.serving(("TENANT#ann", "MODEL#personal"))
    assert record is not None
    assert (record["endpoint_name"], record["target_model"], record["version"]) == (
        ENDPOINT,
        target_of("ann", 1),
        1,
    )
    assert record["artifact_sha256"] == hashlib.sha256(weights("ann", 1)).hexdigest()


def test_a_checksum_mismatch_serves_nothing_and_records_the_failure(aws: Any, runtime: Any) -> None:
    s3, records, table = aws
    client, _ = runtime
    outcome = handle_package(mme(s3, client), records, package("ann", 1, sha256="0" * 64), now=5)
    assert outcome.action == "rolled_back"
    assert outcome.error is not None and "ArtifactSha256 mismatch" in outcome.error
    assert copies(s3) == []
    assert served_version(records, "ann") is None
    failed = table.get_item(Key={"pk": "TENANT#ann", "sk": f"DEPLOYMENT#{TENANT_GROUP}#1"})["Item"]
    assert failed["status"] == "failed" and "mismatch" in failed["reason"]


@pytest.mark.parametrize("sha256", ["", "abc", "G" * 64])
def test_a_missing_or_malformed_checksum_is_refused(aws: Any, runtime: Any, sha256: str) -> None:
    s3, records, _ = aws
    client, _ = runtime
    outcome = handle_package(mme(s3, client), records, package("ann", 1, sha256=sha256), now=5)
    assert outcome.action == "rolled_back" and "ArtifactSha256" in str(outcome.error)
    assert copies(s3) == []


def test_a_failed_probe_removes_the_copy_and_writes_no_record(aws: Any, runtime: Any) -> None:
    s3, records, _ = aws
    client, stubber = runtime
    expect_probe(stubber, target_of("ann", 1), fail=True)
    outcome = handle_package(mme(s3, client), records, package("ann", 1), now=5)
    assert outcome.action == "rolled_back" and "CUDA out of memory" in str(outcome.error)
    assert copies(s3) == []
    assert served_version(records, "ann") is None


def test_a_newer_version_replaces_the_tenants_older_one_and_a_failed_one_keeps_it(
    aws: Any, runtime: Any
) -> None:
    s3, records, _ = aws
    client, stubber = runtime
    target = mme(s3, client)
    expect_probe(stubber, target_of("ann", 1))
    expect_probe(stubber, target_of("ann", 2))
    expect_probe(stubber, target_of("ann", 3), fail=True)
    handle_package(target, records, package("ann", 1), now=5)
    outcome = handle_package(target, records, package("ann", 2), now=6)
    assert (outcome.action, outcome.retired_version) == ("deployed", 1)
    assert handle_package(target, records, package("ann", 3), now=7).action == "rolled_back"
    assert copies(s3) == [f"mme/{target_of('ann', 2)}"]
    assert served_version(records, "ann") == 2


def test_another_tenants_approval_never_evicts_the_first_tenants_model(aws: Any, runtime: Any) -> None:
    s3, records, _ = aws
    client, stubber = runtime
    target = mme(s3, client)
    expect_probe(stubber, target_of("ann", 1))
    expect_probe(stubber, target_of("ben", 2))
    handle_package(target, records, package("ann", 1), now=5)
    # ben's version 2 is newer in the same group: it must not retire ann's version 1.
    assert handle_package(target, records, package("ben", 2), now=6).action == "deployed"
    assert copies(s3) == [f"mme/{target_of('ann', 1)}", f"mme/{target_of('ben', 2)}"]
    assert served_version(records, "ann") == 1
    assert served_version(records, "ben") == 2


def test_a_revoked_approval_removes_the_record_and_the_copy_of_that_version_only(
    aws: Any, runtime: Any
) -> None:
    s3, records, table = aws
    client, stubber = runtime
    target = mme(s3, client)
    expect_probe(stubber, target_of("ann", 2))
    handle_package(target, records, package("ann", 2), now=5)
    assert handle_package(target, records, package("ann", 1, status="Rejected"), now=6).action == "ignored"
    assert served_version(records, "ann") == 2
    outcome = handle_package(target, records, package("ann", 2, status="Rejected"), now=7)
    assert (outcome.action, outcome.retired_version) == ("retired", 2)
    assert served_version(records, "ann") is None
    assert copies(s3) == []
    retired = table.get_item(Key={"pk": "TENANT#ann", "sk": f"DEPLOYMENT#{TENANT_GROUP}#2"})["Item"]
    assert retired["status"] == "retired"


def test_a_stale_or_repeated_approval_changes_nothing(aws: Any, runtime: Any) -> None:
    s3, records, _ = aws
    client, stubber = runtime
    target = mme(s3, client)
    expect_probe(stubber, target_of("ann", 2))
    handle_package(target, records, package("ann", 2), now=5)
    assert handle_package(target, records, package("ann", 2), now=6).action == "already_serving"
    assert handle_package(target, records, package("ann", 1), now=7).action == "skipped_stale"
    assert copies(s3) == [f"mme/{target_of('ann', 2)}"]


def test_a_business_unit_version_uses_its_groups_own_slot(aws: Any, runtime: Any) -> None:
    s3, records, _ = aws
    client, stubber = runtime
    bu = unit_package("Approved")
    expect_probe(stubber, f"business-unit/{BU_GROUP}/v4.tar.gz")
    outcome = handle_package(mme(s3, client), records, bu, now=5)
    assert (outcome.action, outcome.slot) == ("deployed", (f"GROUP#{BU_GROUP}", "MODEL#default"))


# ---- descriptions --------------------------------------------------------------------------------------


def described(metadata: dict[str, str], group: str = TENANT_GROUP) -> dict[str, Any]:
    return {
        "ModelPackageGroupName": group,
        "ModelPackageVersion": 3,
        "ModelPackageArn": f"{ACCOUNT_ARN}:model-package/{group}/3",
        "ModelApprovalStatus": "Approved",
        "InferenceSpecification": {"Containers": [{"Image": "i", "ModelDataUrl": f"s3://{SOURCE}/x.tar.gz"}]},
        "CustomerMetadataProperties": metadata,
    }


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({"ModelName": "personal"}, "TenantId"),
        ({"TenantId": "../ben", "ModelName": "personal"}, "TenantId"),
        ({"TenantId": "ann"}, "ModelName"),
        ({"TenantId": "ann", "ModelName": "Bad/Name"}, "ModelName"),
    ],
)
def test_a_tenant_groups_version_must_name_its_tenant_and_model(metadata: dict[str, str], field: str) -> None:
    with pytest.raises(DeploymentError, match=f"CustomerMetadataProperties.{field}"):
        package_from_description(described(metadata), tenant_groups=frozenset({TENANT_GROUP}))


def test_a_description_becomes_the_package_with_its_slot() -> None:
    found = package_from_description(
        described({"TenantId": "ann", "ModelName": "personal", "ArtifactSha256": "a" * 64}),
        tenant_groups=frozenset({TENANT_GROUP}),
    )
    assert (found.slot, found.sha256, found.version) == (("TENANT#ann", "MODEL#personal"), "a" * 64, 3)
    central = package_from_description(described({}, group=BU_GROUP), tenant_groups=frozenset({TENANT_GROUP}))
    assert central.slot == (f"GROUP#{BU_GROUP}", "MODEL#default")


# ---- inference components ------------------------------------------------------------------------------


@pytest.fixture
def sagemaker() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("sagemaker", region_name="eu-west-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def components(s3: Any, sm: Any, runtime: Any) -> InferenceComponentTarget:
    return InferenceComponentTarget(
        s3=s3,
        sagemaker=sm,
        runtime=runtime,
        endpoint_name=ENDPOINT,
        variant_name="AllTraffic",
        base_component_name=f"{ENDPOINT}-base",
        bucket="serving-models",
        prefix="adapters/",
        test_payload=PAYLOAD,
        sleep=lambda _: None,
    )


def expect_component(stub: Stubber, name: str, statuses: tuple[str, ...], artifact: str) -> None:
    stub.add_response(
        "create_inference_component",
        {"InferenceComponentArn": f"{ACCOUNT_ARN}:inference-component/{name}"},
        {
            "InferenceComponentName": name,
            "EndpointName": ENDPOINT,
            "VariantName": "AllTraffic",
            "Specification": {
                "BaseInferenceComponentName": f"{ENDPOINT}-base",
                "Container": {"ArtifactUrl": artifact},
            },
            "Tags": ANY,
        },
    )
    for status in statuses:
        stub.add_response(
            "describe_inference_component",
            {
                "InferenceComponentName": name,
                "InferenceComponentArn": f"{ACCOUNT_ARN}:inference-component/{name}",
                "EndpointName": ENDPOINT,
                "EndpointArn": f"{ACCOUNT_ARN}:endpoint/{ENDPOINT}",
                "CreationTime": "2025-01-01T00:00:00Z",
                "LastModifiedTime": "2025-01-01T00:00:00Z",
                "InferenceComponentStatus": status,
            },
            {"InferenceComponentName": name},
        )


def test_an_adapter_is_served_from_the_serving_buckets_copy_and_rolled_back_on_a_failed_probe(
    aws: Any, sagemaker: Any, runtime: Any
) -> None:
    s3, records, _ = aws
    sm, sm_stub = sagemaker
    rt, rt_stub = runtime
    target = components(s3, sm, rt)
    name = target.component_name(package("ann", 1))
    copy = "adapters/tenants/ann/personal/v1/model.tar.gz"
    expect_component(sm_stub, name, ("Creating", "InService"), f"s3://serving-models/{copy}")
    rt_stub.add_client_error(
        "invoke_endpoint",
        "ValidationError",
        "adapter weights do not match the base model",
        400,
        expected_params={
            "EndpointName": ENDPOINT,
            "InferenceComponentName": name,
            "ContentType": "application/json",
            "Body": ANY,
        },
    )
    sm_stub.add_response("delete_inference_component", {}, {"InferenceComponentName": name})
    outcome = handle_package(target, records, package("ann", 1), now=5)
    assert outcome.action == "rolled_back" and len(name) <= 63
    assert copies(s3) == []
    assert served_version(records, "ann") is None


def test_an_adapter_approval_records_the_component_and_retires_only_that_tenants_previous_one(
    aws: Any, sagemaker: Any, runtime: Any
) -> None:
    s3, records, _ = aws
    sm, sm_stub = sagemaker
    rt, rt_stub = runtime
    target = components(s3, sm, rt)
    names = {v: target.component_name(package("ann", v)) for v in (1, 2)}
    for version in (1, 2):
        copy = f"adapters/tenants/ann/personal/v{version}/model.tar.gz"
        expect_component(sm_stub, names[version], ("InService",), f"s3://serving-models/{copy}")
        rt_stub.add_response("invoke_endpoint", {"Body": body(), "ContentType": "application/json"})
    sm_stub.add_response("delete_inference_component", {}, {"InferenceComponentName": names[1]})
    handle_package(target, records, package("ann", 1), now=5)
    outcome = handle_package(target, records, package("ann", 2), now=6)
    assert (outcome.action, outcome.served) == ("deployed", {"inference_component": names[2]})
    record = records.serving(("TENANT#ann", "MODEL#personal"))
    assert record is not None and record["inference_component"] == names[2]
    assert copies(s3) == ["adapters/tenants/ann/personal/v2/model.tar.gz"]
    # What the component loads is the serving package built from the verified artifact, not the artifact.
    served = s3.get_object(Bucket="serving-models", Key="adapters/tenants/ann/personal/v2/model.tar.gz")
    archive = served["Body"].read()
    assert archive != weights("ann", 2)
    files = read_artifact(archive)
    manifest = json.loads(files["manifest.json"])
    assert manifest["source_sha256"] == hashlib.sha256(weights("ann", 2)).hexdigest()
    assert manifest["source"] == package("ann", 2).artifact_url
    assert "README.md" not in files and set(manifest["files"]) == set(files) - {"manifest.json"}
    assert all(hashlib.sha256(files[n]).hexdigest() == digest for n, digest in manifest["files"].items())
    assert served["Metadata"] == {
        "sha256": hashlib.sha256(archive).hexdigest(),
        "source-sha256": manifest["source_sha256"],
    }
    assert record["package_sha256"] == hashlib.sha256(archive).hexdigest()


@pytest.mark.parametrize(
    ("artifact", "error"),
    [
        (adapter_artifact(rank=32), "rank 32 is above the endpoint's max_lora_rank 16"),
        (adapter_artifact(target_modules=["q_proj", "gate_proj"]), r"\['gate_proj'\] are not served"),
        (b"not a tar archive", "not a readable tar archive"),
    ],
)
def test_an_adapter_the_base_component_cannot_serve_creates_no_component_and_no_record(
    aws: Any, sagemaker: Any, runtime: Any, artifact: bytes, error: str
) -> None:
    s3, records, _ = aws
    sm, _ = sagemaker  # no component call is stubbed: creating one would fail the test
    rt, _ = runtime
    s3.put_object(Bucket=SOURCE, Key=key("ann", 7), Body=artifact)
    version = dataclasses.replace(package("ann", 7), sha256=hashlib.sha256(artifact).hexdigest())
    outcome = handle_package(components(s3, sm, rt), records, version, now=5)
    assert outcome.action == "rolled_back"
    assert outcome.error is not None and re.search(error, outcome.error)
    assert copies(s3) == []
    assert served_version(records, "ann") is None


# ---- handler -------------------------------------------------------------------------------------------


def registry_event(status: str = "Approved", **detail: Any) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": "SageMaker Model Package State Change",
        "source": "aws.sagemaker",
        "account": "333333333333",
        "time": "2025-01-01T00:00:00Z",
        "region": "eu-west-1",
        "resources": [],
        "detail": {
            "ModelPackageGroupName": TENANT_GROUP,
            "ModelPackageVersion": 1,
            "ModelPackageArn": f"{ACCOUNT_ARN}:model-package/{TENANT_GROUP}/1",
            "ModelApprovalStatus": status,
            **detail,
        },
    }


class LambdaContext:
    function_name = "deployer"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:333333333333:function:deployer"
    aws_request_id = "req-1"


def test_handler_acts_on_the_versions_current_status_not_the_events(
    aws: Any, runtime: Any, sagemaker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3, records, _ = aws
    sm, sm_stub = sagemaker
    client, _ = runtime
    now = described({"TenantId": "ann", "ModelName": "personal", "ArtifactSha256": "a" * 64})
    now |= {"ModelApprovalStatus": "Rejected", "ModelPackageVersion": 1}
    sm_stub.add_response(
        "describe_model_package",
        {
            **now,
            "ModelPackageName": "x",
            "CreationTime": "2025-01-01T00:00:00Z",
            "ModelPackageStatus": "Completed",
            "ModelPackageStatusDetails": {"ValidationStatuses": []},
        },
        {"ModelPackageName": f"{ACCOUNT_ARN}:model-package/{TENANT_GROUP}/1"},
    )
    monkeypatch.setenv("TENANT_GROUPS", json.dumps([TENANT_GROUP]))
    monkeypatch.setattr(handler, "sagemaker_client", lambda: sm)
    monkeypatch.setattr(handler, "serving_target", lambda: mme(s3, client))
    monkeypatch.setattr(handler, "records", lambda: records)
    result = handler.lambda_handler(registry_event("Approved"), LambdaContext())
    assert result["action"] == "ignored"  # rejected since the event: nothing is copied or served
    assert copies(s3) == []


@pytest.mark.parametrize(
    "detail",
    [{"ModelApprovalStatus": "Deleted"}, {"ModelPackageVersion": 0}, {"ModelPackageArn": "x"}],
)
def test_handler_rejects_malformed_events_naming_the_field(detail: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as error:
        handler.lambda_handler(registry_event(**detail), LambdaContext())
    assert next(iter(detail)) in str(error.value)


def serving_target_from_env(
    monkeypatch: pytest.MonkeyPatch, settings: ServingSettings, *, prefix: str, base_component: str
) -> object:
    """The target the handler builds from the environment the serving stack gives it (not cached past here)."""
    for name, value in {
        "SERVING_SETTINGS": settings.model_dump_json(),
        "ENDPOINT_NAME": ENDPOINT,
        "MODEL_BUCKET": "models",
        "MODEL_PREFIX": prefix,
        "VARIANT_NAME": "AllTraffic",
        "BASE_COMPONENT_NAME": base_component,
    }.items():
        monkeypatch.setenv(name, value)
    handler.serving_target.cache_clear()
    try:
        return handler.serving_target()
    finally:
        handler.serving_target.cache_clear()


def test_serving_target_follows_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = ServingSettings(mode=ServingMode.MULTI_MODEL_ENDPOINT, min_capacity=1)
    target = serving_target_from_env(monkeypatch, settings, prefix="mme/", base_component="")
    assert isinstance(target, MultiModelTarget)
    assert (target.bucket, target.prefix) == ("models", "mme/")
    assert json.loads(settings.test_payload)["inputs"] == "ping"


def test_inference_components_package_adapters_for_the_configured_lora_limits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = ServingSettings.model_validate(
        {"lmi": {"max_lora_rank": 64, "lora_target_modules": ["q_proj"]}}
    )
    target = serving_target_from_env(
        monkeypatch, settings, prefix="adapters/", base_component=f"{ENDPOINT}-base"
    )
    assert isinstance(target, InferenceComponentTarget)
    assert (target.lmi.max_lora_rank, target.lmi.lora_target_modules) == (64, ("q_proj",))


def test_a_pending_version_serves_only_where_its_group_is_tested_before_approval(
    aws: Any, runtime: Any
) -> None:
    s3, records, _ = aws
    client, stubber = runtime
    target = mme(s3, client)
    pending_tenant = package("ann", 1, status="PendingManualApproval")
    # A tenant's version awaiting review is never served, whatever the stage.
    outcome = handle_package(target, records, pending_tenant, now=5, pending_groups=frozenset({BU_GROUP}))
    assert outcome.action == "ignored"
    unit = unit_package("PendingManualApproval")
    # prod (no pending groups) ignores it; preprod serves it to test it before the approval.
    assert handle_package(target, records, unit, now=6).action == "ignored"
    expect_probe(stubber, f"business-unit/{BU_GROUP}/v4.tar.gz")
    assert (
        handle_package(target, records, unit, now=7, pending_groups=frozenset({BU_GROUP})).action
        == "deployed"
    )


@given(
    st.dictionaries(
        st.sampled_from(["TenantId", "ModelName", "ArtifactSha256", "Other"]), st.text(max_size=70)
    )
)
def test_any_tenant_metadata_is_refused_naming_the_field_or_yields_a_safe_slot(
    metadata: dict[str, str],
) -> None:
    try:
        found = package_from_description(described(metadata), tenant_groups=frozenset({TENANT_GROUP}))
    except DeploymentError as exc:
        assert str(exc).startswith(
            ("CustomerMetadataProperties.TenantId", "CustomerMetadataProperties.ModelName")
        )
        return
    assert found.tenant_id is not None and "/" not in found.tenant_id and ".." not in found.tenant_id
    assert found.model_name is not None and "/" not in found.model_name
