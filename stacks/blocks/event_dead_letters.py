"""Dead-letter queues of EventBridge rule targets: the events EventBridge could not deliver after its retries.

Encrypted under a customer managed key, which EventBridge may use for the one rule the queue serves (named by
ARN, not referenced: the rule already depends on the key through its target, so a reference would cycle).
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.blocks.nag import acknowledge


def event_dead_letter_queue(
    scope: Construct, construct_id: str, *, key: kms.IKey, rule_arns: Sequence[str]
) -> sqs.Queue:
    """A standard queue (EventBridge's dead letters cannot be FIFO) for the targets of the rules `rule_arns`
    (one ARN is written as a string, several as a list)."""
    queue = sqs.Queue(
        scope,
        construct_id,
        encryption=sqs.QueueEncryption.KMS,
        encryption_master_key=key,
        enforce_ssl=True,
        retention_period=Duration.days(14),
    )
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid=f"EventBridge{construct_id}",
            principals=[iam.ServicePrincipal("events.amazonaws.com")],
            actions=["kms:Decrypt", "kms:GenerateDataKey"],
            resources=["*"],
            conditions={
                "ArnEquals": {"aws:SourceArn": rule_arns[0] if len(rule_arns) == 1 else list(rule_arns)}
            },
        )
    )
    acknowledge(
        queue,
        "AwsSolutions-SQS3",
        "This queue is the dead-letter queue of an EventBridge rule target; a dead-letter queue of its own "
        "would only move the same undeliverable events once more",
    )
    return queue
