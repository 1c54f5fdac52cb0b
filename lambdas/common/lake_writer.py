"""The typed writer services use to append records to a data lake table.

A writer belongs to one stage of the lake (`stage=`, or the `LAKE_STAGE` environment variable the
stacks set on every function that writes): records land under `<bu>/<stage>/<table>/...`, the only
prefix that stage's roles may write. `append` checks a record against its schema and buffers it as
one JSON line; `flush` writes one
JSON-lines object per table partition (and per `max_batch_records` records) and returns the keys.
Retries are botocore's own ("standard" mode: throttling, 5xx and connection errors, with backoff).
A put that still fails leaves its records buffered and raises `LakeWriteError`; calling `flush`
again retries them. Object names are a hash of their content, so a retried batch lands on the same
key instead of producing a duplicate.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from common.lake_layout import LakeLayoutError, LakeScope, Zone, check_stage, partition_prefix, zone_for_table
from common.lake_records import LAKE_RECORD_TYPES, LakeRecord

DEFAULT_MAX_ATTEMPTS = 5
# Set by the stacks on every function that writes to the lake: the stage the function runs in.
LAKE_STAGE_ENV = "LAKE_STAGE"
_KNOWN_TYPES = ", ".join(t.__name__ for t in LAKE_RECORD_TYPES)
# A layout error on a derived key segment is reported against the record field it came from.
_FIELD_OF_SEGMENT = {"model": "model_id", "dt": "event_time"}


class LakeRecordError(ValueError):
    """A record does not match its schema; `field` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class LakeWriteError(RuntimeError):
    """A put failed after botocore's retries. Nothing is lost: the records are still buffered."""

    def __init__(self, key: str, pending_records: int, written_keys: list[str]) -> None:
        super().__init__(f"could not write s3 object {key!r}; {pending_records} record(s) still buffered")
        self.key = key
        self.pending_records = pending_records
        self.written_keys = written_keys


def retrying_s3_client(max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> Any:
    return boto3.client("s3", config=Config(retries={"mode": "standard", "total_max_attempts": max_attempts}))


def validated(record: object) -> LakeRecord:
    """Check `record` against its own model; return the checked copy."""
    if not isinstance(record, LakeRecord):
        raise LakeRecordError("record", f"expected one of {_KNOWN_TYPES}, got {type(record).__name__}")
    table = getattr(type(record), "TABLE", None)
    if table is None:
        raise LakeRecordError("TABLE", f"{type(record).__name__} has no table; use one of {_KNOWN_TYPES}")
    try:
        zone_for_table(table)
        # Validate again: model_construct() or object.__setattr__ can bypass construction-time checks.
        checked = type(record).model_validate(record.model_dump(warnings=False))
    except LakeLayoutError as error:
        raise LakeRecordError("TABLE", str(error)) from None
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "record"
        raise LakeRecordError(field, first["msg"]) from None
    except AttributeError as error:  # a model_construct() record missing a required field
        raise LakeRecordError(getattr(error, "name", None) or "record", "field is missing") from None
    return checked


class LakeWriter:
    """Buffers records for one zone bucket and writes them as JSON-lines objects."""

    def __init__(
        self,
        bucket: str,
        *,
        s3_client: Any = None,
        max_batch_records: int = 500,
        kms_key_id: str | None = None,
        zone: Zone | None = None,
        stage: str | None = None,
    ) -> None:
        """`stage` (dev | preprod | prod) defaults to the `LAKE_STAGE` environment variable; a writer
        without one, or with `shared`, is refused (`LakeLayoutError` naming `stage`).
        `s3_client` defaults to one with botocore's standard retry mode (built on first use).
        `zone`, when given, refuses tables that belong elsewhere.

        Leave `kms_key_id` unset for the lake buckets: their default encryption (the lake CMK, with a
        bucket key) applies. Asking for `aws:kms` without a key id would make S3 use the *caller's*
        account key `aws/s3`, which nobody in the lake account can decrypt. Set it only for a bucket
        whose CMK the caller knows and may use."""
        if max_batch_records < 1:
            raise ValueError("max_batch_records: must be at least 1")
        self.stage: LakeScope = check_stage(
            stage if stage is not None else os.environ.get(LAKE_STAGE_ENV, "")
        )
        self.bucket = bucket
        self.max_batch_records = max_batch_records
        self.kms_key_id = kms_key_id
        self.zone = zone
        self._s3_client = s3_client
        self._pending: dict[str, list[str]] = {}  # partition prefix -> JSON lines, in append order
        self._written: list[str] = []  # keys written since the last successful flush returned

    @property
    def s3_client(self) -> Any:
        if self._s3_client is None:
            self._s3_client = retrying_s3_client()
        return self._s3_client

    @property
    def pending_records(self) -> int:
        return sum(len(lines) for lines in self._pending.values())

    def append(self, record: LakeRecord) -> None:
        checked = validated(record)
        table = type(checked).TABLE
        if self.zone is not None and zone_for_table(table) != self.zone:
            raise LakeRecordError(
                "TABLE", f"table {table!r} belongs to zone {zone_for_table(table)}, not {self.zone}"
            )
        partition = checked.partition()
        try:
            prefix = partition_prefix(
                checked.business_unit, self.stage, table, partition["dt"], partition["model"]
            )
        except LakeLayoutError as error:
            raise LakeRecordError(_FIELD_OF_SEGMENT.get(error.field, error.field), str(error)) from None
        self._pending.setdefault(prefix, []).append(checked.model_dump_json())

    def flush(self) -> list[str]:
        """Write everything buffered; return the keys written (including those of a failed flush before)."""
        for prefix in list(self._pending):
            lines = self._pending[prefix]
            while lines:
                batch = lines[: self.max_batch_records]
                body = ("\n".join(batch) + "\n").encode()
                key = f"{prefix}part-{hashlib.sha256(body).hexdigest()[:32]}.jsonl"
                try:
                    self.s3_client.put_object(**self._put_arguments(key, body))
                except (ClientError, BotoCoreError) as error:
                    raise LakeWriteError(key, self.pending_records, list(self._written)) from error
                del lines[: len(batch)]
                self._written.append(key)
            del self._pending[prefix]
        written, self._written = self._written, []
        return written

    def _put_arguments(self, key: str, body: bytes) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": body,
            "ContentType": "application/x-ndjson",
        }
        if self.kms_key_id:
            arguments["ServerSideEncryption"] = "aws:kms"
            arguments["SSEKMSKeyId"] = self.kms_key_id
        return arguments
