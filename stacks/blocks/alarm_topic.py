"""An encrypted SNS topic that AWS services publish alarms to, and the people and endpoints subscribed to it.

The topic is under a customer managed key, so each publishing service (CloudWatch alarms, AWS Budgets) may use
the key for this account only; the topic policy replaces SNS's default owner-only policy and names each
publisher with the ARNs it publishes from.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct


@dataclass(frozen=True)
class Publisher:
    sid: str  # the topic policy statement's
    service: str  # e.g. cloudwatch.amazonaws.com
    source_arn: str  # ArnLike pattern of what publishes


def alarm_topic(
    scope: Construct,
    construct_id: str,
    *,
    topic_name: str,
    display_name: str,
    key: kms.IKey,
    key_sid: str,
    account: str,
    publishers: Sequence[Publisher],
    emails: Iterable[str],
    https_endpoints: Iterable[str],
) -> sns.Topic:
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid=key_sid,
            principals=[iam.ServicePrincipal(p.service) for p in publishers],
            actions=["kms:Decrypt", "kms:GenerateDataKey*"],
            resources=["*"],
            conditions={"StringEquals": {"aws:SourceAccount": account}},
        )
    )
    topic = sns.Topic(
        scope,
        construct_id,
        topic_name=topic_name,
        display_name=display_name,
        master_key=key,
        enforce_ssl=True,
    )
    for publisher in publishers:
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid=publisher.sid,
                principals=[iam.ServicePrincipal(publisher.service)],
                actions=["sns:Publish"],
                resources=[topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": account},
                    "ArnLike": {"aws:SourceArn": publisher.source_arn},
                },
            )
        )
    for index, email in enumerate(emails):
        sns.Subscription(
            scope, f"Email{index}", topic=topic, protocol=sns.SubscriptionProtocol.EMAIL, endpoint=email
        )
    for index, url in enumerate(https_endpoints):
        sns.Subscription(
            scope, f"Https{index}", topic=topic, protocol=sns.SubscriptionProtocol.HTTPS, endpoint=url
        )
    return topic
