"""The cap's lease table in moto, and a client whose calls are applied one at a time, as DynamoDB does."""

from __future__ import annotations

import threading
from typing import Any

import boto3

from common.fine_tuning_runs import PipelineRef, RunLeases

LEASES_TABLE = "exco-retail-prod-fine-tuning-leases"


def create_leases_table(region: str, name: str = LEASES_TABLE) -> Any:
    client = boto3.client("dynamodb", region_name=region)
    client.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    )
    return client


class OneRequestAtATime:
    """DynamoDB applies each request atomically; moto does not lock. This client serializes requests (never
    the starters' sequences of requests), so threads interleave between requests as they do in AWS."""

    def __init__(self, client: Any) -> None:
        self._client, self._lock = client, threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute) or name == "get_paginator":
            if name == "get_paginator":
                return lambda operation: _LockedPaginator(self._client.get_paginator(operation), self._lock)
            return attribute

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attribute(*args, **kwargs)

        return locked


class _LockedPaginator:
    def __init__(self, paginator: Any, lock: threading.Lock) -> None:
        self._paginator, self._lock = paginator, lock

    def paginate(self, **kwargs: Any) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._paginator.paginate(**kwargs))


def leases_for(client: Any, pipeline: PipelineRef, table: str = LEASES_TABLE) -> RunLeases:
    return RunLeases(client, table, pipeline)
