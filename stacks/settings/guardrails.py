"""Guardrail service settings; the model lives with the Lambda so both sides parse the same JSON."""

from guardrail.settings import (
    BedrockGuardrail,
    BedrockGuardrailDefinition,
    ContentFilter,
    DeniedTopic,
    DirectionSettings,
    GuardrailSettings,
    LayerSwitches,
    LocalRules,
)

__all__ = [
    "BedrockGuardrail",
    "BedrockGuardrailDefinition",
    "ContentFilter",
    "DeniedTopic",
    "DirectionSettings",
    "GuardrailSettings",
    "LayerSwitches",
    "LocalRules",
]
