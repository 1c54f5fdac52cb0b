"""Runtime settings of the prompt catalog service.

The stack serializes this model with `model_dump_json()` into the PROMPT_CATALOG_SETTINGS env var and
the Lambda parses it back with the same class; `stacks/settings/prompt_catalog.py` re-exports it.
"""

from __future__ import annotations

import os
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from .rendering import RenderLimits

SETTINGS_ENV = "PROMPT_CATALOG_SETTINGS"

AliasName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_\-]{0,31}$")]


class PromptCatalogSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_aliases: tuple[AliasName, ...] = Field(
        default=("dev", "preprod", "prod"),
        description="Alias names a prompt, chain or dataset may carry; an empty list allows any name.",
    )
    max_template_bytes: int = Field(
        default=65_536, ge=256, le=262_144, description="UTF-8 size of a template."
    )
    max_variables: int = Field(default=100, ge=1, le=500, description="Declared variables per template.")
    max_render_steps: int = Field(
        default=100_000, ge=100, le=10_000_000, description="Loop iterations, calls and lookups per render."
    )
    max_render_depth: int = Field(default=20, ge=2, le=100, description="Nested calls (macros) per render.")
    max_render_bytes: int = Field(
        default=1_000_000,
        ge=1_024,
        le=5_000_000,
        description="UTF-8 size of one rendered text (Lambda answers <= 6 MB).",
    )
    max_render_memory_bytes: int = Field(
        default=32_000_000,
        ge=1_000_000,
        le=256_000_000,
        description="Values a render may build (one value: a quarter of it); keep well under the function's memory.",
    )
    max_chain_steps: int = Field(default=20, ge=1, le=100)
    max_dataset_records: int = Field(default=10_000, ge=1, le=100_000)
    max_dataset_bytes: int = Field(
        default=5_000_000, ge=1_000, le=9_000_000, description="JSON-lines size; API Gateway caps at 10 MB."
    )
    inline_body_max_bytes: int = Field(
        default=32_768,
        ge=1_024,
        le=300_000,
        description="Version bodies larger than this go to S3 instead of the DynamoDB item (400 KB limit).",
    )
    cache_ttl_seconds: float = Field(default=60.0, ge=0, le=3_600, description="prompt_client fresh period.")
    cache_max_stale_seconds: float = Field(
        default=86_400.0,
        ge=0,
        le=604_800,
        description="How long prompt_client serves a stale copy on errors.",
    )

    def render_limits(self) -> RenderLimits:
        return RenderLimits(
            max_steps=self.max_render_steps,
            max_depth=self.max_render_depth,
            max_bytes=self.max_render_bytes,
            max_memory_bytes=self.max_render_memory_bytes,
        )

    def alias_allowed(self, alias: str) -> bool:
        return not self.allowed_aliases or alias in self.allowed_aliases

    @classmethod
    def from_env(cls) -> PromptCatalogSettings:
        raw = os.environ.get(SETTINGS_ENV)
        return cls.model_validate_json(raw) if raw else cls()
