"""Issue 16 item 2: the prod deployment moves prod prompt aliases. Over the synthesized default platform:

1. the prod pipeline has one `PromptRelease-<bu>` step per business unit, after that unit's prod stacks,
   running tools/release_prompts.py with the unit's prod release role and the catalog stack's name;
2. the step's role may assume exactly that release role (no other `sts:AssumeRole`), and read only the
   catalog stack's outputs;
3. the prod release role (the unit's prod application template) trusts exactly that step's role: not
   another unit's step, not a role of the prod account, not the preprod gate caller;
4. dev and preprod pipelines have no release step, and their release roles keep their own account's trust.
"""

from __future__ import annotations

from typing import Any

from stacks.blocks.prompt_catalog_access import prompt_release_caller_role_name, prompt_release_role_name
from stacks.blocks.prompt_release_step import RELEASE_MANIFEST, RELEASE_MODULE
from tests.conftest import SynthesizedPlatform
from tests.stacks.policy_eval import Request, as_list, decide, resolve, wildcard_match
from tests.stacks.policy_helpers import resources_of_type
from tests.stacks.test_pipelines import wave_stages
from tests.stacks.test_prompt_catalog_stack import DEFAULT_STACK
from tests.stacks.test_prompt_release_roles import release_role
from tools.release_prompts import load_manifest

PIPELINE = "exco-prod-pipeline"


def role_statements(template: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    """Identity statements of every policy attached to `role_id` (inline policies and AWS::IAM::Policy)."""
    statements: list[dict[str, Any]] = []
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::IAM::Policy" and {"Ref": role_id} in resource["Properties"].get(
            "Roles", []
        ):
            statements += as_list(resource["Properties"]["PolicyDocument"]["Statement"])
    for policy in template["Resources"][role_id]["Properties"].get("Policies", []):
        statements += as_list(policy["PolicyDocument"]["Statement"])
    return [resolve(s, template) for s in statements]


def env_of(project: dict[str, Any]) -> dict[str, Any]:
    return {v["Name"]: v["Value"] for v in project["Properties"]["Environment"]["EnvironmentVariables"]}


def trust_decision(template: dict[str, Any], role: dict[str, Any], account: str, principal_arn: str) -> str:
    statements = resolve(role["Properties"]["AssumeRolePolicyDocument"]["Statement"], template)
    request = Request(account, "sts:AssumeRole", "", {"aws:PrincipalArn": principal_arn})
    return decide(statements, request)


def test_the_prod_wave_releases_each_units_prompts_after_its_deployment(
    default_platform: SynthesizedPlatform,
):
    config = default_platform.config
    template = default_platform.template(PIPELINE)
    (wave,) = wave_stages(template, "prod")
    actions = {a["Name"]: a for a in wave["Actions"]}
    projects = resources_of_type(template, "AWS::CodeBuild::Project")
    releases = {
        env_of(p)["BUSINESS_UNIT"]: p
        for p in projects.values()
        if RELEASE_MODULE in p["Properties"]["Source"]["BuildSpec"]
    }
    assert set(releases) == {bu.name for bu in config.business_units}
    catalog_stack = default_platform.template(DEFAULT_STACK)  # the name the step reads the URL from exists
    assert catalog_stack["Resources"]
    for environment in (e for e in config.environments() if e.stage.value == "prod"):
        bu = environment.business_unit.name
        own_last = max(a["RunOrder"] for n, a in actions.items() if n.startswith(f"{bu}-prod.exco-"))
        assert actions[f"{bu}-prod.PromptRelease-{bu}"]["RunOrder"] > own_last
        env = env_of(releases[bu])
        assert (
            env["RELEASE_ROLE_ARN"]
            == f"arn:aws:iam::{environment.account}:role/{prompt_release_role_name(environment)}"
        )
        assert env["CATALOG_STACK"] == DEFAULT_STACK
        assert env["AWS_REGION"] == config.home_region
        assert env["RELEASE_MANIFEST"] == RELEASE_MANIFEST
        # The manifest the step reads is in the repository and parses.
        load_manifest(default_platform_root() / RELEASE_MANIFEST)


def default_platform_root():
    from stacks.settings.loader import REPO_ROOT

    return REPO_ROOT


def test_the_step_role_assumes_exactly_its_units_prod_release_role(default_platform: SynthesizedPlatform):
    config = default_platform.config
    template = default_platform.template(PIPELINE)
    roles = resources_of_type(template, "AWS::IAM::Role")
    projects = resources_of_type(template, "AWS::CodeBuild::Project")
    prod = [e for e in config.environments() if e.stage.value == "prod"]
    release_arns = {f"arn:aws:iam::{e.account}:role/{prompt_release_role_name(e)}" for e in prod}
    for environment in prod:
        name = prompt_release_caller_role_name(environment)
        ((role_id, _),) = [(i, r) for i, r in roles.items() if r["Properties"].get("RoleName") == name]
        (project,) = [
            p for p in projects.values() if p["Properties"]["ServiceRole"] == {"Fn::GetAtt": [role_id, "Arn"]}
        ]
        assert env_of(project)["BUSINESS_UNIT"] == environment.business_unit.name
        statements = role_statements(template, role_id)
        own = f"arn:aws:iam::{environment.account}:role/{prompt_release_role_name(environment)}"
        assumable = {
            r
            for s in statements
            if s["Effect"] == "Allow"
            and any(wildcard_match(a, "sts:AssumeRole") for a in as_list(s["Action"]))
            for r in as_list(s["Resource"])
        }
        assert assumable == {own}
        for other in release_arns - {own}:
            assert not any(wildcard_match(r, other) for r in assumable)
        describe = {
            r
            for s in statements
            if "cloudformation:DescribeStacks" in as_list(s["Action"])
            for r in as_list(s["Resource"])
        }
        assert describe == {
            f"arn:aws:cloudformation:{config.home_region}:{config.tooling_account}:stack/{DEFAULT_STACK}/*"
        }


def test_the_prod_release_role_trusts_exactly_the_step_role(default_platform: SynthesizedPlatform):
    config = default_platform.config
    tooling = config.tooling_account
    prod = [e for e in config.environments() if e.stage.value == "prod"]
    callers = {
        e.business_unit.name: f"arn:aws:iam::{tooling}:role/{prompt_release_caller_role_name(e)}"
        for e in prod
    }
    for environment in prod:
        template = default_platform.template(f"{environment.name}-application")
        _, role = release_role(template)
        own = callers[environment.business_unit.name]
        assert trust_decision(template, role, tooling, own) == "allow"
        for other in set(callers.values()) - {own}:
            assert trust_decision(template, role, tooling, other) == "implicit"
        gate_caller = (
            f"arn:aws:iam::{tooling}:role/exco-pipeline-{environment.business_unit.name}-preprod-gate-caller"
        )
        assert trust_decision(template, role, tooling, gate_caller) == "implicit"
        # A role of the prod account itself (a workstation, the backend) no longer moves prod.
        admin = f"arn:aws:iam::{environment.account}:role/Admin"
        assert trust_decision(template, role, environment.account, admin) == "implicit"


def test_only_prod_pipelines_release_and_other_stages_keep_their_account_trust(
    default_platform: SynthesizedPlatform,
):
    config = default_platform.config
    for stage in ("dev", "preprod"):
        template = default_platform.template(f"exco-{stage}-pipeline")
        projects = resources_of_type(template, "AWS::CodeBuild::Project").values()
        assert not [p for p in projects if RELEASE_MODULE in p["Properties"]["Source"]["BuildSpec"]]
        assert not [
            r
            for r in resources_of_type(template, "AWS::IAM::Role").values()
            if str(r["Properties"].get("RoleName", "")).endswith("-release-caller")
        ]
    for environment in (e for e in config.environments() if e.stage.value != "prod"):
        template = default_platform.template(f"{environment.name}-application")
        _, role = release_role(template)
        engineer = f"arn:aws:iam::{environment.account}:role/PromptEngineer"
        assert trust_decision(template, role, environment.account, engineer) == "allow"
        assert trust_decision(template, role, config.tooling_account, engineer) == "implicit"
