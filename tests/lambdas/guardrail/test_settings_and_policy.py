import pytest
from guardrail.bedrock_policy import guardrail_properties
from guardrail.settings import (
    BedrockGuardrail,
    BedrockGuardrailDefinition,
    ContentFilter,
    DeniedTopic,
    DirectionSettings,
    GuardrailSettings,
    LayerSwitches,
)
from pydantic import ValidationError

from stacks.settings.guardrails import GuardrailSettings as ReExported


def test_defaults_fail_closed_and_round_trip_through_json():
    settings = GuardrailSettings()
    assert settings.input.failure_policy == "fail_closed" and settings.output.failure_policy == "fail_closed"
    assert GuardrailSettings.model_validate_json(settings.model_dump_json()) == settings
    assert ReExported is GuardrailSettings


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"input": {"failure_policy": "maybe"}}, "failure_policy"),
        ({"input": {"toxicity_thresholds": {"RUDE": 0.5}}}, "RUDE"),
        ({"input": {"toxicity_thresholds": {"INSULT": 1.5}}}, "INSULT"),
        ({"input": {"pii_actions": {"SHOE_SIZE": "block"}}}, "SHOE_SIZE"),
        ({"input": {"local_rules": {"deny_patterns": ["(unclosed"]}}}, "deny_patterns"),
        ({"output": {"layers": {"bedrock": True}}, "bedrock_guardrail": None}, "output.layers.bedrock"),
        ({"input": {"layers": {"bedrock": True}}, "bedrock_guardrail": None}, "input.layers.bedrock"),
        ({"input": {"pii_actions": {"EMAIL": "ignore"}}}, "EMAIL"),
        ({"input": {"local_rules": {"phone_region": "usa"}}}, "phone_region"),
        ({"bedrock_guardrail": {"guardrail_id": "abc"}}, "version"),
        ({"bedrock_guardrail": {}}, "either guardrail_id"),
        ({"packaging": "container"}, "packaging"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_invalid_settings_name_the_field(payload, field):
    with pytest.raises(ValidationError) as err:
        GuardrailSettings.model_validate(payload)
    assert field in str(err.value)


def test_prompt_attack_filter_is_input_only():
    with pytest.raises(ValidationError, match="PROMPT_ATTACK"):
        ContentFilter(type="PROMPT_ATTACK")


DEFINITION = BedrockGuardrailDefinition(
    name="retail-guardrail",
    content_filters=(ContentFilter(type="HATE", input_strength="HIGH", output_strength="MEDIUM"),),
    denied_topics=(
        DeniedTopic(
            name="Investment advice", definition="Recommendations on securities.", examples=("Which stock?",)
        ),
    ),
    words=("acme-secret",),
    pii_actions={"EMAIL": "anonymize", "US_SOCIAL_SECURITY_NUMBER": "block"},
)


def test_definition_maps_to_cfn_guardrail_properties():
    assert guardrail_properties(DEFINITION) == {
        "Name": "retail-guardrail",
        "BlockedInputMessaging": "This request was blocked.",
        "BlockedOutputsMessaging": "This answer was blocked.",
        "ContentPolicyConfig": {
            "FiltersConfig": [{"Type": "HATE", "InputStrength": "HIGH", "OutputStrength": "MEDIUM"}]
        },
        "TopicPolicyConfig": {
            "TopicsConfig": [
                {
                    "Name": "Investment advice",
                    "Definition": "Recommendations on securities.",
                    "Type": "DENY",
                    "Examples": ["Which stock?"],
                }
            ]
        },
        "WordPolicyConfig": {
            "WordsConfig": [{"Text": "acme-secret"}],
            "ManagedWordListsConfig": [{"Type": "PROFANITY"}],
        },
        "SensitiveInformationPolicyConfig": {
            "PiiEntitiesConfig": [
                {"Type": "EMAIL", "Action": "ANONYMIZE"},
                {"Type": "US_SOCIAL_SECURITY_NUMBER", "Action": "BLOCK"},
            ]
        },
    }


def test_empty_policies_are_left_out():
    bare = BedrockGuardrailDefinition(content_filters=(), managed_profanity_list=False)
    assert set(guardrail_properties(bare)) == {"Name", "BlockedInputMessaging", "BlockedOutputsMessaging"}


def test_bedrock_layer_setting_with_existing_guardrail_is_valid():
    settings = GuardrailSettings(
        input=DirectionSettings(layers=LayerSwitches(bedrock=True)),
        bedrock_guardrail=BedrockGuardrail(guardrail_id="abc123", version="DRAFT"),
    )
    assert settings.for_direction("input").layers.bedrock
