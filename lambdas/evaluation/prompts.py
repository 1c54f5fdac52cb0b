"""Catalog prompts by reference: resolve each `prompt_ref` once per run, render with the catalog's renderer.

`prepare` resolves every distinct `prompt_ref` of the dataset through the catalog API (`common.prompt_client`,
SigV4 with the function's role): `name@3` is that version, `name:prod` is whatever version the alias points
at now. The resolved versions are written to the run (`prompts.json`), so every batch renders the same
version even if the alias moves during the run, and the summary names the versions it used. Rendering
is `prompt_catalog.rendering.render`, the catalog's own jinja2 sandbox with its variable checks, so a record
renders here exactly as the catalog's render route would render it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from prompt_catalog.errors import CatalogError
from prompt_catalog.models import PromptContent
from prompt_catalog.rendering import render

from common.prompt_client import CatalogUnavailableError, FetchedPrompt, PromptFetchError

_REF = re.compile(
    r"^(?P<name>[a-z0-9][a-z0-9_\-]{0,63})(@(?P<version>[1-9][0-9]*)|:(?P<alias>[a-z][a-z0-9_\-]{0,31}))$"
)


class PromptResolutionError(ValueError):
    """A prompt_ref does not resolve (unknown name, version or alias, or refused); names the ref."""


class PromptFetcher(Protocol):
    """What `common.prompt_client.PromptClient` offers."""

    def get(self, name: str, alias: str = "prod") -> FetchedPrompt: ...

    def get_version(self, name: str, version: int) -> FetchedPrompt: ...


@dataclass(frozen=True)
class PinnedPrompt:
    ref: str
    name: str
    version: int
    content: PromptContent

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "content": self.content.model_dump(mode="json")}


def fetch_prompt(fetcher: PromptFetcher, ref: str) -> PinnedPrompt:
    match = _REF.match(ref)
    if match is None:
        raise PromptResolutionError(f"prompt_ref {ref!r}: expected 'name@version' or 'name:alias'")
    try:
        if match["version"]:
            fetched = fetcher.get_version(match["name"], int(match["version"]))
        else:
            fetched = fetcher.get(match["name"], match["alias"])
    except CatalogUnavailableError:
        raise  # an outage is not the dataset's fault: let the step fail and be retried
    except PromptFetchError as exc:
        raise PromptResolutionError(f"prompt_ref {ref!r}: {exc}") from None
    content = PromptContent.model_validate(
        {
            "template": fetched.template,
            "variables": fetched.variables,
            "model_parameters": fetched.model_parameters,
        }
    )
    return PinnedPrompt(ref, fetched.name, fetched.version, content)


class PinnedPrompts:
    """The run's prompts, each ref pinned to one version; renders a record's variables."""

    def __init__(self, prompts: Mapping[str, PinnedPrompt]) -> None:
        self.prompts = dict(prompts)

    @classmethod
    def resolve(cls, fetcher: PromptFetcher, refs: Iterable[str]) -> PinnedPrompts:
        return cls({ref: fetch_prompt(fetcher, ref) for ref in sorted(set(refs))})

    @classmethod
    def from_json(cls, text: str) -> PinnedPrompts:
        doc = json.loads(text)
        return cls(
            {
                ref: PinnedPrompt(
                    ref, p["name"], int(p["version"]), PromptContent.model_validate(p["content"])
                )
                for ref, p in doc.items()
            }
        )

    def to_json(self) -> str:
        return json.dumps({ref: p.as_json() for ref, p in sorted(self.prompts.items())})

    def versions(self) -> dict[str, int]:
        """ref -> resolved version: what the run records."""
        return {ref: p.version for ref, p in sorted(self.prompts.items())}

    def render(self, prompt_ref: str, variables: Mapping[str, object]) -> str:
        pinned = self.prompts.get(prompt_ref)
        if pinned is None:
            raise KeyError(f"prompt {prompt_ref!r} was not resolved for this run")
        try:
            return render(pinned.content.template, pinned.content.variables, dict(variables))  # type: ignore[arg-type]
        except CatalogError as exc:
            raise ValueError(f"{prompt_ref} (version {pinned.version}): {exc}") from None
