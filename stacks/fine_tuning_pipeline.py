"""The fine-tuning SageMaker Pipeline definition, written as plain dicts (pipeline definition schema 2020-12-01).

preprocess (CPU processing: tenant JSON lines -> train / validation / held-out) -> fine-tune (LoRA on a GPU
training instance, optional managed spot with checkpoints) -> evaluate (GPU processing: the evaluation
engine's text metrics on the held-out split, written as a property file) -> condition (every configured
threshold met) -> register (with the evaluation report as model quality metrics) or fail.

The registry status is fixed by the definition, never by a parameter a caller could set: a business-unit
run registers PendingManualApproval; a tenant run registers Approved only when its `UseCase` is one whose
promotion policy is `automatic` (a Condition step, ChooseApproval), else PendingManualApproval.

Two kinds share the definition (`kind`): a tenant run (parameter TenantId; outputs under
`<bu>/tenant=<id>/`; registered in its stage's own tenant group with TenantId and ModelName in the package
metadata) and a business-unit run (outputs under `<bu>/business-unit/`; registered in the central registry).
Both record the artifact's SHA-256 (from the evaluation report) as `ArtifactSha256`, which the deployer
checks before it serves the copy.

Values only known at deploy time (role, bucket, key, subnets, security group, code location) are
`${Name}` placeholders; the stack fills them with `Fn::Sub`. Run-time values are pipeline parameters.
No SageMaker SDK is needed (see docs/fine-tuning.md for why).
"""

from __future__ import annotations

from typing import Any, Literal

from common.fine_tuning_runs import REGISTER_STEPS
from stacks.settings.fine_tuning import FineTuningSettings

SCHEMA_VERSION = "2020-12-01"
CODE_DIR = "/opt/ml/processing/input/code"
REPORT_FILE = "evaluation.json"
Kind = Literal["tenant", "business_unit"]
DEFAULT_MODEL_NAME = "personal"
# Placeholders the stack substitutes (Fn::Sub).
PLACEHOLDERS = (
    "RoleArn",
    "Bucket",
    "KmsKeyArn",
    "SecurityGroup",
    "CodeUri",
    "Image",
    "ServingImage",
    "RegistryArnPrefix",
    "DepsUri",
)
DEPS_DIR = "/opt/ml/processing/input/deps"


def get(path: str) -> dict[str, str]:
    return {"Get": path}


def join(*values: Any, on: str = "") -> dict[str, Any]:
    return {"Std:Join": {"On": on, "Values": list(values)}}


def _s3(*parts: Any) -> dict[str, Any]:
    return join("s3://${Bucket}/", *parts)


def _owner(kind: Kind) -> list[Any]:
    # Tenant runs write under tenant=<id>/, business-unit runs under business-unit/.
    if kind == "tenant":
        return ["/tenant=", get("Parameters.TenantId")]
    return ["/business-unit"]


def _run_prefix(stage: str, kind: Kind) -> dict[str, Any]:
    # Every output lands under <bu>/<owner>/<execution id>/<stage>/ of the fine-tuning bucket.
    return _s3(
        get("Parameters.BusinessUnit"),
        *_owner(kind),
        "/",
        get("Execution.PipelineExecutionId"),
        f"/{stage}",
    )


def _network(subnet_count: int) -> dict[str, Any]:
    return {
        "EnableNetworkIsolation": True,
        "VpcConfig": {
            "SecurityGroupIds": ["${SecurityGroup}"],
            "Subnets": [f"${{Subnet{i}}}" for i in range(subnet_count)],
        },
    }


def _processing(
    name: str,
    script: str,
    instance_type: str,
    inputs: list[dict[str, Any]],
    outputs: list[str],
    settings: FineTuningSettings,
    subnet_count: int,
    env: dict[str, Any],
    kind: Kind,
    *,
    deps: bool = False,
) -> dict[str, Any]:
    network = _network(subnet_count)
    # The code arrives as the stack's zipped asset; a job that imports libraries the image lacks also
    # gets the wheels asset and installs them offline (network isolation) before its script runs.
    setup = f"cd /tmp && python3 -m zipfile -e {CODE_DIR}/*.zip code"
    if deps:
        setup += (
            f" && python3 -m zipfile -e {DEPS_DIR}/*.zip deps"
            " && python3 -m pip install --quiet --no-index --find-links deps/wheels -r deps/job-requirements.txt"
        )
    deps_input = [_input("deps", "${DepsUri}")] if deps else []
    return {
        "Name": name,
        "Type": "Processing",
        "Arguments": {
            "ProcessingResources": {
                "ClusterConfig": {
                    "InstanceType": instance_type,
                    "InstanceCount": 1,
                    "VolumeSizeInGB": settings.volume_size_gb,
                    "VolumeKmsKeyId": "${KmsKeyArn}",
                }
            },
            "AppSpecification": {
                "ImageUri": "${Image}",
                "ContainerEntrypoint": [
                    "bash",
                    "-c",
                    f"{setup} && PYTHONPATH=/tmp/code python3 -m fine_tuning_jobs.{script}",
                ],
            },
            "RoleArn": "${RoleArn}",
            "NetworkConfig": {
                "EnableNetworkIsolation": network["EnableNetworkIsolation"],
                "EnableInterContainerTrafficEncryption": True,
                "VpcConfig": network["VpcConfig"],
            },
            "StoppingCondition": {"MaxRuntimeInSeconds": settings.max_runtime_hours * 3600},
            "Environment": env,
            "ProcessingInputs": [
                {
                    "InputName": "code",
                    "S3Input": {
                        "S3Uri": "${CodeUri}",
                        "LocalPath": CODE_DIR,
                        "S3DataType": "S3Prefix",
                        "S3InputMode": "File",
                    },
                },
                *deps_input,
                *inputs,
            ],
            "ProcessingOutputConfig": {
                "KmsKeyId": "${KmsKeyArn}",
                "Outputs": [
                    {
                        "OutputName": output,
                        "S3Output": {
                            "S3Uri": _run_prefix(f"{name.lower()}/{output}", kind),
                            "LocalPath": f"/opt/ml/processing/output/{output}",
                            "S3UploadMode": "EndOfJob",
                        },
                    }
                    for output in outputs
                ],
            },
        },
    }


def _input(name: str, uri: Any) -> dict[str, Any]:
    return {
        "InputName": name,
        "S3Input": {
            "S3Uri": uri,
            "LocalPath": f"/opt/ml/processing/input/{name}",
            "S3DataType": "S3Prefix",
            "S3InputMode": "File",
        },
    }


def _preprocess_output(name: str) -> dict[str, str]:
    return get(f"Steps.Preprocess.ProcessingOutputConfig.Outputs['{name}'].S3Output.S3Uri")


def _training(settings: FineTuningSettings, subnet_count: int, kind: Kind) -> dict[str, Any]:
    lora = settings.lora
    channel = {"S3DataType": "S3Prefix", "S3DataDistributionType": "FullyReplicated"}
    arguments: dict[str, Any] = {
        "AlgorithmSpecification": {
            "TrainingImage": "${Image}",
            "TrainingInputMode": "File",
            "ContainerEntrypoint": [
                "bash",
                "-c",
                "cd /tmp && python3 -m zipfile -e /opt/ml/input/data/code/*.zip code && PYTHONPATH=/tmp/code python3 -m fine_tuning_jobs.train",
            ],
        },
        "RoleArn": "${RoleArn}",
        "HyperParameters": {
            "lora_rank": str(lora.rank),
            "lora_alpha": str(lora.alpha),
            "lora_dropout": str(lora.dropout),
            "epochs": str(lora.epochs),
            "learning_rate": str(lora.learning_rate),
            "early_stopping_patience": str(lora.early_stopping_patience),
        },
        "InputDataConfig": [
            {"ChannelName": "code", "DataSource": {"S3DataSource": {**channel, "S3Uri": "${CodeUri}"}}},
            {
                "ChannelName": "base_model",
                "DataSource": {"S3DataSource": {**channel, "S3Uri": get("Parameters.BaseModelUri")}},
            },
            {
                "ChannelName": "train",
                "DataSource": {"S3DataSource": {**channel, "S3Uri": _preprocess_output("train")}},
            },
            {
                "ChannelName": "validation",
                "DataSource": {"S3DataSource": {**channel, "S3Uri": _preprocess_output("validation")}},
            },
        ],
        "OutputDataConfig": {
            "S3OutputPath": _s3("models/", get("Parameters.BusinessUnit"), *_owner(kind)),
            "KmsKeyId": "${KmsKeyArn}",
        },
        "ResourceConfig": {
            "InstanceType": settings.training_instance_type,
            "InstanceCount": settings.training_instance_count,
            "VolumeSizeInGB": settings.volume_size_gb,
            "VolumeKmsKeyId": "${KmsKeyArn}",
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": settings.max_runtime_hours * 3600},
        "EnableInterContainerTrafficEncryption": True,
        **_network(subnet_count),
    }
    if settings.use_spot:
        arguments["EnableManagedSpotTraining"] = True
        arguments["StoppingCondition"]["MaxWaitTimeInSeconds"] = settings.max_wait_hours * 3600
        arguments["CheckpointConfig"] = {
            "S3Uri": _run_prefix("checkpoints", kind),
            "LocalPath": "/opt/ml/checkpoints",
        }
    return {"Name": "FineTune", "Type": "Training", "Arguments": arguments}


def _condition(settings: FineTuningSettings, register: dict[str, Any], kind: Kind) -> dict[str, Any]:
    conditions = [
        {
            "Type": "GreaterThanOrEqualTo",
            "LeftValue": {
                "Std:JsonGet": {
                    "PropertyFile": get("Steps.Evaluate.PropertyFiles.EvaluationReport"),
                    "Path": f"metrics.{metric}.value",
                }
            },
            "RightValue": get(f"Parameters.Min_{metric}"),
        }
        for metric in sorted(settings.thresholds)
    ]
    fail = {
        "Name": "BelowThresholds",
        "Type": "Fail",
        "Arguments": {
            "ErrorMessage": join(
                "Held-out metrics below the thresholds for ",
                get("Parameters.TenantId") if kind == "tenant" else get("Parameters.BusinessUnit"),
            )
        },
    }
    return {
        "Name": "CheckThresholds",
        "Type": "Condition",
        "Arguments": {"Conditions": conditions, "IfSteps": [register], "ElseSteps": [fail]},
    }


def _report_value(path: str) -> dict[str, Any]:
    return {
        "Std:JsonGet": {"PropertyFile": get("Steps.Evaluate.PropertyFiles.EvaluationReport"), "Path": path}
    }


def _register(kind: Kind, name: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "BusinessUnit": get("Parameters.BusinessUnit"),
        "Stage": get("Parameters.Stage"),
        "ArtifactSha256": _report_value("artifact.sha256"),
    }
    if kind == "tenant":
        metadata |= {"TenantId": get("Parameters.TenantId"), "ModelName": get("Parameters.ModelName")}
    owner = join("tenant ", get("Parameters.TenantId")) if kind == "tenant" else "the business unit"
    return {
        "Name": name,
        "Type": "RegisterModel",
        "Arguments": {
            # An ARN, not a name: a business unit's group lives in the tooling account (cross-account
            # registration); a tenant's group lives in this stage's account.
            "ModelPackageGroupName": join("${RegistryArnPrefix}", get("Parameters.UseCase")),
            "ModelPackageDescription": join("LoRA fine-tune for ", owner),
            "ModelApprovalStatus": REGISTER_STEPS[name],
            "InferenceSpecification": {
                "Containers": [
                    {
                        "Image": "${ServingImage}",
                        "ModelDataUrl": get("Steps.FineTune.ModelArtifacts.S3ModelArtifacts"),
                    }
                ],
                "SupportedContentTypes": ["application/json"],
                "SupportedResponseMIMETypes": ["application/json"],
            },
            "ModelMetrics": {
                "ModelQuality": {
                    "Statistics": {
                        "ContentType": "application/json",
                        "S3Uri": join(
                            get("Steps.Evaluate.ProcessingOutputConfig.Outputs['evaluation'].S3Output.S3Uri"),
                            f"/{REPORT_FILE}",
                        ),
                    }
                }
            },
            "CustomerMetadataProperties": metadata,
        },
    }


def _registration(settings: FineTuningSettings, use_cases: list[str], kind: Kind) -> dict[str, Any]:
    """The step that registers a version that passed the thresholds, with the status its kind and use case
    call for: a ChooseApproval condition on `UseCase` when some tenant use cases promote automatically."""
    step_for = {status: name for name, status in REGISTER_STEPS.items()}
    if kind != "tenant":  # business-unit versions always wait for the preprod gate and an approver
        return _register(kind, step_for[settings.approval_status])
    automatic = sorted(u for u in use_cases if settings.approval_status_for(u) == "Approved")
    approved, for_review = step_for["Approved"], step_for["PendingManualApproval"]
    if not automatic:
        return _register(kind, for_review)
    return {
        "Name": "ChooseApproval",
        "Type": "Condition",
        "Arguments": {
            # Any other value, including a use case added later without a policy, waits for review.
            "Conditions": [{"Type": "In", "QueryValue": get("Parameters.UseCase"), "Values": automatic}],
            "IfSteps": [_register(kind, approved)],
            "ElseSteps": [_register(kind, for_review)],
        },
    }


def pipeline_definition(
    settings: FineTuningSettings,
    *,
    business_unit: str,
    default_use_case: str,
    subnet_count: int,
    kind: Kind = "tenant",
    stage: str = "dev",
    use_cases: list[str] | None = None,
) -> dict[str, Any]:
    """`use_cases`: the business unit's use cases (default: only `default_use_case`)."""
    owner: list[dict[str, Any]] = (
        [
            {"Name": "TenantId", "Type": "String"},
            {"Name": "ModelName", "Type": "String", "DefaultValue": DEFAULT_MODEL_NAME},
        ]
        if kind == "tenant"
        else []
    )
    parameters: list[dict[str, Any]] = [
        *owner,
        {"Name": "InputDataUri", "Type": "String"},
        {"Name": "BusinessUnit", "Type": "String", "DefaultValue": business_unit},
        {"Name": "Stage", "Type": "String", "DefaultValue": stage},
        {"Name": "UseCase", "Type": "String", "DefaultValue": default_use_case},
        {
            "Name": "BaseModelUri",
            "Type": "String",
            "DefaultValue": f"s3://${{Bucket}}/{settings.base_model_prefix}",
        },
        {"Name": "HeldOutFraction", "Type": "Float", "DefaultValue": settings.held_out_fraction},
        *(
            {"Name": f"Min_{m}", "Type": "Float", "DefaultValue": v}
            for m, v in sorted(settings.thresholds.items())
        ),
    ]
    preprocess = _processing(
        "Preprocess",
        "preprocess",
        settings.processing_instance_type,
        [_input("data", get("Parameters.InputDataUri"))],
        ["train", "validation", "heldout"],
        settings,
        subnet_count,
        {
            "HELD_OUT_FRACTION": join(get("Parameters.HeldOutFraction")),
            **({"TENANT_ID": get("Parameters.TenantId")} if kind == "tenant" else {}),
        },
        kind,
    )
    evaluate = _processing(
        "Evaluate",
        "evaluate",
        settings.evaluation_instance_type,
        [
            _input("model", get("Steps.FineTune.ModelArtifacts.S3ModelArtifacts")),
            _input("base_model", get("Parameters.BaseModelUri")),
            _input("heldout", _preprocess_output("heldout")),
        ],
        ["evaluation"],
        settings,
        subnet_count,
        {
            "METRICS": ",".join(sorted(settings.thresholds)),
            "EVAL_BATCH_SIZE": str(settings.evaluation_batch_size),
        },
        kind,
        deps=True,
    )
    evaluate["PropertyFiles"] = [
        {"PropertyFileName": "EvaluationReport", "OutputName": "evaluation", "FilePath": REPORT_FILE}
    ]
    return {
        "Version": SCHEMA_VERSION,
        "Metadata": {},
        "Parameters": parameters,
        "Steps": [
            preprocess,
            _training(settings, subnet_count, kind),
            evaluate,
            _condition(settings, _registration(settings, use_cases or [default_use_case], kind), kind),
        ],
    }
