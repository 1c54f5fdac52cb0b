"""S3 buckets with the platform's defaults: CMK encryption, TLS only, no public access, versioned, logged."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.blocks import durations
from stacks.blocks.nag import acknowledge
from stacks.blocks.retention import DataRetention


class AccessLogBucket(s3.Bucket):
    """Target of S3 server access logs.

    S3 delivers server access logs only to buckets encrypted with SSE-S3, not SSE-KMS, so this is the one
    bucket without the CMK.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, retention: DataRetention, expire_after_days: int
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=durations.days(expire_after_days),
                    noncurrent_version_expiration=durations.days(7),
                    abort_incomplete_multipart_upload_after=durations.days(1),
                )
            ],
            removal_policy=retention.removal_policy,
            auto_delete_objects=retention.auto_delete_objects,
        )
        acknowledge(
            self,
            "AwsSolutions-S1",
            "This bucket is the server-access-log target of its environment; logging it into itself would "
            "create a log record for every log delivery, without end",
        )


class SecureBucket(s3.Bucket):
    """A data bucket: encrypted with the environment's CMK, TLS 1.2+, private, versioned, access-logged."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        key: kms.IKey,
        access_logs: s3.IBucket,
        retention: DataRetention,
        lifecycle_rules: Sequence[s3.LifecycleRule] = (),
        object_lock_default_retention: s3.ObjectLockRetention | None = None,
        event_bridge_enabled: bool = False,
        bucket_name: str | None = None,
        bucket_key: bool = True,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            bucket_name=bucket_name,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=key,
            bucket_key_enabled=bucket_key,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=True,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix=f"{construct_id.lower()}/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="abort-incomplete-uploads", abort_incomplete_multipart_upload_after=durations.days(7)
                ),
                *lifecycle_rules,
            ],
            object_lock_enabled=object_lock_default_retention is not None or None,
            object_lock_default_retention=object_lock_default_retention,
            event_bridge_enabled=event_bridge_enabled,
            removal_policy=retention.removal_policy,
            auto_delete_objects=retention.auto_delete_objects,
        )
