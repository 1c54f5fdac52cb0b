"""Data lake account: a bucket per zone, the Glue catalog, Athena and Lake Formation grants.

Who may do what is declared once in the config (`data_lake.business_unit_access`): the bucket and key
policies here allow exactly that for principals tagged `BusinessUnit=<bu>` in that business unit's
accounts, and `stacks.blocks.lake_access.grant_lake_access` gives their roles the matching identity
half. A deny on every bucket keeps a tagged principal inside its own prefix even in sandbox mode,
where all business units share one account.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import DefaultStackSynthesizer, Duration
from aws_cdk import aws_athena as athena
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lakeformation as lakeformation
from aws_cdk import aws_s3 as s3
from constructs import Construct

from common.glue_schema import INPUT_FORMAT, JSON_SERDE, OUTPUT_FORMAT, TABLES, GlueTable
from common.lake_layout import Zone, table_prefix
from stacks.blocks.encryption import PlatformKey
from stacks.blocks.lake_access import (
    LakeAccess,
    LakeAccessRequest,
    acknowledge_lake_wildcards,
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
from stacks.settings import PlatformConfig
from stacks.settings.data_lake import ZoneLifecycle

BUSINESS_UNIT_TAG = "aws:PrincipalTag/BusinessUnit"
# Platform roles of the shared stages carry this tag value (stacks.stages.SHARED_BUSINESS_UNIT); they
# serve every business unit (e.g. the Lake Formation location role), so the prefix fence skips them.
SHARED_TAG_VALUE = "shared"
# First day Athena projects `dt` partitions for; days before it are never scanned.
PROJECTION_START = "2024-01-01"
QUERY_RESULTS_EXPIRY_DAYS = 30
TABLE_PERMISSIONS = ["SELECT", "DESCRIBE"]
DATABASE_PERMISSIONS = ["DESCRIBE"]


def camel(name: str) -> str:
    """`evaluation_results` / `fin-ops` -> `EvaluationResults` / `FinOps` (construct ids, policy Sids)."""
    return "".join(part.title() for part in name.replace("-", "_").split("_"))


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
            lifecycle_rules=zone_lifecycle_rules(lifecycle, self.settings.noncurrent_version_expiry_days),
            object_lock_default_retention=object_lock(lifecycle),
        )

    def _business_unit_accounts(self, business_unit: str) -> list[str]:
        bu = self.config.business_unit(business_unit)
        return sorted(set(self.config.accounts_of(bu).values()))

    def _allow_business_units(self, zone: Zone, bucket: s3.Bucket) -> None:
        """Exactly the statements the business unit's roles get, from the lake side, tag-conditioned."""
        for grant in (g for g in self.grants if g.zone is zone):
            statements = s3_statements(grant, bucket.bucket_arn)
            principals = [iam.AccountPrincipal(a) for a in self._business_unit_accounts(grant.business_unit)]
            for statement in statements:
                conditions = dict(statement.get("Condition", {}))
                conditions["StringEquals"] = {BUSINESS_UNIT_TAG: grant.business_unit}
                bucket.add_to_resource_policy(
                    iam.PolicyStatement(
                        sid=camel(grant.business_unit)
                        + ("Listing" if "Condition" in statement else "Objects"),
                        principals=principals,
                        actions=statement["Action"],
                        resources=statement["Resource"],
                        conditions=conditions,
                    )
                )

    def _fence_prefixes(self, bucket: s3.Bucket) -> None:
        """A principal tagged with a business unit reaches only `<its business unit>/`, whatever else allows it."""
        own_prefix = "${" + BUSINESS_UNIT_TAG + "}/"
        tagged_not_shared = {
            "Null": {BUSINESS_UNIT_TAG: "false"},
            "StringNotEquals": {BUSINESS_UNIT_TAG: SHARED_TAG_VALUE},
        }
        bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="OnlyOwnBusinessUnitObjects",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["s3:*"],
                not_resources=[bucket.bucket_arn, bucket.arn_for_objects(f"{own_prefix}*")],
                conditions=tagged_not_shared,
            )
        )
        bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="OnlyOwnBusinessUnitListing",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["s3:ListBucket", "s3:ListBucketVersions"],
                resources=[bucket.bucket_arn],
                conditions={
                    **tagged_not_shared,
                    "StringNotLike": {"s3:prefix": [own_prefix, f"{own_prefix}*"]},
                },
            )
        )

    def _allow_key_use(self) -> None:
        """Business unit roles use the key only through S3 and only for the zone buckets they may use."""
        for bu in self.config.business_units:
            grants = [g for g in self.grants if g.business_unit == bu.name]
            principals = [iam.AccountPrincipal(a) for a in self._business_unit_accounts(bu.name)]
            for sid, actions, zones in (
                ("Decrypt", ["kms:Decrypt"], [g.zone for g in grants]),
                ("Encrypt", ["kms:GenerateDataKey"], [g.zone for g in grants if g.access.writes]),
            ):
                if not zones:
                    continue
                self.key.add_to_resource_policy(
                    iam.PolicyStatement(
                        sid=f"{camel(bu.name)}{sid}ThroughS3",
                        principals=principals,
                        actions=actions,
                        resources=["*"],
                        conditions={
                            "StringEquals": {
                                "kms:ViaService": lake_via_service(self.config),
                                BUSINESS_UNIT_TAG: bu.name,
                            },
                            "ForAnyValue:StringEquals": {
                                "kms:EncryptionContext:aws:s3:arn": [
                                    lake_bucket_arn(self.config, z) for z in zones
                                ]
                            },
                        },
                    )
                )

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
        bucket = lake_bucket_name(self.config, table.zone)
        location = f"s3://{bucket}/{table_prefix(business_unit, table.name)}"
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
                    "projection.dt.type": "date",
                    "projection.dt.format": "yyyy-MM-dd",
                    "projection.dt.range": f"{PROJECTION_START},NOW",
                    "projection.dt.interval": "1",
                    "projection.dt.interval.unit": "DAYS",
                    "storage.location.template": f"{location}dt=${{dt}}/",
                },
                partition_keys=[
                    glue.CfnTable.ColumnProperty(name=c.name, type=c.type) for c in table.partition_keys
                ],
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    location=location,
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
            for account in self._business_unit_accounts(bu.name):
                for kind, permissions, resource in (
                    (
                        "database",
                        DATABASE_PERMISSIONS,
                        lakeformation.CfnPrincipalPermissions.ResourceProperty(
                            database=lakeformation.CfnPrincipalPermissions.DatabaseResourceProperty(
                                catalog_id=self.account, name=database
                            )
                        ),
                    ),
                    (
                        "tables",
                        TABLE_PERMISSIONS,
                        lakeformation.CfnPrincipalPermissions.ResourceProperty(
                            table=lakeformation.CfnPrincipalPermissions.TableResourceProperty(
                                catalog_id=self.account, database_name=database, table_wildcard={}
                            )
                        ),
                    ),
                ):
                    grant = lakeformation.CfnPrincipalPermissions(
                        self,
                        f"{bu.name}-{account}-{kind}",
                        catalog=self.account,
                        principal=lakeformation.CfnPrincipalPermissions.DataLakePrincipalProperty(
                            data_lake_principal_identifier=account
                        ),
                        resource=resource,
                        permissions=permissions,
                        # The business unit account's own Lake Formation admin passes them on to its roles.
                        permissions_with_grant_option=permissions,
                    )
                    grant.add_resource_dependency(settings)
                    grant.add_resource_dependency(self.databases[bu.name])

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
            for statement in s3_statements(
                LakeAccessRequest(business_unit=bu.name, zone=zone, access=LakeAccess.READ),
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
