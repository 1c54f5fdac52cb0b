"""Fine-tuning: the pipeline definition (steps, parameters, condition, registration target) and its stack."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from common.fine_tuning_runs import REGISTER_STEPS, RESERVATION_SECONDS
from stacks.fine_tuning_pipeline import PLACEHOLDERS, SCHEMA_VERSION, pipeline_definition
from stacks.settings.fine_tuning import FineTuningSettings, check_fine_tuning_placement
from tests.conftest import SynthesizedPlatform
from tests.journeys._fine_tuning import identity_allows, registration_for, role_statements
from tests.stacks.policy_eval import resolve

USE_CASES = ["product-qa", "review-summarization"]


def definition(use_cases: list[str] | None = None, **settings: Any) -> dict[str, Any]:
    return pipeline_definition(
        FineTuningSettings(**settings),
        business_unit="retail",
        default_use_case="product-qa",
        subnet_count=2,
        use_cases=use_cases,
    )


def steps(d: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every step by name, nested Condition branches included."""
    found = {}
    pending = list(d["Steps"])
    while pending:
        step = pending.pop()
        found[step["Name"]] = step
        for branch in ("IfSteps", "ElseSteps"):
            pending += step.get("Arguments", {}).get(branch, [])
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
    assert {"TenantId", "InputDataUri", "UseCase", "BaseModelUri"} <= set(params)
    assert "DefaultValue" not in params["TenantId"]  # every run names its tenant
    assert params["Min_token_f1"] == {"Name": "Min_token_f1", "Type": "Float", "DefaultValue": 0.5}
    # The registry status is no caller's choice: no parameter sets it, for either kind.
    for kind in ("tenant", "business_unit"):
        body = json.dumps(
            pipeline_definition(
                FineTuningSettings(),
                business_unit="retail",
                default_use_case="product-qa",
                subnet_count=2,
                kind=kind,
            )
        )  # type: ignore[arg-type]
        assert "ModelApprovalStatus" not in {p["Name"] for p in json.loads(body)["Parameters"]}
        assert "Parameters.ModelApprovalStatus" not in body


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


def test_registration_targets_the_use_cases_group_pending_approval_with_metrics() -> None:
    register = steps(definition())["RegisterForReview"]["Arguments"]
    assert register["ModelPackageGroupName"] == {
        "Std:Join": {"On": "", "Values": ["${RegistryArnPrefix}", {"Get": "Parameters.UseCase"}]}
    }
    assert register["ModelApprovalStatus"] == "PendingManualApproval"
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


def test_tenant_and_business_unit_runs_register_what_each_deployer_needs() -> None:
    tenant = steps(definition())["RegisterForReview"]["Arguments"]
    assert set(tenant["CustomerMetadataProperties"]) == {
        "TenantId",
        "ModelName",
        "BusinessUnit",
        "Stage",
        "ArtifactSha256",
    }
    assert tenant["CustomerMetadataProperties"]["ArtifactSha256"]["Std:JsonGet"]["Path"] == "artifact.sha256"
    unit = pipeline_definition(
        FineTuningSettings(),
        business_unit="retail",
        default_use_case="product-qa",
        subnet_count=2,
        kind="business_unit",
    )
    names = {p["Name"] for p in unit["Parameters"]}
    assert "TenantId" not in names and "ModelName" not in names
    register = steps(unit)["RegisterForReview"]["Arguments"]
    assert "TenantId" not in register["CustomerMetadataProperties"]
    # Business-unit versions always wait for the preprod gate and an approver: no choice in the definition.
    assert register["ModelApprovalStatus"] == "PendingManualApproval"
    assert "ChooseApproval" not in steps(unit)
    output = steps(unit)["FineTune"]["Arguments"]["OutputDataConfig"]["S3OutputPath"]["Std:Join"]["Values"]
    assert "/business-unit" in output


@pytest.mark.parametrize(
    ("promotion", "statuses"),
    [
        (
            {"product-qa": "automatic", "review-summarization": "reviewed"},
            {"product-qa": "Approved", "review-summarization": "PendingManualApproval"},
        ),
        (
            {"product-qa": "automatic", "review-summarization": "automatic"},
            dict.fromkeys(USE_CASES, "Approved"),
        ),
        ({}, dict.fromkeys(USE_CASES, "PendingManualApproval")),  # default_promotion: reviewed
    ],
)
def test_the_pipeline_derives_the_registered_status_from_the_runs_use_case(
    promotion: dict[str, str], statuses: dict[str, str]
) -> None:
    d = definition(USE_CASES, promotion=promotion)
    for use_case, status in statuses.items():
        register = registration_for(d, {"UseCase": use_case})
        assert register["Arguments"]["ModelApprovalStatus"] == status, use_case
        assert REGISTER_STEPS[register["Name"]] == status
    # Without any automatic use case there is nothing to choose: one registration, for review.
    if "Approved" not in statuses.values():
        assert [s["Name"] for s in steps(d)["CheckThresholds"]["Arguments"]["IfSteps"]] == [
            "RegisterForReview"
        ]


@given(st.text(max_size=64).filter(lambda u: u != "product-qa"))
def test_a_use_case_that_is_not_automatic_never_registers_approved(use_case: str) -> None:
    """Whatever UseCase a caller passes (a reviewed one, an unknown one, garbage), only an automatic use case
    registers Approved; everything else waits for a reviewer."""
    d = definition(USE_CASES, promotion={"product-qa": "automatic", "review-summarization": "reviewed"})
    register = registration_for(d, {"UseCase": use_case})
    assert register["Arguments"]["ModelApprovalStatus"] == "PendingManualApproval"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"promotion": {"unknown-case": "automatic"}}, "fine_tuning.promotion: unknown use case"),
        ({"stages": ["dev"]}, "fine_tuning.stages: dev has no serving"),
    ],
)
def test_placement_errors_name_the_field(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_fine_tuning_placement(
            FineTuningSettings.model_validate(settings),
            use_cases=["product-qa"],
            serving_stages=["preprod", "prod"],
            field="business_units[retail].fine_tuning",
        )


# ---- the stacks ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dev(default_platform: SynthesizedPlatform) -> dict[str, Any]:
    return default_platform.template("exco-retail-dev-fine-tuning")


@pytest.fixture(scope="module")
def prod(default_platform: SynthesizedPlatform) -> dict[str, Any]:
    return default_platform.template("exco-retail-prod-fine-tuning")


def of_type(template: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [r["Properties"] for r in template["Resources"].values() if r["Type"] == resource_type]


def test_dev_trains_business_unit_models_into_the_central_registry_only(dev: dict[str, Any]) -> None:
    (pipeline,) = of_type(dev, "AWS::SageMaker::Pipeline")
    assert pipeline["PipelineName"] == "exco-retail-dev-business-unit-fine-tuning"
    body, variables = pipeline["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    assert set(re.findall(r"\$\{(\w+)\}", body)) == set(variables)
    assert variables["RegistryArnPrefix"]["Fn::Join"][1][-1] == (
        ":sagemaker:eu-west-1:111111111111:model-package-group/exco-retail-"
    )
    assert variables["Image"] == (
        "763104351884.dkr.ecr.eu-west-1.amazonaws.com/"
        "huggingface-pytorch-training:2.9.0-transformers5.3.0-gpu-py312-cu130-ubuntu22.04"
    )
    assert json.loads(body)["Steps"][1]["Arguments"]["ResourceConfig"]["InstanceType"] == "ml.g5.2xlarge"
    # No tenant pipeline, trigger or tenant registry in dev: dev never handles tenant data.
    assert of_type(dev, "AWS::Events::Rule") == []
    assert of_type(dev, "AWS::SageMaker::ModelPackageGroup") == []
    assert of_type(dev, "AWS::IAM::ManagedPolicy") == []


def test_both_starters_get_the_use_cases_and_no_approval_status(
    default_platform: SynthesizedPlatform, prod: dict[str, Any]
) -> None:
    """One list for the trigger's functions and POST /fine-tunes; the statuses stay in the pipeline."""
    retail = next(b for b in default_platform.config.business_units if b.name == "retail")
    application = default_platform.template("exco-retail-prod-application")
    functions = [
        f
        for template in (prod, application)
        for f in of_type(template, "AWS::Lambda::Function")
        if str(f.get("Handler", "")).startswith(("fine_tuning_trigger.", "app_backend."))
    ]
    assert len(functions) == 3  # upload trigger, run-ended release, app backend
    for function in functions:
        use_cases = json.loads(function["Environment"]["Variables"]["TENANT_USE_CASES"])
        assert use_cases == {"use_cases": sorted(retail.use_cases), "default": "product-qa"}
    (pipeline,) = of_type(prod, "AWS::SageMaker::Pipeline")
    body, _ = pipeline["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    assert {p["Name"]: p.get("DefaultValue") for p in json.loads(body)["Parameters"]}[
        "UseCase"
    ] == "product-qa"


def test_prod_runs_its_tenants_pipeline_into_its_own_tenant_groups(prod: dict[str, Any]) -> None:
    (pipeline,) = of_type(prod, "AWS::SageMaker::Pipeline")
    assert pipeline["PipelineName"] == "exco-retail-prod-fine-tuning"
    body, variables = pipeline["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    assert variables["RegistryArnPrefix"]["Fn::Join"][1][-1] == (
        ":sagemaker:eu-west-1:333333333333:model-package-group/exco-retail-prod-tenants-"
    )
    groups = sorted(g["ModelPackageGroupName"] for g in of_type(prod, "AWS::SageMaker::ModelPackageGroup"))
    assert groups == ["exco-retail-prod-tenants-product-qa", "exco-retail-prod-tenants-review-summarization"]
    parameters = {p["Name"]: p for p in json.loads(body)["Parameters"]}
    assert parameters["Stage"]["DefaultValue"] == "prod"
    # config/platform.yaml: product-qa promotes automatically, review-summarization is reviewed.
    definition = json.loads(body)
    assert steps(definition)["ChooseApproval"]["Arguments"]["Conditions"] == [
        {"Type": "In", "QueryValue": {"Get": "Parameters.UseCase"}, "Values": ["product-qa"]}
    ]
    assert registration_for(definition, {"UseCase": "product-qa"})["Name"] == "RegisterApproved"
    assert registration_for(definition, {"UseCase": "review-summarization"})["Name"] == "RegisterForReview"


def _job_policy(template: dict[str, Any]) -> list[dict[str, Any]]:
    (pipeline,) = of_type(template, "AWS::SageMaker::Pipeline")
    return role_statements(template, pipeline["RoleArn"]["Fn::GetAtt"][0])


@pytest.mark.parametrize(
    ("group", "may_approve"),
    [("exco-retail-prod-tenants-product-qa", True), ("exco-retail-prod-tenants-review-summarization", False)],
)
def test_the_job_role_registers_a_reviewed_use_cases_versions_only_pending(
    prod: dict[str, Any], group: str, may_approve: bool
) -> None:
    """Even a changed definition (or a caller that could set the status) cannot register a reviewed use
    case's version as Approved: the job role's own policy forbids it."""
    policy = _job_policy(prod)
    for resource in (
        f"arn:aws:sagemaker:eu-west-1:333333333333:model-package-group/{group}",
        f"arn:aws:sagemaker:eu-west-1:333333333333:model-package/{group}/7",
    ):
        create = "sagemaker:CreateModelPackage"
        pending = {"sagemaker:ModelApprovalStatus": "PendingManualApproval"}
        assert identity_allows(policy, create, resource, **pending)
        assert identity_allows(policy, create, resource, **{"sagemaker:ModelApprovalStatus": "Approved"}) is (
            may_approve
        )
        # The registry's default for a versioned package is PendingManualApproval; an absent status is
        # still refused in a reviewed group (the condition needs the key).
        assert identity_allows(policy, create, resource) is may_approve
        assert identity_allows(policy, "sagemaker:AddTags", resource)


def test_the_business_unit_pipeline_registers_into_the_central_registry_only_pending(
    dev: dict[str, Any],
) -> None:
    policy = _job_policy(dev)
    version = "arn:aws:sagemaker:eu-west-1:111111111111:model-package/exco-retail-product-qa/3"
    create = "sagemaker:CreateModelPackage"
    assert identity_allows(
        policy, create, version, **{"sagemaker:ModelApprovalStatus": "PendingManualApproval"}
    )
    assert not identity_allows(policy, create, version, **{"sagemaker:ModelApprovalStatus": "Approved"})


def test_a_start_that_lost_its_slot_may_stop_executions_of_its_own_pipeline_only(
    default_platform: SynthesizedPlatform, prod: dict[str, Any]
) -> None:
    (start_policy,) = of_type(prod, "AWS::IAM::ManagedPolicy")
    trigger = next(
        f
        for f in of_type(prod, "AWS::Lambda::Function")
        if f.get("Handler") == "fine_tuning_trigger.handler.lambda_handler"
    )
    base = "arn:aws:sagemaker:eu-west-1:333333333333:pipeline"
    for statements in (
        [resolve(s, prod) for s in start_policy["PolicyDocument"]["Statement"]],
        role_statements(prod, trigger["Role"]["Fn::GetAtt"][0]),
    ):
        stop = "sagemaker:StopPipelineExecution"
        assert identity_allows(statements, stop, f"{base}/exco-retail-prod-fine-tuning/execution/abc123")
        assert not identity_allows(
            statements, stop, f"{base}/exco-retail-preprod-fine-tuning/execution/abc123"
        )
        assert not identity_allows(statements, stop, f"{base}/exco-retail-prod-fine-tuning-other/execution/x")
    release = next(
        f
        for f in of_type(prod, "AWS::Lambda::Function")
        if f.get("Handler") == "fine_tuning_trigger.handler.release_handler"
    )
    assert not identity_allows(
        role_statements(prod, release["Role"]["Fn::GetAtt"][0]),
        "sagemaker:StopPipelineExecution",
        f"{base}/exco-retail-prod-fine-tuning/execution/abc123",
    )


def _starting_services() -> set[str]:
    """Lambda services (lambdas/<service>/) whose code starts tenant runs, found in the source itself."""
    from stacks.blocks.lambda_deps import LAMBDAS_DIR

    return {
        path.relative_to(LAMBDAS_DIR).parts[0]
        for path in LAMBDAS_DIR.glob("*/**/*.py")
        if path.relative_to(LAMBDAS_DIR).parts[0] != "common" and "start_for_tenant(" in path.read_text()
    }


def test_no_function_that_starts_runs_can_outlive_its_reservation(
    default_platform: SynthesizedPlatform,
) -> None:
    """A starter binds its lease before its Lambda timeout; that timeout is shorter than the reservation, so
    a live starter's reservation cannot expire under it (bind_or_stop covers what clocks still allow)."""
    services = _starting_services()
    assert services == {"fine_tuning_trigger", "app_backend"}  # a new starter must be listed here on purpose
    checked = []
    for stack, template in default_platform.templates():
        name = stack.stack_name
        for logical_id, resource in template["Resources"].items():
            if resource["Type"] != "AWS::Lambda::Function":
                continue
            handler = str(resource["Properties"].get("Handler", ""))
            if handler.split(".")[0] in services:
                timeout = resource["Properties"].get("Timeout", 3)  # Lambda's default
                assert timeout < RESERVATION_SECONDS, (name, logical_id, timeout)
                checked.append(handler)
    assert "fine_tuning_trigger.handler.lambda_handler" in checked
    assert any(h.startswith("app_backend.") for h in checked)


def rule_named(template: dict[str, Any], suffix: str) -> dict[str, Any]:
    (rule,) = [r for r in of_type(template, "AWS::Events::Rule") if r["Name"].endswith(suffix)]
    return rule


def test_the_stages_uploads_reach_the_trigger_through_a_fifo_queue(prod: dict[str, Any]) -> None:
    rule = rule_named(prod, "-tenant-uploads")
    pattern = rule["EventPattern"]
    assert pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["bucket"]["name"] == ["exco-lake-raw-222222222222-eu-west-1"]
    assert pattern["detail"]["object"]["key"] == [{"prefix": "retail/prod/tenant="}]
    (target,) = rule["Targets"]
    assert target["SqsParameters"] == {"MessageGroupId": "uploads"}
    queues = {q.get("FifoQueue"): q for q in of_type(prod, "AWS::SQS::Queue")}
    assert queues[True]["KmsMasterKeyId"]
    (mapping,) = of_type(prod, "AWS::Lambda::EventSourceMapping")
    assert (mapping["BatchSize"], mapping["FunctionResponseTypes"]) == (1, ["ReportBatchItemFailures"])


def logical_id_of(reference: dict[str, Any]) -> str:
    return str(reference["Fn::GetAtt"][0])


def test_every_event_target_of_the_trigger_path_has_its_own_encrypted_dead_letter_queue(
    prod: dict[str, Any],
) -> None:
    resources = prod["Resources"]
    for suffix in ("-tenant-uploads", "-fine-tuning-run-ended", "-tenant-review-requests"):
        rule = rule_named(prod, suffix)
        (target,) = rule["Targets"]
        queue = resources[logical_id_of(target["DeadLetterConfig"]["Arn"])]["Properties"]
        assert queue["KmsMasterKeyId"], suffix
        assert target["RetryPolicy"]["MaximumRetryAttempts"] == 185
    # A function's own failure on such an event (after Lambda's retries) lands in the rule's dead letters too.
    invoke_configs = {
        c["FunctionName"]["Ref"]: c["DestinationConfig"]["OnFailure"]["Destination"]
        for c in of_type(prod, "AWS::Lambda::EventInvokeConfig")
    }
    for suffix in ("-fine-tuning-run-ended", "-tenant-review-requests"):
        (target,) = rule_named(prod, suffix)["Targets"]
        function = logical_id_of(target["Arn"])
        assert invoke_configs[function] == target["DeadLetterConfig"]["Arn"], suffix
    # EventBridge may use the key for exactly these three rules' dead letters.
    (key,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::KMS::Key"]
    sources = [
        json.dumps(s["Condition"]["ArnEquals"]["aws:SourceArn"])
        for s in key["KeyPolicy"]["Statement"]
        if s.get("Sid", "").startswith("EventBridge") and s["Sid"].endswith("DeadLetters")
    ]
    assert len(sources) == 3
    assert all(":rule/exco-retail-prod-" in source for source in sources)


def test_the_cap_is_a_lease_table_shared_by_both_starters_and_freed_when_a_run_ends(
    prod: dict[str, Any],
) -> None:
    (table,) = of_type(prod, "AWS::DynamoDB::Table")
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert [k["AttributeName"] for k in table["KeySchema"]] == ["pk", "sk"]
    pattern = rule_named(prod, "-fine-tuning-run-ended")["EventPattern"]
    assert pattern["detail-type"] == ["SageMaker Model Building Pipeline Execution Status Change"]
    assert pattern["detail"]["currentPipelineExecutionStatus"] == ["Succeeded", "Failed", "Stopped"]
    assert json.dumps(pattern["detail"]["pipelineArn"]).endswith(
        ':pipeline/exco-retail-prod-fine-tuning"]]}]'
    )
    handlers = {
        f["Handler"]: f["Environment"]["Variables"]
        for f in of_type(prod, "AWS::Lambda::Function")
        if "Handler" in f and f["Handler"].startswith("fine_tuning_trigger.")
    }
    assert set(handlers) == {
        "fine_tuning_trigger.handler.lambda_handler",
        "fine_tuning_trigger.handler.release_handler",
    }
    assert all(v["RUN_LEASES_TABLE"] == {"Ref": next(iter(_tables(prod)))} for v in handlers.values())


def _tables(template: dict[str, Any]) -> list[str]:
    return [k for k, r in template["Resources"].items() if r["Type"] == "AWS::DynamoDB::Table"]


def test_reviewed_tenant_versions_go_to_the_review_queue(prod: dict[str, Any]) -> None:
    pattern = rule_named(prod, "-tenant-review-requests")["EventPattern"]
    assert pattern["detail-type"] == ["SageMaker Model Package State Change"]
    assert pattern["detail"] == {
        "ModelPackageGroupName": [
            "exco-retail-prod-tenants-product-qa",
            "exco-retail-prod-tenants-review-summarization",
        ],
        "ModelApprovalStatus": ["PendingManualApproval"],
    }
    (forwarder,) = [
        f
        for f in of_type(prod, "AWS::Lambda::Function")
        if f.get("Handler") == "tenant_review.handler.lambda_handler"
    ]
    assert "Fn::ImportValue" in json.dumps(forwarder["Environment"]["Variables"]["REVIEW_QUEUE_URL"])


def test_app_backend_gets_a_start_policy_for_exactly_this_pipeline_and_the_caps_leases(
    prod: dict[str, Any],
) -> None:
    (policy,) = of_type(prod, "AWS::IAM::ManagedPolicy")
    start, stop, leases, key = policy["PolicyDocument"]["Statement"]
    assert stop["Action"] == "sagemaker:StopPipelineExecution"
    assert start["Action"] == "sagemaker:StartPipelineExecution"
    assert start["Resource"]["Fn::Join"][1][-1].endswith(":pipeline/exco-retail-prod-fine-tuning")
    assert sorted(leases["Action"]) == [
        "dynamodb:DeleteItem",
        "dynamodb:PutItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
    ]
    assert leases["Resource"] == {"Fn::GetAtt": [_tables(prod)[0], "Arn"]}
    assert sorted(key["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]


def test_serving_accounts_may_read_business_unit_models_only(dev: dict[str, Any]) -> None:
    (policy,) = of_type(dev, "AWS::S3::BucketPolicy")
    readers = [
        s
        for s in policy["PolicyDocument"]["Statement"]
        if s.get("Sid") == "ServingDeployersReadBusinessUnitModels"
    ]
    assert len(readers) == 1
    assert readers[0]["Action"] == "s3:GetObject"
    assert json.dumps(readers[0]["Resource"]).endswith('/models/retail/business-unit/*"]]}')
    principals = json.dumps(readers[0]["Principal"])
    assert "333333333332" in principals and "333333333333" in principals
    (bucket,) = [
        b for b in of_type(dev, "AWS::S3::Bucket") if "BucketName" in b and "-ft-" in b["BucketName"]
    ]
    assert bucket["BucketName"] == "exco-retail-dev-ft-333333333331"


def test_prod_fine_tuning_bucket_admits_no_other_account(prod: dict[str, Any]) -> None:
    for policy in of_type(prod, "AWS::S3::BucketPolicy"):
        for statement in policy["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Allow":
                assert "333333333331" not in json.dumps(statement)


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


def test_the_stack_ships_the_wheels_and_lets_the_jobs_read_them(prod: dict[str, Any]) -> None:
    (pipeline,) = of_type(prod, "AWS::SageMaker::Pipeline")
    _, variables = pipeline["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    deps_uri = json.dumps(variables["DepsUri"])
    assert ".zip" in deps_uri
    key = deps_uri.split("/")[-1].split(".zip")[0] + ".zip"
    reads = [
        json.dumps(st["Resource"])
        for policy in of_type(prod, "AWS::IAM::Policy")
        for st in policy["PolicyDocument"]["Statement"]
        if st["Action"] == "s3:GetObject"
    ]
    assert any(key in r for r in reads)
