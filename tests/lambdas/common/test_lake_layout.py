from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.lake_layout import (
    TABLE_ZONES,
    LakeLayoutError,
    LakeScope,
    Zone,
    check_scope,
    check_stage,
    partition_prefix,
    scope_prefix,
    shared_dataset_key,
    shared_prefix,
    stage_prefix,
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
    assert stage_prefix("finance", "prod") == "finance/prod/"
    assert shared_prefix("finance") == "finance/shared/"
    assert scope_prefix("finance", "shared") == "finance/shared/"
    assert scope_prefix("finance", "dev") == "finance/dev/"
    assert tenant_prefix("finance", "dev", "tenant-a") == "finance/dev/tenant=tenant-a/"
    assert table_prefix("finance", "preprod", "ratings") == "finance/preprod/ratings/"
    assert (
        partition_prefix("finance", "prod", "ratings", date(2024, 5, 1), "m1")
        == "finance/prod/ratings/dt=2024-05-01/model=m1/"
    )
    assert (
        partition_prefix("finance", "dev", "ratings", "2024-05-01", "m.1")
        == "finance/dev/ratings/dt=2024-05-01/model=m.1/"
    )
    assert (
        partition_prefix("finance", "prod", "ratings", datetime(2024, 5, 1, 23, tzinfo=UTC), "m1")
        == "finance/prod/ratings/dt=2024-05-01/model=m1/"
    )
    assert shared_dataset_key("finance", "faq", "v3") == "finance/shared/datasets/faq/v3/dataset.jsonl"


def test_scopes_are_the_three_stages_and_shared():
    assert [s.value for s in LakeScope] == ["dev", "preprod", "prod", "shared"]
    assert check_scope("shared") is LakeScope.SHARED
    assert check_stage("prod") is LakeScope.PROD


@pytest.mark.parametrize(
    "bad", ["", "Prod", "production", "test", "../prod", "prod/", "*", "shared ", None, 1]
)
def test_unknown_scope_is_refused_naming_the_stage_field(bad):
    with pytest.raises(LakeLayoutError) as caught:
        check_scope(bad)
    assert caught.value.field == "stage"
    with pytest.raises(LakeLayoutError) as caught:
        stage_prefix("finance", bad)
    assert caught.value.field == "stage"


@pytest.mark.parametrize(
    "build",
    [
        lambda: stage_prefix("finance", "shared"),
        lambda: tenant_prefix("finance", "shared", "t-1"),
        lambda: table_prefix("finance", "shared", "ratings"),
        lambda: partition_prefix("finance", "shared", "ratings", "2024-05-01", "m1"),
    ],
)
def test_tenant_and_table_data_never_go_to_the_shared_prefix(build):
    with pytest.raises(LakeLayoutError) as caught:
        build()
    assert caught.value.field == "stage"


@pytest.mark.parametrize(("field", "args"), [("dataset", ("../x", "v1")), ("version", ("faq", "a/b"))])
def test_shared_dataset_key_refuses_bad_segments(field, args):
    with pytest.raises(LakeLayoutError) as caught:
        shared_dataset_key("finance", *args)
    assert caught.value.field == field


@given(st.text(max_size=12))
def test_any_accepted_scope_is_one_key_segment(scope):
    try:
        prefix = scope_prefix("finance", scope)
    except LakeLayoutError as error:
        assert error.field == "stage"
        return
    assert prefix in {"finance/dev/", "finance/preprod/", "finance/prod/", "finance/shared/"}


@pytest.mark.parametrize("bad", ["", "..", "../finance", "fin/ance", "Finance", "f", "a" * 25, "fin ance"])
def test_business_unit_that_could_leave_its_prefix_is_refused(bad):
    with pytest.raises(LakeLayoutError) as caught:
        stage_prefix(bad, "dev")
    assert caught.value.field == "business_unit"


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "a..b", "../other", "tenant=x", "-a", "a" * 129])
def test_tenant_id_that_could_leave_its_prefix_is_refused(bad):
    with pytest.raises(LakeLayoutError) as caught:
        tenant_prefix("finance", "dev", bad)
    assert caught.value.field == "tenant_id"


@pytest.mark.parametrize(
    ("field", "args"),
    [
        ("table", ("finance", "dev", "secrets", "2024-05-01", "m1")),
        ("table", ("finance", "dev", "../ratings", "2024-05-01", "m1")),
        ("model", ("finance", "dev", "ratings", "2024-05-01", "..")),
        ("model", ("finance", "dev", "ratings", "2024-05-01", "a/b")),
        ("model", ("finance", "dev", "ratings", "2024-05-01", "")),
        ("dt", ("finance", "dev", "ratings", "2024-13-01", "m1")),
        ("dt", ("finance", "dev", "ratings", "../x", "m1")),
        ("stage", ("finance", "staging", "ratings", "2024-05-01", "m1")),
    ],
)
def test_partition_prefix_refuses_bad_segments(field, args):
    with pytest.raises(LakeLayoutError) as caught:
        partition_prefix(*args)
    assert caught.value.field == field


@given(st.text(max_size=40))
def test_any_accepted_tenant_prefix_stays_under_its_stage(tenant_id):
    try:
        prefix = tenant_prefix("finance", "prod", tenant_id)
    except LakeLayoutError:
        return
    assert prefix == f"finance/prod/tenant={tenant_id}/"
    assert prefix.count("/") == 3
    assert ".." not in prefix
