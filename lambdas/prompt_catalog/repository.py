"""DynamoDB single-table storage of prompts, chains and datasets; large bodies in S3.

Table `pk` / `sk` (both strings), one partition per resource, `pk` = `<bu>#<kind>#<name>`:

| item      | sk                          | attributes                                 |
| --------- | --------------------------- | ------------------------------------------ |
| resource  | `META`                      | latest_version, archived, tags, doc (meta) |
| version   | `V#000000003` (zero-padded) | version, created_at/by, doc or body_key    |
| alias     | `ALIAS#prod`                | version, moved_at, moved_by(_principal)    |
| alias log | `ALIASLOG#<time>#<random>`  | doc: alias, version, previous_version, ... |

GSI `gsi1` (`gsi1pk` = `<bu>#<kind>`, `gsi1sk` = name, projection ALL) holds only META items: it lists
one business unit's resources of one kind. The business unit is part of every key, so a request can
never read another unit's items. Version bodies larger than `inline_body_max_bytes` are stored in S3
under a content-addressed key (`<bu>/<kind>s/<name>/<sha256>.json`), written before the item, so a
retried or lost race leaves at most an unreferenced copy and never an item pointing at nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from .errors import BadRequestError, ConflictError, NotFoundError
from .models import Kind

GSI1 = "gsi1"
META = "META"
MAX_VERSION_ATTEMPTS = 25


@dataclass(frozen=True)
class ResourceKey:
    kind: Kind
    business_unit: str
    name: str

    @property
    def pk(self) -> str:
        return f"{self.business_unit}#{self.kind}#{self.name}"

    @property
    def field(self) -> str:
        return f"{self.kind}:{self.name}"


def version_sk(version: int) -> str:
    return f"V#{version:09d}"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class ObjectStore:
    def __init__(self, bucket: str, s3_client: Any) -> None:
        self.bucket = bucket
        self._s3 = s3_client

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self._s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def get(self, key: str) -> bytes:
        return bytes(self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def last_modified(self, key: str) -> datetime:
        return datetime.fromisoformat(str(self._s3.head_object(Bucket=self.bucket, Key=key)["LastModified"]))

    def put_new(self, key: str, data: bytes, content_type: str) -> bool:
        """Write only if `key` does not exist yet (S3 conditional write); False when it already does."""
        try:
            self._s3.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType=content_type, IfNoneMatch="*"
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in (
                "PreconditionFailed",
                "ConditionalRequestConflict",
            ):
                return False
            raise
        return True


def _is_condition_failure(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code")
    return code in ("ConditionalCheckFailedException", "TransactionCanceledException")


class CatalogRepository:
    def __init__(
        self,
        table: str,
        dynamodb_client: Any,
        bodies: ObjectStore,
        *,
        inline_body_max_bytes: int,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.table = table
        self._ddb = dynamodb_client
        self.bodies = bodies
        self._inline_max = inline_body_max_bytes
        self._sleep = sleep

    # --- reads -------------------------------------------------------------------------------------
    def get_meta(self, key: ResourceKey) -> dict[str, Any] | None:
        item = self._get(key.pk, META)
        return None if item is None else _meta_from_item(item)

    def require_meta(self, key: ResourceKey) -> dict[str, Any]:
        meta = self.get_meta(key)
        if meta is None:
            raise NotFoundError(key.field, f"no {key.kind} named {key.name!r}")
        return meta

    def get_version(self, key: ResourceKey, version: int) -> dict[str, Any] | None:
        item = self._get(key.pk, version_sk(version))
        if item is None:
            return None
        body = self.bodies.get(item["body_key"]["S"]).decode() if "body_key" in item else item["doc"]["S"]
        return {
            "version": int(item["version"]["N"]),
            "created_at": item["created_at"]["S"],
            "created_by": item["created_by"]["S"],
            "content": json.loads(body),
        }

    def get_alias(self, key: ResourceKey, alias: str) -> dict[str, Any] | None:
        item = self._get(key.pk, f"ALIAS#{alias}")
        return None if item is None else _alias_from_item(item)

    def aliases(self, key: ResourceKey) -> dict[str, dict[str, Any]]:
        items = self._query_prefix(key.pk, "ALIAS#")
        return {item["sk"]["S"].split("#", 1)[1]: _alias_from_item(item) for item in items}

    def alias_history(self, key: ResourceKey) -> list[dict[str, Any]]:
        return [json.loads(item["doc"]["S"]) for item in self._query_prefix(key.pk, "ALIASLOG#")]

    def list_resources(
        self,
        business_unit: str,
        kind: Kind,
        *,
        tag: str | None,
        include_archived: bool,
        limit: int,
        token: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        partition = f"{business_unit}#{kind}"
        args: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": GSI1,
            "KeyConditionExpression": "gsi1pk = :p",
            "ExpressionAttributeValues": {":p": {"S": partition}},
            "Limit": limit,
        }
        filters = []
        if not include_archived:
            filters.append("archived = :false")
            args["ExpressionAttributeValues"][":false"] = {"BOOL": False}
        if tag is not None:
            filters.append("contains(tags, :tag)")
            args["ExpressionAttributeValues"][":tag"] = {"S": tag}
        if filters:
            args["FilterExpression"] = " AND ".join(filters)
        if token is not None:
            args["ExclusiveStartKey"] = _decode_token(token, partition)
        page = self._ddb.query(**args)
        last = page.get("LastEvaluatedKey")
        return [_meta_from_item(item) for item in page["Items"]], _encode_token(last) if last else None

    # --- writes ------------------------------------------------------------------------------------
    def create(
        self, key: ResourceKey, meta: dict[str, Any], content: dict[str, Any], caller: str, now: str
    ) -> None:
        """Create the resource with version 1, or ConflictError if the name is taken (archived names too)."""
        if self.get_meta(key) is not None:
            raise ConflictError("body.name", f"a {key.kind} named {key.name!r} already exists")
        meta_item = {
            "pk": {"S": key.pk},
            "sk": {"S": META},
            "gsi1pk": {"S": f"{key.business_unit}#{key.kind}"},
            "gsi1sk": {"S": key.name},
            "latest_version": {"N": "1"},
            "archived": {"BOOL": False},
            "tags": {"L": [{"S": t} for t in meta.get("tags", [])]},
            "doc": {"S": canonical_json(meta)},
        }
        version_item = self._version_item(key, 1, content, caller, now)
        created = self._transact(
            [
                {"Put": {"TableName": self.table, "Item": meta_item, **_absent()}},
                {"Put": {"TableName": self.table, "Item": version_item, **_absent()}},
            ]
        )
        if not created:
            raise ConflictError("body.name", f"a {key.kind} named {key.name!r} already exists")

    def add_version(
        self, key: ResourceKey, content: dict[str, Any], caller: str, now: str, *, exact: int | None = None
    ) -> int:
        """Append the next version number. The META counter and the version item change in one
        transaction conditioned on the counter, so concurrent callers get distinct numbers: a loser
        re-reads the counter and tries the next number. With `exact` (datasets, whose content was already
        written under its version number) only that number is tried; a lost race is a ConflictError."""
        body: dict[str, Any] | None = None
        for attempt in range(MAX_VERSION_ATTEMPTS):
            meta = self.require_meta(key)
            if meta["archived"]:
                raise ConflictError(key.field, "archived; it takes no new versions")
            latest = meta["latest_version"]
            if exact is not None and latest + 1 != exact:
                raise ConflictError(key.field, f"version {exact} was taken by a concurrent request; retry")
            if body is None:
                body = self._body_attributes(key, content)
            item = {**self._version_keys(key, latest + 1, caller, now), **body}
            if self._transact(
                [
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": {"pk": {"S": key.pk}, "sk": {"S": META}},
                            "UpdateExpression": "SET latest_version = :next",
                            "ConditionExpression": "latest_version = :latest AND archived = :false",
                            "ExpressionAttributeValues": {
                                ":next": {"N": str(latest + 1)},
                                ":latest": {"N": str(latest)},
                                ":false": {"BOOL": False},
                            },
                        }
                    },
                    {"Put": {"TableName": self.table, "Item": item, **_absent()}},
                ]
            ):
                return int(latest + 1)
            self._back_off(attempt)
        raise ConflictError(key.field, "too many concurrent new versions; retry")

    def move_alias(
        self, key: ResourceKey, alias: str, version: int, caller: str, now: str, *, principal: str = ""
    ) -> dict[str, Any]:
        """Point `alias` at `version` and append the transition to the alias log in one transaction.

        The transaction is conditioned on the alias item being exactly what was read (absent, or the same
        version and move time), so two concurrent moves cannot both log the same `previous_version`: the
        loser re-reads and logs the transition from the winner's version.
        """
        for attempt in range(MAX_VERSION_ATTEMPTS):
            meta = self.require_meta(key)
            if meta["archived"]:
                raise ConflictError(key.field, "archived; its aliases are frozen")
            if self._get(key.pk, version_sk(version)) is None:
                raise NotFoundError("body.version", f"{key.field} has no version {version}")
            previous = self.get_alias(key, alias)
            moved = {"version": version, "moved_at": now, "moved_by": caller, "moved_by_principal": principal}
            log = {**moved, "alias": alias, "previous_version": previous["version"] if previous else None}
            if previous is None:
                unchanged: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
            else:
                unchanged = {
                    "ConditionExpression": "version = :pv AND moved_at = :pat",
                    "ExpressionAttributeValues": {
                        ":pv": {"N": str(previous["version"])},
                        ":pat": {"S": previous["moved_at"]},
                    },
                }
            if self._transact(
                [
                    {
                        "ConditionCheck": {
                            "TableName": self.table,
                            "Key": {"pk": {"S": key.pk}, "sk": {"S": META}},
                            "ConditionExpression": "archived = :false",
                            "ExpressionAttributeValues": {":false": {"BOOL": False}},
                        }
                    },
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": {
                                "pk": {"S": key.pk},
                                "sk": {"S": f"ALIAS#{alias}"},
                                "version": {"N": str(version)},
                                "moved_at": {"S": now},
                                "moved_by": {"S": caller},
                                "moved_by_principal": {"S": principal},
                            },
                            **unchanged,
                        }
                    },
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": {
                                "pk": {"S": key.pk},
                                "sk": {"S": f"ALIASLOG#{now}#{uuid.uuid4().hex[:12]}"},
                                "doc": {"S": canonical_json(log)},
                            },
                            **_absent(),
                        }
                    },
                ]
            ):
                return {"alias": alias, **moved, "previous_version": log["previous_version"]}
            # Archived meanwhile (the next read says so) or another move won: read again.
            self._back_off(attempt)
        raise ConflictError(key.field, "too many concurrent alias moves; retry")

    def archive(self, key: ResourceKey, caller: str, now: str) -> None:
        meta = self.require_meta(key)
        if meta["archived"]:
            raise ConflictError(key.field, "already archived")
        try:
            self._ddb.update_item(
                TableName=self.table,
                Key={"pk": {"S": key.pk}, "sk": {"S": META}},
                UpdateExpression="SET archived = :true, archived_at = :now, archived_by = :by",
                ConditionExpression="archived = :false",
                ExpressionAttributeValues={
                    ":true": {"BOOL": True},
                    ":false": {"BOOL": False},
                    ":now": {"S": now},
                    ":by": {"S": caller},
                },
            )
        except ClientError as exc:
            if _is_condition_failure(exc):
                raise ConflictError(key.field, "already archived") from None
            raise

    # --- helpers -----------------------------------------------------------------------------------
    def _transact(self, items: list[dict[str, Any]]) -> bool:
        """One DynamoDB transaction; False when one of its conditions failed (a concurrent writer won)."""
        try:
            self._ddb.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if _is_condition_failure(exc):
                return False
            raise
        return True

    def _back_off(self, attempt: int) -> None:
        """Before the next read-and-retry of an optimistic write: a short, growing, jittered wait."""
        self._sleep(random.uniform(0, 0.01 * (attempt + 1)))  # noqa: S311 - jitter, not crypto

    def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        response = self._ddb.get_item(
            TableName=self.table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
        )
        item: dict[str, Any] | None = response.get("Item")
        return item

    def _query_prefix(self, pk: str, prefix: str) -> list[dict[str, Any]]:
        paginator = self._ddb.get_paginator("query")
        pages = paginator.paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={":pk": {"S": pk}, ":prefix": {"S": prefix}},
            ConsistentRead=True,
        )
        return [item for page in pages for item in page["Items"]]

    def _body_attributes(self, key: ResourceKey, content: dict[str, Any]) -> dict[str, Any]:
        body = canonical_json(content)
        if len(body.encode()) <= self._inline_max:
            return {"doc": {"S": body}}
        digest = hashlib.sha256(body.encode()).hexdigest()
        object_key = f"{key.business_unit}/{key.kind}s/{key.name}/{digest}.json"
        self.bodies.put(object_key, body.encode(), "application/json")
        return {"body_key": {"S": object_key}}

    def _version_keys(self, key: ResourceKey, version: int, caller: str, now: str) -> dict[str, Any]:
        return {
            "pk": {"S": key.pk},
            "sk": {"S": version_sk(version)},
            "version": {"N": str(version)},
            "created_at": {"S": now},
            "created_by": {"S": caller},
        }

    def _version_item(
        self, key: ResourceKey, version: int, content: dict[str, Any], caller: str, now: str
    ) -> dict[str, Any]:
        return {**self._version_keys(key, version, caller, now), **self._body_attributes(key, content)}


def _absent() -> dict[str, str]:
    return {"ConditionExpression": "attribute_not_exists(pk)"}


def _meta_from_item(item: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads(item["doc"]["S"])
    meta["latest_version"] = int(item["latest_version"]["N"])
    meta["archived"] = item["archived"]["BOOL"]
    for field in ("archived_at", "archived_by"):
        if field in item:
            meta[field] = item[field]["S"]
    return meta


def _alias_from_item(item: dict[str, Any]) -> dict[str, Any]:
    alias = {
        "version": int(item["version"]["N"]),
        "moved_at": item["moved_at"]["S"],
        "moved_by": item["moved_by"]["S"],
    }
    if "moved_by_principal" in item:
        alias["moved_by_principal"] = item["moved_by_principal"]["S"]
    return alias


def _encode_token(last_key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(canonical_json(last_key).encode()).decode()


def _decode_token(token: str, partition: str) -> dict[str, Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, binascii.Error):
        raise BadRequestError("next_token", "not a token this API returned") from None
    fields = ("pk", "sk", "gsi1pk", "gsi1sk")
    valid = (
        isinstance(value, dict)
        and set(value) == set(fields)
        and all(
            isinstance(value[f], dict) and isinstance(value[f].get("S"), str) and len(value[f]) == 1
            for f in fields
        )
        and value["gsi1pk"]["S"] == partition
    )
    if not valid:
        raise BadRequestError("next_token", "not a token this API returned")
    return dict(value)
