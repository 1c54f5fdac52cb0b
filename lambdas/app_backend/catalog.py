"""Prompts and chains from the prompt catalog, by alias, as the chain runner wants them.

Prompt aliases go through `common.prompt_client.PromptClient` (TTL cache, stale copy on outages). Chains
and the prompt versions a chain pins (`name@3`) are fetched with the same signed GET and cached here:
versions are immutable, so they are cached for the life of the process.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, Protocol

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.session import get_session
from prompt_catalog.chains import ResolvedPrompt
from prompt_catalog.models import ChainContent, PromptContent

from common.prompt_client import (
    CatalogUnavailableError,
    FetchedPrompt,
    PromptClient,
    PromptFetchError,
    PromptNotFoundError,
    Transport,
)

GetJson = Callable[[str], dict[str, Any]]


class PromptSource(Protocol):
    def prompt(self, name: str, alias: str) -> ResolvedPrompt: ...

    def chain(self, name: str, alias: str) -> tuple[ChainContent, dict[str, ResolvedPrompt]]: ...


def resolved(ref: str, fetched: FetchedPrompt) -> ResolvedPrompt:
    content = PromptContent.model_validate(
        {
            "template": fetched.template,
            "variables": fetched.variables,
            "model_parameters": fetched.model_parameters,
        }
    )
    return ResolvedPrompt(ref=ref, name=fetched.name, version=fetched.version, content=content)


class ApiCatalog:
    def __init__(self, prompts: PromptClient, get_json: GetJson, *, chain_ttl_seconds: float = 60.0) -> None:
        self._prompts = prompts
        self._get_json = get_json
        self._chain_ttl = chain_ttl_seconds
        self._versions: dict[str, ResolvedPrompt] = {}
        self._chains: dict[tuple[str, str], tuple[ChainContent, float]] = {}
        self._lock = threading.Lock()

    def prompt(self, name: str, alias: str) -> ResolvedPrompt:
        return resolved(f"{name}:{alias}", self._prompts.get(name, alias))

    def chain(self, name: str, alias: str) -> tuple[ChainContent, dict[str, ResolvedPrompt]]:
        key, now = (name, alias), time.monotonic()
        with self._lock:
            cached = self._chains.get(key)
        if cached is None or now - cached[1] >= self._chain_ttl:
            doc = self._get_json(f"/chains/{_q(name)}/aliases/{_q(alias)}")
            cached = (ChainContent.model_validate(doc["content"]), now)
            with self._lock:
                self._chains[key] = cached
        chain = cached[0]
        return chain, {step.prompt: self._step_prompt(step.prompt) for step in chain.steps}

    def _step_prompt(self, ref: str) -> ResolvedPrompt:
        if ":" in ref:
            name, alias = ref.split(":", 1)
            return resolved(ref, self._prompts.get(name, alias))
        with self._lock:
            found = self._versions.get(ref)
        if found is None:
            name, version = ref.split("@", 1)
            doc = self._get_json(f"/prompts/{_q(name)}/versions/{_q(version)}")
            found = ResolvedPrompt(
                ref, name, int(doc["version"]), PromptContent.model_validate(doc["content"])
            )
            with self._lock:
                self._versions[ref] = found
        return found


def _q(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def signed_get_json(base_url: str, *, region: str, transport: Transport, business_unit: str) -> GetJson:
    """GET a catalog path signed with the function's credentials (same contract as PromptClient)."""
    base = base_url.rstrip("/")

    def get(path: str) -> dict[str, Any]:
        request = AWSRequest(method="GET", url=base + path, headers={"x-business-unit": business_unit})
        SigV4Auth(get_session().get_credentials(), "execute-api", region).add_auth(request)
        status, body = transport(request)
        if status == 404:
            raise PromptNotFoundError(f"{path}: not found in the prompt catalog")
        if status == 429 or status >= 500:
            raise CatalogUnavailableError(f"prompt catalog answered {status}")
        if status != 200:
            raise PromptFetchError(f"prompt catalog answered {status}")
        try:
            doc: dict[str, Any] = json.loads(body)
        except ValueError as exc:
            raise CatalogUnavailableError("prompt catalog answered an unreadable body") from exc
        return doc

    return get
