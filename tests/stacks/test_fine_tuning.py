"""Fine-tuning: the pipeline definition (steps, parameters, condition, registration target) and its stack."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from pydantic import ValidationError

from stacks.fine_tuning_pipeline import PLACEHOLDERS, SCHEMA_VERSION, pipeline_definition
from stacks.settings.fine_tuning import FineTuningSettings
from tests.conftest import SynthesizedPlatform


def definition(**settings: Any) -> dict[str, Any]:
    return pipeline_definition(
        FineTuningSettings(**settings), business_unit="retail", default_use_case="product-qa", subnet_count=2
    )


def steps(d: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = {}
    for step in d["Steps"]:
        found[step["Name"]] = step
        for branch in ("IfSteps", "ElseSteps"):
            for inner in step.get("Arguments", {}).get(branch, []):
                found[inner["Name"]] = inner
    return found


def test_steps_run_in_order_preprocess_train_evaluate_condition() -> None:
    d = definition()
    assert d["Version"] == SCHEMA_VERSION
    assert [(s["Name"], s["Type"]) for s in d["Steps"]] == [
        ("Preprocess", "Processing"),
        ("FineTune", "Training"),
        ("Evaluate", "Processing"),
        ("CheckThresholds", "Condition"),
    ]


def test_parameters_carry_tenant_data_and_thresholds() -> None:
    params = {p["Name"]: p for p in definition()["Parameters"]}
    assert {"TenantId", "InputDataUri", "UseCase", "BaseModelUri", "ModelApprovalStatus"} <= set(params)
    assert "DefaultValue" not in params["TenantId"]  # every run names its tenant
    assert params["Min_token_f1"] == {"Name": "Min_token_f1", "Type": "Float", "DefaultValue": 0.5}
    assert params["ModelApprovalStatus"]["DefaultValue"] == "PendingManualApproval"


def test_condition_checks_every_threshold_against_the_evaluation_report() -> None:
    condition = steps(definition())["CheckThresholds"]["Arguments"]
    checked = {c["LeftValue"]["Std:JsonGet"]["Path"]: c["RightValue"] for c in condition["Conditions"]}
    assert checked == {
        "metrics.rougeL.value": {"Get": "Parameters.Min_rougeL"},
        "metrics.token_f1.value": {"Get": "Parameters.Min_token_f1"},
    }
    assert all(c["Type"] == "GreaterThanOrEqualTo" for c in condition["Conditions"])
    assert [s["Type"] for s in condition["IfSteps"]] == ["RegisterModel"]
    assert [s["Type"] for s in condition["ElseSteps"]] == ["Fail"]
    evaluate = steps(definition())["Evaluate"]
    assert evaluate["PropertyFiles"] == [
        {"PropertyFileName": "EvaluationReport", "OutputName": "evaluation", "FilePath": "evaluation.json"}
    ]


def test_registration_targets_the_central_registry_pending_approval_with_metrics() -> None:
    register = steps(definition())["Register"]["Arguments"]
    assert register["ModelPackageGroupName"] == {
        "Std:Join": {"On": "", "Values": ["${RegistryArnPrefix}", {"Get": "Parameters.UseCase"}]}
    }
    assert register["ModelApprovalStatus"] == {"Get": "Parameters.ModelApprovalStatus"}
    container = register["InferenceSpecification"]["Containers"][0]
    assert container["ModelDataUrl"] == {"Get": "Steps.FineTune.ModelArtifacts.S3ModelArtifacts"}
    assert register["ModelMetrics"]["ModelQuality"]["Statistics"]["ContentType"] == "application/json"


def test_jobs_are_isolated_in_the_vpc_and_encrypted() -> None:
    s = steps(definition())
    training = s["FineTune"]["Arguments"]
    assert training["EnableNetworkIsolation"] is True
    assert training["VpcConfig"] == {
        "SecurityGroupIds": ["${SecurityGroup}"],
        "Subnets": ["${Subnet0}", "${Subnet1}"],
    }
    assert (
        training["ResourceConfig"]["VolumeKmsKeyId"]
        == training["OutputDataConfig"]["KmsKeyId"]
        == "${KmsKeyArn}"
    )
    assert training["ResourceConfig"]["InstanceType"] == "ml.g5.2xlarge"
    assert "EnableManagedSpotTraining" not in training
    for name in ("Preprocess", "Evaluate"):
        args = s[name]["Arguments"]
        assert args["NetworkConfig"]["EnableNetworkIsolation"] is True
        assert args["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == "${KmsKeyArn}"
        assert args["ProcessingOutputConfig"]["KmsKeyId"] == "${KmsKeyArn}"
    # The base model comes from the platform bucket, not the internet.
    channels = {c["ChannelName"]: c for c in training["InputDataConfig"]}
    assert channels["base_model"]["DataSource"]["S3DataSource"]["S3Uri"] == {"Get": "Parameters.BaseModelUri"}


def test_spot_training_adds_checkpoints_and_a_wait_limit() -> None:
    training = steps(definition(use_spot=True))["FineTune"]["Arguments"]
    assert training["EnableManagedSpotTraining"] is True
    assert training["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 12 * 3600,
        "MaxWaitTimeInSeconds": 24 * 3600,
    }
    assert training["CheckpointConfig"]["LocalPath"] == "/opt/ml/checkpoints"


def test_only_known_placeholders_are_left_for_the_stack() -> None:
    used = set(re.findall(r"\$\{(\w+)\}", json.dumps(definition())))
    assert used == set(PLACEHOLDERS) | {"Subnet0", "Subnet1"}


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"thresholds": {"accuracy": 0.5}}, "thresholds"),
        ({"thresholds": {}}, "thresholds"),
        ({"use_spot": True, "max_wait_hours": 2}, "max_wait_hours"),
        ({"held_out_fraction": 0.7}, "held_out_fraction"),
        # The configured default of old: transformers 4.36 rejects the script's `dtype` and `eval_strategy`.
        (
            {"training_image": "huggingface-pytorch-training:2.1.0-transformers4.36.0-gpu-py310-cu121"},
            "training_image",
        ),
        ({"training_image": "huggingface-pytorch-training:2.9.0-transformers5.3.0-gpu-py311-cu130"}, "py312"),
        ({"training_image": "huggingface-pytorch-training:2.9.0-gpu-py312-cu130"}, "training_image"),
        ({"lora": {"early_stopping_patience": -1}}, "early_stopping_patience"),
        ({"evaluation_batch_size": 0}, "evaluation_batch_size"),
    ],
)
def test_bad_fine_tuning_settings_name_the_field(settings: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        FineTuningSettings.model_validate(settings)


# ---- the stack ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template(default_platform: SynthesizedPlatform) -> dict[str, Any]:
    return default_platform.template("exco-retail-dev-fine-tuning")


def of_type(template: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [r["Properties"] for r in template["Resources"].values() if r["Type"] == resource_type]


def test_pipeline_is_embedded_with_deploy_time_values_substituted(template: dict[str, Any]) -> None:
    (pipeline,) = of_type(template, "AWS::SageMaker::Pipeline")
    assert pipeline["PipelineName"] == "exco-retail-dev-fine-tuning"
    body, variables = pipeline["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    assert set(re.findall(r"\$\{(\w+)\}", body)) == set(variables)
    assert variables["RegistryArnPrefix"] == {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":sagemaker:eu-west-1:111111111111:model-package-group/exco-retail-",
            ],
        ]
    }
    assert variables["Image"] == (
        "763104351884.dkr.ecr.eu-west-1.amazonaws.com/"
        "huggingface-pytorch-training:2.9.0-transformers5.3.0-gpu-py312-cu130-ubuntu22.04"
    )
    assert json.loads(body)["Steps"][1]["Arguments"]["ResourceConfig"]["InstanceType"] == "ml.g5.2xlarge"


def test_raw_zone_uploads_of_the_tenant_prefix_trigger_the_pipeline(template: dict[str, Any]) -> None:
    (rule,) = of_type(template, "AWS::Events::Rule")
    pattern = rule["EventPattern"]
    assert pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["bucket"]["name"] == ["exco-lake-raw-222222222222-eu-west-1"]
    # This stage's tenants only: another stage's upload (retail/prod/tenant=...) matches no rule here.
    assert pattern["detail"]["object"]["key"] == [{"prefix": "retail/dev/tenant="}]


def test_app_backend_gets_a_start_policy_for_exactly_this_pipeline(template: dict[str, Any]) -> None:
    (policy,) = of_type(template, "AWS::IAM::ManagedPolicy")
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == "sagemaker:StartPipelineExecution"
    assert statement["Resource"]["Fn::Join"][1][-1].endswith(":pipeline/exco-retail-dev-fine-tuning")


def test_serving_accounts_may_read_models_only(template: dict[str, Any]) -> None:
    (policy,) = of_type(template, "AWS::S3::BucketPolicy")
    readers = [
        s for s in policy["PolicyDocument"]["Statement"] if s.get("Sid") == "ServingDeployersReadModels"
    ]
    assert len(readers) == 1
    assert readers[0]["Action"] == "s3:GetObject"
    principals = json.dumps(readers[0]["Principal"])
    assert "333333333332" in principals and "333333333333" in principals


def test_evaluate_installs_the_shipped_wheels_offline_before_its_script() -> None:
    s = steps(definition(evaluation_batch_size=32))
    evaluate = s["Evaluate"]["Arguments"]
    command = evaluate["AppSpecification"]["ContainerEntrypoint"][2]
    install = (
        "python3 -m pip install --quiet --no-index --find-links deps/wheels -r deps/job-requirements.txt"
    )
    assert install in command
    assert command.index(install) < command.index("python3 -m fine_tuning_jobs.evaluate")
    inputs = {i["InputName"]: i["S3Input"] for i in evaluate["ProcessingInputs"]}
    assert inputs["deps"]["S3Uri"] == "${DepsUri}"
    assert evaluate["Environment"]["EVAL_BATCH_SIZE"] == "32"
    # Preprocess imports nothing beyond the standard library: no wheels, no install.
    assert "pip install" not in s["Preprocess"]["Arguments"]["AppSpecification"]["ContainerEntrypoint"][2]
    assert s["FineTune"]["Arguments"]["HyperParameters"]["early_stopping_patience"] == "0"


def test_the_shipped_wheels_cover_the_job_requirements() -> None:
    from stacks.blocks.job_deps import REQUIREMENTS, WHEELS, built_job_deps_dir

    folder = built_job_deps_dir()
    wheels = {p.name.split("-")[0].lower().replace("_", "-") for p in (folder / WHEELS).glob("*.whl")}
    required = {
        line.split("==")[0].strip().lower()
        for line in REQUIREMENTS.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert required <= wheels
    assert (folder / "job-requirements.txt").read_text() == REQUIREMENTS.read_text()


def test_the_stack_ships_the_wheels_and_lets_the_jobs_read_them(template: dict[str, Any]) -> None:
    (pipeline,) = of_type(template, "AWS::SageMaker::Pipeline")
    _, variables = pipeline["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    deps_uri = json.dumps(variables["DepsUri"])
    assert ".zip" in deps_uri
    key = deps_uri.split("/")[-1].split(".zip")[0] + ".zip"
    reads = [
        json.dumps(st["Resource"])
        for policy in of_type(template, "AWS::IAM::Policy")
        for st in policy["PolicyDocument"]["Statement"]
        if st["Action"] == "s3:GetObject"
    ]
    assert any(key in r for r in reads)
