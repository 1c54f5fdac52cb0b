"""A tenant's fine-tuning run as the API reports it: the pipeline execution, then its registered version.

`SageMakerPipeline.status` reads the execution and, once it registered a version, that version's approval
status; the service adds what the deployer recorded. Statuses the tenant sees:
training -> evaluating -> awaiting_review (promotion `reviewed`) -> deploying -> serving, or failed with
the reason (held-out thresholds missed, review rejected, deployment failed, run stopped).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from common.fine_tuning_runs import REGISTER_STEPS, RunLeases, start_for_tenant

# The pipeline's steps (stacks/fine_tuning_pipeline.py) and what the tenant is told while each runs.
STEP_PHASES = {
    "Preprocess": "training",
    "FineTune": "training",
    "Evaluate": "evaluating",
    "CheckThresholds": "evaluating",
    "ChooseApproval": "evaluating",
    **dict.fromkeys(REGISTER_STEPS, "evaluating"),
    "BelowThresholds": "evaluating",
}
_PACKAGE_ARN = re.compile(r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:model-package/([^/]+)/(\d+)$")


def package_version(arn: str) -> tuple[str, int] | None:
    match = _PACKAGE_ARN.match(arn)
    return (match.group(1), int(match.group(2))) if match else None


class SageMakerPipeline:
    """The stage's tenant fine-tuning pipeline: started within the cap, described by execution ARN."""

    def __init__(self, leases: RunLeases, sagemaker: Any, *, raw_bucket: str, uploads_prefix: Any) -> None:
        self.leases = leases  # the cap's slots, shared with the upload trigger
        self.pipeline = leases.pipeline
        self._sagemaker = sagemaker
        self.raw_bucket = raw_bucket
        self._uploads_prefix = uploads_prefix  # tenant id -> key prefix of its uploads (lake layout)

    def resolve_use_case(self, use_case: str | None) -> str:
        """The use case a run trains (the business unit's default when None); UnknownUseCaseError else."""
        return self.pipeline.use_cases.resolve(use_case)

    def start(self, tenant_id: str, client_token: str, model_name: str, use_case: str) -> str:
        return start_for_tenant(
            self._sagemaker,
            self.leases,
            tenant_id=tenant_id,
            input_uri=f"s3://{self.raw_bucket}/{self._uploads_prefix(tenant_id)}",
            model_name=model_name,
            client_token=client_token,
            now=datetime.now(UTC),
            use_case=use_case,
        )

    def status(self, execution_arn: str) -> dict[str, Any]:
        execution = self._sagemaker.describe_pipeline_execution(PipelineExecutionArn=execution_arn)
        state = execution.get("PipelineExecutionStatus", "Unknown")
        steps = self._sagemaker.list_pipeline_execution_steps(PipelineExecutionArn=execution_arn).get(
            "PipelineExecutionSteps", []
        )
        if state in ("Failed", "Stopping", "Stopped"):
            reason = execution.get("FailureReason") or next(
                (s.get("FailureReason") for s in steps if s.get("FailureReason")),
                f"the run is {state.lower()}",
            )
            return {"status": "failed", "reason": str(reason)[:500]}
        if state == "Executing":
            running = next((s["StepName"] for s in steps if s.get("StepStatus") == "Executing"), "Preprocess")
            return {"status": STEP_PHASES.get(running, "training")}
        # One of the registration steps ran: the one the run's use case calls for.
        register = next((s for s in steps if s.get("StepName") in REGISTER_STEPS), None)
        arn = ((register or {}).get("Metadata") or {}).get("RegisterModel", {}).get("Arn")
        if state != "Succeeded" or not isinstance(arn, str):
            return {"status": "failed", "reason": f"the run ended ({state}) without registering a model"}
        package = self._sagemaker.describe_model_package(ModelPackageName=arn)
        return {
            "status": "registered",
            "model_package_arn": arn,
            "approval": package["ModelApprovalStatus"],
            # A reviewer's decision (review API): "rejected by <reviewer>: <reason>".
            "approval_description": package.get("ApprovalDescription"),
        }
