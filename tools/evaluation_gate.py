"""The preprod evaluation gate, run by the pipeline (CodeBuild, tooling account) after preprod deploys.

Assumes `<env>-evaluation-gate` in the preprod account, starts the evaluation state machine once per
use case with `{"gate": true, ...}`, waits for each run and fails (exit 1) unless every run succeeded
with output `{"passed": true, ...}`. Configured by environment variables (set by the pipeline):
GATE_ROLE_ARN, STATE_MACHINE_ARN, USE_CASES (comma-separated), TIMEOUT_SECONDS, AWS_REGION and the
CodeBuild variable CODEBUILD_RESOLVED_SOURCE_VERSION (the commit, used in the run id).

    python tools/evaluation_gate.py
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

POLL_SECONDS = 15
RUNNING = "RUNNING"


@dataclass(frozen=True)
class GateResult:
    use_case: str
    passed: bool
    reason: str


def start_run(sfn: Any, state_machine_arn: str, *, use_case: str, commit: str) -> str:
    run_id = f"gate-{use_case}-{commit[:12]}-{int(time.time())}"
    response = sfn.start_execution(
        stateMachineArn=state_machine_arn,
        name=run_id[:80],
        input=json.dumps({"gate": True, "run_id": run_id, "use_case": use_case, "commit": commit}),
    )
    return str(response["executionArn"])


def wait_for(
    sfn: Any,
    execution_arn: str,
    *,
    timeout_seconds: int,
    sleep: Callable[[float], None] = time.sleep,
    poll_seconds: float = POLL_SECONDS,
) -> dict[str, Any]:
    waited = 0.0
    while True:
        execution: dict[str, Any] = sfn.describe_execution(executionArn=execution_arn)
        if execution["status"] != RUNNING:
            return execution
        if waited >= timeout_seconds:
            sfn.stop_execution(executionArn=execution_arn, cause="pipeline gate timed out")
            return {**execution, "status": "TIMED_OUT"}
        sleep(poll_seconds)
        waited += poll_seconds


def judge(use_case: str, execution: Mapping[str, Any]) -> GateResult:
    status = execution["status"]
    if status != "SUCCEEDED":
        return GateResult(
            use_case, False, f"evaluation run ended {status}: {execution.get('cause', '')}".strip()
        )
    try:
        output = json.loads(execution.get("output") or "{}")
    except json.JSONDecodeError:
        return GateResult(use_case, False, "evaluation output is not JSON")
    if output.get("passed") is not True:
        return GateResult(use_case, False, f"gate not passed: {output.get('reason', 'no reason given')}")
    return GateResult(use_case, True, str(output.get("reason", "passed")) + dataset_note(output))


def dataset_note(output: Mapping[str, Any]) -> str:
    """Which dataset version the run judged (the engine names it in the gate's output)."""
    dataset = output.get("dataset")
    if isinstance(dataset, dict) and "name" in dataset:
        return f" (dataset {dataset['name']} version {dataset.get('version')})"
    return ""


def run_gate(
    sfn: Any,
    *,
    state_machine_arn: str,
    use_cases: list[str],
    commit: str,
    timeout_seconds: int,
    sleep: Callable[[float], None] = time.sleep,
) -> list[GateResult]:
    runs = {uc: start_run(sfn, state_machine_arn, use_case=uc, commit=commit) for uc in use_cases}
    return [
        judge(uc, wait_for(sfn, arn, timeout_seconds=timeout_seconds, sleep=sleep))
        for uc, arn in runs.items()
    ]


def stepfunctions_client(role_arn: str, region: str) -> Any:
    import boto3  # imported here: tests inject a stubbed client and never assume a role

    credentials = boto3.client("sts", region_name=region).assume_role(
        RoleArn=role_arn, RoleSessionName="pipeline-evaluation-gate"
    )["Credentials"]
    return boto3.client(
        "stepfunctions",
        region_name=region,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


def main(environ: Mapping[str, str] = os.environ) -> int:
    use_cases = [u for u in environ["USE_CASES"].split(",") if u]
    sfn = stepfunctions_client(environ["GATE_ROLE_ARN"], environ["AWS_REGION"])
    results = run_gate(
        sfn,
        state_machine_arn=environ["STATE_MACHINE_ARN"],
        use_cases=use_cases,
        commit=environ.get("CODEBUILD_RESOLVED_SOURCE_VERSION", "local"),
        timeout_seconds=int(environ["TIMEOUT_SECONDS"]),
    )
    for result in results:
        print(f"{'PASS' if result.passed else 'FAIL'} {result.use_case}: {result.reason}")
    return 0 if results and all(r.passed for r in results) else 1


REQUIRED_ENVIRONMENT = ("GATE_ROLE_ARN", "STATE_MACHINE_ARN", "USE_CASES", "TIMEOUT_SECONDS", "AWS_REGION")


def cli(argv: list[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    """Command line: --help, then one line (exit 2) for a missing or malformed variable before any AWS call."""
    import argparse

    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        epilog=f"Configured by environment variables: {', '.join(REQUIRED_ENVIRONMENT)} (the pipeline sets them).",
    )
    parser.parse_args(argv)
    missing = [name for name in REQUIRED_ENVIRONMENT if not environ.get(name)]
    if missing:
        print(
            f"evaluation_gate: set {', '.join(missing)} (the pipeline's gate step sets them)", file=sys.stderr
        )
        return 2
    if not environ["TIMEOUT_SECONDS"].isdigit():
        print(
            f"evaluation_gate: TIMEOUT_SECONDS must be whole seconds, not {environ['TIMEOUT_SECONDS']!r}",
            file=sys.stderr,
        )
        return 2
    return main(environ)


if __name__ == "__main__":
    sys.exit(cli())
