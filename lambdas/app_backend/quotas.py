"""Per-tenant rates and quotas on the expensive routes (/invoke, /uploads, /fine-tunes).

Each tenant (the Cognito `sub`) gets two fixed-window counters per route in the backend's table: one per
minute (the rate) and one per UTC day (the quota), items `QUOTA#<route>#<window>#<window start>` under the
tenant's key, removed by the table's TTL after the window. One DynamoDB transaction increments both
counters, each conditioned on staying within its limit, so a request either counts in both windows or
is refused (429) and counts in neither, and concurrent requests cannot overshoot a limit.

Why not WAF or the usage plan (docs/application.md, "Per-tenant limits"): a WAF rate-based rule can key
on a header but not on a claim inside the token, counts only over 1 to 10 minutes (no daily quota), starts
at 10 requests and limits "near" the figure; dev has no web ACL by default. A usage plan's quota needs an
API key per tenant, which Cognito users do not carry.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import ClientError

from app_backend.models import TooManyRequestsError
from app_backend.settings import RouteLimit, TenantLimits
from app_backend.store import tenant_key

Route = Literal["invoke", "uploads", "fine_tunes"]
WINDOWS: tuple[tuple[str, int], ...] = (("minute", 60), ("day", 86_400))
# Counters outlive their window by this long before the TTL removes them (TTL deletes lazily anyway).
EXPIRY_MARGIN_SECONDS = 3_600


@dataclass(frozen=True)
class Window:
    name: str
    seconds: int
    limit: int
    start: int

    @property
    def ends(self) -> int:
        return self.start + self.seconds


def windows(limit: RouteLimit, now: float) -> list[Window]:
    limits = {"minute": limit.per_minute, "day": limit.per_day}
    return [Window(name, seconds, limits[name], int(now) // seconds * seconds) for name, seconds in WINDOWS]


class TenantQuotas:
    def __init__(self, table: Any, limits: TenantLimits, clock: Callable[[], float] = time.time) -> None:
        self._table = table  # a boto3 DynamoDB Table resource (the backend's table)
        self._limits = limits
        self._clock = clock

    def consume(self, tenant_id: str, route: Route) -> None:
        """Count one request of `tenant_id` on `route`, or raise TooManyRequestsError (nothing counted)."""
        now = self._clock()
        current = windows(getattr(self._limits, route), now)
        client = self._table.meta.client
        try:
            client.transact_write_items(
                TransactItems=[self._increment(tenant_id, route, window) for window in current]
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            reasons = exc.response.get("CancellationReasons") or []
            full = [
                window
                for window, reason in zip(current, reasons, strict=False)
                if reason.get("Code") == "ConditionalCheckFailed"
            ] or current[-1:]  # without reasons, assume the longest window: the safe answer
            window = max(full, key=lambda w: w.seconds)
            raise TooManyRequestsError(
                route,
                f"this account's limit of {window.limit} requests per {window.name} is used up",
                retry_after=max(1, window.ends - int(now)),
            ) from None

    def _increment(self, tenant_id: str, route: str, window: Window) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self._table.name,
                # The Table resource's client serializes plain Python values (boto3's DynamoDB transform).
                "Key": {"pk": tenant_key(tenant_id), "sk": f"QUOTA#{route}#{window.name}#{window.start}"},
                "UpdateExpression": "ADD used :one SET expires_at = :expires",
                "ConditionExpression": "attribute_not_exists(used) OR used < :limit",
                "ExpressionAttributeValues": {
                    ":one": 1,
                    ":limit": window.limit,
                    ":expires": window.ends + EXPIRY_MARGIN_SECONDS,
                },
            }
        }
