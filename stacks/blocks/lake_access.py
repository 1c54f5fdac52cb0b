"""The one typed way for a stack to ask for access to the data lake.

A stack states what it needs as a `LakeAccessRequest` and calls `grant_lake_access(role, config,
request)`; no stack writes its own lake policy. `lake_access_statements` (pure) turns requests into
IAM statement shapes scoped to the requester's own prefix: `<business_unit>/<stage>/` (or
`<business_unit>/<stage>/tenant=<tenant_id>/` below it), or `<business_unit>/shared/`. Prefixes
always end in "/", so "fin/*" can never match "fin-ops/..." and "fin/dev/*" never "fin/dev-x/...".

The lake side (bucket and key policies in `DataLakeStack`) allows exactly what `declared_access`
derives from the config: each business unit stage gets `data_lake.business_unit_access` on its own
`<bu>/<stage>/` prefix and read on `<bu>/shared/` in the zones it may read. `grant_lake_access`
refuses a request beyond that, so an identity policy can never promise what the lake would refuse.
`<bu>/shared/` is written by one identity only, the dataset promotion role of the tooling account
(`grant_dataset_promotion`), the audited path by which curated data moves between stages.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from constructs import Construct, IConstruct
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from common.lake_layout import (
    LAKE_STAGES,
    LakeScope,
    Zone,
    check_business_unit,
    check_scope,
    check_tenant_id,
    scope_prefix,
    tenant_prefix,
)
from common.lake_records import BusinessUnitName, SafeId
from stacks.blocks.grants import allow_statement
from stacks.blocks.nag import acknowledge_all
from stacks.settings import PlatformConfig
from stacks.settings.data_lake import LakeAccess

# Aws.PARTITION is a jsii static property, one round trip to Node per read, and this module reads it for
# every lake statement: the token string it returns never changes, so read it once.
PARTITION = Aws.PARTITION

__all__ = [
    "LakeAccess",
    "LakeAccessRequest",
    "dataset_promotion_role_arn",
    "dataset_promotion_role_name",
    "dataset_promotion_statements",
    "declared_access",
    "grant_dataset_promotion",
    "grant_lake_access",
    "lake_access_statements",
    "lake_bucket_name",
    "lake_database_name",
    "lake_key_alias",
]

# IAM tag keys that are safe inside a policy variable (no "}", "$", "*" or "/").
PRINCIPAL_TAG_KEY = r"^[A-Za-z0-9_.:=+@-]{1,128}$"
# S3 bucket names: at most 63 characters.
MAX_BUCKET_NAME = 63

OBJECT_READ_ACTIONS = ("s3:GetObject", "s3:GetObjectVersion")
OBJECT_WRITE_ACTIONS = ("s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts")
KMS_READ_ACTIONS = ("kms:Decrypt",)
# SSE-KMS uploads need a data key; multipart uploads also decrypt it to complete.
KMS_WRITE_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey")


class LakeAccessRequest(BaseModel):
    """Access for one business unit stage (and optionally one tenant), or to its shared data, in one zone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    business_unit: BusinessUnitName
    # The stage whose prefix the requester reaches (dev | preprod | prod), or "shared".
    stage: LakeScope
    zone: Zone
    access: LakeAccess
    tenant_id: SafeId | None = None
    # The tenant segment as an IAM policy variable: `${aws:PrincipalTag/<tag>}` (ABAC; one role serves
    # every tenant, each session reaches the tenant its session tag names).
    tenant_from_principal_tag: Annotated[str, Field(pattern=PRINCIPAL_TAG_KEY)] | None = None

    @field_validator("business_unit")
    @classmethod
    def _business_unit_is_a_key_segment(cls, value: str) -> str:
        return check_business_unit(value)

    @field_validator("stage", mode="before")
    @classmethod
    def _stage_is_a_scope(cls, value: object) -> LakeScope:
        if isinstance(value, LakeScope):
            return value
        return check_scope(value)  # type: ignore[arg-type]  # refuses non-strings, naming "stage"

    @field_validator("tenant_id")
    @classmethod
    def _tenant_is_a_key_segment(cls, value: str | None) -> str | None:
        return None if value is None else check_tenant_id(value)

    @model_validator(mode="after")
    def _one_tenant_source(self) -> LakeAccessRequest:
        if self.tenant_id is not None and self.tenant_from_principal_tag is not None:
            raise ValueError("tenant_from_principal_tag: set either tenant_id or tenant_from_principal_tag")
        if self.stage is LakeScope.SHARED and (self.tenant_id or self.tenant_from_principal_tag):
            raise ValueError("tenant_id: <business_unit>/shared/ holds no tenant data; name a stage")
        return self

    @property
    def prefix(self) -> str:
        if self.tenant_from_principal_tag is not None:
            tenant = "${aws:PrincipalTag/" + self.tenant_from_principal_tag + "}"
            return f"{scope_prefix(self.business_unit, self.stage)}tenant={tenant}/"
        if self.tenant_id is None:
            return scope_prefix(self.business_unit, self.stage)
        return tenant_prefix(self.business_unit, self.stage, self.tenant_id)


def lake_access_statements(
    requests: Iterable[LakeAccessRequest],
    *,
    bucket_arns: Mapping[Zone, str],
    kms_key_arn: str,
    kms_via_service: str | None = None,
    kms_key_alias: str | None = None,
) -> list[dict[str, Any]]:
    """IAM statements granting exactly `requests`.

    `bucket_arns` maps each zone to its bucket ARN (CDK tokens are fine: they are strings);
    `kms_via_service` (e.g. "s3.eu-west-1.amazonaws.com") limits key use to calls made through S3;
    `kms_key_alias` limits it to the key carrying that alias (for `key/*` across accounts).
    """
    unique = sorted(set(requests), key=lambda r: (r.zone, r.business_unit, r.prefix, r.access))
    statements: list[dict[str, Any]] = []
    kms_actions: set[str] = set()
    for request in unique:
        try:
            bucket_arn = bucket_arns[request.zone]
        except KeyError:
            raise ValueError(f"bucket_arns: no bucket ARN for zone {request.zone.value!r}") from None
        actions = (OBJECT_READ_ACTIONS if request.access.reads else ()) + (
            OBJECT_WRITE_ACTIONS if request.access.writes else ()
        )
        statements.append(_allow(actions, [f"{bucket_arn}/{request.prefix}*"]))
        if request.access.reads:
            listing = {"StringLike": {"s3:prefix": [request.prefix, f"{request.prefix}*"]}}
            statements.append(_allow(("s3:ListBucket",), [bucket_arn], listing))
        kms_actions.update(KMS_READ_ACTIONS if request.access.reads else ())
        kms_actions.update(KMS_WRITE_ACTIONS if request.access.writes else ())
    if kms_actions:
        key_condition: dict[str, Any] = {}
        if kms_via_service:
            key_condition["StringEquals"] = {"kms:ViaService": kms_via_service}
        if kms_key_alias:
            key_condition["ForAnyValue:StringEquals"] = {"kms:ResourceAliases": [kms_key_alias]}
        statements.append(_allow(tuple(sorted(kms_actions)), [kms_key_arn], key_condition or None))
    return statements


def _allow(
    actions: tuple[str, ...], resources: list[str], condition: dict[str, Any] | None = None
) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Action": list(actions), "Resource": resources}
    if condition:
        statement["Condition"] = condition
    return statement


# ---- names every account can compute (the cross-account contract) -------------------------------


def lake_bucket_name(config: PlatformConfig, zone: Zone) -> str:
    """The zone bucket's name, known in every account at synth time."""
    name = (
        f"{config.organization.prefix}-lake-{Zone(zone).value.replace('_', '-')}-"
        f"{config.data_lake_account}-{config.home_region}"
    )
    if len(name) > MAX_BUCKET_NAME:
        raise ValueError(
            f"organization.prefix: bucket name {name!r} is longer than {MAX_BUCKET_NAME} characters; "
            "use a shorter prefix"
        )
    return name


def lake_database_name(config: PlatformConfig, business_unit: str) -> str:
    """The business unit's Glue database in the lake account (underscores: Athena needs no quoting)."""
    return f"{config.organization.prefix}_{check_business_unit(business_unit)}_lake".replace("-", "_")


def lake_key_alias(config: PlatformConfig) -> str:
    return f"alias/{config.organization.prefix}/data-lake"


def lake_bucket_arn(config: PlatformConfig, zone: Zone) -> str:
    return f"arn:{PARTITION}:s3:::{lake_bucket_name(config, zone)}"


def lake_via_service(config: PlatformConfig) -> str:
    return f"s3.{config.home_region}.amazonaws.com"


# ---- what the config allows -------------------------------------------------------------------


class LakeAccessNotDeclaredError(ValueError):
    """A stack asked for more than `data_lake.business_unit_access` lets the lake allow."""


def declared_access(config: PlatformConfig) -> list[LakeAccessRequest]:
    """Every (business unit, scope, zone, access) the lake side allows, in config order.

    Each stage gets the declared access on its own `<bu>/<stage>/` prefix; the business unit's
    `<bu>/shared/` prefix is readable (never writable) in every zone the stages may read.
    """
    requests: list[LakeAccessRequest] = []
    for bu in config.business_units:
        for stage in (*LAKE_STAGES, LakeScope.SHARED):
            for zone in Zone:
                access = config.data_lake.business_unit_access.for_zone(zone)
                if access is None:
                    continue
                if stage is LakeScope.SHARED:
                    if not access.reads:
                        continue
                    access = LakeAccess.READ
                requests.append(
                    LakeAccessRequest(business_unit=bu.name, stage=stage, zone=zone, access=access)
                )
    return requests


def check_declared(config: PlatformConfig, request: LakeAccessRequest) -> None:
    known = [bu.name for bu in config.business_units]
    if request.business_unit not in known:
        raise LakeAccessNotDeclaredError(
            f"business_unit: {request.business_unit!r} is not in the config; known: {', '.join(known)}"
        )
    if request.stage is LakeScope.SHARED and request.access.writes:
        raise LakeAccessNotDeclaredError(
            f"access: {request.access.value!r} on {request.business_unit}/shared/ is refused: only the "
            "dataset promotion role writes there (grant_dataset_promotion); stages read it"
        )
    allowed = config.data_lake.business_unit_access.for_zone(request.zone)
    if (
        allowed is None
        or (request.access.reads and not allowed.reads)
        or (request.access.writes and not allowed.writes)
    ):
        raise LakeAccessNotDeclaredError(
            f"access: {request.access.value!r} on zone {request.zone.value!r} is more than "
            f"data_lake.business_unit_access.{request.zone.value} ({allowed.value if allowed else 'null'}) "
            "allows; change the config so the lake side allows it too"
        )


# ---- the audited promotion path: the one writer of <bu>/shared/ ------------------------------

# Curated, anonymized data moves between stages only through the evaluation datasets zone's shared
# prefix, written by this one role of the tooling account (the prompt catalog's dataset promotion).
PROMOTION_ZONE = Zone.EVALUATION_DATASETS


def dataset_promotion_role_name(config: PlatformConfig) -> str:
    """The fixed name of the tooling account role that alone writes `<bu>/shared/` (created by the catalog)."""
    return f"{config.organization.prefix}-dataset-promotion"


def dataset_promotion_role_arn(config: PlatformConfig, partition: str = PARTITION) -> str:
    return f"arn:{partition}:iam::{config.tooling_account}:role/{dataset_promotion_role_name(config)}"


def dataset_promotion_requests(config: PlatformConfig) -> list[LakeAccessRequest]:
    return [
        LakeAccessRequest(
            business_unit=bu.name, stage=LakeScope.SHARED, zone=PROMOTION_ZONE, access=LakeAccess.READ_WRITE
        )
        for bu in config.business_units
    ]


def dataset_promotion_statements(config: PlatformConfig) -> list[dict[str, Any]]:
    """Identity side of the promotion role: read and write `<bu>/shared/` of every business unit's datasets."""
    return lake_access_statements(
        dataset_promotion_requests(config),
        bucket_arns={PROMOTION_ZONE: lake_bucket_arn(config, PROMOTION_ZONE)},
        kms_key_arn=f"arn:{PARTITION}:kms:{config.home_region}:{config.data_lake_account}:key/*",
        kms_via_service=lake_via_service(config),
        kms_key_alias=lake_key_alias(config),
    )


def grant_dataset_promotion(role: iam.Role, config: PlatformConfig) -> None:
    """Give the catalog's promotion role (named `dataset_promotion_role_name`) its identity-side half.

    The lake side already allows exactly this role (by ARN) and denies `<bu>/shared/` writes to
    everyone else. Refuses a role with another name: the lake would refuse it anyway.
    """
    expected = dataset_promotion_role_name(config)
    physical = role.node.default_child.role_name if isinstance(role.node.default_child, iam.CfnRole) else None
    if physical != expected:
        raise ValueError(
            f"role_name: the dataset promotion role must be named {expected!r}, got {physical!r}"
        )
    statements = dataset_promotion_statements(config)
    for statement in statements:
        allow_statement(role, statement)
    acknowledge_lake_wildcards(role, statements, key_reason=_KEY_BY_ALIAS)


# ---- the CDK block ------------------------------------------------------------------------------


def lake_statements(config: PlatformConfig, request: LakeAccessRequest) -> list[dict[str, Any]]:
    """The identity-side statements for `request` as plain dicts (checked against the config first)."""
    check_declared(config, request)
    return lake_access_statements(
        [request],
        bucket_arns={zone: lake_bucket_arn(config, zone) for zone in Zone},
        kms_key_arn=f"arn:{PARTITION}:kms:{config.home_region}:{config.data_lake_account}:key/*",
        kms_via_service=lake_via_service(config),
        kms_key_alias=lake_key_alias(config),
    )


def grant_lake_access(grantee: iam.IGrantable, config: PlatformConfig, request: LakeAccessRequest) -> None:
    """Give `grantee` (a role in a business unit account) the identity-side half of `request`.

    The lake side already allows it for principals tagged `BusinessUnit=<business unit>` and
    `Stage=<stage>` (every role a platform stage creates carries both tags). The lake key is reached through its alias: its ARN is
    not known in other accounts at synth time.
    """
    statements = lake_statements(config, request)
    for statement in statements:
        allow_statement(grantee, statement)
    if isinstance(grantee, Construct):
        acknowledge_lake_wildcards(grantee, statements, key_reason=_KEY_BY_ALIAS)


_KEY_BY_ALIAS = (
    "The lake key lives in the data lake account and its id is unknown here at synth time; key/* is "
    "narrowed to the key carrying the lake alias (kms:ResourceAliases) and to calls made through S3"
)
_OBJECTS_UNDER_PREFIX = (
    "Object keys under the business unit stage's own prefix are created at run time; the wildcard ends in "
    "'<business_unit>/<stage>/' (or '<business_unit>/<stage>/tenant=<id>/', the id possibly filled per "
    "session from a principal tag; or '<business_unit>/shared/') and so never reaches another prefix"
)


def nag_resource(resource: str) -> str:
    """How cdk-nag names a resource in a finding: pseudo parameters and policy variables as `<...>`."""
    return re.sub(r"\$\{([^}]+)\}", r"<\1>", resource.replace(PARTITION, "<AWS::Partition>"))


def acknowledge_lake_wildcards(
    construct: IConstruct, statements: Iterable[Mapping[str, Any]], *, key_reason: str
) -> None:
    """Acknowledge exactly the wildcard findings (AwsSolutions-IAM5) the lake statements cause."""
    acknowledge_all(
        construct,
        [
            (
                f"AwsSolutions-IAM5[Resource::{nag_resource(resource)}]",
                key_reason if ":kms:" in resource else _OBJECTS_UNDER_PREFIX,
            )
            for statement in statements
            for resource in statement["Resource"]
            if resource.endswith("*")
        ],
    )
