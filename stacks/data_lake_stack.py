"""Data lake account: a bucket per zone, the Glue catalog, Athena and Lake Formation grants.

Who may do what is declared once in the config (`data_lake.business_unit_access`), per business unit
stage: the bucket and key policies here allow exactly that on `<bu>/<stage>/` for principals of that
stage's account tagged `BusinessUnit=<bu>` and `Stage=<stage>` (plus read on `<bu>/shared/`), and
`stacks.blocks.lake_access.grant_lake_access` gives their roles the matching identity half. A deny
on every bucket keeps a tagged principal inside its own stage's prefix even in sandbox mode, where
all business units and stages share one account. `<bu>/shared/` is written only by the tooling
account's dataset promotion role; every other writer is denied.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import DefaultStackSynthesizer, Duration
from aws_cdk import aws_athena as athena
from aws_cdk import aws_cloudtrail as cloudtrail
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lakeformation as lakeformation
from aws_cdk import aws_s3 as s3
from constructs import Construct

from common.glue_schema import INPUT_FORMAT, JSON_SERDE, OUTPUT_FORMAT, TABLES, GlueTable
from common.lake_layout import LAKE_STAGES, LakeScope, Zone, check_business_unit
from stacks.blocks.encryption import PlatformKey
from stacks.blocks.lake_access import (
    PROMOTION_ZONE,
    LakeAccess,
    LakeAccessRequest,
    acknowledge_lake_wildcards,
    dataset_promotion_requests,
    dataset_promotion_role_arn,
    declared_access,
    lake_access_statements,
    lake_bucket_arn,
    lake_bucket_name,
    lake_database_name,
    lake_key_alias,
    lake_via_service,
)
from stacks.blocks.nag import acknowledge_cdk_managed_providers
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


def s3_statements(request: LakeAccessRequest, bucket_arn: str) -> list[dict[str, Any]]:
    """The bucket-side statements of `request` (the key's are handled by the key policy)."""
    return [
        s
        for s in lake_access_statements([request], bucket_arns={request.zone: bucket_arn}, kms_key_arn="")
        if s["Resource"] != [""]
    ]


def zone_lifecycle_rules(lifecycle: ZoneLifecycle, noncurrent_expiry_days: int) -> list[s3.LifecycleRule]:
    transitions = (
        [
            s3.Transition(
                storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                transition_after=Duration.days(lifecycle.transition_to_ia_days),
            )
        ]
        if lifecycle.transition_to_ia_days is not None
        else None
    )
    return [
        s3.LifecycleRule(
            id="zone-lifecycle",
            transitions=transitions,
            expiration=Duration.days(lifecycle.expiry_days) if lifecycle.expiry_days else None,
            noncurrent_version_expiration=Duration.days(noncurrent_expiry_days),
        )
    ]


def object_lock(lifecycle: ZoneLifecycle) -> s3.ObjectLockRetention | None:
    days = lifecycle.object_lock_retention_days
    if days is None:
        return None
    if lifecycle.object_lock_mode == "COMPLIANCE":
        return s3.ObjectLockRetention.compliance(Duration.days(days))
    return s3.ObjectLockRetention.governance(Duration.days(days))


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
        self.grants = declared_access(config)
        for zone, bucket in self.zone_buckets.items():
            self._allow_business_units(zone, bucket)
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
                self, "TenantUploadEvents", config=config, raw_bucket=lake_bucket_name(config, Zone.RAW)
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

    @staticmethod
    def _principal_tags(business_unit: str, scope: LakeScope) -> dict[str, str]:
        """Shared data: any stage of the business unit; stage data: that stage only."""
        tags = {BUSINESS_UNIT_TAG: business_unit}
        if scope is not LakeScope.SHARED:
            tags[STAGE_TAG] = scope.value
        return tags

    def _allow_business_units(self, zone: Zone, bucket: s3.Bucket) -> None:
        """Exactly the statements each business unit stage's roles get, from the lake side, tag-conditioned."""
        for grant in (g for g in self.grants if g.zone is zone):
            statements = s3_statements(grant, bucket.bucket_arn)
            principals = [
                iam.AccountPrincipal(a) for a in self._scope_accounts(grant.business_unit, grant.stage)
            ]
            for statement in statements:
                conditions = dict(statement.get("Condition", {}))
                conditions["StringEquals"] = self._principal_tags(grant.business_unit, grant.stage)
                bucket.add_to_resource_policy(
                    iam.PolicyStatement(
                        sid=camel(grant.business_unit)
                        + camel(grant.stage.value)
                        + ("Listing" if "Condition" in statement else "Objects"),
                        principals=principals,
                        actions=statement["Action"],
                        resources=statement["Resource"],
                        conditions=conditions,
                    )
                )

    def _allow_promotion(self, bucket: s3.Bucket) -> None:
        """The tooling account's promotion role alone writes `<bu>/shared/` (by ARN: it may not exist yet)."""
        for request in dataset_promotion_requests(self.config):
            for statement in s3_statements(request, bucket.bucket_arn):
                conditions = dict(statement.get("Condition", {}))
                conditions["ArnEquals"] = {"aws:PrincipalArn": dataset_promotion_role_arn(self.config)}
                bucket.add_to_resource_policy(
                    iam.PolicyStatement(
                        sid=camel(request.business_unit)
                        + "Promotion"
                        + ("Listing" if "Condition" in statement else "Objects"),
                        principals=[iam.AccountPrincipal(self.config.tooling_account)],
                        actions=statement["Action"],
                        resources=statement["Resource"],
                        conditions=conditions,
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
        and `kms:EncryptionContext:aws:s3:arn` can pin `<bucket>/<bu>/<stage>/*`.
        """
        for bu in self.config.business_units:
            for scope in (*LAKE_STAGES, LakeScope.SHARED):
                grants = [g for g in self.grants if g.business_unit == bu.name and g.stage is scope]
                principals = [iam.AccountPrincipal(a) for a in self._scope_accounts(bu.name, scope)]
                for sid, actions, objects in (
                    ("Decrypt", ["kms:Decrypt"], [self._objects(g) for g in grants]),
                    (
                        "Encrypt",
                        ["kms:GenerateDataKey"],
                        [self._objects(g) for g in grants if g.access.writes],
                    ),
                ):
                    if not objects:
                        continue
                    self.key.add_to_resource_policy(
                        iam.PolicyStatement(
                            sid=f"{camel(bu.name)}{camel(scope.value)}{sid}ThroughS3",
                            principals=principals,
                            actions=actions,
                            resources=["*"],
                            conditions={
                                "StringEquals": {
                                    "kms:ViaService": lake_via_service(self.config),
                                    **self._principal_tags(bu.name, scope),
                                },
                                "StringLike": {"kms:EncryptionContext:aws:s3:arn": objects},
                            },
                        )
                    )
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
            catalog_id=self.account,
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
            catalog_id=self.account,
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
                    expiration=Duration.days(QUERY_RESULTS_EXPIRY_DAYS),
                    noncurrent_version_expiration=Duration.days(1),
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
                    expected_bucket_owner=self.account,
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
            f"arn:{self.partition}:iam::{self.account}:role/"
            f"cdk-{DefaultStackSynthesizer.DEFAULT_QUALIFIER}-cfn-exec-role-{self.account}-{self.region}"
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
                            catalog_id=self.account, name=database
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
                                table_catalog_id=self.account,
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
            table_catalog_id=self.account,
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
            catalog=self.account,
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
        statements = [
            statement
            for zone in zones
            for bu in self.config.business_units
            for stage in LAKE_STAGES
            for statement in s3_statements(
                LakeAccessRequest(business_unit=bu.name, stage=stage, zone=zone, access=LakeAccess.READ),
                lake_bucket_arn(self.config, zone),
            )
        ]
        for statement in statements:
            role.add_to_principal_policy(iam.PolicyStatement.from_json(statement))
        self.key.grant_decrypt(role)
        acknowledge_lake_wildcards(role, statements, key_reason="unused: the key is granted by its ARN")
        for zone in zones:
            registration = lakeformation.CfnResource(
                self,
                f"Register{zone_construct_id(zone)}",
                resource_arn=self.zone_buckets[zone].bucket_arn,
                use_service_linked_role=False,
                role_arn=role.role_arn,
            )
            registration.add_resource_dependency(settings)
