"""Tenant upload events across accounts: the raw zone's "Object Created" events to the stage that owns them.

Lake side (`UploadEventForwarding`, data lake account): the raw-zone bucket sends its events to EventBridge;
one rule per business unit x tenant fine-tuning stage matches `Object Created` under
`<bu>/<stage>/tenant=` and puts it on that stage account's default bus, through one role per rule.
Stage side (`UploadEventReceiver`, business unit stage account): a default-bus policy statement that admits
exactly that role of the lake account, and only S3 `Object Created` events. As the role's only rule
forwards only its own prefix, the stage's bus receives no other business unit's or stage's uploads.
In sandbox mode every bus is the one account's default bus, where the raw zone's events already arrive
(EventBridge refuses a rule that targets its own bus): nothing is forwarded, and the stage's rule pattern
alone keeps the prefix.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from constructs import Construct

from common.lake_layout import stage_prefix
from stacks.blocks.event_bus_policy import default_bus_arn, default_bus_policy
from stacks.settings import PlatformConfig, Stage

S3_SOURCE = "aws.s3"
OBJECT_CREATED = "Object Created"


def tenant_upload_prefix(business_unit: str, stage: str) -> str:
    """Every tenant's uploads of one business unit in one stage (lake layout: `<bu>/<stage>/tenant=<id>/`)."""
    return f"{stage_prefix(business_unit, stage)}tenant="


def forwarding_role_name(prefix: str, business_unit: str, stage: str) -> str:
    # A fixed name: the stage account's bus policy names this role before either stack exists.
    return f"{prefix}-{business_unit}-{stage}-upload-events"


def upload_event_pattern(bucket_name: str, business_unit: str, stage: str) -> events.EventPattern:
    return events.EventPattern(
        source=[S3_SOURCE],
        detail_type=[OBJECT_CREATED],
        detail={
            "bucket": {"name": [bucket_name]},
            "object": {"key": [{"prefix": tenant_upload_prefix(business_unit, stage)}]},
        },
    )


def tenant_fine_tuning_stages(config: PlatformConfig) -> list[tuple[str, Stage]]:
    return [(bu.name, Stage(stage)) for bu in config.business_units for stage in bu.fine_tuning.stages]


class UploadEventForwarding(Construct):
    """In the data lake account: one rule and role per (business unit, stage) where tenants fine-tune."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: PlatformConfig, raw_bucket: str
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.rules: dict[tuple[str, str], events.Rule] = {}
        self.roles: dict[tuple[str, str], iam.Role] = {}
        for business_unit, stage in tenant_fine_tuning_stages(config):
            environment = config.environment(config.business_unit(business_unit), stage)
            construct = f"{business_unit}-{stage.value}"
            role = iam.Role(
                self,
                f"{construct}-Role",
                role_name=forwarding_role_name(config.organization.prefix, business_unit, stage.value),
                assumed_by=iam.ServicePrincipal("events.amazonaws.com"),
                description=f"Puts {business_unit}'s {stage.value} tenant uploads on {environment.name}'s bus",
            )
            rule = events.Rule(
                self,
                f"{construct}-Rule",
                description=f"Tenant uploads of {business_unit} in {stage.value}, to that stage's account",
                event_pattern=upload_event_pattern(raw_bucket, business_unit, stage.value),
            )
            bus = events.EventBus.from_event_bus_arn(
                self,
                f"{construct}-Bus",
                default_bus_arn(stack.partition, environment.region, environment.account),
            )
            rule.add_target(targets.EventBus(bus, role=role))
            self.rules[(business_unit, stage.value)] = rule
            self.roles[(business_unit, stage.value)] = role


class UploadEventReceiver(Construct):
    """In a business unit stage account: admit the lake account's forwarding role for this stage only."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: PlatformConfig, business_unit: str, stage: str
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        statement_id = f"{config.organization.prefix}-{business_unit}-{stage}-tenant-uploads"
        role_arn = (
            f"arn:{stack.partition}:iam::{config.data_lake_account}:role/"
            f"{forwarding_role_name(config.organization.prefix, business_unit, stage)}"
        )
        self.policy = default_bus_policy(
            self,
            "DefaultBusPolicy",
            statement_id=statement_id,
            sender_account=config.data_lake_account,
            conditions={
                "events:source": S3_SOURCE,
                "events:detail-type": OBJECT_CREATED,
                "aws:PrincipalArn": role_arn,
            },
        )
