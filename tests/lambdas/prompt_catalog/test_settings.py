from __future__ import annotations

import pytest
from prompt_catalog.access import CallerMap
from prompt_catalog.settings import PromptCatalogSettings
from pydantic import ValidationError

from stacks.settings.prompt_catalog import PromptCatalogSettings as Reexported


def test_defaults_round_trip_through_the_env_json(monkeypatch):
    settings = PromptCatalogSettings(allowed_aliases=("dev", "prod"), cache_ttl_seconds=5)
    monkeypatch.setenv("PROMPT_CATALOG_SETTINGS", settings.model_dump_json())
    assert PromptCatalogSettings.from_env() == settings
    assert Reexported is PromptCatalogSettings
    assert PromptCatalogSettings().allowed_aliases == ("dev", "preprod", "prod")


def test_empty_alias_list_allows_any_name():
    assert PromptCatalogSettings(allowed_aliases=()).alias_allowed("canary")
    assert not PromptCatalogSettings().alias_allowed("canary")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_template_bytes", 10),
        ("allowed_aliases", ["Prod"]),
        ("inline_body_max_bytes", 10**6),
        ("typo", 1),
    ],
)
def test_bad_settings_name_the_field(field, value):
    with pytest.raises(ValidationError) as err:
        PromptCatalogSettings.model_validate({field: value})
    assert field in str(err.value)


def test_caller_map_rejects_non_arn_prefixes():
    with pytest.raises(ValidationError, match="bu-a"):
        CallerMap.model_validate({"bu-a": ["not-an-arn"]})
    callers = CallerMap.model_validate({"bu-a": ["arn:aws:sts::111122223333:assumed-role/"]})
    assert callers.business_units_for("arn:aws:sts::111122223333:assumed-role/any/s") == ["bu-a"]
    assert callers.business_units_for("arn:aws:sts::444455556666:assumed-role/any/s") == []
