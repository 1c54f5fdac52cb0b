"""EventBridge pattern matching for journey tests (the subset the platform's rules use).

A pattern value is a list of alternatives: literals, or `{"prefix": ...}`; a nested dict matches a
nested object. Enough for S3 "Object Created" rules; not a general EventBridge implementation.
"""

from __future__ import annotations

from typing import Any


def matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    for field, expected in pattern.items():
        if field not in event:
            return False
        actual = event[field]
        if isinstance(expected, dict):
            if not isinstance(actual, dict) or not matches(expected, actual):
                return False
            continue
        if not any(_alternative(option, actual) for option in expected):
            return False
    return True


def _alternative(option: Any, actual: Any) -> bool:
    if isinstance(option, dict):
        if set(option) != {"prefix"}:
            raise NotImplementedError(option)
        return isinstance(actual, str) and actual.startswith(option["prefix"])
    return bool(option == actual)


def s3_object_created(bucket: str, key: str, *, account: str, region: str) -> dict[str, Any]:
    """The event S3 sends to EventBridge for a new object (shape of the AWS documentation's sample)."""
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": account,
        "time": "2026-11-26T12:00:00Z",
        "region": region,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {
                "key": key,
                "size": 5,
                "etag": "b1946ac92492d2347c6235b4d2611184",
                "sequencer": "00617F08",
            },
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": account,
            "source-ip-address": "203.0.113.15",
            "reason": "PutObject",
        },
    }
