"""Turn configured candidates into model clients."""

from __future__ import annotations

from typing import Any

from common.model_gateway import BedrockConverseModel, ModelClient, SageMakerEndpointModel
from evaluation.settings import CandidateModel, EvaluationSettings


def build_model(candidate: CandidateModel, *, bedrock: Any = None, sagemaker: Any = None) -> ModelClient:
    if candidate.provider == "bedrock":
        assert candidate.model_id is not None  # the settings validator guarantees it
        return BedrockConverseModel(candidate.name, candidate.model_id, client=bedrock)
    assert candidate.endpoint_name is not None
    return SageMakerEndpointModel(
        candidate.name,
        candidate.endpoint_name,
        candidate.target_model,
        candidate.inference_component,
        candidate.payload_format,
        client=sagemaker,
    )


def build_candidates(settings: EvaluationSettings, **clients: Any) -> list[ModelClient]:
    return [build_model(c, **clients) for c in settings.candidates]


def build_judge(settings: EvaluationSettings, **clients: Any) -> ModelClient | None:
    return build_model(settings.judge.model, **clients) if settings.judge.model else None
