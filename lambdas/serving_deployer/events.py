"""The events the deployer reacts to: the registry's "SageMaker Model Package State Change" and, in prod,
preprod's "Preprod Gate Passed" (a passing gate record that landed after the version's approval)."""

from __future__ import annotations

from typing import Any, Literal

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, ConfigDict, Field

ServedStatus = Literal["Approved", "Rejected", "PendingManualApproval"]


class PackageVersion(BaseModel):
    """Which version an event is about; the deployer describes it again (the event decides nothing)."""

    # The registry's event carries the whole model package description; only these fields matter here.
    model_config = ConfigDict(extra="ignore", frozen=True)

    ModelPackageGroupName: str = Field(min_length=1, max_length=63, pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
    ModelPackageVersion: int = Field(ge=1)
    ModelPackageArn: str = Field(pattern=r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:model-package/")


class ModelPackageDetail(PackageVersion):
    ModelApprovalStatus: ServedStatus
    InferenceSpecification: dict[str, Any] | None = None

    @property
    def artifact_url(self) -> str | None:
        containers = (self.InferenceSpecification or {}).get("Containers") or []
        url = containers[0].get("ModelDataUrl") if containers else None
        return url if isinstance(url, str) else None


class ModelPackageStateChange(EventBridgeModel):
    detail: ModelPackageDetail


class PreprodGatePassed(EventBridgeModel):
    detail: PackageVersion
