from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from common.lake_layout import Zone
from stacks.settings import ConfigError, load_config, parse_config
from stacks.settings.data_lake import DataLakeSettings, LakeAccess, ZoneLifecycle, ZoneLifecycles


def error_of(data):
    with pytest.raises(ValidationError) as caught:
        DataLakeSettings.model_validate(data)
    [error] = caught.value.errors()
    return ".".join(str(part) for part in error["loc"]), error["msg"]


def test_defaults_cover_every_zone():
    settings = DataLakeSettings()
    assert set(ZoneLifecycles.model_fields) == {zone.value for zone in Zone}
    for zone in Zone:
        assert settings.zones.for_zone(zone) == ZoneLifecycle(transition_to_ia_days=90)
    assert settings.zones.for_zone(Zone.RAW).expiry_days is None
    assert settings.athena_bytes_scanned_cutoff_per_query == 10 * 1024**3
    assert settings.noncurrent_version_expiry_days == 90


def test_a_zone_can_be_tuned_alone():
    settings = DataLakeSettings.model_validate(
        {
            "zones": {
                "raw": {"transition_to_ia_days": 30, "expiry_days": 365},
                "feedback": {"object_lock_retention_days": 400},
            }
        }
    )
    assert settings.zones.raw.expiry_days == 365
    assert settings.zones.for_zone(Zone.FEEDBACK).object_lock_retention_days == 400
    assert settings.zones.curated == ZoneLifecycle()


def test_settings_round_trip_as_json():
    settings = DataLakeSettings.model_validate({"zones": {"raw": {"expiry_days": 400}}})
    assert DataLakeSettings.model_validate_json(settings.model_dump_json()) == settings


@pytest.mark.parametrize(
    ("data", "field", "says"),
    [
        ({"zones": {"raww": {}}}, "zones.raww", "Extra inputs"),
        ({"zones": {"raw": {"transition_to_ia_days": 10}}}, "zones.raw.transition_to_ia_days", "30"),
        ({"zones": {"raw": {"expiry_days": 0}}}, "zones.raw.expiry_days", "1"),
        ({"zones": {"raw": {"expiry_days": 60}}}, "zones.raw", "transition_to_ia_days"),
        (
            {
                "zones": {
                    "raw": {
                        "transition_to_ia_days": None,
                        "expiry_days": 60,
                        "object_lock_retention_days": 90,
                    }
                }
            },
            "zones.raw",
            "object_lock_retention_days",
        ),
        ({"zones": {"raw": {"object_lock_mode": "STRICT"}}}, "zones.raw.object_lock_mode", "GOVERNANCE"),
        (
            {"athena_bytes_scanned_cutoff_per_query": 1000},
            "athena_bytes_scanned_cutoff_per_query",
            "10485760",
        ),
        ({"noncurrent_version_expiry_days": 0}, "noncurrent_version_expiry_days", "1"),
        ({"retention": 3}, "retention", "Extra inputs"),
    ],
)
def test_mistakes_name_the_field_and_what_is_allowed(data, field, says):
    where, message = error_of(data)
    assert where == field
    assert says in message


def test_expiry_without_transition_is_allowed():
    lifecycle = ZoneLifecycle(transition_to_ia_days=None, expiry_days=7)
    assert lifecycle.expiry_days == 7


def test_business_units_write_what_they_produce_and_only_read_what_is_prepared_for_them():
    access = DataLakeSettings().business_unit_access
    assert {zone: access.for_zone(zone) for zone in Zone} == {
        Zone.RAW: LakeAccess.READ_WRITE,
        Zone.CURATED: LakeAccess.READ_WRITE,
        Zone.PROMPT_CATALOG: LakeAccess.READ,
        Zone.EVALUATION_DATASETS: LakeAccess.READ,
        Zone.EVALUATION_RESULTS: LakeAccess.READ_WRITE,
        Zone.FEEDBACK: LakeAccess.READ_WRITE,
        Zone.FILTER_DECISIONS: LakeAccess.READ_WRITE,
        Zone.MODEL_METADATA: LakeAccess.READ_WRITE,
    }
    narrowed = DataLakeSettings.model_validate({"business_unit_access": {"raw": None, "curated": "read"}})
    assert narrowed.business_unit_access.raw is None
    assert narrowed.business_unit_access.curated is LakeAccess.READ


def test_a_wrong_access_value_names_the_zone():
    where, message = error_of({"business_unit_access": {"raw": "delete"}})
    assert where == "business_unit_access.raw"
    assert "read_write" in message


def test_the_platform_config_carries_the_data_lake_section():
    config = load_config()
    assert config.data_lake == DataLakeSettings()
    with pytest.raises(ConfigError, match="data_lake"):
        raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "platform.yaml").read_text())
        raw["data_lake"] = {"zones": {"raw": {"expiry_days": 0}}}
        parse_config(raw)
