"""Who may call the prompt catalog: the caller map, the API's client accounts and the BU-side grant."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Template

from stacks.app_factory import create_app
from stacks.blocks.prompt_catalog_access import (
    CatalogAccess,
    api_client_accounts,
    caller_business_units,
    grant_prompt_catalog_invoke,
    prompt_catalog_invoke_arns,
)
from stacks.settings import ConfigError, PlatformConfig, load_config, parse_config
from stacks.settings.prompt_catalog import PromptCatalogSettings, PromptCatalogStackSettings

SANDBOX = "config/sandbox.yaml"
DEFAULT_BUSINESS_UNIT_ACCOUNTS = [f"{digit * 11}{stage}" for digit in "34" for stage in "123"]


def sandbox_with(business_units: list[str], prefix: str = "exsb") -> PlatformConfig:
    raw: dict[str, Any] = load_config(SANDBOX).model_dump(mode="json", by_alias=True)
    raw["organization"]["prefix"] = prefix
    raw["business_units"] = [
        {"name": name, "cost_center": "CC-1", "use_cases": ["qa"]} for name in business_units
    ]
    return parse_config(raw)


def test_multi_account_maps_every_role_of_a_units_three_accounts(default_config: PlatformConfig) -> None:
    assert caller_business_units(default_config) == {
        "retail": [f"arn:aws:sts::33333333333{i}:assumed-role/" for i in (1, 2, 3)],
        "finance": [f"arn:aws:sts::44444444444{i}:assumed-role/" for i in (1, 2, 3)],
    }


def test_sandbox_tells_units_apart_by_role_name_prefix(sandbox_config: PlatformConfig) -> None:
    assert caller_business_units(sandbox_config) == {
        "retail": ["arn:aws:sts::555555555555:assumed-role/exsb-retail-"],
        "finance": ["arn:aws:sts::555555555555:assumed-role/exsb-finance-"],
    }


@pytest.mark.parametrize(
    ("names", "field", "clash"),
    [
        (["retail", "retail-eu"], "business_units[0].name", "retail-eu"),
        (["data", "retail"], "business_units[0].name", "data-lake"),
        (["retail", "tooling"], "business_units[1].name", "tooling"),
        (["prompt"], "business_units[0].name", "prompt-catalog"),
    ],
)
def test_sandbox_refuses_units_whose_role_prefixes_overlap(names: list[str], field: str, clash: str) -> None:
    # the loader reports reserved names first, as one line of its ConfigError
    with pytest.raises(ValueError, match=rf"(?m)^(  - )?{re.escape(field)}: .*{re.escape(clash)}"):
        caller_business_units(sandbox_with(names))


def test_sandbox_refuses_role_prefixes_cloudformation_would_cut() -> None:
    # "exsb-" + 16 + "-" = 22 characters fits; a 10-character org prefix pushes it to 28.
    assert caller_business_units(sandbox_with(["customer-service"]))
    with pytest.raises(ValueError, match=r"^business_units\[0\]\.name: .*25 characters"):
        caller_business_units(sandbox_with(["customer-service"], prefix="examplecor"))


def test_api_admits_exactly_the_business_unit_accounts(
    default_config: PlatformConfig, sandbox_config: PlatformConfig
) -> None:
    assert api_client_accounts(default_config) == DEFAULT_BUSINESS_UNIT_ACCOUNTS
    assert api_client_accounts(sandbox_config) == ["555555555555"]


def test_read_access_reaches_gets_and_renders_only(default_config: PlatformConfig) -> None:
    base = "arn:aws:execute-api:eu-west-1:111111111111:*/prompt-catalog"
    assert prompt_catalog_invoke_arns(default_config) == [
        f"{base}/GET/*",
        f"{base}/POST/prompts/*/render",
        f"{base}/POST/chains/*/render",
        f"{base}/POST/datasets/*/render",
    ]
    assert prompt_catalog_invoke_arns(default_config, CatalogAccess.READ_WRITE) == [f"{base}/*"]


def test_grant_adds_invoke_to_the_business_unit_role(default_config: PlatformConfig) -> None:
    stack = Stack(create_app(), "BusinessUnitSide")
    role = iam.Role(stack, "App", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    grant_prompt_catalog_invoke(role, default_config)
    (policy,) = Template.from_stack(stack).find_resources("AWS::IAM::Policy").values()
    assert policy["Properties"]["PolicyDocument"]["Statement"] == [
        {
            "Action": "execute-api:Invoke",
            "Effect": "Allow",
            "Resource": sorted(prompt_catalog_invoke_arns(default_config)),
        }
    ]


def test_runtime_settings_leave_out_the_stack_only_keys() -> None:
    settings = PromptCatalogStackSettings(api_rate_limit=5, max_chain_steps=7)
    runtime = settings.runtime()
    assert type(runtime) is PromptCatalogSettings
    assert runtime == PromptCatalogSettings(max_chain_steps=7)


def test_config_section_defaults_and_names_bad_fields() -> None:
    raw: dict[str, Any] = load_config().model_dump(mode="json", by_alias=True)
    del raw["prompt_catalog"]
    assert parse_config(raw).prompt_catalog == PromptCatalogStackSettings()
    raw["prompt_catalog"] = {"api_rate_limit": 0}
    with pytest.raises(ConfigError, match=r"prompt_catalog\.api_rate_limit"):
        parse_config(raw)
