"""Data lake account: a bucket per zone, the Glue catalog, Athena and Lake Formation grants.

Who may do what is declared once in the config (`data_lake.business_unit_access`), per business unit
stage: the bucket and key policies here allow exactly that on `<bu>/<stage>/` for principals of that
stage's account tagged `BusinessUnit=<bu>` and `Stage=<stage>` (plus read on `<bu>/shared/`), and
`stacks.blocks.lake_access.grant_lake_access` gives their roles the matching identity half. The allows
name the prefix through the principal's tags, so they do not grow with business units; denies tie
each stage account to its own tags (docs/data-lake.md, "Limits"). A deny on every bucket keeps a
tagged principal inside its own stage's prefix even in sandbox mode, where all business units and
stages share one account. `<bu>/shared/` is written only by the tooling
account's dataset promotion role; every other writer is denied.
"""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any

from aws_cdk import Aws, DefaultStackSynthesizer
from aws_cdk import aws_athena as athena
from aws_cdk import aws_cloudtrail as cloudtrail
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lakeformation as lakeformation
from aws_cdk import aws_s3 as s3
from aws_cdk.region_info import RegionInfo
from constructs import Construct

from common.glue_schema import INPUT_FORMAT, JSON_SERDE, OUTPUT_FORMAT, TABLES, GlueTable
from common.lake_layout import LAKE_STAGES, LakeScope, Zone, check_business_unit
from stacks.blocks import durations
from stacks.blocks.encryption import PlatformKey
from stacks.blocks.lake_access import (
    OBJECT_READ_ACTIONS,
    OBJECT_WRITE_ACTIONS,
    PROMOTION_ZONE,
    LakeAccessRequest,
    dataset_promotion_requests,
    dataset_promotion_role_arn,
    lake_access_statements,
    lake_bucket_arn,
    lake_bucket_name,
    lake_database_name,
    lake_key_alias,
    lake_via_service,
    nag_resource,
)
from stacks.blocks.nag import acknowledge, acknowledge_cdk_managed_providers
from stacks.blocks.platform_stack import PlatformStack
from stacks.blocks.retention import retention_for
from stacks.blocks.storage import AccessLogBucket, SecureBucket
from stacks.blocks.upload_events import UploadEventForwarding
from stacks.settings import PlatformConfig, Stage
from stacks.settings.data_lake import ZoneLifecycle

BUSINESS_UNIT_TAG = "aws:PrincipalTag/BusinessUnit"
STAGE_TAG = "aws:PrincipalTag/Stage"
# Reading is all a stage may do on <bu>/shared/ (the fence denies every other action there).
SHARED_READ_ACTIONS = ["s3:GetObject", "s3:GetObjectVersion"]
# What only the promotion role may do on <bu>/shared/ in the datasets zone.
SHARED_WRITE_ACTIONS = ["s3:PutObject*", "s3:DeleteObject*", "s3:RestoreObject", "s3:ReplicateObject"]
# Platform roles of the shared stages carry this tag value (stacks.stages.SHARED_BUSINESS_UNIT); they
# serve every business unit (e.g. the Lake Formation location role), so the prefix fence skips them.
SHARED_TAG_VALUE = "shared"
# Where the CloudTrail trail of writes to <bu>/shared/ lands in the access-log bucket.
SHARED_WRITES_TRAIL_PREFIX = "audit/shared-writes"
# First day Athena projects `dt` partitions for; days before it are never scanned.
PROJECTION_START = "2024-01-01"
QUERY_RESULTS_EXPIRY_DAYS = 30
TABLE_PERMISSIONS = ["SELECT", "DESCRIBE"]
FILTER_PERMISSIONS = ["SELECT", "DESCRIBE"]
DATABASE_PERMISSIONS = ["DESCRIBE"]


def camel(name: str) -> str:
    """`evaluation_results` / `fin-ops` -> `EvaluationResults` / `FinOps` (construct ids, policy Sids)."""
    return "".join(part.title() for part in name.replace("-", "_").split("_"))


def stage_filter_name(stage: LakeScope) -> str:
    return f"{stage.value}_rows"


def stage_row_filter(stage: LakeScope) -> str:
    """The row filter of a stage's data cells filter (`stage` is a partition column, see `_table`)."""
    return f"stage = '{stage.value}'"


def zone_construct_id(zone: Zone) -> str:
    return camel(zone.value) + "Zone"


def zone_lifecycle_rules(lifecycle: ZoneLifecycle, noncurrent_expiry_days: int) -> list[s3.LifecycleRule]:
    transitions = (
        [
            s3.Transition(
                storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                transition_after=durations.days(lifecycle.transition_to_ia_days),
            )
        ]
        if lifecycle.transition_to_ia_days is not None
        else None
    )
    return [
        s3.LifecycleRule(
            id="zone-lifecycle",
            transitions=transitions,
            expiration=durations.days(lifecycle.expiry_days) if lifecycle.expiry_days else None,
            noncurrent_version_expiration=durations.days(noncurrent_expiry_days),
        )
    ]


def object_lock(lifecycle: ZoneLifecycle) -> s3.ObjectLockRetention | None:
    days = lifecycle.object_lock_retention_days
    if days is None:
        return None
    if lifecycle.object_lock_mode == "COMPLIANCE":
        return s3.ObjectLockRetention.compliance(durations.days(days))
    return s3.ObjectLockRetention.governance(durations.days(days))


class DataLakeStack(PlatformStack):
    def __init__(self, scope: Construct, construct_id: str, *, config: PlatformConfig) -> None:
        prefix = config.organization.prefix
        super().__init__(
            scope,
            construct_id,
            stack_name=f"{prefix}-data-lake",
            account=config.data_lake_account,
            region=config.home_region,
            description="LLMOps data lake: zoned, encrypted S3 storage, Glue catalog, Athena, Lake Formation",
        )
        if SHARED_TAG_VALUE in (bu.name for bu in config.business_units):
            raise ValueError(
                f"business_units[].name: {SHARED_TAG_VALUE!r} is the tag value of the shared stages' roles, "
                "which the lake's prefix fence exempts; choose another business unit name"
            )
        self.config = config
        self.settings = config.data_lake
        self.retention = retention_for(None)
        self.key = PlatformKey(self, "LakeKey", alias=lake_key_alias(config), retention=self.retention).key
        self.access_logs = AccessLogBucket(
            self, "AccessLogs", retention=self.retention, expire_after_days=365
        )
        self.zone_buckets: dict[Zone, s3.Bucket] = {zone: self._zone_bucket(zone) for zone in Zone}
        # Tenant uploads start fine-tuning in their stage (stacks/blocks/upload_events.py). The bucket
        # property, not CDK's notification custom resource: no extra Lambda with a managed policy.
        raw = self.zone_buckets[Zone.RAW].node.default_child
        assert isinstance(raw, s3.CfnBucket)
        raw.add_property_override(
            "NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled", True
        )
        for zone, bucket in self.zone_buckets.items():
            self._allow_business_units(zone, bucket)
            for binding in self._account_bindings(
                ["s3:*"], [self._bucket_arn(zone), self._bucket_arn(zone, "*")]
            ):
                bucket.add_to_resource_policy(binding)
            self._fence_prefixes(bucket)
            if zone is PROMOTION_ZONE:
                self._allow_promotion(bucket)
        if not config.is_sandbox:
            # In sandbox mode the key's own account is every business unit's: its IAM policies decide.
            self._allow_key_use()
        self.upload_events = (
            None
            if config.is_sandbox
            else UploadEventForwarding(
                self,
                "TenantUploadEvents",
                config=config,
                raw_bucket=lake_bucket_name(config, Zone.RAW),
                key=self.key,
            )
        )
        self.shared_writes_trail = self._audit_shared_writes()
        self.databases = {bu.name: self._catalog(bu.name) for bu in config.business_units}
        self.workgroup = self._athena()
        self._lake_formation()
        acknowledge_cdk_managed_providers(self)

    # ---- storage --------------------------------------------------------------------------------

    def _zone_bucket(self, zone: Zone) -> s3.Bucket:
        lifecycle = self.settings.zones.for_zone(zone)
        return SecureBucket(
            self,
            zone_construct_id(zone),
            bucket_name=lake_bucket_name(self.config, zone),
            key=self.key,
            access_logs=self.access_logs,
            retention=self.retention,
            # No S3 Bucket Key: the KMS encryption context must be the object ARN, so the key policy can
            # pin each stage to its own prefix (costs one KMS request per object operation).
            bucket_key=False,
            lifecycle_rules=zone_lifecycle_rules(lifecycle, self.settings.noncurrent_version_expiry_days),
            object_lock_default_retention=object_lock(lifecycle),
        )

    def _business_unit_accounts(self, business_unit: str) -> list[str]:
        bu = self.config.business_unit(business_unit)
        return sorted(set(self.config.accounts_of(bu).values()))

    def _scope_accounts(self, business_unit: str, scope: LakeScope) -> list[str]:
        """The accounts whose roles use `scope`: the stage's own, or (shared) all of the business unit's."""
        if scope is LakeScope.SHARED:
            return self._business_unit_accounts(business_unit)
        bu = self.config.business_unit(business_unit)
        return [self.config.environment(bu, Stage(scope.value)).account]

    def _stage_accounts(self) -> list[str]:
        """Every business unit stage's account (in sandbox mode: the one account)."""
        return sorted({a for bu in self.config.business_units for a in self.config.accounts_of(bu).values()})

    def _stage_principals(self) -> list[iam.IPrincipal]:
        # Literal ARNs (the home region fixes the partition): a token would make each one a Fn::Join
        # three times as long, and these lists are what grows with business units.
        return [iam.ArnPrincipal(f"arn:{self.fixed_partition}:iam::{a}:root") for a in self._stage_accounts()]

    @cached_property  # two jsii calls, read for every bucket ARN and principal of the lake
    def fixed_partition(self) -> str:
        return RegionInfo.get(self.config.home_region).partition or Aws.PARTITION

    def _bucket_arn(self, zone: Zone, objects: str | None = None) -> str:
        """A zone bucket's ARN (or of `objects` in it) as a literal: the bucket names are fixed."""
        arn = f"arn:{self.fixed_partition}:s3:::{lake_bucket_name(self.config, zone)}"
        return arn if objects is None else f"{arn}/{objects}"

    def _allow_business_units(self, zone: Zone, bucket: s3.Bucket) -> None:
        """One statement for every business unit stage: its own tags name the prefix it reaches.

        The resource is `${BusinessUnit}/${Stage}/` (and `${BusinessUnit}/shared/` where the zone is
        readable), so the statement does not grow with business units. Tags are set by the principal's
        own account: `_account_bindings` denies any tag but its own to each stage account, and
        `_fence_prefixes` trims what this statement leaves broad (listing outside the own prefixes,
        writes under `shared/`). Only the declared zone access is granted; nothing grants delete.
        """
        access = self.config.data_lake.business_unit_access.for_zone(zone)
        if access is None:
            return
        own = f"${{{BUSINESS_UNIT_TAG}}}/${{{STAGE_TAG}}}/*"
        shared = f"${{{BUSINESS_UNIT_TAG}}}/{LakeScope.SHARED.value}/*"
        actions = (list(OBJECT_READ_ACTIONS) if access.reads else []) + (
            list(OBJECT_WRITE_ACTIONS) if access.writes else []
        )
        resources = [self._bucket_arn(zone, own)]
        if access.reads:
            # Listing is fenced to the own and shared prefixes (OnlyOwnStageListing); shared is read-only
            # (SharedIsReadOnly).
            actions.append("s3:ListBucket")
            resources += [self._bucket_arn(zone), self._bucket_arn(zone, shared)]
        bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="BusinessUnitStagesOwnPrefix",
                principals=self._stage_principals(),
                actions=actions,
                resources=resources,
                conditions=self._tagged_business_unit_stage(),
            )
        )

    @staticmethod
    def _tagged_business_unit_stage() -> dict[str, Any]:
        """A business unit stage's principal: both tags present, and not a shared stage's role."""
        return {
            "Null": {BUSINESS_UNIT_TAG: "false", STAGE_TAG: "false"},
            "StringNotEquals": {BUSINESS_UNIT_TAG: SHARED_TAG_VALUE},
        }

    def _account_bindings(self, actions: list[str], resources: list[str]) -> list[iam.PolicyStatement]:
        """Each stage account may only carry its own business unit's and stage's tags (multi-account mode).

        Principal tags are set by the principal's own account, so the tag-scoped allows need this: a
        retail dev role tagged `Stage=prod`, or a finance role tagged `BusinessUnit=retail`, is denied.
        One statement per business unit (its accounts) and one per stage (every business unit's account
        of that stage): a policy grows by one short statement per business unit, not by statements per
        zone and stage. A principal without the tag is not matched here; the allows require both tags.
        """
        if self.config.is_sandbox:
            return []  # one account: the tags alone separate the stages there (see _fence_prefixes)
        bindings: list[tuple[str, list[str], str, str]] = [
            (
                "Bu" + camel(bu.name),
                self._business_unit_accounts(bu.name),
                BUSINESS_UNIT_TAG,
                bu.name,
            )
            for bu in self.config.business_units
        ]
        bindings += [
            (
                "Stage" + camel(stage.value),
                sorted(
                    self.config.environment(bu, Stage(stage.value)).account
                    for bu in self.config.business_units
                ),
                STAGE_TAG,
                stage.value,
            )
            for stage in LAKE_STAGES
        ]
        return [
            iam.PolicyStatement(
                sid=sid,
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=actions,
                resources=resources,
                conditions={
                    "StringEquals": {"aws:PrincipalAccount": accounts},
                    "StringNotEquals": {tag: value},
                    "Null": {tag: "false"},
                },
            )
            for sid, accounts, tag, value in bindings
        ]

    def _allow_promotion(self, bucket: s3.Bucket) -> None:
        """The tooling account's promotion role alone writes `<bu>/shared/` (by ARN: it may not exist yet)."""
        # One statement for the objects of every business unit's shared prefix, one for listing them.
        requests = dataset_promotion_requests(self.config)
        statements = lake_access_statements(
            requests, bucket_arns={PROMOTION_ZONE: self._bucket_arn(PROMOTION_ZONE)}, kms_key_arn=""
        )
        objects = [s for s in statements if s["Resource"] != [""] and "Condition" not in s]
        listings = [s for s in statements if "Condition" in s and "s3:prefix" in json.dumps(s["Condition"])]
        by_promotion_role = {"ArnEquals": {"aws:PrincipalArn": dataset_promotion_role_arn(self.config)}}
        bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="PromotionObjects",
                principals=[iam.AccountPrincipal(self.config.tooling_account)],
                actions=sorted({a for s in objects for a in s["Action"]}),
                resources=[r for s in objects for r in s["Resource"]],
                conditions=by_promotion_role,
            )
        )
        bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="PromotionListing",
                principals=[iam.AccountPrincipal(self.config.tooling_account)],
                actions=["s3:ListBucket"],
                resources=[self._bucket_arn(PROMOTION_ZONE)],
                conditions={
                    **by_promotion_role,
                    "StringLike": {
                        "s3:prefix": [p for s in listings for p in s["Condition"]["StringLike"]["s3:prefix"]]
                    },
                },
            )
        )
        bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="OnlyPromotionWritesShared",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=SHARED_WRITE_ACTIONS,
                resources=[bucket.arn_for_objects("*/shared/*")],
                conditions={"ArnNotEquals": {"aws:PrincipalArn": dataset_promotion_role_arn(self.config)}},
            )
        )

    def _fence_prefixes(self, bucket: s3.Bucket) -> None:
        """A principal tagged with a business unit reaches only `<bu>/<its stage>/` and reads `<bu>/shared/`.

        Holds whatever else allows it: in sandbox mode, where every stage's roles live in one account,
        these denies (on the BusinessUnit and Stage principal tags) are what separates the stages.
        """
        own_bu = "${" + BUSINESS_UNIT_TAG + "}"
        own_stage = f"{own_bu}/${{{STAGE_TAG}}}/"
        shared = f"{own_bu}/{LakeScope.SHARED.value}/"
        tagged_not_shared = {
            "Null": {BUSINESS_UNIT_TAG: "false"},
            "StringNotEquals": {BUSINESS_UNIT_TAG: SHARED_TAG_VALUE},
        }
        bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="StageTagRequired",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["s3:*"],
                resources=[bucket.bucket_arn, bucket.arn_for_objects("*")],
                conditions={**tagged_not_shared, "Null": {BUSINESS_UNIT_TAG: "false", STAGE_TAG: "true"}},
            )
        )
        bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="OnlyOwnStageObjects",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["s3:*"],
                not_resources=[
                    bucket.bucket_arn,
                    bucket.arn_for_objects(f"{own_stage}*"),
                    bucket.arn_for_objects(f"{shared}*"),
                ],
                conditions=tagged_not_shared,
            )
        )
        bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="SharedIsReadOnly",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                not_actions=SHARED_READ_ACTIONS,
                resources=[bucket.arn_for_objects(f"{shared}*")],
                conditions=tagged_not_shared,
            )
        )
        bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="OnlyOwnStageListing",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["s3:ListBucket", "s3:ListBucketVersions"],
                resources=[bucket.bucket_arn],
                conditions={
                    **tagged_not_shared,
                    "StringNotLike": {"s3:prefix": [own_stage, f"{own_stage}*", shared, f"{shared}*"]},
                },
            )
        )

    def _allow_key_use(self) -> None:
        """Stage roles use the key only through S3, only for objects under their own stage's prefix.

        The zone buckets use no S3 Bucket Key, so the encryption context S3 sends is the object's ARN
        and `kms:EncryptionContext:aws:s3:arn` can pin `<zone bucket>/<bu>/<stage>/*`, here through the
        principal's tags (`${BusinessUnit}/${Stage}/`), which `_account_bindings` ties to the
        account. Two statements for every business unit, plus one short binding per business unit:
        which zones a stage may write is the bucket policies' business (they refuse the write before S3
        asks for a data key), so the key policy does not repeat it per zone.
        """
        own = f"${{{BUSINESS_UNIT_TAG}}}/${{{STAGE_TAG}}}/*"
        shared = f"${{{BUSINESS_UNIT_TAG}}}/{LakeScope.SHARED.value}/*"
        zones = [z for z in Zone if self.config.data_lake.business_unit_access.for_zone(z) is not None]
        readable = [
            z for z in zones if (a := self.config.data_lake.business_unit_access.for_zone(z)) and a.reads
        ]
        for sid, actions, objects in (
            (
                "BusinessUnitStagesThroughS3",
                ["kms:Decrypt", "kms:GenerateDataKey"],
                [self._bucket_arn(z, own) for z in zones],
            ),
            (
                "BusinessUnitSharedDecryptThroughS3",
                ["kms:Decrypt"],
                [self._bucket_arn(z, shared) for z in readable],
            ),
        ):
            self.key.add_to_resource_policy(
                iam.PolicyStatement(
                    sid=sid,
                    principals=self._stage_principals(),
                    actions=actions,
                    resources=["*"],
                    conditions={
                        **self._tagged_business_unit_stage(),
                        "StringEquals": {"kms:ViaService": lake_via_service(self.config)},
                        "StringLike": {"kms:EncryptionContext:aws:s3:arn": objects},
                    },
                )
            )
        for binding in self._account_bindings(["kms:*"], ["*"]):
            self.key.add_to_resource_policy(binding)
        promotion = [self._objects(r) for r in dataset_promotion_requests(self.config)]
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="PromotionThroughS3",
                principals=[iam.AccountPrincipal(self.config.tooling_account)],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],
                conditions={
                    "StringEquals": {"kms:ViaService": lake_via_service(self.config)},
                    "ArnEquals": {"aws:PrincipalArn": dataset_promotion_role_arn(self.config)},
                    "StringLike": {"kms:EncryptionContext:aws:s3:arn": promotion},
                },
            )
        )

    def _objects(self, request: LakeAccessRequest) -> str:
        return f"{lake_bucket_arn(self.config, request.zone)}/{request.prefix}*"

    def _audit_shared_writes(self) -> cloudtrail.Trail:
        """A CloudTrail trail of every write to `<bu>/shared/` in the datasets zone: who promoted what, when.

        Data events only (no management events, one region): each PutObject/DeleteObject on a shared key,
        with the caller's ARN, delivered to the lake's access-log bucket with log file validation (a
        digest per hour proves the files were not changed). Server access logs of every zone bucket go
        to the same bucket.
        """
        datasets = self.zone_buckets[PROMOTION_ZONE]
        trail = cloudtrail.Trail(
            self,
            "SharedWritesTrail",
            bucket=self.access_logs,
            s3_key_prefix=SHARED_WRITES_TRAIL_PREFIX,
            is_multi_region_trail=False,
            include_global_service_events=False,
            management_events=cloudtrail.ReadWriteType.NONE,
            enable_file_validation=True,
            send_to_cloud_watch_logs=False,
        )
        trail.add_s3_event_selector(
            [
                cloudtrail.S3EventSelector(
                    bucket=datasets, object_prefix=f"{bu.name}/{LakeScope.SHARED.value}/"
                )
                for bu in self.config.business_units
            ],
            read_write_type=cloudtrail.ReadWriteType.WRITE_ONLY,
            include_management_events=False,
        )
        return trail

    # ---- catalog and queries ------------------------------------------------------------------

    def _catalog(self, business_unit: str) -> glue.CfnDatabase:
        name = lake_database_name(self.config, business_unit)
        database = glue.CfnDatabase(
            self,
            f"{business_unit}-database",
            catalog_id=self.account_id,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=name, description=f"Data lake tables of business unit {business_unit}"
            ),
        )
        for table in TABLES.values():
            self._table(business_unit, name, table).add_resource_dependency(database)
        return database

    def _table(self, business_unit: str, database: str, table: GlueTable) -> glue.CfnTable:
        """One table per business unit over all its stages; `stage` is a projected partition column."""
        bucket = lake_bucket_name(self.config, table.zone)
        bu_location = f"s3://{bucket}/{check_business_unit(business_unit)}/"
        return glue.CfnTable(
            self,
            f"{business_unit}-{table.name}",
            catalog_id=self.account_id,
            database_name=database,
            table_input=glue.CfnTable.TableInputProperty(
                name=table.name,
                table_type="EXTERNAL_TABLE",
                parameters={
                    "classification": "json",
                    "projection.enabled": "true",
                    "projection.stage.type": "enum",
                    "projection.stage.values": ",".join(s.value for s in LAKE_STAGES),
                    "projection.dt.type": "date",
                    "projection.dt.format": "yyyy-MM-dd",
                    "projection.dt.range": f"{PROJECTION_START},NOW",
                    "projection.dt.interval": "1",
                    "projection.dt.interval.unit": "DAYS",
                    "storage.location.template": f"{bu_location}${{stage}}/{table.name}/dt=${{dt}}/",
                },
                partition_keys=[
                    glue.CfnTable.ColumnProperty(name=c.name, type=c.type) for c in table.partition_keys
                ],
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    location=bu_location,
                    input_format=INPUT_FORMAT,
                    output_format=OUTPUT_FORMAT,
                    serde_info=glue.CfnTable.SerdeInfoProperty(serialization_library=JSON_SERDE),
                    columns=[glue.CfnTable.ColumnProperty(name=c.name, type=c.type) for c in table.columns],
                ),
            ),
        )

    def _athena(self) -> athena.CfnWorkGroup:
        self.query_results = SecureBucket(
            self,
            "QueryResults",
            key=self.key,
            access_logs=self.access_logs,
            retention=self.retention,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-query-results",
                    expiration=durations.days(QUERY_RESULTS_EXPIRY_DAYS),
                    noncurrent_version_expiration=durations.days(1),
                )
            ],
        )
        workgroup = athena.CfnWorkGroup(
            self,
            "Workgroup",
            name=f"{self.config.organization.prefix}-data-lake",
            description="Queries over the data lake tables; results encrypted with the lake key",
            state="ENABLED",
            recursive_delete_option=not self.retention.retains,
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                enforce_work_group_configuration=True,
                publish_cloud_watch_metrics_enabled=True,
                bytes_scanned_cutoff_per_query=self.settings.athena_bytes_scanned_cutoff_per_query,
                engine_version=athena.CfnWorkGroup.EngineVersionProperty(
                    selected_engine_version="Athena engine version 3"
                ),
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=f"s3://{self.query_results.bucket_name}/results/",
                    expected_bucket_owner=self.account_id,
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_KMS", kms_key=self.key.key_arn
                    ),
                ),
            ),
        )
        workgroup.apply_removal_policy(self.retention.removal_policy)
        return workgroup

    # ---- Lake Formation -----------------------------------------------------------------------

    def _lake_formation(self) -> None:
        # CloudFormation deploys with the CDK execution role: it must be a Lake Formation admin to grant.
        # APPEND keeps the admins someone already set in the console.
        exec_role = (
            f"arn:{self.partition_token}:iam::{self.account_id}:role/"
            f"cdk-{DefaultStackSynthesizer.DEFAULT_QUALIFIER}-cfn-exec-role-{self.account_id}-{self.region_name}"
        )
        settings = lakeformation.CfnDataLakeSettings(
            self,
            "LakeFormationSettings",
            admins=[
                lakeformation.CfnDataLakeSettings.DataLakePrincipalProperty(
                    data_lake_principal_identifier=exec_role
                )
            ],
            mutation_type="APPEND",
            parameters={"CROSS_ACCOUNT_VERSION": "4"},
        )
        self._register_table_locations(settings)
        if self.config.is_sandbox:
            # One account: its IAM policies (and the prefix fence) govern; an account cannot be granted
            # to itself as an external principal.
            return
        for bu in self.config.business_units:
            database = lake_database_name(self.config, bu.name)
            for stage in LAKE_STAGES:
                account = self._scope_accounts(bu.name, stage)[0]
                self._grant(
                    f"{bu.name}-{stage.value}-database",
                    account,
                    DATABASE_PERMISSIONS,
                    lakeformation.CfnPrincipalPermissions.ResourceProperty(
                        database=lakeformation.CfnPrincipalPermissions.DatabaseResourceProperty(
                            catalog_id=self.account_id, name=database
                        )
                    ),
                    settings,
                    self.databases[bu.name],
                )
                for table in TABLES.values():
                    stage_rows = self._stage_filter(bu.name, database, table.name, stage)
                    self._grant(
                        f"{bu.name}-{stage.value}-{table.name}",
                        account,
                        FILTER_PERMISSIONS,
                        lakeformation.CfnPrincipalPermissions.ResourceProperty(
                            data_cells_filter=lakeformation.CfnPrincipalPermissions.DataCellsFilterResourceProperty(
                                database_name=database,
                                name=stage_filter_name(stage),
                                table_catalog_id=self.account_id,
                                table_name=table.name,
                            )
                        ),
                        settings,
                        stage_rows,
                    )

    def _stage_filter(
        self, business_unit: str, database: str, table: str, stage: LakeScope
    ) -> lakeformation.CfnDataCellsFilter:
        """Rows of one stage only: Lake Formation's per-stage boundary (the tables span every stage)."""
        stage_rows = lakeformation.CfnDataCellsFilter(
            self,
            f"{business_unit}-{table}-{stage.value}-rows",
            table_catalog_id=self.account_id,
            database_name=database,
            table_name=table,
            name=stage_filter_name(stage),
            row_filter=lakeformation.CfnDataCellsFilter.RowFilterProperty(
                filter_expression=stage_row_filter(stage)
            ),
            column_wildcard=lakeformation.CfnDataCellsFilter.ColumnWildcardProperty(excluded_column_names=[]),
        )
        stage_rows.node.add_dependency(self.node.find_child(f"{business_unit}-{table}"))
        return stage_rows

    def _grant(
        self,
        construct_id: str,
        account: str,
        permissions: list[str],
        resource: lakeformation.CfnPrincipalPermissions.ResourceProperty,
        settings: lakeformation.CfnDataLakeSettings,
        depends_on: Any,
    ) -> None:
        grant = lakeformation.CfnPrincipalPermissions(
            self,
            construct_id,
            catalog=self.account_id,
            principal=lakeformation.CfnPrincipalPermissions.DataLakePrincipalProperty(
                data_lake_principal_identifier=account
            ),
            resource=resource,
            permissions=permissions,
            # The stage account's own Lake Formation admin passes them on to its roles.
            permissions_with_grant_option=permissions,
        )
        grant.add_resource_dependency(settings)
        grant.add_resource_dependency(depends_on)

    def _register_table_locations(self, settings: lakeformation.CfnDataLakeSettings) -> None:
        """Register the zones holding tables, read through a role of our own (the lake key is a CMK)."""
        zones = sorted({table.zone for table in TABLES.values()})
        role = iam.Role(
            self,
            "LakeFormationLocationRole",
            assumed_by=iam.ServicePrincipal("lakeformation.amazonaws.com"),
            description="Reads the registered data lake table locations for Lake Formation",
        )
        # The registered location is the whole table-zone bucket: the role reads every business unit's
        # and stage's table data there (Lake Formation vends it per query through the stage row filters).
        # One statement per zone, not one per business unit stage: an IAM role's policies are size-limited.
        statements = [
            statement
            for zone in zones
            for statement in (
                {
                    "Effect": "Allow",
                    "Action": list(OBJECT_READ_ACTIONS),
                    "Resource": [f"{lake_bucket_arn(self.config, zone)}/*"],
                },
                {
                    "Effect": "Allow",
                    "Action": ["s3:ListBucket"],
                    "Resource": [lake_bucket_arn(self.config, zone)],
                },
            )
        ]
        for statement in statements:
            role.add_to_principal_policy(iam.PolicyStatement.from_json(statement))
        self.key.grant_decrypt(role)
        for zone in zones:
            acknowledge(
                role,
                f"AwsSolutions-IAM5[Resource::{nag_resource(lake_bucket_arn(self.config, zone))}/*]",
                "Lake Formation's registered location is this whole table-zone bucket (every business unit's "
                "and stage's table data); the role only reads objects, and Lake Formation hands them out per "
                "query through the stage row filters",
            )
        for zone in zones:
            registration = lakeformation.CfnResource(
                self,
                f"Register{zone_construct_id(zone)}",
                resource_arn=self.zone_buckets[zone].bucket_arn,
                use_service_linked_role=False,
                role_arn=role.role_arn,
            )
            registration.add_resource_dependency(settings)
