"""Presigned uploads into the tenant's own prefix of the raw zone, signed with tenant-scoped credentials.

The function's own role cannot write to the raw zone. For each request it assumes the upload role with
the session tag `TenantId=<tenant>`; that role's policy (`grant_lake_access` with
`tenant_from_principal_tag`) reaches only `<business_unit>/<stage>/tenant=${aws:PrincipalTag/TenantId}/`, and the
presigned POST pins the key under its `uploads/` folder. A presigned POST carries the signer's
credentials, so even a tampered form cannot reach another tenant's prefix: S3 evaluates the policy of
the tagged session, not the function's.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from app_backend.settings import Uploads
from common.lake_layout import tenant_prefix

S3Factory = Callable[[dict[str, str]], Any]
# STS's shortest session. A presigned POST stops working when the credentials that signed it expire, so
# the session lasts at least as long as the URL (`uploads.url_expiry_seconds`, at most the role's 1 hour).
MIN_SESSION_SECONDS = 900


def uploads_prefix(business_unit: str, stage: str, tenant_id: str) -> str:
    return f"{tenant_prefix(business_unit, stage, tenant_id)}uploads/"


def _s3_with(credentials: dict[str, str]) -> Any:
    import boto3

    return boto3.client(
        "s3",
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


class TenantUploads:
    def __init__(
        self,
        *,
        bucket: str,
        business_unit: str,
        stage: str,
        role_arn: str,
        settings: Uploads,
        sts: Any,
        s3_factory: S3Factory = _s3_with,
    ) -> None:
        self.bucket = bucket
        self.business_unit = business_unit
        self.stage = stage
        self.role_arn = role_arn
        self.settings = settings
        self._sts = sts
        self._s3_factory = s3_factory

    def tenant_s3(self, tenant_id: str) -> Any:
        answer = self._sts.assume_role(
            RoleArn=self.role_arn,
            RoleSessionName=f"upload-{uuid.uuid4().hex[:16]}",
            DurationSeconds=max(MIN_SESSION_SECONDS, self.settings.url_expiry_seconds),
            Tags=[{"Key": "TenantId", "Value": tenant_id}],
        )
        return self._s3_factory(answer["Credentials"])

    def presigned_post(self, tenant_id: str, file_name: str, content_type: str) -> dict[str, Any]:
        key = f"{uploads_prefix(self.business_unit, self.stage, tenant_id)}{uuid.uuid4().hex}/{file_name}"
        post = self.tenant_s3(tenant_id).generate_presigned_post(
            Bucket=self.bucket,
            Key=key,
            Fields={"Content-Type": content_type},
            Conditions=[
                {"Content-Type": content_type},
                ["content-length-range", 1, self.settings.max_bytes],
            ],
            ExpiresIn=self.settings.url_expiry_seconds,
        )
        return {
            "url": post["url"],
            "fields": post["fields"],
            "key": key,
            "max_bytes": self.settings.max_bytes,
            "expires_in": self.settings.url_expiry_seconds,
        }

    def list(self, tenant_id: str) -> list[dict[str, Any]]:
        prefix = uploads_prefix(self.business_unit, self.stage, tenant_id)
        s3 = self.tenant_s3(tenant_id)
        found: list[dict[str, Any]] = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                found.append(
                    {
                        "key": item["Key"],
                        "size": int(item["Size"]),
                        "last_modified": item["LastModified"].isoformat(),
                    }
                )
        return found
