"""Evaluation engine settings; the model lives with the Lambda code so both sides parse the same JSON."""

from evaluation.settings import (
    CandidateModel,
    EvaluationSettings,
    GateThresholds,
    HumanReviewSettings,
    JudgeSettings,
    SelectionWeights,
)

__all__ = [
    "CandidateModel",
    "EvaluationSettings",
    "GateThresholds",
    "HumanReviewSettings",
    "JudgeSettings",
    "SelectionWeights",
]
