"""Onboarding: one more business unit in the config adds only its own resources; nothing else changes."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from stacks.settings import PlatformConfig, parse_config
from tests.conftest import REPO_ROOT, SynthesizedPlatform, synthesize
from tests.stacks.policy_helpers import flatten

NEW_BU = {
    "name": "legal",
    "cost_center": "CC-3001",
    "accounts": {"dev": "666666666661", "preprod": "666666666662", "prod": "666666666663"},
    "use_cases": ["contract-review"],
}
NEW_STACKS = {
    *(
        f"exco-legal-{stage}-{stack}"
        for stage in ("dev", "preprod", "prod")
        for stack in (
            "baseline",
            "guardrail",
            "evaluation",
            "application",
            "monitoring",
            "model-profiles",
            "model-usage",
        )
    ),
    *(f"exco-legal-{stage}-fine-tuning" for stage in ("dev", "preprod", "prod")),
    "exco-legal-preprod-serving",
    "exco-legal-prod-serving",
    "exco-legal-preprod-registry-events",
    "exco-legal-prod-registry-events",
}
# Shared resources whose policies gain the new business unit's statements (same logical id, more statements):
# bucket and key policies, and the Lake Formation location role that reads every business unit's prefixes.
SHARED_POLICY_HOLDERS = {
    "AWS::S3::BucketPolicy",
    "AWS::KMS::Key",
    "AWS::IAM::Policy",
    "AWS::ApiGateway::RestApi",
    "AWS::ApiGateway::Stage",  # points at the new deployment of the changed API
    "AWS::Lambda::Function",  # the prompt catalog's caller map (environment)
    "AWS::CloudTrail::Trail",  # the data lake's audit of <bu>/shared/ writes gains the new prefix
    "AWS::SQS::QueuePolicy",  # the lake's undelivered upload events queue admits the new forwarding rules
}


@pytest.fixture(scope="module")
def onboarded(tmp_path_factory: pytest.TempPathFactory) -> SynthesizedPlatform:
    raw = yaml.safe_load((REPO_ROOT / "config" / "platform.yaml").read_text())
    raw["business_units"].append(NEW_BU)
    config: PlatformConfig = parse_config(raw)
    return synthesize(config, tmp_path_factory.mktemp("onboarded-cdk-out"))


def resources(template: dict[str, Any]) -> dict[str, str]:
    # An API Gateway deployment's logical id hashes the API; a changed resource policy replaces it by design.
    return {
        logical_id: r["Type"]
        for logical_id, r in template["Resources"].items()
        if r["Type"] != "AWS::ApiGateway::Deployment"
    }


def test_only_the_new_business_units_stacks_appear(
    default_platform: SynthesizedPlatform, onboarded: SynthesizedPlatform
) -> None:
    before = {s.stack_name for s in default_platform.stacks()}
    after = {s.stack_name for s in onboarded.stacks()}
    assert after - before == NEW_STACKS
    assert before <= after


SHARED_STACKS = ("exco-tooling", "exco-data-lake", "exco-prompt-catalog")
PIPELINE_STACKS = ("exco-dev-pipeline", "exco-preprod-pipeline", "exco-prod-pipeline")


def test_every_existing_business_unit_stack_is_unchanged(
    default_platform: SynthesizedPlatform, onboarded: SynthesizedPlatform
) -> None:
    compared = 0
    for stack in default_platform.stacks():
        if stack.stack_name in SHARED_STACKS or stack.stack_name in PIPELINE_STACKS:
            continue
        assert onboarded.template(stack.stack_name) == stack.template, stack.stack_name
        compared += 1
    assert compared == len(default_platform.stacks()) - len(SHARED_STACKS) - len(PIPELINE_STACKS)
    # main's shared wave deploys the shared stacks, whose content changes but not their set nor their actions
    shared_before = pipeline_actions(default_platform.template("exco-prod-pipeline"))
    shared_after = pipeline_actions(onboarded.template("exco-prod-pipeline"))
    shared_wave = {key: action for key, action in shared_before.items() if key[0] == "shared"}
    assert {key for key in shared_after if key[0] == "shared"} == set(shared_wave) != set()
    assert all(shared_after[key] == action for key, action in shared_wave.items())


def pipeline_actions(template: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(CodePipeline stage, action name) -> action, over every CodePipeline stage (waves included).

    Keyed by stage too: every prod wave has an action named `ApproveDeployment`."""
    (pipeline,) = (r for r in template["Resources"].values() if r["Type"] == "AWS::CodePipeline::Pipeline")
    return {
        (stage["Name"], a["Name"]): a for stage in pipeline["Properties"]["Stages"] for a in stage["Actions"]
    }


# The waves are planned greedily in config order under CodePipeline's 50 actions per stage (48 for the
# deployments). In dev the new business unit's 8 stacks (16 actions) still fit the last wave beside retail's
# and finance's; in preprod and prod its 10 stacks (fine-tuning, serving and registry events too) do not, so it
# gets a wave of its own. CDK Pipelines renders a wave of one deployment as one pipeline stage named after it.
@pytest.mark.parametrize(("stage", "own_wave"), [("dev", False), ("preprod", True), ("prod", True)])
def test_the_self_mutated_stage_pipeline_deploys_every_new_stack_and_keeps_the_others(
    default_platform: SynthesizedPlatform, onboarded: SynthesizedPlatform, stage: str, own_wave: bool
) -> None:
    """The pipeline definition the branch's self-mutation deploys: one entry in the config -> every new stack
    of that stage gets a Deploy action into the new account, in the last wave or a new one; every existing
    action (and wave) stays as it was."""
    waves_before = default_platform.platform.pipelines[stage].waves
    waves_after = onboarded.platform.pipelines[stage].waves
    last_wave = list(waves_before)[-1]
    if own_wave:
        numbered = [w for w in waves_before if w.startswith(f"{stage}-wave-")]  # main's "shared" wave aside
        assert waves_after == {**waves_before, f"{stage}-wave-{len(numbered) + 1}": ["legal"]}
    else:
        assert waves_after == {**waves_before, last_wave: [*waves_before[last_wave], "legal"]}
    before = pipeline_actions(default_platform.template(f"exco-{stage}-pipeline"))
    after = pipeline_actions(onboarded.template(f"exco-{stage}-pipeline"))
    assert set(before) <= set(after)
    added = {key: after[key] for key in set(after) - set(before)}
    if own_wave:
        assert {pipeline_stage for pipeline_stage, _ in added} == {f"legal-{stage}"}, sorted(added)
    else:
        assert all(
            pipeline_stage == last_wave and name.startswith(f"legal-{stage}.")
            for pipeline_stage, name in added
        ), sorted(added)
    deployed = {
        a["Configuration"]["StackName"]: a for (_, name), a in added.items() if name.endswith(".Deploy")
    }
    new_stacks_of_stage = {n for n in NEW_STACKS if n.startswith(f"exco-legal-{stage}-")}
    assert set(deployed) == new_stacks_of_stage
    account = NEW_BU["accounts"][stage]  # type: ignore[index]
    for action in deployed.values():
        assert (
            flatten(action["RoleArn"])
            == f"arn:aws:iam::{account}:role/cdk-hnb659fds-deploy-role-{account}-eu-west-1"
        )
    # besides its Prepare/Deploy pairs, the new wave brings its own prod approval and prompt release, or its
    # preprod evaluation gate
    others = {name: a for (_, name), a in added.items() if not name.endswith((".Prepare", ".Deploy"))}
    expected_others = {
        "dev": set(),
        "preprod": {"EvaluationGate-legal"},
        "prod": {"ApproveDeployment", "PromptRelease-legal"},
    }
    assert set(others) == expected_others[stage]
    assert len(added) == 2 * len(new_stacks_of_stage) + len(others)
    if stage == "prod":  # the new wave's approval names the business units it deploys: only the new one
        assert "(legal)" in others["ApproveDeployment"]["Configuration"]["CustomData"]
    # unchanged: the existing actions (source, synth, self-mutation, the other units' deployments and approvals)
    changed = [key for key in before if before[key] != after[key]]
    assert changed == [], changed


@pytest.mark.parametrize(
    ("stack_name", "added_types"),
    [
        (
            "exco-tooling",
            [
                "AWS::ECR::Repository",
                "AWS::Events::Rule",
                "AWS::IAM::Policy",
                "AWS::IAM::Role",
                "AWS::SageMaker::ModelPackageGroup",
            ],
        ),
        (
            "exco-data-lake",
            [
                "AWS::Events::Rule",  # the new business unit's tenant uploads, forwarded to its stages
                "AWS::Glue::Database",
                "AWS::Glue::Table",
                "AWS::IAM::Policy",
                "AWS::IAM::Role",
                "AWS::LakeFormation::DataCellsFilter",  # one per table and stage of the new business unit
                "AWS::LakeFormation::PrincipalPermissions",
            ],
        ),
        # The catalog adds nothing: its API policy and caller map gain the new business unit.
        ("exco-prompt-catalog", []),
    ],
)
def test_shared_stacks_gain_only_the_new_business_units_resources(
    default_platform: SynthesizedPlatform,
    onboarded: SynthesizedPlatform,
    stack_name: str,
    added_types: list[str],
) -> None:
    before_template = default_platform.template(stack_name)
    after_template = onboarded.template(stack_name)
    before, after = resources(before_template), resources(after_template)
    added = {k: t for k, t in after.items() if k not in before}
    # The Lake Formation location role reads every (business unit, stage, table zone) prefix: with a third
    # business unit its statements outgrow one inline policy and CDK moves the rest into an overflow managed
    # policy of the same role; that is the shared policy holder growing, not a resource of another unit.
    added = {k: t for k, t in added.items() if not k.startswith("LakeFormationLocationRoleOverflowPolicy")}
    assert set(before) <= set(after)
    assert all("legal" in logical_id.lower() for logical_id in added), added
    assert sorted(set(added.values())) == added_types
    changed = {before[k] for k in before if before_template["Resources"][k] != after_template["Resources"][k]}
    assert changed <= SHARED_POLICY_HOLDERS, changed


def readme_onboarding_table() -> dict[str, tuple[set[str], dict[str, set[str]]]]:
    """stage -> (stack names, marker -> stack names) from the README's 'What a new business unit gets' table."""
    text = (REPO_ROOT / "README.md").read_text()
    section = text[text.index("What a new business unit gets") :]
    rows: dict[str, tuple[set[str], dict[str, set[str]]]] = {}
    for line in section.splitlines()[1:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] in ("dev", "preprod", "prod"):
            markers: dict[str, set[str]] = {}
            for part in cells[2].split(";"):
                name, _, stacks = part.partition(":")
                markers[name.strip()] = {s.strip() for s in stacks.split(",") if s.strip()}
            rows[cells[0]] = ({s.strip() for s in cells[1].split(",")}, markers)
        elif rows and not line.startswith("|"):
            break
    return rows


def test_the_readme_says_what_a_new_business_unit_gets(onboarded: SynthesizedPlatform) -> None:
    from tools.synth_report import iter_stacks

    documented = readme_onboarding_table()
    assert set(documented) == {"dev", "preprod", "prod"}
    summaries = {s.name: s for s in iter_stacks(onboarded.outdir)}
    for stage, (stacks, markers) in documented.items():
        prefix = f"exco-legal-{stage}-"
        assert {f"{prefix}{s}" for s in stacks} == {n for n in NEW_STACKS if n.startswith(prefix)}
        for marker in ("GPU", "always-on"):
            marked = {
                n.removeprefix(prefix)
                for n, s in summaries.items()
                if n.startswith(prefix) and marker in s.markers
            }
            assert markers.get(marker, set()) == marked, (stage, marker)
