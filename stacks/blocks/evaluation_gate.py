"""Names both sides of the CI/CD evaluation gate agree on (pipeline in tooling, state machine in preprod).

The preprod pipeline's gate step runs in the tooling account as `gate_caller_role_name`, assumes
`gate_role_name` in the business unit's preprod account and starts `state_machine_name` with
`{"gate": true, "use_case": ..., "run_id": ..., "commit": ...}`. Without a `dataset` in the input, the run
reads the use case's gate dataset from the lake: `gate_dataset_key` in the evaluation_datasets zone.
"""

from __future__ import annotations

from stacks.settings import BusinessUnit, EnvironmentSpec, Stage


def state_machine_name(environment: EnvironmentSpec) -> str:
    return f"{environment.name}-evaluation"


def gate_role_name(environment: EnvironmentSpec) -> str:
    return f"{environment.name}-evaluation-gate"


def gate_caller_role_name(environment: EnvironmentSpec) -> str:
    """In the tooling account's preprod pipeline (shared by every business unit), so the name does not start
    with the environment's `<prefix>-<bu>-<stage>`: that prefix marks a role of the business unit itself."""
    return f"{environment.org_prefix}-pipeline-{environment.business_unit.name}-{environment.stage.value}-gate-caller"


def gate_dataset_key(business_unit: str, use_case: str) -> str:
    return f"{business_unit}/gate/{use_case}.jsonl"


# ---- the business-unit model gate (docs/fine-tuning.md, "Business-unit models") ------------------------
# Preprod's deployer starts `state_machine_name` with the served version as the run's candidate; the
# evaluation stack's gate recorder signs the result with the preprod gate key and writes it on the version
# in the central registry; prod's deployer verifies it with the same key (by its alias) before serving.


def trains_business_unit_models(business_unit: BusinessUnit) -> bool:
    return business_unit.fine_tuning.business_unit_models_stage is not None


def business_unit_gate_use_cases(environment: EnvironmentSpec) -> dict[str, str]:
    """Central group -> use case, for the groups whose new versions preprod serves and gates ({} elsewhere)."""
    bu = environment.business_unit
    if environment.stage is not Stage.PREPROD or not trains_business_unit_models(bu):
        return {}
    if Stage.PREPROD.value not in bu.serving.stages:  # nothing serves the version there to evaluate
        return {}
    return {f"{environment.org_prefix}-{bu.name}-{use_case}": use_case for use_case in bu.use_cases}


def preprod_gate_key_alias(org_prefix: str, business_unit: str) -> str:
    return f"alias/{org_prefix}/{business_unit}/preprod/model-gate"
