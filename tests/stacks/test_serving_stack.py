"""Serving stacks: endpoint config per mode, scaling policies, alarms, the deployer's trigger, config checks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from stacks.settings.serving import (
    ServingMode,
    ServingSettings,
    check_instance_type,
    load_catalog,
    shared_instances,
)
from tests.conftest import SynthesizedPlatform
from tests.stacks.policy_eval import resolve


def of_type(template: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [r["Properties"] for r in template["Resources"].values() if r["Type"] == resource_type]


@pytest.fixture(scope="module")
def mme(default_platform: SynthesizedPlatform) -> dict[str, Any]:
    # finance: multi_model_endpoint, serving complete models (it fine-tunes nothing: adapters need components)
    return default_platform.template("exco-finance-prod-serving")


@pytest.fixture(scope="module")
def components(sandbox_platform: SynthesizedPlatform) -> dict[str, Any]:
    return sandbox_platform.template(
        "exsb-finance-preprod-serving"
    )  # sandbox: defaults (inference components)


@pytest.fixture(scope="module")
def retail_components(default_platform: SynthesizedPlatform) -> dict[str, Any]:
    return default_platform.template("exco-retail-preprod-serving")  # retail fine-tunes: inference components


def test_multi_model_endpoint_runs_the_gpu_container_in_multi_model_mode_inside_the_vpc(
    mme: dict[str, Any],
) -> None:
    (model,) = of_type(mme, "AWS::SageMaker::Model")
    container = model["PrimaryContainer"]
    assert container["Mode"] == "MultiModel"
    assert (
        container["Image"] == "763104351884.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-tritonserver:24.09-py3"
    )
    assert model["EnableNetworkIsolation"] is True
    assert len(model["VpcConfig"]["Subnets"]) == 2
    (config,) = of_type(mme, "AWS::SageMaker::EndpointConfig")
    (variant,) = config["ProductionVariants"]
    assert (variant["InstanceType"], variant["InitialInstanceCount"]) == ("ml.g5.2xlarge", 1)
    # g5 keeps models on NVMe instance storage: SageMaker refuses a KMS volume key there.
    assert "KmsKeyId" not in config
    (endpoint,) = of_type(mme, "AWS::SageMaker::Endpoint")
    assert endpoint["EndpointName"] == "exco-finance-prod-serving"


def test_multi_model_endpoint_scales_instances_on_invocations_per_instance(mme: dict[str, Any]) -> None:
    (target,) = of_type(mme, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 2)
    assert target["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    assert target["ResourceId"] == "endpoint/exco-finance-prod-serving/variant/AllTraffic"
    (policy,) = of_type(mme, "AWS::ApplicationAutoScaling::ScalingPolicy")
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert (
        tracking["PredefinedMetricSpecification"]["PredefinedMetricType"]
        == "SageMakerVariantInvocationsPerInstance"
    )
    assert tracking["TargetValue"] == 4.0


def test_inference_components_scale_base_copies_to_zero(components: dict[str, Any]) -> None:
    (config,) = of_type(components, "AWS::SageMaker::EndpointConfig")
    (variant,) = config["ProductionVariants"]
    assert variant["ManagedInstanceScaling"] == {
        "Status": "ENABLED",
        "MinInstanceCount": 0,
        "MaxInstanceCount": 2,
    }
    assert "ExecutionRoleArn" in config and "VpcConfig" in config
    (component,) = of_type(components, "AWS::SageMaker::InferenceComponent")
    assert component["InferenceComponentName"] == "exsb-finance-preprod-serving-base"
    assert (
        component["Specification"]["ComputeResourceRequirements"]["NumberOfAcceleratorDevicesRequired"] == 1
    )
    (target,) = of_type(components, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert (target["MinCapacity"], target["ScalableDimension"]) == (
        0,
        "sagemaker:inference-component:DesiredCopyCount",
    )
    policies = of_type(components, "AWS::ApplicationAutoScaling::ScalingPolicy")
    assert {p["PolicyType"] for p in policies} == {"TargetTrackingScaling", "StepScaling"}
    (model,) = of_type(components, "AWS::SageMaker::Model")
    assert model["PrimaryContainer"]["Image"].endswith("/djl-inference:0.31.0-lmi13.0.0-cu124")


def test_deployer_listens_to_this_business_units_registry_groups(mme: dict[str, Any]) -> None:
    (rule,) = of_type(mme, "AWS::Events::Rule")
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.sagemaker"]
    assert pattern["detail-type"] == ["SageMaker Model Package State Change"]
    assert pattern["detail"]["ModelPackageGroupName"] == ["exco-finance-report-summarization"]
    assert pattern["detail"]["ModelApprovalStatus"] == ["Approved", "Rejected"]
    (function,) = [
        f for f in of_type(mme, "AWS::Lambda::Function") if f["Handler"].startswith("serving_deployer.")
    ]
    env = function["Environment"]["Variables"]
    assert (
        ServingSettings.model_validate_json(env["SERVING_SETTINGS"]).mode is ServingMode.MULTI_MODEL_ENDPOINT
    )
    assert env["ENDPOINT_NAME"] == "exco-finance-prod-serving"


def test_base_component_ships_the_lmi_configuration_from_the_settings(
    retail_components: dict[str, Any],
) -> None:
    (model,) = of_type(retail_components, "AWS::SageMaker::Model")
    env = model["PrimaryContainer"]["Environment"]
    lmi = ServingSettings().lmi
    assert env["OPTION_ROLLING_BATCH"] == "vllm"
    assert env["OPTION_ENABLE_LORA"] == "true"
    assert (env["OPTION_MAX_LORA_RANK"], env["OPTION_MAX_LORAS"], env["OPTION_MAX_CPU_LORAS"]) == (
        str(lmi.max_lora_rank),
        str(lmi.max_loras),
        str(lmi.max_cpu_loras),
    )
    # Network isolation: the base weights come from the models bucket, mounted where HF_MODEL_ID points.
    assert (env["HF_MODEL_ID"], env["HF_HUB_OFFLINE"]) == ("/opt/ml/model", "1")
    assert model["PrimaryContainer"]["ModelDataSource"]["S3DataSource"]["S3DataType"] == "S3Prefix"


def test_deployer_receives_the_lmi_limits_it_checks_adapters_against(
    retail_components: dict[str, Any],
) -> None:
    (function,) = [
        f
        for f in of_type(retail_components, "AWS::Lambda::Function")
        if f["Handler"].startswith("serving_deployer.")
    ]
    settings = ServingSettings.model_validate_json(function["Environment"]["Variables"]["SERVING_SETTINGS"])
    assert settings.mode is ServingMode.INFERENCE_COMPONENTS
    assert settings.lmi.max_lora_rank == 16


def deployer_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    (function_id,) = [
        k
        for k, r in template["Resources"].items()
        if r["Type"] == "AWS::Lambda::Function" and r["Properties"]["Handler"].startswith("serving_deployer.")
    ]
    role = template["Resources"][function_id]["Properties"]["Role"]["Fn::GetAtt"][0]
    return [
        statement
        for r in template["Resources"].values()
        if r["Type"] == "AWS::IAM::Policy" and {"Ref": role} in r["Properties"]["Roles"]
        for statement in r["Properties"]["PolicyDocument"]["Statement"]
    ]


def flat(value: Any) -> str:
    return json.dumps(resolve(value, {"Resources": {}}))


@pytest.mark.parametrize("stack", ["exco-retail-prod-serving", "exco-finance-preprod-serving"])
def test_the_deployers_only_resource_wildcard_is_xray_as_its_acknowledgement_says(
    default_platform: SynthesizedPlatform, stack: str
) -> None:
    # python_function.py acknowledges Resource "*" for X-Ray only; no other action of the role may use it
    # (the adapter listing that needed sagemaker:ListInferenceComponents on "*" is gone: records say it).
    wildcard = [s for s in deployer_statements(default_platform.template(stack)) if s["Resource"] == "*"]
    actions = {a for s in wildcard for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}
    assert actions == {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}


def test_the_deployer_reads_business_unit_artifacts_pinned_to_the_dev_account(
    default_platform: SynthesizedPlatform,
) -> None:
    retail = default_platform.template("exco-retail-prod-serving")
    # The business unit's central groups and this stage's own tenant groups.
    (rule,) = [
        r for r in of_type(retail, "AWS::Events::Rule") if r["EventPattern"]["source"] == ["aws.sagemaker"]
    ]
    assert rule["EventPattern"]["detail"]["ModelPackageGroupName"] == [
        "exco-retail-product-qa",
        "exco-retail-review-summarization",
        "exco-retail-prod-tenants-product-qa",
        "exco-retail-prod-tenants-review-summarization",
    ]
    statements = {s.get("Sid"): s for s in deployer_statements(retail)}
    read = statements["ReadBusinessUnitArtifacts"]
    assert (
        flat(read["Resource"])
        == '"arn:aws:s3:::exco-retail-dev-ft-333333333331/models/retail/business-unit/*"'
    )
    assert read["Condition"] == {"StringEquals": {"s3:ResourceAccount": "333333333331"}}
    decrypt = statements["DecryptBusinessUnitArtifacts"]
    assert flat(decrypt["Resource"]) == '"arn:aws:kms:eu-west-1:333333333331:key/*"'
    assert decrypt["Condition"]["ForAnyValue:StringEquals"] == {
        "kms:ResourceAliases": "alias/exco/retail/dev/fine-tuning"
    }
    # Tenant artifacts: this stage's own bucket, never another stage's.
    tenant = statements["ReadTenantArtifacts"]
    assert (
        flat(tenant["Resource"]) == '"arn:aws:s3:::exco-retail-prod-ft-333333333333/models/retail/tenant=*"'
    )
    assert "dev-ft" not in flat(tenant) and "preprod" not in flat(tenant)


def test_the_deployer_writes_records_to_the_stages_encrypted_table(
    default_platform: SynthesizedPlatform,
) -> None:
    mme = default_platform.template("exco-retail-prod-serving")
    (table,) = of_type(mme, "AWS::DynamoDB::Table")
    assert table["SSESpecification"]["SSEEnabled"] is True
    (function,) = [
        f for f in of_type(mme, "AWS::Lambda::Function") if f["Handler"].startswith("serving_deployer.")
    ]
    env = function["Environment"]["Variables"]
    assert json.loads(env["TENANT_GROUPS"]) == [
        "exco-retail-prod-tenants-product-qa",
        "exco-retail-prod-tenants-review-summarization",
    ]
    assert env["MODEL_PREFIX"] in ("mme/", "adapters/")
    writes = [s for s in deployer_statements(mme) if "dynamodb:PutItem" in s["Action"]]
    assert [sorted(s["Action"]) for s in writes] == [
        ["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem"]
    ]


def test_dev_gets_no_serving_stack(default_platform: SynthesizedPlatform) -> None:
    names = {s.stack_name for s in default_platform.stacks()}
    assert "exco-retail-dev-serving" not in names
    assert "exco-retail-preprod-serving" in names


def test_instance_types_are_checked_against_the_region() -> None:
    check_instance_type("ml.g5.2xlarge", region="eu-west-1", field="serving.instance_type")
    with pytest.raises(
        ValueError,
        match=r"serving\.instance_type: ml\.g6e\.xlarge is not a GPU instance type offered in eu-west-1",
    ):
        check_instance_type("ml.g6e.xlarge", region="eu-west-1", field="serving.instance_type")
    with pytest.raises(
        ValueError, match=r"serving\.instance_type: region ap-south-2 has no GPU instance list"
    ):
        check_instance_type("ml.g5.2xlarge", region="ap-south-2", field="serving.instance_type")


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"mode": "multi_model_endpoint", "min_capacity": 0}, "min_capacity"),
        ({"min_capacity": 3, "max_capacity": 2}, "min_capacity"),
        ({"initial_instances": 5, "max_capacity": 2}, "initial_instances"),
        ({"instance_type": "g5.xlarge"}, "instance_type"),
        ({"stages": ["qa"]}, "stages"),
        ({"lmi": {"max_lora_rank": 12}}, "max_lora_rank"),
        ({"lmi": {"max_loras": 64, "max_cpu_loras": 32}}, "max_cpu_loras"),
        ({"lmi": {"engine": "tgi"}}, "engine"),
        ({"lmi": {"rank": 16}}, "rank"),
    ],
)
def test_bad_serving_settings_name_the_field(settings: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        ServingSettings.model_validate(settings)


def test_every_catalog_region_lists_only_priced_instance_types() -> None:
    catalog = load_catalog()
    for region, offered in catalog.regions.items():
        assert set(offered) <= set(catalog.instances), region
        assert region in catalog.dlc_registries, region


def test_shared_instances_grow_with_models_and_respect_the_floor() -> None:
    settings = ServingSettings(mode=ServingMode.MULTI_MODEL_ENDPOINT, min_capacity=1, models_per_instance=50)
    assert [shared_instances(settings, n) for n in (0, 10, 100, 1000)] == [1, 1, 2, 20]
    assert shared_instances(ServingSettings(), 0) == 0


def test_a_business_unit_that_fine_tunes_cannot_serve_on_a_multi_model_endpoint() -> None:
    from pathlib import Path

    import yaml

    from stacks.settings import PlatformConfig

    raw = yaml.safe_load(Path("config/platform.yaml").read_text(encoding="utf-8"))
    retail = next(bu for bu in raw["business_units"] if bu["name"] == "retail")
    retail["serving"]["mode"] = "multi_model_endpoint"
    with pytest.raises(
        ValidationError, match=r"serving\.mode: multi_model_endpoint cannot serve .* LoRA adapters"
    ):
        PlatformConfig.model_validate(raw)
    # The same business unit without a fine-tuning pipeline serves complete models there.
    retail["fine_tuning"]["stages"] = []
    config = PlatformConfig.model_validate(raw)
    assert config.business_units[0].serving.mode is ServingMode.MULTI_MODEL_ENDPOINT
