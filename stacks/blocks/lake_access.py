"""The one typed way for a stack to ask for access to the data lake (pure part, no CDK here).

A stack states what it needs as `LakeAccessRequest`s; `lake_access_statements` turns them into IAM
statement shapes (plain dicts: Effect, Action, Resource, Condition) scoped to the requester's own
prefix, `<business_unit>/` or `<business_unit>/tenant=<tenant_id>/`. Prefixes always end in "/", so
"fin/*" can never match "fin-ops/...". The CDK block that attaches them to roles and bucket policies
builds on this.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from common.lake_layout import Zone, business_unit_prefix, check_business_unit, check_tenant_id, tenant_prefix
from common.lake_records import BusinessUnitName, SafeId

OBJECT_READ_ACTIONS = ("s3:GetObject", "s3:GetObjectVersion")
OBJECT_WRITE_ACTIONS = ("s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts")
KMS_READ_ACTIONS = ("kms:Decrypt",)
# SSE-KMS uploads need a data key; multipart uploads also decrypt it to complete.
KMS_WRITE_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey")


class LakeAccess(StrEnum):
    READ = "read"
    WRITE = "write"
    READ_WRITE = "read_write"

    @property
    def reads(self) -> bool:
        return self in (LakeAccess.READ, LakeAccess.READ_WRITE)

    @property
    def writes(self) -> bool:
        return self in (LakeAccess.WRITE, LakeAccess.READ_WRITE)


class LakeAccessRequest(BaseModel):
    """Access for one business unit (and optionally one tenant) to one zone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    business_unit: BusinessUnitName
    zone: Zone
    access: LakeAccess
    tenant_id: SafeId | None = None

    @field_validator("business_unit")
    @classmethod
    def _business_unit_is_a_key_segment(cls, value: str) -> str:
        return check_business_unit(value)

    @field_validator("tenant_id")
    @classmethod
    def _tenant_is_a_key_segment(cls, value: str | None) -> str | None:
        return None if value is None else check_tenant_id(value)

    @property
    def prefix(self) -> str:
        if self.tenant_id is None:
            return business_unit_prefix(self.business_unit)
        return tenant_prefix(self.business_unit, self.tenant_id)


def lake_access_statements(
    requests: Iterable[LakeAccessRequest],
    *,
    bucket_arns: Mapping[Zone, str],
    kms_key_arn: str,
    kms_via_service: str | None = None,
) -> list[dict[str, Any]]:
    """IAM statements granting exactly `requests`.

    `bucket_arns` maps each zone to its bucket ARN (CDK tokens are fine: they are strings);
    `kms_via_service` (e.g. "s3.eu-west-1.amazonaws.com") limits key use to calls made through S3.
    """
    unique = sorted(set(requests), key=lambda r: (r.zone, r.business_unit, r.tenant_id or "", r.access))
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
        via_s3 = {"StringEquals": {"kms:ViaService": kms_via_service}} if kms_via_service else None
        statements.append(_allow(tuple(sorted(kms_actions)), [kms_key_arn], via_s3))
    return statements


def _allow(
    actions: tuple[str, ...], resources: list[str], condition: dict[str, Any] | None = None
) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Action": list(actions), "Resource": resources}
    if condition:
        statement["Condition"] = condition
    return statement


def lake_bucket_name(config: Any, zone: str) -> str:
    """Deterministic zone bucket name (the lead's cross-account contract; the data-lake branch owns it)."""
    return f"{config.organization.prefix}-lake-{zone.replace('_', '-')}-{config.data_lake_account}-{config.home_region}"
