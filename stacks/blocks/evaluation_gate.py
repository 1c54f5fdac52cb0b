"""Names both sides of the CI/CD evaluation gate agree on (pipeline in tooling, state machine in preprod).

The preprod pipeline's gate step runs in the tooling account as `gate_caller_role_name`, assumes
`gate_role_name` in the business unit's preprod account and starts `state_machine_name` with
`{"gate": true, "use_case": ..., "run_id": ..., "commit": ...}`. Without a `dataset` in the input, the run
reads the use case's gate dataset from the lake: `gate_dataset_key` in the evaluation_datasets zone.
"""

from __future__ import annotations

from stacks.settings import EnvironmentSpec


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
