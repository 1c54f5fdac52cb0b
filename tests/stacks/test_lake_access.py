import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from common.lake_layout import Zone
from stacks.blocks.lake_access import LakeAccess, LakeAccessRequest, lake_access_statements

BUCKETS = {zone: f"arn:aws:s3:::lake-{zone.value.replace('_', '-')}" for zone in Zone}
KEY = "arn:aws:kms:eu-west-1:111111111111:key/lake"
business_units = st.from_regex(r"\A[a-z][a-z0-9-]{0,22}[a-z0-9]\Z")
tenants = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_:-]{0,20}\Z")


def iam_matches(pattern: str, value: str) -> bool:
    """IAM wildcard semantics: '*' any run of characters, '?' one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value) is not None


def granted_keys(statements, bucket_arn: str, key: str, action: str) -> bool:
    return any(
        action in s["Action"] and any(iam_matches(r, f"{bucket_arn}/{key}") for r in s["Resource"])
        for s in statements
    )


def test_read_write_for_a_business_unit_has_the_exact_shape():
    request = LakeAccessRequest(
        business_unit="finance", stage="prod", zone=Zone.FEEDBACK, access=LakeAccess.READ_WRITE
    )
    statements = lake_access_statements(
        [request, request], bucket_arns=BUCKETS, kms_key_arn=KEY, kms_via_service="s3.eu-west-1.amazonaws.com"
    )
    assert statements == [
        {
            "Effect": "Allow",
            "Action": [
                "s3:GetObject",
                "s3:GetObjectVersion",
                "s3:PutObject",
                "s3:AbortMultipartUpload",
                "s3:ListMultipartUploadParts",
            ],
            "Resource": ["arn:aws:s3:::lake-feedback/finance/prod/*"],
        },
        {
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": ["arn:aws:s3:::lake-feedback"],
            "Condition": {"StringLike": {"s3:prefix": ["finance/prod/", "finance/prod/*"]}},
        },
        {
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": [KEY],
            "Condition": {"StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}},
        },
    ]


def test_write_only_grants_neither_reads_nor_listing_nor_deletes():
    request = LakeAccessRequest(
        business_unit="finance", stage="dev", zone=Zone.RAW, access=LakeAccess.WRITE, tenant_id="t-1"
    )
    statements = lake_access_statements([request], bucket_arns=BUCKETS, kms_key_arn=KEY)
    actions = {a for s in statements for a in s["Action"]}
    assert actions == {
        "s3:PutObject",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts",
        "kms:Decrypt",
        "kms:GenerateDataKey",
    }
    assert statements[0]["Resource"] == ["arn:aws:s3:::lake-raw/finance/dev/tenant=t-1/*"]
    assert "Condition" not in statements[-1]


def test_a_zone_without_a_bucket_is_named():
    request = LakeAccessRequest(
        business_unit="finance", stage="dev", zone=Zone.CURATED, access=LakeAccess.READ
    )
    with pytest.raises(ValueError, match="curated"):
        lake_access_statements([request], bucket_arns={Zone.RAW: BUCKETS[Zone.RAW]}, kms_key_arn=KEY)


def test_no_requests_no_statements():
    assert lake_access_statements([], bucket_arns=BUCKETS, kms_key_arn=KEY) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("business_unit", "../finance"),
        ("business_unit", "fin/ance"),
        ("tenant_id", ".."),
        ("tenant_id", "a/b"),
        ("tenant_id", "a..b"),
        ("tenant_id", ""),
        ("access", "delete"),
        ("zone", "secrets"),
        ("stage", "production"),
        ("stage", "../prod"),
        ("stage", ""),
        ("stage", None),
    ],
)
def test_a_request_that_could_leave_its_prefix_is_refused_naming_the_field(field, value):
    data = {"business_unit": "finance", "stage": "dev", "zone": "raw", "access": "read", field: value}
    with pytest.raises(ValidationError) as caught:
        LakeAccessRequest.model_validate(data)
    assert caught.value.errors()[0]["loc"] == (field,)


@given(
    mine=business_units,
    other=business_units,
    zone=st.sampled_from(list(Zone)),
    access=st.sampled_from(list(LakeAccess)),
    tenant=st.none() | tenants,
    key_rest=st.from_regex(r"\A[a-z0-9=/._-]{0,30}\Z"),
)
@example(mine="fin", other="fin-ops", zone=Zone.RAW, access=LakeAccess.READ_WRITE, tenant=None, key_rest="x")
def test_a_business_unit_never_gets_another_business_units_prefix(
    mine, other, zone, access, tenant, key_rest
):
    if mine == other:
        return
    request = LakeAccessRequest(business_unit=mine, stage="prod", zone=zone, access=access, tenant_id=tenant)
    statements = lake_access_statements([request], bucket_arns=BUCKETS, kms_key_arn=KEY)
    bucket = BUCKETS[zone]
    other_key = f"{other}/{key_rest}"
    for action in ("s3:GetObject", "s3:PutObject"):
        assert not granted_keys(statements, bucket, other_key, action)
    for statement in statements:
        for prefix in statement.get("Condition", {}).get("StringLike", {}).get("s3:prefix", []):
            assert not iam_matches(prefix, other_key)
    own_key = f"{request.prefix}{key_rest}"
    assert granted_keys(statements, bucket, own_key, "s3:GetObject") == access.reads
    assert granted_keys(statements, bucket, own_key, "s3:PutObject") == access.writes


@given(mine=tenants, other=tenants, key_rest=st.from_regex(r"\A[a-z0-9=/._-]{0,30}\Z"))
@example(mine="t1", other="t10", key_rest="x")
def test_a_tenant_never_gets_another_tenants_prefix_or_the_business_units_tables(mine, other, key_rest):
    if mine == other:
        return
    request = LakeAccessRequest(
        business_unit="finance", stage="prod", zone=Zone.RAW, access=LakeAccess.READ_WRITE, tenant_id=mine
    )
    statements = lake_access_statements([request], bucket_arns=BUCKETS, kms_key_arn=KEY)
    for key in (f"finance/prod/tenant={other}/{key_rest}", f"finance/prod/ratings/{key_rest}"):
        assert not granted_keys(statements, BUCKETS[Zone.RAW], key, "s3:GetObject")


# ---- the tenant from a session tag (ABAC: one role, one tenant per session) ----------------------


def test_a_tenant_from_a_principal_tag_is_a_policy_variable_in_the_prefix():
    request = LakeAccessRequest(
        business_unit="retail",
        stage="dev",
        zone=Zone.RAW,
        access=LakeAccess.WRITE,
        tenant_from_principal_tag="TenantId",
    )
    assert request.prefix == "retail/dev/tenant=${aws:PrincipalTag/TenantId}/"
    [objects, key] = lake_access_statements([request], bucket_arns=BUCKETS, kms_key_arn=KEY)
    assert objects["Resource"] == ["arn:aws:s3:::lake-raw/retail/dev/tenant=${aws:PrincipalTag/TenantId}/*"]
    assert key["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]


@given(mine=tenants, other=tenants, key_rest=st.from_regex(r"\A[a-z0-9=/._-]{0,30}\Z"))
@example(mine="t1", other="t10", key_rest="x")
def test_a_tagged_session_reaches_only_the_tenant_its_tag_names(mine, other, key_rest):
    request = LakeAccessRequest(
        business_unit="retail",
        stage="prod",
        zone=Zone.RAW,
        access=LakeAccess.READ_WRITE,
        tenant_from_principal_tag="TenantId",
    )
    statements = lake_access_statements([request], bucket_arns=BUCKETS, kms_key_arn=KEY)
    # IAM fills the variable from the session before matching.
    filled = [
        {**s, "Resource": [r.replace("${aws:PrincipalTag/TenantId}", mine) for r in s["Resource"]]}
        for s in statements
    ]
    bucket = BUCKETS[Zone.RAW]
    assert granted_keys(filled, bucket, f"retail/prod/tenant={mine}/{key_rest}x", "s3:PutObject")
    assert not granted_keys(filled, bucket, f"retail/prod/ratings/{key_rest}", "s3:PutObject")
    if mine != other:
        assert not granted_keys(filled, bucket, f"retail/prod/tenant={other}/{key_rest}", "s3:PutObject")


@pytest.mark.parametrize("tag", ["Tenant}Id", "a/b", "x*", "$x", ""])
def test_a_principal_tag_that_could_break_the_variable_is_refused(tag):
    with pytest.raises(ValidationError, match="tenant_from_principal_tag"):
        LakeAccessRequest(
            business_unit="retail",
            stage="dev",
            zone=Zone.RAW,
            access=LakeAccess.WRITE,
            tenant_from_principal_tag=tag,
        )


def test_a_fixed_tenant_and_a_tag_tenant_are_exclusive():
    with pytest.raises(ValidationError, match="tenant_from_principal_tag: set either"):
        LakeAccessRequest(
            business_unit="retail",
            stage="dev",
            zone=Zone.RAW,
            access=LakeAccess.WRITE,
            tenant_id="t1",
            tenant_from_principal_tag="TenantId",
        )


# ---- the stage is part of the boundary ---------------------------------------------------------

STAGE_NAMES = ["dev", "preprod", "prod"]


def test_the_stage_is_required():
    with pytest.raises(ValidationError) as caught:
        LakeAccessRequest.model_validate({"business_unit": "finance", "zone": "raw", "access": "read"})
    assert caught.value.errors()[0]["loc"] == ("stage",)


@given(
    mine=st.sampled_from(STAGE_NAMES),
    other=st.sampled_from([*STAGE_NAMES, "shared"]),
    zone=st.sampled_from(list(Zone)),
    access=st.sampled_from(list(LakeAccess)),
    tenant=st.none() | tenants,
    key_rest=st.from_regex(r"\A[a-z0-9=/._-]{0,30}\Z"),
)
@example(mine="prod", other="preprod", zone=Zone.RAW, access=LakeAccess.READ_WRITE, tenant=None, key_rest="x")
def test_a_stage_never_gets_another_stages_prefix(mine, other, zone, access, tenant, key_rest):
    if mine == other:
        return
    request = LakeAccessRequest(
        business_unit="finance", stage=mine, zone=zone, access=access, tenant_id=tenant
    )
    statements = lake_access_statements([request], bucket_arns=BUCKETS, kms_key_arn=KEY)
    other_key = f"finance/{other}/{key_rest}"
    for action in ("s3:GetObject", "s3:PutObject"):
        assert not granted_keys(statements, BUCKETS[zone], other_key, action)
    for statement in statements:
        for prefix in statement.get("Condition", {}).get("StringLike", {}).get("s3:prefix", []):
            assert not iam_matches(prefix, other_key)


def test_a_shared_request_reaches_the_business_units_shared_prefix():
    request = LakeAccessRequest(
        business_unit="finance", stage="shared", zone=Zone.EVALUATION_DATASETS, access=LakeAccess.READ
    )
    assert request.prefix == "finance/shared/"
    [objects, listing, _key] = lake_access_statements([request], bucket_arns=BUCKETS, kms_key_arn=KEY)
    assert objects["Resource"] == ["arn:aws:s3:::lake-evaluation-datasets/finance/shared/*"]
    assert listing["Condition"]["StringLike"]["s3:prefix"] == ["finance/shared/", "finance/shared/*"]


@pytest.mark.parametrize("tenant", [{"tenant_id": "t1"}, {"tenant_from_principal_tag": "TenantId"}])
def test_the_shared_prefix_holds_no_tenant_data(tenant):
    with pytest.raises(ValidationError, match="tenant_id: <business_unit>/shared/ holds no tenant data"):
        LakeAccessRequest(
            business_unit="finance", stage="shared", zone=Zone.RAW, access=LakeAccess.READ, **tenant
        )
