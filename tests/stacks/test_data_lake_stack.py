"""The data lake stack: zone buckets, bucket and key policies, Glue tables, Athena, Lake Formation."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from aws_cdk import Environment, Stack
from aws_cdk import aws_iam as iam

from common import lake_queries
from common.glue_schema import TABLES, GlueColumn, GlueTable, SchemaError, check_query
from common.lake_layout import Zone
from stacks.app_factory import create_app
from stacks.blocks.lake_access import (
    LakeAccess,
    LakeAccessNotDeclaredError,
    LakeAccessRequest,
    declared_access,
    grant_lake_access,
    lake_bucket_name,
    lake_database_name,
)
from stacks.blocks.nag import add_nag_checks
from stacks.data_lake_stack import DataLakeStack
from stacks.settings import PlatformConfig, Stage
from tests.conftest import SynthesizedPlatform
from tests.stacks.policy_eval import Request, decide, resolve, secure_context

TAG = "aws:PrincipalTag/BusinessUnit"
STAGE_TAG = "aws:PrincipalTag/Stage"
QUERIES = [
    lake_queries.MEAN_JUDGE_SCORE_BY_MODEL_PER_DAY,
    lake_queries.BLOCK_RATE_BY_DIRECTION,
    lake_queries.LOW_RATING_SHARE,
]


def lake_template(platform: SynthesizedPlatform) -> dict[str, Any]:
    return platform.template(f"{platform.config.organization.prefix}-data-lake")


def of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == resource_type}


def bucket_policy(template: dict[str, Any], bucket_name: str) -> list[dict[str, Any]]:
    for policy in of_type(template, "AWS::S3::BucketPolicy").values():
        bucket_id = policy["Properties"]["Bucket"]["Ref"]
        if template["Resources"][bucket_id]["Properties"].get("BucketName") == bucket_name:
            statements: list[dict[str, Any]] = resolve(
                policy["Properties"]["PolicyDocument"]["Statement"], template
            )
            return statements
    raise KeyError(bucket_name)


def s3_decision(
    platform: SynthesizedPlatform,
    *,
    zone: Zone,
    account: str,
    tag: str | None,
    action: str,
    key: str | None = None,
    prefix: str | None = None,
    stage: str | None = None,
    principal_arn: str | None = None,
) -> str:
    bucket = lake_bucket_name(platform.config, zone)
    context = secure_context(**({TAG: tag} if tag else {}))
    if stage is not None:
        context[STAGE_TAG] = stage
    if principal_arn is not None:
        context["aws:PrincipalArn"] = principal_arn
    if prefix is not None:
        context["s3:prefix"] = prefix
    resource = f"arn:aws:s3:::{bucket}" + (f"/{key}" if key is not None else "")
    return decide(bucket_policy(lake_template(platform), bucket), Request(account, action, resource, context))


def account_of(config: PlatformConfig, business_unit: str, stage: Stage = Stage.PROD) -> str:
    return config.environment(config.business_unit(business_unit), stage).account


# ---- bucket policies: own prefix yes, another business unit's never ----------------------------


@pytest.mark.parametrize("platform_fixture", ["default_platform", "sandbox_platform"])
def test_a_business_unit_role_reaches_its_prefixes_and_not_another_business_units(
    platform_fixture: str, request: pytest.FixtureRequest
) -> None:
    platform: SynthesizedPlatform = request.getfixturevalue(platform_fixture)
    config = platform.config
    # Cross-account, only the bucket policy can allow; in sandbox mode the role's IAM policy allows and
    # the bucket policy must still fence the prefixes. Either way "allow" here and "deny" there.
    retail = account_of(config, "retail", Stage.DEV)
    me = {"account": retail, "tag": "retail", "stage": "dev"}
    for zone in (Zone.FEEDBACK, Zone.RAW, Zone.EVALUATION_RESULTS):
        for action in ("s3:PutObject", "s3:GetObject"):
            own = s3_decision(platform, zone=zone, action=action, key="retail/dev/x/part.jsonl", **me)  # type: ignore[arg-type]
            other = s3_decision(platform, zone=zone, action=action, key="finance/dev/x/part.jsonl", **me)  # type: ignore[arg-type]
            assert (zone, action, own, other) == (zone, action, "allow", "deny")
    assert (
        s3_decision(platform, zone=Zone.RAW, action="s3:ListBucket", prefix="retail/dev/t", **me) == "allow"
    )  # type: ignore[arg-type]
    for prefix in ("finance/", "retail/", "retail/prod/"):
        assert s3_decision(platform, zone=Zone.RAW, action="s3:ListBucket", prefix=prefix, **me) == "deny"  # type: ignore[arg-type]
    assert s3_decision(platform, zone=Zone.RAW, action="s3:ListBucket", **me) == "deny"  # type: ignore[arg-type]
    # Deleting is never granted.
    assert s3_decision(platform, zone=Zone.RAW, action="s3:DeleteObject", key="retail/dev/x", **me) != "allow"  # type: ignore[arg-type]


def test_cross_account_reach_needs_the_business_unit_tag_and_account(
    default_platform: SynthesizedPlatform,
) -> None:
    config = default_platform.config
    retail, finance = account_of(config, "retail"), account_of(config, "finance")
    key = "retail/prod/ratings/dt=2024-05-01/model=m/part.jsonl"
    put = {"zone": Zone.FEEDBACK, "action": "s3:PutObject", "key": key, "stage": "prod"}
    assert s3_decision(default_platform, account=retail, tag="retail", **put) == "allow"  # type: ignore[arg-type]
    assert s3_decision(default_platform, account=retail, tag=None, **put) == "implicit"  # type: ignore[arg-type]
    # A finance account role cannot claim to be retail: the retail statement names retail's accounts.
    assert s3_decision(default_platform, account=finance, tag="retail", **put) == "implicit"  # type: ignore[arg-type]
    assert s3_decision(default_platform, account="999999999999", tag="retail", **put) == "implicit"  # type: ignore[arg-type]
    # Nor can a retail dev account role claim to be prod: the prod statement names the prod account only.
    dev = account_of(config, "retail", Stage.DEV)
    assert s3_decision(default_platform, account=dev, tag="retail", **put) == "implicit"  # type: ignore[arg-type]


def test_read_only_zones_refuse_business_unit_writes(default_platform: SynthesizedPlatform) -> None:
    retail = account_of(default_platform.config, "retail")
    for zone in (Zone.PROMPT_CATALOG, Zone.EVALUATION_DATASETS):
        args = {
            "zone": zone,
            "account": retail,
            "tag": "retail",
            "key": "retail/prod/d.jsonl",
            "stage": "prod",
        }
        assert s3_decision(default_platform, action="s3:GetObject", **args) == "allow"  # type: ignore[arg-type]
        assert s3_decision(default_platform, action="s3:PutObject", **args) == "implicit"  # type: ignore[arg-type]


def test_sandbox_fence_spares_untagged_and_shared_platform_roles(
    sandbox_platform: SynthesizedPlatform,
) -> None:
    account = sandbox_platform.config.data_lake_account
    for tag in (None, "shared"):
        decision = s3_decision(
            sandbox_platform,
            zone=Zone.FEEDBACK,
            account=account,
            tag=tag,
            action="s3:GetObject",
            key="finance/dev/x",
        )
        assert decision == "implicit"  # left to their IAM policies, not denied


# ---- identity side: grant_lake_access --------------------------------------------------------


def role_statements(config: PlatformConfig, *requests: LakeAccessRequest) -> list[dict[str, Any]]:
    app = create_app()
    stack = Stack(
        app,
        "Consumer",
        env=Environment(account=account_of(config, "retail", Stage.DEV), region=config.home_region),
    )
    role = iam.Role(stack, "Writer", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    for lake_request in requests:
        grant_lake_access(role, config, lake_request)
    add_nag_checks(app)
    template = app.synth().get_stack_by_name("Consumer").template  # raises on an unacknowledged nag finding
    (policy,) = of_type(template, "AWS::IAM::Policy").values()
    statements: list[dict[str, Any]] = resolve(policy["Properties"]["PolicyDocument"]["Statement"], template)
    return statements


def test_granted_role_statements_are_exactly_what_the_lake_allows(
    default_platform: SynthesizedPlatform,
) -> None:
    config = default_platform.config
    retail = account_of(config, "retail", Stage.DEV)
    requests = [
        r
        for r in declared_access(config)
        if r.business_unit == "retail" and r.stage.value in ("dev", "shared")
    ]
    statements = role_statements(config, *requests)
    checked = 0
    for statement in statements:
        for action in statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]:
            for resource in (
                statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            ):
                if action.startswith("kms:"):
                    assert resource == f"arn:aws:kms:{config.home_region}:{config.data_lake_account}:key/*"
                    assert statement["Condition"]["ForAnyValue:StringEquals"] == {
                        "kms:ResourceAliases": ["alias/exco/data-lake"]
                    }
                    continue
                bucket, _, key = resource.removeprefix("arn:aws:s3:::").partition("/")
                zone = next(z for z in Zone if lake_bucket_name(config, z) == bucket)
                prefix = statement.get("Condition", {}).get("StringLike", {}).get("s3:prefix", [None])[0]
                decision = s3_decision(
                    default_platform,
                    zone=zone,
                    account=retail,
                    tag="retail",
                    action=action,
                    key=key.replace("*", "part.jsonl") if key else None,
                    prefix=prefix,
                    stage="dev",
                )
                assert (action, resource, decision) == (action, resource, "allow")
                assert key in ("", "retail/dev/*", "retail/shared/*")
                checked += 1
    assert checked > 20


def test_a_tenant_request_is_narrower_than_the_business_unit_prefix(default_config: PlatformConfig) -> None:
    statements = role_statements(
        default_config,
        LakeAccessRequest(
            business_unit="retail", stage="dev", zone=Zone.RAW, access=LakeAccess.WRITE, tenant_id="t-1"
        ),
    )
    assert (
        statements[0]["Resource"]
        == f"arn:aws:s3:::{lake_bucket_name(default_config, Zone.RAW)}/retail/dev/tenant=t-1/*"
    )


@pytest.mark.parametrize(
    ("request_data", "field"),
    [
        ({"business_unit": "retail", "stage": "dev", "zone": "prompt_catalog", "access": "write"}, "access"),
        (
            {
                "business_unit": "retail",
                "stage": "prod",
                "zone": "evaluation_datasets",
                "access": "read_write",
            },
            "access",
        ),
        ({"business_unit": "marketing", "stage": "dev", "zone": "raw", "access": "read"}, "business_unit"),
        # <bu>/shared/ is written by the promotion role only, even in a zone the stages may write.
        ({"business_unit": "retail", "stage": "shared", "zone": "feedback", "access": "write"}, "access"),
    ],
)
def test_a_request_beyond_the_config_is_refused_naming_the_field(
    default_config: PlatformConfig, request_data: dict[str, str], field: str
) -> None:
    app = create_app()
    stack = Stack(app, "Consumer")
    role = iam.Role(stack, "Writer", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    with pytest.raises(LakeAccessNotDeclaredError, match=f"^{field}:"):
        grant_lake_access(role, default_config, LakeAccessRequest.model_validate(request_data))


# ---- key policy --------------------------------------------------------------------------------


def key_statements(platform: SynthesizedPlatform) -> list[dict[str, Any]]:
    template = lake_template(platform)
    (key,) = of_type(template, "AWS::KMS::Key").values()
    statements: list[dict[str, Any]] = resolve(key["Properties"]["KeyPolicy"]["Statement"], template)
    return statements


def test_key_policy_lets_each_stage_use_the_key_only_for_its_own_prefix(
    default_platform: SynthesizedPlatform,
) -> None:
    config = default_platform.config
    by_sid = {s.get("Sid"): s for s in key_statements(default_platform)}
    encrypt = by_sid["RetailProdEncryptThroughS3"]
    decrypt = by_sid["RetailProdDecryptThroughS3"]
    assert encrypt["Action"] == "kms:GenerateDataKey"
    assert encrypt["Principal"]["AWS"] == "arn:aws:iam::333333333333:root"
    assert encrypt["Condition"]["StringEquals"] == {
        "kms:ViaService": "s3.eu-west-1.amazonaws.com",
        TAG: "retail",
        STAGE_TAG: "prod",
    }
    writable = encrypt["Condition"]["StringLike"]["kms:EncryptionContext:aws:s3:arn"]
    readable = decrypt["Condition"]["StringLike"]["kms:EncryptionContext:aws:s3:arn"]
    arn = {zone: f"arn:aws:s3:::{lake_bucket_name(config, zone)}" for zone in Zone}
    assert f"{arn[Zone.EVALUATION_RESULTS]}/retail/prod/*" in readable
    assert f"{arn[Zone.FEEDBACK]}/retail/prod/*" in writable
    assert f"{arn[Zone.PROMPT_CATALOG]}/retail/prod/*" not in writable
    assert all(o.startswith("arn:aws:s3:::") and o.endswith("/retail/prod/*") for o in writable + readable)
    shared = by_sid["RetailSharedDecryptThroughS3"]
    assert sorted(shared["Principal"]["AWS"]) == [
        f"arn:aws:iam::{a}:root" for a in ("333333333331", "333333333332", "333333333333")
    ]
    assert STAGE_TAG not in shared["Condition"]["StringEquals"]
    assert (
        f"{arn[Zone.EVALUATION_DATASETS]}/retail/shared/*"
        in shared["Condition"]["StringLike"]["kms:EncryptionContext:aws:s3:arn"]
    )
    assert "RetailSharedEncryptThroughS3" not in by_sid
    assert by_sid["FinanceDevEncryptThroughS3"]["Condition"]["StringEquals"][TAG] == "finance"


def test_sandbox_key_policy_has_no_business_unit_statements(sandbox_platform: SynthesizedPlatform) -> None:
    assert not [s for s in key_statements(sandbox_platform) if "ThroughS3" in str(s.get("Sid"))]


# ---- buckets -----------------------------------------------------------------------------------


@pytest.mark.parametrize("platform_fixture", ["default_platform", "sandbox_platform"])
def test_every_lake_bucket_is_cmk_encrypted_tls_only_private_logged_and_retained(
    platform_fixture: str, request: pytest.FixtureRequest
) -> None:
    platform: SynthesizedPlatform = request.getfixturevalue(platform_fixture)
    template = lake_template(platform)
    (key_id,) = of_type(template, "AWS::KMS::Key")
    buckets = of_type(template, "AWS::S3::Bucket")
    names = {b["Properties"].get("BucketName") for b in buckets.values()}
    assert {lake_bucket_name(platform.config, zone) for zone in Zone} <= names
    log_targets = [k for k, b in buckets.items() if "LoggingConfiguration" not in b["Properties"]]
    assert len(log_targets) == 1  # the access-log bucket (SSE-S3: S3 cannot log into SSE-KMS)
    for logical_id, bucket in buckets.items():
        props = bucket["Properties"]
        assert bucket["DeletionPolicy"] == bucket["UpdateReplacePolicy"] == "Retain"
        assert props["PublicAccessBlockConfiguration"] == dict.fromkeys(
            ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
        )
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}
        statements = bucket_policy(template, props["BucketName"]) if "BucketName" in props else None
        if logical_id in log_targets:
            continue
        (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
        assert rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == {"Fn::GetAtt": [key_id, "Arn"]}
        # Zone buckets: no S3 Bucket Key, so the key policy sees (and pins) each object's ARN.
        is_zone = props.get("BucketName") in {lake_bucket_name(platform.config, zone) for zone in Zone}
        assert rule["BucketKeyEnabled"] is not is_zone
        assert props["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": log_targets[0]}
        if statements is not None:
            denies = [s for s in statements if s["Effect"] == "Deny" and "Bool" in s.get("Condition", {})]
            assert [s["Condition"]["Bool"] for s in denies] == [{"aws:SecureTransport": "false"}]
    assert of_type(template, "Custom::S3AutoDeleteObjects") == {}


def synth_lake_only(config: PlatformConfig) -> dict[str, Any]:
    """Just the data lake stack, for settings the sample configs do not use."""
    app = create_app()
    stack = DataLakeStack(app, "Lake", config=config)
    add_nag_checks(app)
    template: dict[str, Any] = app.synth().get_stack_by_name(stack.stack_name).template
    return template


def test_lifecycle_and_object_lock_follow_the_settings(default_config: PlatformConfig) -> None:
    data_lake = default_config.data_lake.model_validate(
        {
            "zones": {
                "raw": {"transition_to_ia_days": 30, "expiry_days": 365},
                "feedback": {"object_lock_retention_days": 400, "object_lock_mode": "COMPLIANCE"},
                "curated": {"transition_to_ia_days": None},
            },
            "noncurrent_version_expiry_days": 14,
        }
    )
    template = synth_lake_only(default_config.model_copy(update={"data_lake": data_lake}))
    by_name = {
        b["Properties"].get("BucketName"): b["Properties"]
        for b in of_type(template, "AWS::S3::Bucket").values()
    }

    def zone_rule(zone: Zone) -> dict[str, Any]:
        rules = by_name[lake_bucket_name(default_config, zone)]["LifecycleConfiguration"]["Rules"]
        (rule,) = [r for r in rules if r["Id"] == "zone-lifecycle"]
        return rule

    assert zone_rule(Zone.RAW)["Transitions"] == [{"StorageClass": "STANDARD_IA", "TransitionInDays": 30}]
    assert zone_rule(Zone.RAW)["ExpirationInDays"] == 365
    assert zone_rule(Zone.RAW)["NoncurrentVersionExpiration"] == {"NoncurrentDays": 14}
    assert "Transitions" not in zone_rule(Zone.CURATED)
    assert "ExpirationInDays" not in zone_rule(Zone.FEEDBACK)
    feedback = by_name[lake_bucket_name(default_config, Zone.FEEDBACK)]
    assert feedback["ObjectLockEnabled"] is True
    assert feedback["ObjectLockConfiguration"]["Rule"]["DefaultRetention"] == {
        "Mode": "COMPLIANCE",
        "Days": 400,
    }
    assert "ObjectLockEnabled" not in by_name[lake_bucket_name(default_config, Zone.RAW)]


def test_default_zones_transition_to_ia_after_90_days_and_never_expire(
    default_platform: SynthesizedPlatform,
) -> None:
    template = lake_template(default_platform)
    for bucket in of_type(template, "AWS::S3::Bucket").values():
        rules = {r["Id"]: r for r in bucket["Properties"]["LifecycleConfiguration"]["Rules"]}
        if "zone-lifecycle" in rules:
            assert rules["zone-lifecycle"]["Transitions"] == [
                {"StorageClass": "STANDARD_IA", "TransitionInDays": 90}
            ]
            assert "ExpirationInDays" not in rules["zone-lifecycle"]


# ---- Glue, Athena ------------------------------------------------------------------------------


def synthesized_tables(platform: SynthesizedPlatform, business_unit: str) -> dict[str, GlueTable]:
    template = lake_template(platform)
    database = lake_database_name(platform.config, business_unit)
    tables = {}
    for table in of_type(template, "AWS::Glue::Table").values():
        if table["Properties"]["DatabaseName"] != database:
            continue
        table_input = table["Properties"]["TableInput"]
        descriptor = table_input["StorageDescriptor"]
        tables[table_input["Name"]] = GlueTable(
            name=table_input["Name"],
            zone=TABLES[table_input["Name"]].zone,
            columns=tuple(GlueColumn(c["Name"], c["Type"]) for c in descriptor["Columns"]),
            partition_keys=tuple(GlueColumn(c["Name"], c["Type"]) for c in table_input["PartitionKeys"]),
        )
    return tables


@pytest.mark.parametrize("platform_fixture", ["default_platform", "sandbox_platform"])
def test_each_business_unit_database_has_the_record_tables_with_projection(
    platform_fixture: str, request: pytest.FixtureRequest
) -> None:
    platform: SynthesizedPlatform = request.getfixturevalue(platform_fixture)
    template = lake_template(platform)
    databases = sorted(
        d["Properties"]["DatabaseInput"]["Name"] for d in of_type(template, "AWS::Glue::Database").values()
    )
    prefix = platform.config.organization.prefix
    assert databases == [f"{prefix}_finance_lake", f"{prefix}_retail_lake"]
    for business_unit in ("retail", "finance"):
        tables = synthesized_tables(platform, business_unit)
        assert tables == TABLES
        for table in of_type(template, "AWS::Glue::Table").values():
            table_input = table["Properties"]["TableInput"]
            if table["Properties"]["DatabaseName"] != lake_database_name(platform.config, business_unit):
                continue
            name = table_input["Name"]
            location = f"s3://{lake_bucket_name(platform.config, TABLES[name].zone)}/{business_unit}/"
            assert table_input["StorageDescriptor"]["Location"] == location
            assert table_input["PartitionKeys"] == [
                {"Name": "stage", "Type": "string"},
                {"Name": "dt", "Type": "string"},
            ]
            params = table_input["Parameters"]
            assert params["projection.enabled"] == "true"
            assert params["projection.stage.type"] == "enum"
            assert params["projection.stage.values"] == "dev,preprod,prod"
            assert params["projection.dt.type"] == "date"
            assert params["storage.location.template"] == location + "${stage}/" + name + "/dt=${dt}/"
            assert table_input["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"] == (
                "org.openx.data.jsonserde.JsonSerDe"
            )


@pytest.mark.parametrize("query", QUERIES)
def test_lake_queries_run_against_the_synthesized_tables(
    default_platform: SynthesizedPlatform, query: str
) -> None:
    check_query(query, synthesized_tables(default_platform, "finance"))


def test_the_synthesized_column_check_can_fail(default_platform: SynthesizedPlatform) -> None:
    tables = synthesized_tables(default_platform, "retail")
    ratings = tables["ratings"]
    trimmed = {
        **tables,
        "ratings": GlueTable("ratings", ratings.zone, ratings.columns[:-2], ratings.partition_keys),
    }
    with pytest.raises(SchemaError, match="comment"):
        check_query("SELECT use_case, comment FROM ratings", trimmed)


def test_athena_workgroup_enforces_encrypted_results_and_the_scan_cutoff(
    default_platform: SynthesizedPlatform,
) -> None:
    template = lake_template(default_platform)
    (workgroup,) = of_type(template, "AWS::Athena::WorkGroup").values()
    props = workgroup["Properties"]
    config = props["WorkGroupConfiguration"]
    assert props["Name"] == "exco-data-lake"
    assert config["EnforceWorkGroupConfiguration"] is True
    assert (
        config["BytesScannedCutoffPerQuery"]
        == default_platform.config.data_lake.athena_bytes_scanned_cutoff_per_query
    )
    (key_id,) = of_type(template, "AWS::KMS::Key")
    assert config["ResultConfiguration"]["EncryptionConfiguration"] == {
        "EncryptionOption": "SSE_KMS",
        "KmsKey": {"Fn::GetAtt": [key_id, "Arn"]},
    }
    assert workgroup["DeletionPolicy"] == "Retain"


# ---- Lake Formation ----------------------------------------------------------------------------


def lf_grants(platform: SynthesizedPlatform) -> list[tuple[str, str, str, tuple[str, ...]]]:
    grants = []
    for grant in of_type(lake_template(platform), "AWS::LakeFormation::PrincipalPermissions").values():
        props = grant["Properties"]
        resource = props["Resource"]
        if "Database" in resource:
            kind, target = "database", resource["Database"]["Name"]
        else:
            cells = resource["DataCellsFilter"]
            kind, target = f"filter:{cells['Name']}", f"{cells['DatabaseName']}.{cells['TableName']}"
        assert props["Permissions"] == props["PermissionsWithGrantOption"]
        grants.append(
            (props["Principal"]["DataLakePrincipalIdentifier"], kind, target, tuple(props["Permissions"]))
        )
    return grants


def test_lake_formation_grants_each_stage_account_only_its_stages_rows(
    default_platform: SynthesizedPlatform,
) -> None:
    config = default_platform.config
    grants = lf_grants(default_platform)
    assert [g for g, n in Counter(grants).items() if n > 1] == []
    expected = set()
    for bu in config.business_units:
        database = lake_database_name(config, bu.name)
        for stage, account in config.accounts_of(bu).items():
            expected.add((account, "database", database, ("DESCRIBE",)))
            for table in TABLES:
                expected.add(
                    (account, f"filter:{stage.value}_rows", f"{database}.{table}", ("SELECT", "DESCRIBE"))
                )
    assert set(grants) == expected
    assert config.data_lake_account not in {g[0] for g in grants}
    # No grant on whole tables: a stage account sees its own stage's rows, never another's.
    filters = {
        (f["Properties"]["TableName"], f["Properties"]["Name"]): f["Properties"]
        for f in of_type(lake_template(default_platform), "AWS::LakeFormation::DataCellsFilter").values()
        if f["Properties"]["DatabaseName"] == lake_database_name(config, "retail")
    }
    assert len(filters) == len(TABLES) * 3
    for (_table, name), props in filters.items():
        stage = name.removesuffix("_rows")
        assert props["RowFilter"] == {"FilterExpression": f"stage = '{stage}'"}
        assert props["ColumnWildcard"] == {"ExcludedColumnNames": []}


def test_sandbox_makes_no_lake_formation_grant_to_its_own_account(
    sandbox_platform: SynthesizedPlatform,
) -> None:
    assert lf_grants(sandbox_platform) == []


@pytest.mark.parametrize("platform_fixture", ["default_platform", "sandbox_platform"])
def test_lake_formation_admin_and_registered_table_locations(
    platform_fixture: str, request: pytest.FixtureRequest
) -> None:
    platform: SynthesizedPlatform = request.getfixturevalue(platform_fixture)
    template = lake_template(platform)
    account, region = platform.config.data_lake_account, platform.config.home_region
    (settings,) = of_type(template, "AWS::LakeFormation::DataLakeSettings").values()
    assert settings["Properties"]["MutationType"] == "APPEND"
    (admin,) = resolve(settings["Properties"]["Admins"], template)
    assert (
        admin["DataLakePrincipalIdentifier"]
        == f"arn:aws:iam::{account}:role/cdk-hnb659fds-cfn-exec-role-{account}-{region}"
    )
    registered = [
        resolve(r["Properties"], template) for r in of_type(template, "AWS::LakeFormation::Resource").values()
    ]
    assert sorted(r["ResourceArn"] for r in registered) == sorted(
        f"arn:aws:s3:::{lake_bucket_name(platform.config, zone)}"
        for zone in {t.zone for t in TABLES.values()}
    )
    assert {r["UseServiceLinkedRole"] for r in registered} == {False}


def test_a_business_unit_named_like_the_shared_tag_is_refused(default_config: PlatformConfig) -> None:
    shared = default_config.business_units[0].model_copy(update={"name": "shared"})
    config = default_config.model_copy(
        update={"business_units": [shared, *default_config.business_units[1:]]}
    )
    with pytest.raises(ValueError, match=r"^business_units\[\]\.name: 'shared'"):
        DataLakeStack(create_app(), "Lake", config=config)
