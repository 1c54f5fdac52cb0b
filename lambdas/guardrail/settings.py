"""Guardrail settings: one model for the CDK app (synth) and the Lambda (run time).

The stack serialises `GuardrailSettings.model_dump_json()` into the function's environment and the
handler parses it back with the same class, so both sides can never disagree on the shape.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from guardrail.pii_types import COMPREHEND_PII_TYPES

Direction = Literal["input", "output"]
FailurePolicy = Literal["fail_closed", "fail_open"]
# "flag" only reports the entity and lets it through; only where the config says so (never a default).
PiiAction = Literal["block", "redact", "flag"]
FilterStrength = Literal["NONE", "LOW", "MEDIUM", "HIGH"]

# The enums below mirror the service models (botocore) so a typo fails at synth, not at run time.
TOXIC_LABELS = (
    "GRAPHIC",
    "HARASSMENT_OR_ABUSE",
    "HATE_SPEECH",
    "INSULT",
    "PROFANITY",
    "SEXUAL",
    "VIOLENCE_OR_THREAT",
)
ToxicLabel = Literal[
    "GRAPHIC", "HARASSMENT_OR_ABUSE", "HATE_SPEECH", "INSULT", "PROFANITY", "SEXUAL", "VIOLENCE_OR_THREAT"
]
LanguageCode = Literal["en", "es", "fr", "de", "it", "pt", "ar", "hi", "ja", "ko", "zh", "zh-TW"]
BedrockContentFilter = Literal["INSULTS", "HATE", "SEXUAL", "VIOLENCE", "MISCONDUCT", "PROMPT_ATTACK"]
BedrockPiiType = Literal[
    "ADDRESS",
    "AGE",
    "AWS_ACCESS_KEY",
    "AWS_SECRET_KEY",
    "CA_HEALTH_NUMBER",
    "CA_SOCIAL_INSURANCE_NUMBER",
    "CREDIT_DEBIT_CARD_CVV",
    "CREDIT_DEBIT_CARD_EXPIRY",
    "CREDIT_DEBIT_CARD_NUMBER",
    "DRIVER_ID",
    "EMAIL",
    "INTERNATIONAL_BANK_ACCOUNT_NUMBER",
    "IP_ADDRESS",
    "LICENSE_PLATE",
    "MAC_ADDRESS",
    "NAME",
    "PASSWORD",
    "PHONE",
    "PIN",
    "SWIFT_CODE",
    "UK_NATIONAL_HEALTH_SERVICE_NUMBER",
    "UK_NATIONAL_INSURANCE_NUMBER",
    "UK_UNIQUE_TAXPAYER_REFERENCE_NUMBER",
    "URL",
    "USERNAME",
    "US_BANK_ACCOUNT_NUMBER",
    "US_BANK_ROUTING_NUMBER",
    "US_INDIVIDUAL_TAX_IDENTIFICATION_NUMBER",
    "US_PASSPORT_NUMBER",
    "US_SOCIAL_SECURITY_NUMBER",
    "VEHICLE_IDENTIFICATION_NUMBER",
]
Score = Annotated[float, Field(ge=0.0, le=1.0)]
NonEmpty = Annotated[str, Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LayerSwitches(_Strict):
    """Which layers run for one direction. `bedrock` left out: on for input while a Bedrock guardrail is
    configured (by default one is, for its prompt-attack filter), off for output."""

    toxicity: bool = True
    pii: bool = True
    bedrock: bool = False
    local_rules: bool = True


class LocalRules(_Strict):
    deny_terms: tuple[NonEmpty, ...] = ()
    deny_patterns: tuple[NonEmpty, ...] = ()
    injection_heuristics: bool = True
    max_length: Annotated[int, Field(ge=1, le=1_000_000)] = 100_000
    pii_regex_fallback: bool = True
    # Region (ISO 3166 alpha-2) for phone numbers written without a country code; "" leaves phones out.
    phone_region: Annotated[str, Field(pattern=r"^([A-Z]{2})?$")] = "US"

    @field_validator("deny_patterns")
    @classmethod
    def _patterns_compile(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(
                    f"deny_patterns: {pattern!r} is not a valid regular expression ({err})"
                ) from err
        return patterns


class DirectionSettings(_Strict):
    layers: LayerSwitches = LayerSwitches()
    # Per-label minimum score that blocks; labels not listed never block on their own.
    toxicity_thresholds: dict[ToxicLabel, Score] = Field(
        default_factory=lambda: dict.fromkeys(TOXIC_LABELS, 0.5)  # type: ignore[arg-type]
    )
    # Comprehend entity type (see DetectPiiEntities) -> what to do when it is found. A detected type not
    # listed here is redacted (`pii_action`); "flag" lets it through and only where it is listed.
    pii_actions: dict[NonEmpty, PiiAction] = Field(
        default_factory=lambda: {  # type: ignore[arg-type]
            "EMAIL": "redact",
            "PHONE": "redact",
            "NAME": "redact",
            "ADDRESS": "redact",
            "CREDIT_DEBIT_NUMBER": "block",
            "SSN": "block",
            "AWS_SECRET_KEY": "block",
            "PASSWORD": "block",
        }
    )
    local_rules: LocalRules = LocalRules()
    layer_timeout_s: Annotated[float, Field(gt=0, le=30)] = 2.0
    failure_policy: FailurePolicy = "fail_closed"

    @field_validator("pii_actions")
    @classmethod
    def _known_pii_types(cls, actions: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(actions) - set(COMPREHEND_PII_TYPES))
        if unknown:
            raise ValueError(
                f"pii_actions: unknown entity types {unknown}; allowed: {sorted(COMPREHEND_PII_TYPES)}"
            )
        return actions

    def pii_action(self, entity_type: str) -> PiiAction:
        return self.pii_actions.get(entity_type, "redact")


class ContentFilter(_Strict):
    type: BedrockContentFilter
    input_strength: FilterStrength = "HIGH"
    output_strength: FilterStrength = "HIGH"

    @model_validator(mode="after")
    def _prompt_attack_is_input_only(self) -> ContentFilter:
        if self.type == "PROMPT_ATTACK" and self.output_strength != "NONE":
            raise ValueError("output_strength: PROMPT_ATTACK applies to input only; set it to NONE")
        return self


class DeniedTopic(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[0-9a-zA-Z\-_ !?.]+$")]
    definition: Annotated[str, Field(min_length=1, max_length=1000)]
    examples: tuple[Annotated[str, Field(min_length=1, max_length=100)], ...] = Field(
        default=(), max_length=5
    )


class BedrockGuardrailDefinition(_Strict):
    """A guardrail the stack provisions (AWS::Bedrock::Guardrail) from these values."""

    name: Annotated[str, Field(min_length=1, max_length=50, pattern=r"^[0-9a-zA-Z\-_]+$")] = (
        "llmops-guardrail"
    )
    content_filters: tuple[ContentFilter, ...] = (
        ContentFilter(type="HATE"),
        ContentFilter(type="INSULTS"),
        ContentFilter(type="SEXUAL"),
        ContentFilter(type="VIOLENCE"),
        ContentFilter(type="MISCONDUCT"),
        ContentFilter(type="PROMPT_ATTACK", output_strength="NONE"),
    )
    denied_topics: tuple[DeniedTopic, ...] = ()
    words: tuple[Annotated[str, Field(min_length=1, max_length=100)], ...] = ()
    managed_profanity_list: bool = True
    pii_actions: dict[BedrockPiiType, Literal["block", "anonymize"]] = Field(default_factory=dict)
    blocked_input_message: Annotated[str, Field(min_length=1, max_length=500)] = "This request was blocked."
    blocked_output_message: Annotated[str, Field(min_length=1, max_length=500)] = "This answer was blocked."


class BedrockGuardrail(_Strict):
    """Either an existing guardrail (id + version) or a definition the stack provisions."""

    guardrail_id: (
        Annotated[
            str,
            Field(
                pattern=r"^([a-z0-9]+|arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:guardrail/[a-z0-9]+)$"
            ),
        ]
        | None
    ) = None
    version: Annotated[str, Field(pattern=r"^([1-9][0-9]{0,7}|DRAFT)$")] | None = None
    definition: BedrockGuardrailDefinition | None = None

    @model_validator(mode="after")
    def _exactly_one_source(self) -> BedrockGuardrail:
        existing = self.guardrail_id is not None
        if existing == (self.definition is not None):
            raise ValueError(
                "bedrock_guardrail: give either guardrail_id + version or definition, not both or neither"
            )
        if existing and self.version is None:
            raise ValueError("bedrock_guardrail.version: required with guardrail_id (a number or DRAFT)")
        return self


class GuardrailSettings(_Strict):
    input: DirectionSettings = DirectionSettings()
    output: DirectionSettings = DirectionSettings()
    # Provisioned for every business unit by default: its PROMPT_ATTACK filter is the input's injection
    # detector (the local heuristics are the fallback). `null` (with input.layers.bedrock false) opts out.
    bedrock_guardrail: BedrockGuardrail | None = BedrockGuardrail(definition=BedrockGuardrailDefinition())
    language_code: LanguageCode = "en"
    # "lambda": callers invoke the guardrail function; "in_process": they import GuardrailEngine.
    packaging: Literal["lambda", "in_process"] = "lambda"
    # Hard request limit (UTF-8 bytes over all content items) above which the handler answers 400.
    max_request_bytes: Annotated[int, Field(ge=1, le=5_000_000)] = 1_000_000

    @model_validator(mode="after")
    def _bedrock_on_input_by_default(self) -> GuardrailSettings:
        layers = self.input.layers
        if self.bedrock_guardrail is not None and "bedrock" not in layers.model_fields_set:
            switched = layers.model_copy(update={"bedrock": True})
            switched.__pydantic_fields_set__.add("bedrock")
            # Frozen model: set the resolved default once, while validating.
            object.__setattr__(self, "input", self.input.model_copy(update={"layers": switched}))
        return self

    @model_validator(mode="after")
    def _bedrock_layer_needs_guardrail(self) -> GuardrailSettings:
        for direction in ("input", "output"):
            if getattr(self, direction).layers.bedrock and self.bedrock_guardrail is None:
                raise ValueError(
                    f"{direction}.layers.bedrock: needs bedrock_guardrail (an id + version or a definition); "
                    "set it false to run without one"
                )
        return self

    def for_direction(self, direction: Direction) -> DirectionSettings:
        return self.input if direction == "input" else self.output
