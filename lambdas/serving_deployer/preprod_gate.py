"""Business-unit model versions between preprod and prod: start the preprod gate, check it before prod.

- Preprod: once the deployer has served and probed a new (PendingManualApproval) version of one of the
  business unit's central groups, `start_gate` starts the stage's evaluation state machine with that served
  version as the run's candidate (lambdas/evaluation/candidate.py). The execution name is fixed per version,
  so a redelivered event starts nothing twice. The evaluation stack's gate recorder writes the result.
- Prod: `prod_refusal` says why an "Approved" version may not be served: no preprod gate record, a failed
  one, one for another checksum, or one the business unit's preprod gate key did not sign
  (common.preprod_gate). The handler then serves nothing, records the refusal and emits a metric.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from common.preprod_gate import execution_name, refusal
from serving_deployer.core import PAYLOAD_FORMAT, ModelPackage

REFUSAL_METRIC = "PreprodGateRefusals"


def gate_input(
    package: ModelPackage, *, use_case: str, endpoint_name: str, route: dict[str, str]
) -> dict[str, Any]:
    """The evaluation run's input: the use case's catalog dataset (as the consumer gate) and this version."""
    name = execution_name(package.group, package.version)
    return {
        "gate": True,
        "run_id": name,
        "use_case": use_case,
        "candidate": {
            "model_package_arn": package.arn,
            "version": package.version,
            "artifact_sha256": package.sha256,
            "endpoint_name": endpoint_name,
            **route,  # inference_component or target_model: what the deployer served and probed
            "payload_format": PAYLOAD_FORMAT,
        },
    }


def start_gate(
    sfn: Any,
    state_machine_arn: str,
    package: ModelPackage,
    *,
    use_case: str,
    endpoint_name: str,
    route: dict[str, str],
) -> str:
    """Start the gate run of a served version; returns the execution name (also when it already ran)."""
    run = gate_input(package, use_case=use_case, endpoint_name=endpoint_name, route=route)
    # The same version's event, delivered again: its run exists already.
    with contextlib.suppress(sfn.exceptions.ExecutionAlreadyExists):
        sfn.start_execution(stateMachineArn=state_machine_arn, name=run["run_id"], input=json.dumps(run))
    return str(run["run_id"])


def prod_refusal(kms: Any, key_arn: str, described: dict[str, Any], package: ModelPackage) -> str | None:
    """None when the preprod gate passed for exactly this version and checksum; else why not."""
    return refusal(
        kms,
        key_arn,
        arn=package.arn,
        group=package.group,
        artifact_sha256=package.sha256,
        metadata=dict(described.get("CustomerMetadataProperties") or {}),
    )


def emit_refusal(business_unit: str, group: str) -> None:
    """One EMF data point per refused approval (the deployer's namespace, POWERTOOLS_METRICS_NAMESPACE)."""
    with single_metric(name=REFUSAL_METRIC, unit=MetricUnit.Count, value=1) as metric:
        metric.add_dimension(name="BusinessUnit", value=business_unit)
        metric.add_dimension(name="ModelPackageGroup", value=group)
