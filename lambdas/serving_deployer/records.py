"""The stage's model records table (DynamoDB): which version serves each slot, and every deployment outcome.

The application backend reads `TENANT#<tenant>` / `MODEL#<name>` items to route a tenant's /invoke, and
`DEPLOYMENT#<group>#<version>` items to answer GET /fine-tunes/{id}. Conditional writes keep an older
version from overwriting a newer one when two deployments race.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from serving_deployer.core import ModelPackage


def deployment_key(group: str, version: int) -> str:
    return f"DEPLOYMENT#{group}#{version}"


class DynamoRecords:
    def __init__(self, table: Any, *, clock: Any) -> None:
        self._table = table  # a boto3 DynamoDB Table resource
        self._clock = clock

    def serving(self, slot: tuple[str, str]) -> dict[str, Any] | None:
        item = self._table.get_item(Key={"pk": slot[0], "sk": slot[1]}, ConsistentRead=True).get("Item")
        return dict(item) if item is not None else None

    def put_serving(self, slot: tuple[str, str], item: dict[str, Any]) -> bool:
        try:
            self._table.put_item(
                Item={"pk": slot[0], "sk": slot[1], **item},
                ConditionExpression="attribute_not_exists(pk) OR version < :version",
                ExpressionAttributeValues={":version": item["version"]},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def delete_serving(self, slot: tuple[str, str], version: int) -> bool:
        try:
            self._table.delete_item(
                Key={"pk": slot[0], "sk": slot[1]},
                ConditionExpression="version = :version",
                ExpressionAttributeValues={":version": version},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def put_deployment(self, package: ModelPackage, status: str, reason: str | None) -> None:
        item: dict[str, Any] = {
            "pk": package.slot[0],
            "sk": deployment_key(package.group, package.version),
            "status": status,
            "model_package_arn": package.arn,
            "updated_at": int(self._clock()),
        }
        if reason:
            item["reason"] = reason[:1000]
        self._table.put_item(Item=item)
