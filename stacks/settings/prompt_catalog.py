"""Prompt catalog settings: one model shared by the stack (config) and the Lambda (runtime)."""

from prompt_catalog.settings import PromptCatalogSettings

__all__ = ["PromptCatalogSettings"]
