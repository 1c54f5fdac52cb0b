"""Issue 16 item 2 across the synthesized templates: the catalog function lets only each business unit
stage's release role move that stage's alias, and that role lives in that stage's account, is assumable
only from there, and may PUT only its own stage's alias routes.

Hop by hop: release role (BU stage template) -> its identity policy allows PUT on its alias routes ->
the catalog function's ALIAS_MOVERS (catalog template) admits its session ARN for that alias only ->
the handler's check (prompt_catalog.access.AliasMovers) accepts it and refuses every other stage.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from prompt_catalog.access import AliasMovers, CallerMap
from prompt_catalog.errors import ForbiddenError

from tests.conftest import SynthesizedPlatform
from tests.stacks.policy_eval import resolve, wildcard_match
from tests.stacks.test_prompt_catalog_stack import DEFAULT_STACK, SANDBOX_STACK, function_env

STAGES = ("dev", "preprod", "prod")
API = "arn:aws:execute-api:{region}:{tooling}:a1b2c3/prompt-catalog"


def release_role(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    roles = {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::IAM::Role" and logical_id.startswith("PromptReleaseRole")
    }
    ((logical_id, role),) = roles.items()
    return logical_id, role


def identity_statements(template: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    return [
        statement
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::IAM::Policy"
        and {"Ref": role_id} in resource["Properties"].get("Roles", [])
        for statement in resolve(resource["Properties"]["PolicyDocument"]["Statement"], template)
    ]


def allows(statements: list[dict[str, Any]], action: str, resource: str) -> bool:
    return any(
        s["Effect"] == "Allow"
        and any(wildcard_match(a, action) for a in json_list(s["Action"]))
        and any(wildcard_match(r, resource) for r in json_list(s["Resource"]))
        for s in statements
    )


def json_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("platform_name", ["default_platform", "sandbox_platform"])
def test_each_stage_release_role_moves_its_own_alias_and_nothing_else(platform_name, request):
    platform: SynthesizedPlatform = request.getfixturevalue(platform_name)
    config = platform.config
    catalog_stack = DEFAULT_STACK if platform_name == "default_platform" else SANDBOX_STACK
    env = function_env(platform.template(catalog_stack))
    movers = AliasMovers.model_validate_json(env["ALIAS_MOVERS"])
    callers = CallerMap.model_validate_json(env["CALLER_BUSINESS_UNITS"])
    api = API.format(region=config.home_region, tooling=config.tooling_account)
    for environment in config.environments():
        bu, stage = environment.business_unit.name, environment.stage.value
        template = platform.template(f"{environment.name}-application")
        role_id, role = release_role(template)
        name = role["Properties"]["RoleName"]
        assert name == f"{environment.name}-prompt-release"
        # Hop 1: who may assume it: prod, only the prod pipeline's release step for this unit (issue 16
        # item 2, tests/stacks/test_prompt_release_step.py); dev and preprod, this stage's account only
        # (plus the stage's tags in a shared sandbox).
        (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        if stage == "prod":
            assert (
                resolve(trust["Principal"]["AWS"], template) == f"arn:aws:iam::{config.tooling_account}:root"
            )
            assert trust["Condition"] == {
                "ArnEquals": {
                    "aws:PrincipalArn": f"arn:aws:iam::{config.tooling_account}:role/"
                    f"{config.organization.prefix}-pipeline-{bu}-prod-release-caller"
                }
            }
        else:
            assert resolve(trust["Principal"]["AWS"], template) == f"arn:aws:iam::{environment.account}:root"
        if config.is_sandbox and stage != "prod":
            assert trust["Condition"] == {
                "StringEquals": {"aws:PrincipalTag/BusinessUnit": bu, "aws:PrincipalTag/Stage": stage}
            }
        # Hop 2: its own policy reaches PUT on its stage's alias routes, and no other stage's.
        statements = identity_statements(template, role_id)
        for kind in ("prompts", "chains", "datasets"):
            for other in STAGES:
                assert allows(statements, "execute-api:Invoke", f"{api}/PUT/{kind}/qa/aliases/{other}") == (
                    other == stage
                )
        assert not allows(statements, "execute-api:Invoke", f"{api}/POST/prompts/qa/versions")
        # Hop 3: the catalog maps its session to the business unit and lets it move exactly its alias.
        session = f"arn:aws:sts::{environment.account}:assumed-role/{name}/pipeline"
        assert callers.business_units_for(session) == [bu]
        for other in STAGES:
            if other == stage:
                movers.check(bu, other, session)
            else:
                with pytest.raises(ForbiddenError):
                    movers.check(bu, other, session)
        for other_bu in {b.name for b in config.business_units} - {bu}:
            with pytest.raises(ForbiddenError):
                movers.check(other_bu, stage, session)


def test_an_ordinary_role_of_the_prod_account_is_not_a_mover(default_platform: SynthesizedPlatform):
    env = function_env(default_platform.template(DEFAULT_STACK))
    movers = AliasMovers.model_validate_json(env["ALIAS_MOVERS"])
    config = default_platform.config
    retail = config.business_units[0]
    prod = next(e for e in config.environments() if e.business_unit == retail and e.stage.value == "prod")
    backend = f"arn:aws:sts::{prod.account}:assumed-role/{prod.name}-application-BackendRole-XYZ/fn"
    with pytest.raises(ForbiddenError):
        movers.check(retail.name, "prod", backend)
    # A name pattern plus account ids: about 80 bytes per business unit of Lambda's 4 KB of variables.
    assert len(env["ALIAS_MOVERS"]) <= 100 + 90 * len(config.business_units)
    assert json.loads(env["ALIAS_MOVERS"])["role"] == "exco-{business_unit}-{stage}-prompt-release"
