from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.lake_layout import (
    TABLE_ZONES,
    LakeLayoutError,
    Zone,
    business_unit_prefix,
    partition_prefix,
    table_prefix,
    tenant_prefix,
    zone_for_table,
)
from common.lake_records import LAKE_RECORD_TYPES


def test_each_table_lives_in_its_zone():
    assert {t.TABLE for t in LAKE_RECORD_TYPES} == set(TABLE_ZONES)
    assert zone_for_table("evaluation_results") is Zone.EVALUATION_RESULTS
    assert zone_for_table("ratings") is Zone.FEEDBACK
    assert zone_for_table("filter_decisions") is Zone.FILTER_DECISIONS


def test_zones_are_the_eight_of_the_layout():
    assert [z.value for z in Zone] == [
        "raw",
        "curated",
        "prompt_catalog",
        "evaluation_datasets",
        "evaluation_results",
        "feedback",
        "filter_decisions",
        "model_metadata",
    ]


def test_prefixes():
    assert business_unit_prefix("finance") == "finance/"
    assert tenant_prefix("finance", "tenant-a") == "finance/tenant=tenant-a/"
    assert table_prefix("finance", "ratings") == "finance/ratings/"
    assert (
        partition_prefix("finance", "ratings", date(2024, 5, 1), "m1")
        == "finance/ratings/dt=2024-05-01/model=m1/"
    )
    assert (
        partition_prefix("finance", "ratings", "2024-05-01", "m.1")
        == "finance/ratings/dt=2024-05-01/model=m.1/"
    )
    assert (
        partition_prefix("finance", "ratings", datetime(2024, 5, 1, 23, tzinfo=UTC), "m1")
        == "finance/ratings/dt=2024-05-01/model=m1/"
    )


@pytest.mark.parametrize("bad", ["", "..", "../finance", "fin/ance", "Finance", "f", "a" * 25, "fin ance"])
def test_business_unit_that_could_leave_its_prefix_is_refused(bad):
    with pytest.raises(LakeLayoutError) as caught:
        business_unit_prefix(bad)
    assert caught.value.field == "business_unit"


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "a..b", "../other", "tenant=x", "-a", "a" * 129])
def test_tenant_id_that_could_leave_its_prefix_is_refused(bad):
    with pytest.raises(LakeLayoutError) as caught:
        tenant_prefix("finance", bad)
    assert caught.value.field == "tenant_id"


@pytest.mark.parametrize(
    ("field", "args"),
    [
        ("table", ("finance", "secrets", "2024-05-01", "m1")),
        ("table", ("finance", "../ratings", "2024-05-01", "m1")),
        ("model", ("finance", "ratings", "2024-05-01", "..")),
        ("model", ("finance", "ratings", "2024-05-01", "a/b")),
        ("model", ("finance", "ratings", "2024-05-01", "")),
        ("dt", ("finance", "ratings", "2024-13-01", "m1")),
        ("dt", ("finance", "ratings", "../x", "m1")),
    ],
)
def test_partition_prefix_refuses_bad_segments(field, args):
    with pytest.raises(LakeLayoutError) as caught:
        partition_prefix(*args)
    assert caught.value.field == field


@given(st.text(max_size=40))
def test_any_accepted_tenant_prefix_stays_under_its_business_unit(tenant_id):
    try:
        prefix = tenant_prefix("finance", tenant_id)
    except LakeLayoutError:
        return
    assert prefix == f"finance/tenant={tenant_id}/"
    assert prefix.count("/") == 2
    assert ".." not in prefix
