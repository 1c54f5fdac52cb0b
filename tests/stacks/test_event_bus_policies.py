"""cdk-nag's EVB1 (an event bus policy open to every principal needs a condition), over the templates.

The default-bus policies are plain `AWS::Events::EventBusPolicy` resources (stacks/blocks/event_bus_policy.py),
which cdk-nag's rule does not visit; this test makes the same check, stricter: a named account, a condition."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import SynthesizedPlatform
from tests.stacks.policy_helpers import principal_accounts


def bus_policies(platform: SynthesizedPlatform) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (stack.stack_name, logical_id): resource["Properties"]
        for stack, template in platform.templates()
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Events::EventBusPolicy"
    }


def is_open(principal: Any) -> bool:
    if principal == "*":
        return True
    aws = principal.get("AWS") if isinstance(principal, dict) else None
    return aws == "*" or (isinstance(aws, list) and "*" in aws)


@pytest.mark.parametrize("platform_fixture", ["default_platform", "sandbox_platform"])
def test_no_event_bus_policy_is_open_and_each_names_one_account_with_conditions(
    platform_fixture: str, request: pytest.FixtureRequest
) -> None:
    platform: SynthesizedPlatform = request.getfixturevalue(platform_fixture)
    policies = bus_policies(platform)
    for where, properties in policies.items():
        assert "Principal" not in properties and "Condition" not in properties, where  # the deprecated form
        statement = properties["Statement"]
        assert statement["Effect"] == "Allow" and not is_open(statement["Principal"]), where
        assert len(principal_accounts(statement)) == 1, where
        assert statement["Condition"]["StringEquals"]["events:source"], where
        assert statement["Sid"] == properties["StatementId"] and properties["EventBusName"] == "default"
    if platform_fixture == "default_platform":
        # registry events into every preprod/prod account, tenant uploads into every fine-tuning stage
        assert len(policies) >= 4


def test_the_check_catches_an_open_statement() -> None:
    assert is_open("*") and is_open({"AWS": "*"}) and is_open({"AWS": ["111111111111", "*"]})
    assert not is_open({"AWS": "arn:aws:iam::111111111111:root"})
