"""cdk-nag wiring and the one way to acknowledge a finding.

cdk-nag 3 is a policy-validation plugin on the app (not an aspect). Acknowledgements go through
`Validations.of(construct).acknowledge`; `acknowledge` here refuses vague reasons so every exception in
the code says specifically why the rule does not apply.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping

from aws_cdk import Acknowledgment, App, Stack, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

from stacks.blocks.nag_report import failed_validations

__all__ = [
    "acknowledge",
    "acknowledge_all",
    "acknowledge_cdk_managed_providers",
    "acknowledge_wildcard_findings",
    "add_nag_checks",
    "failed_validations",
]

MIN_REASON_LENGTH = 40

# `Validations.of` is a jsii round trip, and most acknowledged constructs get several rules (a function's
# role, a stack's providers): look each construct's Validations up once. Weak keys: tests build many apps.
_VALIDATIONS: weakref.WeakKeyDictionary[IConstruct, Validations] = weakref.WeakKeyDictionary()


def add_nag_checks(app: App) -> None:
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def acknowledge(construct: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge one cdk-nag rule (or one finding, `Rule[Finding]`) on `construct` and its children."""
    acknowledge_all(construct, [(rule_id, reason)])


def acknowledge_all(construct: IConstruct, findings: Iterable[tuple[str, str]]) -> None:
    """Acknowledge several (rule id, reason) pairs on one construct, in order, with one jsii call.

    `Validations.acknowledge` takes any number of rules and records each exactly as one call per rule would;
    a role with a dozen wildcard findings costs one round trip instead of a dozen.
    """
    acknowledgments = []
    for rule_id, reason in findings:
        if len(reason) < MIN_REASON_LENGTH:
            raise ValueError(
                f"acknowledgement of {rule_id} needs a specific reason (>= {MIN_REASON_LENGTH} chars)"
            )
        acknowledgments.append(Acknowledgment(id=rule_id, reason=reason))
    if not acknowledgments:
        return
    validations = _VALIDATIONS.get(construct)
    if validations is None:
        validations = _VALIDATIONS[construct] = Validations.of(construct)
    validations.acknowledge(*acknowledgments)


def acknowledge_wildcard_findings(construct: IConstruct, findings: Mapping[str, str]) -> None:
    """AwsSolutions-IAM5 findings on one construct (`Resource::<arn>` or `Action::<action>` -> reason)."""
    acknowledge_all(
        construct, [(f"AwsSolutions-IAM5[{finding}]", reason) for finding, reason in findings.items()]
    )


# CDK creates these singleton providers itself (Node.js code shipped inside aws-cdk-lib); their role and
# runtime are not configurable from a stack.
_CDK_MANAGED_PROVIDERS = {
    "Custom::S3AutoDeleteObjectsCustomResourceProvider": "empties dev buckets before deletion",
    "Custom::VpcRestrictDefaultSGCustomResourceProvider": "removes the default security group's rules",
}


def acknowledge_cdk_managed_providers(stack: Stack) -> None:
    """Acknowledge the findings on CDK's own custom-resource providers that a stack may contain."""
    for child_id, purpose in _CDK_MANAGED_PROVIDERS.items():
        provider = stack.node.try_find_child(child_id)
        if provider is None:
            continue
        acknowledge_all(
            provider,
            [
                (
                    "AwsSolutions-IAM4",
                    f"CDK-managed provider that {purpose}; aws-cdk-lib fixes its role to "
                    "AWSLambdaBasicExecutionRole (logs only) and offers no property to replace it",
                ),
                (
                    "AwsSolutions-L1",
                    f"CDK-managed provider that {purpose}; its Node.js runtime is pinned by the aws-cdk-lib "
                    "release and moves forward when aws-cdk-lib is upgraded",
                ),
            ],
        )
