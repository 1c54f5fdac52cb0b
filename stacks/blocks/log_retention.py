"""An aspect that fails synth when a log group would keep its logs forever (and cost money forever)."""

from __future__ import annotations

import jsii
from aws_cdk import Aspects, IAspect, Stage, Validations
from aws_cdk import aws_logs as logs
from constructs import IConstruct

RULE_ID = "LLMOps-LogRetention"


@jsii.implements(IAspect)
class RequireLogRetention:
    def visit(self, node: IConstruct) -> None:
        if isinstance(node, logs.CfnLogGroup) and node.retention_in_days is None:
            Validations.of(node).add_error(
                RULE_ID,
                "log group has no retention: create it with stacks.blocks.logs.encrypted_log_group "
                "(retention from the stage's log_retention_days)",
            )


def require_log_retention(app: Stage) -> None:
    """Attach the check to the app and to every nested Stage: aspects do not cross Stage boundaries, so one
    on the app alone would never visit the business units' stages."""
    aspect = RequireLogRetention()
    for scope in [app, *(node for node in app.node.find_all() if Stage.is_stage(node) and node is not app)]:
        Aspects.of(scope).add(aspect)
