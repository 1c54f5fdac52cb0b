"""A check that fails synth when a log group would keep its logs forever (and cost money forever)."""

from __future__ import annotations

from aws_cdk import Stage, Validations
from aws_cdk import aws_logs as logs

RULE_ID = "LLMOps-LogRetention"


def require_log_retention(app: Stage) -> None:
    """Mark every log group without retention, nested Stages included, with an error annotation.

    Run once the platform is composed. A walk rather than an aspect: aspects stop at Stage boundaries (one on
    the app never visits the business units' stages) and call back from Node into Python for every construct,
    where this walk crosses into Node once for the list and once per log group.
    """
    for node in app.node.find_all():
        if isinstance(node, logs.CfnLogGroup) and node.retention_in_days is None:
            Validations.of(node).add_error(
                RULE_ID,
                "log group has no retention: create it with stacks.blocks.logs.encrypted_log_group "
                "(retention from the stage's log_retention_days)",
            )
