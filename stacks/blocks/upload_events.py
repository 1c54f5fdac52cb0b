"""Tenant upload events across accounts: the raw zone's "Object Created" events to the stage that owns them.

Lake side (`UploadEventForwarding`, data lake account): the raw-zone bucket sends its events to EventBridge;
one rule per business unit x tenant fine-tuning stage matches `Object Created` under
`<bu>/<stage>/tenant=` and puts it on that stage account's default bus, through one role per rule. What
EventBridge cannot deliver (after its retries, about 24 hours) waits in one dead-letter queue for all these
rules (one, not one per rule: the data lake stack's resource count grows with every business unit), and an
alarm on it notifies the `<prefix>-lake-alarms` topic, to which every business unit's `monitoring`
subscribers are subscribed.
Stage side (`UploadEventReceiver`, business unit stage account): a default-bus policy statement that admits
exactly that role of the lake account, and only S3 `Object Created` events. As the role's only rule
forwards only its own prefix, the stage's bus receives no other business unit's or stage's uploads.
In sandbox mode every bus is the one account's default bus, where the raw zone's events already arrive
(EventBridge refuses a rule that targets its own bus): nothing is forwarded, and the stage's rule pattern
alone keeps the prefix.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from common.lake_layout import stage_prefix
from stacks.blocks.alarm_topic import Publisher, alarm_topic
from stacks.blocks.event_bus_policy import default_bus_arn, default_bus_policy
from stacks.blocks.event_dead_letters import event_dead_letter_queue
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
        self, scope: Construct, construct_id: str, *, config: PlatformConfig, raw_bucket: str, key: kms.IKey
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        prefix = config.organization.prefix
        self.rules: dict[tuple[str, str], events.Rule] = {}
        self.roles: dict[tuple[str, str], iam.Role] = {}
        stages = tenant_fine_tuning_stages(config)
        # Rules and roles are named alike: the stage's bus policy and the dead letters' key policy name them.
        names = {(bu, stage.value): forwarding_role_name(prefix, bu, stage.value) for bu, stage in stages}
        self.dead_letters = event_dead_letter_queue(
            self,
            "UndeliveredUploadEvents",
            key=key,
            rule_arns=[
                f"arn:{stack.partition}:events:{stack.region}:{stack.account}:rule/{name}"
                for name in names.values()
            ],
        )
        self.topic = self._alarm_topic(config, key)
        self.alarm = self._dead_letter_alarm(f"{prefix}-lake-upload-events-undelivered")
        for business_unit, stage in stages:
            environment = config.environment(config.business_unit(business_unit), stage)
            construct = f"{business_unit}-{stage.value}"
            name = names[(business_unit, stage.value)]
            role = iam.Role(
                self,
                f"{construct}-Role",
                role_name=name,
                assumed_by=iam.ServicePrincipal("events.amazonaws.com"),
                description=f"Puts {business_unit}'s {stage.value} tenant uploads on {environment.name}'s bus",
            )
            rule = events.Rule(
                self,
                f"{construct}-Rule",
                rule_name=name,
                description=f"Tenant uploads of {business_unit} in {stage.value}, to that stage's account",
                event_pattern=upload_event_pattern(raw_bucket, business_unit, stage.value),
            )
            bus = events.EventBus.from_event_bus_arn(
                self,
                f"{construct}-Bus",
                default_bus_arn(stack.partition, environment.region, environment.account),
            )
            rule.add_target(targets.EventBus(bus, role=role, dead_letter_queue=self.dead_letters))
            self.rules[(business_unit, stage.value)] = rule
            self.roles[(business_unit, stage.value)] = role

    def _alarm_topic(self, config: PlatformConfig, key: kms.IKey) -> sns.Topic:
        """The lake account's alarms, to every business unit's `monitoring` subscribers (once each)."""
        stack = Stack.of(self)
        monitoring = [bu.monitoring for bu in config.business_units]
        return alarm_topic(
            self,
            "AlarmTopic",
            topic_name=f"{config.organization.prefix}-lake-alarms",
            display_name="Data lake account alarms",
            key=key,
            key_sid="AllowAlarmNotifications",
            account=stack.account,
            publishers=[
                Publisher(
                    "CloudWatchAlarmsPublish",
                    "cloudwatch.amazonaws.com",
                    f"arn:{stack.partition}:cloudwatch:{stack.region}:{stack.account}:alarm:*",
                )
            ],
            emails=dict.fromkeys(e for m in monitoring for e in m.emails),
            https_endpoints=dict.fromkeys(str(u) for m in monitoring for u in m.https_endpoints),
        )

    def _dead_letter_alarm(self, alarm_name: str) -> cloudwatch.Alarm:
        """A single undelivered upload event is a tenant upload that starts no fine-tuning run; the queue
        keeps it 14 days for the platform team to redrive (the event names bucket and key)."""
        alarm = cloudwatch.Alarm(
            self,
            "UndeliveredUploadEventsAlarm",
            alarm_name=alarm_name,
            alarm_description="Tenant upload events EventBridge could not put on a stage account's bus",
            metric=self.dead_letters.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(5), statistic="Maximum"
            ),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        action = cw_actions.SnsAction(self.topic)
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
        return alarm


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
