"""Prompt catalog settings: one model shared by the stack (config) and the Lambda (runtime).

`PromptCatalogSettings` is what the function reads at run time; `PromptCatalogStackSettings` adds the
keys only the stack uses (API Gateway throttling), so `prompt_catalog:` in the config stays one flat
section and the function's environment carries only the runtime keys.
"""

from __future__ import annotations

from prompt_catalog.settings import PromptCatalogSettings
from pydantic import Field


class PromptCatalogStackSettings(PromptCatalogSettings):
    api_rate_limit: int = Field(
        default=100, ge=1, le=10_000, description="API stage throttling: steady requests per second."
    )
    api_burst_limit: int = Field(
        default=200, ge=1, le=5_000, description="API stage throttling: burst of concurrent requests."
    )

    def runtime(self) -> PromptCatalogSettings:
        """The part of the settings the function receives (PROMPT_CATALOG_SETTINGS)."""
        return PromptCatalogSettings.model_validate(
            self.model_dump(include=set(PromptCatalogSettings.model_fields))
        )


__all__ = ["PromptCatalogSettings", "PromptCatalogStackSettings"]
