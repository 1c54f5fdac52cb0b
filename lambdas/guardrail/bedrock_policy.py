"""Map a `BedrockGuardrailDefinition` to AWS::Bedrock::Guardrail (CfnGuardrail) properties.

Plain dicts with the CloudFormation property names, so the stack is a thin wrapper:
`CfnGuardrail(self, "Guardrail", **cdk_keywords(guardrail_properties(definition)), kms_key_arn=...)`.
"""

from __future__ import annotations

from typing import Any

from guardrail.settings import BedrockGuardrailDefinition


def content_policy(definition: BedrockGuardrailDefinition) -> dict[str, Any] | None:
    if not definition.content_filters:
        return None
    return {
        "FiltersConfig": [
            {"Type": f.type, "InputStrength": f.input_strength, "OutputStrength": f.output_strength}
            for f in definition.content_filters
        ]
    }


def topic_policy(definition: BedrockGuardrailDefinition) -> dict[str, Any] | None:
    if not definition.denied_topics:
        return None
    topics = []
    for topic in definition.denied_topics:
        config: dict[str, Any] = {"Name": topic.name, "Definition": topic.definition, "Type": "DENY"}
        if topic.examples:
            config["Examples"] = list(topic.examples)
        topics.append(config)
    return {"TopicsConfig": topics}


def word_policy(definition: BedrockGuardrailDefinition) -> dict[str, Any] | None:
    policy: dict[str, Any] = {}
    if definition.words:
        policy["WordsConfig"] = [{"Text": word} for word in definition.words]
    if definition.managed_profanity_list:
        policy["ManagedWordListsConfig"] = [{"Type": "PROFANITY"}]
    return policy or None


def sensitive_information_policy(definition: BedrockGuardrailDefinition) -> dict[str, Any] | None:
    if not definition.pii_actions:
        return None
    return {
        "PiiEntitiesConfig": [
            {"Type": kind, "Action": "BLOCK" if action == "block" else "ANONYMIZE"}
            for kind, action in sorted(definition.pii_actions.items())
        ]
    }


def guardrail_properties(definition: BedrockGuardrailDefinition) -> dict[str, Any]:
    """CloudFormation properties of AWS::Bedrock::Guardrail (without KmsKeyArn and Tags)."""
    properties: dict[str, Any] = {
        "Name": definition.name,
        "BlockedInputMessaging": definition.blocked_input_message,
        "BlockedOutputsMessaging": definition.blocked_output_message,
        "ContentPolicyConfig": content_policy(definition),
        "TopicPolicyConfig": topic_policy(definition),
        "WordPolicyConfig": word_policy(definition),
        "SensitiveInformationPolicyConfig": sensitive_information_policy(definition),
    }
    return {key: value for key, value in properties.items() if value is not None}


def cdk_keywords(properties: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation property names -> what the Python L1 construct takes: snake_case keywords at the
    top, camelCase keys inside nested dicts (jsii reads those as the JavaScript struct names).
    `CfnGuardrail(scope, id, **cdk_keywords(guardrail_properties(definition)))`."""

    def camel(value: Any) -> Any:
        if isinstance(value, dict):
            return {key[:1].lower() + key[1:]: camel(item) for key, item in value.items()}
        if isinstance(value, list):
            return [camel(item) for item in value]
        return value

    return {_snake(key): camel(value) for key, value in properties.items()}


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name))
