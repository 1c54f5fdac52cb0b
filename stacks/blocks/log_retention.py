"""A check that fails synth when a log group would keep its logs forever (and cost money forever)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

RULE_ID = "LLMOps-LogRetention"
MESSAGE = (
    f"[{RULE_ID}] log group has no retention: create it with stacks.blocks.logs.encrypted_log_group "
    "(retention from the stage's log_retention_days)"
)


def log_groups_without_retention(stack_path: str, template: Mapping[str, Any]) -> list[str]:
    """One error line per log group of a synthesized template that keeps its logs forever.

    Read from the templates the synth wrote, not from the construct tree: the pipelines synthesize every
    business unit's Stage while the platform is being composed (CDK Pipelines' `add_stage`), so an
    annotation added to the tree after composition never reached those Stages' assemblies, and a walk over the
    tree cost one jsii object per construct of the app. The templates hold every log group, CDK's own
    included."""
    errors = []
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Logs::LogGroup":
            continue
        if resource.get("Properties", {}).get("RetentionInDays") is None:
            path = resource.get("Metadata", {}).get("aws:cdk:path", f"{stack_path}/{logical_id}")
            errors.append(f"/{path.lstrip('/')}: {MESSAGE}")
    return errors
