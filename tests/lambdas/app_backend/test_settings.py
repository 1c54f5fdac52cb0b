from __future__ import annotations

import pytest
from app_backend.settings import ApplicationSettings
from pydantic import ValidationError


def test_defaults_require_mfa_and_threat_protection() -> None:
    settings = ApplicationSettings()
    assert settings.sign_up.mfa == "required"
    assert settings.sign_up.threat_protection == "enforced"
    assert settings.default_model.name == "amazon.nova-lite-v1:0"
    assert ApplicationSettings.model_validate_json(settings.model_dump_json()) == settings


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"sign_up": {"password": {"min_length": 6}}}, "sign_up.password.min_length"),
        ({"default_model": {"provider": "sagemaker"}}, "endpoint_name"),
        ({"ratings": {"good_at_least": 2, "bad_at_most": 3}}, "bad_at_most"),
        ({"uploads": {"content_types": ["not a type"]}}, "uploads.content_types.0"),
        ({"signup": {}}, "signup"),
    ],
)
def test_errors_name_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ApplicationSettings.model_validate(data)
    assert field in str(caught.value)
