"""Fetch prompts from the prompt catalog API by alias, with a short cache and stale-while-error.

Why the API and not the table: the catalog lives in the tooling account while callers run in business
unit accounts. Going through API Gateway (IAM auth, SigV4 signed here with botocore) keeps one place
that maps a caller to its business unit, keeps the table layout and the S3 offload of large bodies
private to the catalog, and needs one IAM permission (`execute-api:Invoke`) instead of cross-account
DynamoDB, S3 and KMS grants. The extra hop is paid once per TTL thanks to the cache.

On a catalog outage (network error, timeout, 429 or 5xx) the last good copy is served for up to
`max_stale_seconds`, so the application keeps running on the prompt it already had.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.session import get_session

Transport = Callable[[AWSRequest], tuple[int, bytes]]


class PromptFetchError(Exception):
    """The catalog refused the request (4xx other than 404, e.g. 403) or is down with no usable copy."""


class PromptNotFoundError(PromptFetchError):
    """404: no such prompt or alias in the caller's business unit."""


class CatalogUnavailableError(PromptFetchError):
    """Network error, timeout, throttling or a 5xx; worth serving a stale copy for."""


@dataclass(frozen=True)
class FetchedPrompt:
    name: str
    alias: str
    version: int
    template: str
    variables: list[dict[str, Any]]
    model_parameters: dict[str, Any]
    stale: bool = False


def urllib_transport(timeout_seconds: float = 3.0) -> Transport:
    def send(request: AWSRequest) -> tuple[int, bytes]:
        http = urllib.request.Request(  # noqa: S310 - the URL is the configured https API endpoint
            request.url,
            data=request.body or None,
            headers=dict(request.headers.items()),
            method=request.method,
        )
        try:
            with urllib.request.urlopen(http, timeout=timeout_seconds) as response:  # noqa: S310
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read()
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise CatalogUnavailableError(f"prompt catalog unreachable: {exc}") from exc

    return send


class PromptClient:
    def __init__(
        self,
        api_url: str,
        *,
        region: str,
        ttl_seconds: float = 60.0,
        max_stale_seconds: float = 86_400.0,
        business_unit: str | None = None,
        transport: Transport | None = None,
        credentials: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base = api_url.rstrip("/")
        self._region = region
        self._ttl = ttl_seconds
        self._max_stale = max_stale_seconds
        self._business_unit = business_unit
        self._transport = transport or urllib_transport()
        self._credentials = credentials
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[FetchedPrompt, float]] = {}
        self._lock = threading.Lock()

    def get(self, name: str, alias: str = "prod") -> FetchedPrompt:
        """The prompt version `alias` points at; cached for ttl_seconds, stale copy on outages."""
        key = (name, alias)
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and now - cached[1] < self._ttl:
            return cached[0]
        try:
            fresh = self._fetch(name, alias)
        except CatalogUnavailableError:
            if cached is not None and now - cached[1] < self._ttl + self._max_stale:
                return replace(cached[0], stale=True)
            raise
        with self._lock:
            self._cache[key] = (fresh, self._clock())
        return fresh

    def get_version(self, name: str, version: int) -> FetchedPrompt:
        """One immutable version (`name@version`); kept for the life of the client, no TTL needed."""
        key = (name, f"@{version}")
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached[0]
        path = f"/prompts/{urllib.parse.quote(name, safe='')}/versions/{int(version)}"
        fetched = self._fetch(name, f"@{version}", path)
        with self._lock:
            self._cache[key] = (fetched, self._clock())
        return fetched

    def _fetch(self, name: str, alias: str, path: str | None = None) -> FetchedPrompt:
        if path is None:
            path = (
                f"/prompts/{urllib.parse.quote(name, safe='')}/aliases/{urllib.parse.quote(alias, safe='')}"
            )
        status, body = self.send("GET", path)
        if status == 404:
            raise PromptNotFoundError(
                f"prompt {name!r} has no {'version ' + alias[1:] if alias.startswith('@') else 'alias ' + repr(alias)}"
                " (or is not visible to this caller)"
            )
        if status == 429 or status >= 500:
            raise CatalogUnavailableError(f"prompt catalog answered {status}")
        if status != 200:
            raise PromptFetchError(f"prompt catalog answered {status}: {body[:200]!r}")
        try:
            doc = json.loads(body)
            content = doc["content"]
            return FetchedPrompt(
                name=name,
                alias=alias,
                version=int(doc["version"]),
                template=content["template"],
                variables=list(content["variables"]),
                model_parameters=dict(content["model_parameters"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise CatalogUnavailableError(f"prompt catalog answered an unreadable body: {exc}") from exc

    def send(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        """One SigV4-signed call to any catalog route, uncached (tools such as the seeder use it)."""
        data = None if body is None else json.dumps(body).encode()
        headers = self._headers() | ({"content-type": "application/json"} if data is not None else {})
        request = AWSRequest(method=method, url=self._base + path, data=data, headers=headers)
        SigV4Auth(self._signing_credentials(), "execute-api", self._region).add_auth(request)
        return self._transport(request)

    def _headers(self) -> dict[str, str]:
        return {"x-business-unit": self._business_unit} if self._business_unit else {}

    def _signing_credentials(self) -> Any:
        if self._credentials is None:
            self._credentials = get_session().get_credentials()  # refreshes itself when temporary
        if self._credentials is None:
            raise PromptFetchError("no AWS credentials to sign the catalog request with")
        return self._credentials
