"""The backend's DynamoDB table: requests, ratings, fine-tunes and models, partitioned by tenant.

Every key starts with `TENANT#<tenant id>`, so a lookup made for one tenant can never return another
tenant's item: isolation is a property of the key, not of a filter.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

REQUEST_TTL_DAYS = 90


def tenant_key(tenant_id: str) -> str:
    return f"TENANT#{tenant_id}"


@dataclass(frozen=True)
class StoredRequest:
    request_id: str
    prompt_ref: str
    kind: str  # "prompt" or "chain"
    model: str
    variables_redacted: str | None  # JSON object, None when the filter could not vouch for it
    output_redacted: str | None
    input_sha256: str
    output_sha256: str
    created_at: int


class AppStore:
    def __init__(self, table: Any, models_table: Any = None) -> None:
        self._table = table  # a boto3 DynamoDB Table resource
        # The stage's model records (serving stack; the deployer writes them): tenant -> served model.
        self._models = models_table if models_table is not None else table

    # ---- requests --------------------------------------------------------------------------------

    def put_request(self, tenant_id: str, request: StoredRequest) -> None:
        item = {
            "pk": tenant_key(tenant_id),
            "sk": f"REQUEST#{request.request_id}",
            "prompt_ref": request.prompt_ref,
            "kind": request.kind,
            "model": request.model,
            "input_sha256": request.input_sha256,
            "output_sha256": request.output_sha256,
            "created_at": request.created_at,
            "expires_at": request.created_at + REQUEST_TTL_DAYS * 86_400,
        }
        if request.variables_redacted is not None:
            item["variables_redacted"] = request.variables_redacted
        if request.output_redacted is not None:
            item["output_redacted"] = request.output_redacted
        self._table.put_item(Item=item)

    def get_request(self, tenant_id: str, request_id: str) -> StoredRequest | None:
        item = self._get(tenant_id, f"REQUEST#{request_id}")
        if item is None:
            return None
        return StoredRequest(
            request_id=request_id,
            prompt_ref=str(item["prompt_ref"]),
            kind=str(item["kind"]),
            model=str(item["model"]),
            variables_redacted=item.get("variables_redacted"),
            output_redacted=item.get("output_redacted"),
            input_sha256=str(item["input_sha256"]),
            output_sha256=str(item["output_sha256"]),
            created_at=int(item["created_at"]),
        )

    # ---- ratings ---------------------------------------------------------------------------------

    def claim_rating(
        self, tenant_id: str, request_id: str, rating: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """Store `rating` unless this request already has one; return (the stored rating, whether new).

        The conditional put makes a retried rating land once; `published` says whether the lake copy
        was written, so a retry after a failed lake write finishes the job with the same record.
        """
        item = {"pk": tenant_key(tenant_id), "sk": f"RATING#{request_id}", "published": False, **rating}
        try:
            self._table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            existing = self._get(tenant_id, f"RATING#{request_id}", consistent=True)
            return dict(existing or item), False
        return item, True

    def mark_published(self, tenant_id: str, request_id: str) -> None:
        self._table.update_item(
            Key={"pk": tenant_key(tenant_id), "sk": f"RATING#{request_id}"},
            UpdateExpression="SET published = :yes",
            ExpressionAttributeValues={":yes": True},
        )

    # ---- fine-tunes and models -------------------------------------------------------------------

    def put_fine_tune(
        self, tenant_id: str, fine_tune_id: str, model_name: str, execution_arn: str, *, use_case: str
    ) -> None:
        self._table.put_item(
            Item={
                "pk": tenant_key(tenant_id),
                "sk": f"FINETUNE#{fine_tune_id}",
                "model_name": model_name,
                "use_case": use_case,
                "execution_arn": execution_arn,
                "created_at": int(time.time()),
            }
        )

    def get_fine_tune(self, tenant_id: str, fine_tune_id: str) -> dict[str, Any] | None:
        return self._get(tenant_id, f"FINETUNE#{fine_tune_id}")

    def list_fine_tunes(self, tenant_id: str, limit: int) -> list[dict[str, Any]]:
        """The tenant's most recent fine-tunes (POST /fine-tunes), newest first."""
        from boto3.dynamodb.conditions import Key

        answer = self._table.query(
            KeyConditionExpression=Key("pk").eq(tenant_key(tenant_id)) & Key("sk").begins_with("FINETUNE#")
        )
        items = [dict(item) for item in answer.get("Items", [])]
        items.sort(key=lambda item: int(item.get("created_at", 0)), reverse=True)
        return items[:limit]

    def deployment(self, tenant_id: str, group: str, version: int) -> dict[str, Any] | None:
        """The deployer's outcome for one registered version of this tenant (`DEPLOYMENT#<group>#<version>`)."""
        answer = self._models.get_item(
            Key={"pk": tenant_key(tenant_id), "sk": f"DEPLOYMENT#{group}#{version}"}, ConsistentRead=True
        )
        item = answer.get("Item")
        return dict(item) if item is not None else None

    def list_models(self, tenant_id: str) -> list[dict[str, Any]]:
        """The tenant's served models, newest first. The deployer writes `MODEL#<name>` items once a version
        serves (endpoint_name, target_model or inference_component, payload_format, version, created_at)."""
        from boto3.dynamodb.conditions import Key

        answer = self._models.query(
            KeyConditionExpression=Key("pk").eq(tenant_key(tenant_id)) & Key("sk").begins_with("MODEL#")
        )
        items = [dict(item) for item in answer.get("Items", [])]
        return sorted(items, key=lambda item: int(item.get("created_at", 0)), reverse=True)

    def _get(self, tenant_id: str, sort_key: str, *, consistent: bool = False) -> dict[str, Any] | None:
        answer = self._table.get_item(
            Key={"pk": tenant_key(tenant_id), "sk": sort_key}, ConsistentRead=consistent
        )
        item = answer.get("Item")
        return dict(item) if item is not None else None
