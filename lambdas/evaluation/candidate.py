"""A per-run candidate: one model package version served in preprod, evaluated by the business-unit gate.

The consumer gate evaluates the configured candidates (`settings.candidates`); a business unit's own model
version exists only once the preprod deployer has served it, so the deployer names it in the run's input:

    {"gate": true, "run_id": ..., "use_case": ..., "candidate": {
        "model_package_arn": "arn:aws:sagemaker:<region>:<tooling>:model-package/<group>/<version>",
        "version": 3, "artifact_sha256": "<64 hex>", "endpoint_name": "<env>-serving",
        "inference_component": "<env>-serving-<digest>-v3"}}        (or "target_model" on a multi-model endpoint)

A run with a candidate scores that candidate only, on the same dataset (the use case's catalog dataset) and
gates it with the same thresholds (`settings.gate`) as the consumer gate.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.model_gateway import PayloadFormat
from evaluation.settings import CandidateModel

MODEL_PACKAGE_ARN = (
    r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:model-package/"
    r"(?P<group>[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62})/(?P<version>[1-9][0-9]{0,9})$"
)
ENDPOINT_NAME = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"


class RunCandidate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model_package_arn: Annotated[str, Field(pattern=MODEL_PACKAGE_ARN)]
    version: Annotated[int, Field(ge=1, strict=True)]
    artifact_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    endpoint_name: Annotated[str, Field(pattern=ENDPOINT_NAME)]
    inference_component: Annotated[str, Field(pattern=ENDPOINT_NAME)] | None = None
    target_model: (
        Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^[A-Za-z0-9._\-/]+$")] | None
    ) = None
    payload_format: PayloadFormat = "tgi"

    @model_validator(mode="after")
    def _one_route_and_matching_version(self) -> RunCandidate:
        if (self.inference_component is None) == (self.target_model is None):
            raise ValueError("inference_component: name exactly one of inference_component and target_model")
        if not self.model_package_arn.endswith(f"/{self.version}"):
            raise ValueError(f"version: {self.version} is not the version of {self.model_package_arn}")
        return self

    @property
    def group(self) -> str:
        return self.model_package_arn.rsplit("/", 2)[1]

    @property
    def name(self) -> str:
        """The candidate's name in results, the summary and the lake: `<group>-v<version>`, at most 64."""
        return f"{self.group[:52]}-v{self.version}"

    def as_model(self) -> CandidateModel:
        # Served in this stage: no per-token price (the endpoint's instances are the cost).
        return CandidateModel(
            name=self.name,
            provider="sagemaker",
            endpoint_name=self.endpoint_name,
            target_model=self.target_model,
            inference_component=self.inference_component,
            payload_format=self.payload_format,
        )
