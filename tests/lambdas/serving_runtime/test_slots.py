"""GPU slot assignment: every row gets its adapter's slot; least recently used adapters leave first."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from serving_runtime.slots import SlotTable, TooManyAdaptersError


def test_a_mixed_batch_gets_one_slot_per_adapter_and_pages_in_only_the_missing_ones() -> None:
    table = SlotTable(3)
    first = table.assign(["a", "b", "a"])
    assert first.rows[0] == first.rows[2] != first.rows[1]
    assert [adapter for adapter, _ in first.page_ins] == ["a", "b"]
    again = table.assign(["b", "a"])
    assert again.page_ins == [] and again.evicted == []


def test_the_least_recently_used_adapter_is_evicted_and_its_slot_reused() -> None:
    table = SlotTable(2)
    table.assign(["a"])
    table.assign(["b"])
    table.assign(["a"])  # b is now the least recently used
    result = table.assign(["c"])
    assert result.evicted == ["b"]
    assert result.page_ins == [("c", table.resident()["c"])]
    assert set(table.resident()) == {"a", "c"}


def test_a_batch_never_evicts_its_own_adapters() -> None:
    table = SlotTable(2)
    table.assign(["a", "b"])
    result = table.assign(["a", "c"])  # b goes, although a was used earlier than b
    assert result.evicted == ["b"]


def test_more_distinct_adapters_than_slots_is_a_named_error() -> None:
    with pytest.raises(
        TooManyAdaptersError, match=r"adapter_ids: a batch names 3 distinct adapters, the GPU holds 2"
    ):
        SlotTable(2).assign(["a", "b", "c"])
    with pytest.raises(ValueError, match="capacity"):
        SlotTable(0)


@settings(max_examples=80, deadline=None)
@given(
    st.integers(1, 6), st.lists(st.lists(st.sampled_from("abcdefghij"), min_size=1, max_size=6), max_size=20)
)
def test_slots_stay_consistent_over_any_sequence_of_batches(capacity: int, batches: list[list[str]]) -> None:
    table = SlotTable(capacity)
    for batch in batches:
        if len(set(batch)) > capacity:
            with pytest.raises(TooManyAdaptersError):
                table.assign(batch)
            continue
        result = table.assign(batch)
        resident = table.resident()
        assert len(resident) <= capacity
        assert len(set(resident.values())) == len(resident)  # no slot holds two adapters
        assert all(0 <= slot < capacity for slot in resident.values())
        assert result.rows == [resident[adapter] for adapter in batch]
        assert not set(result.evicted) & set(batch)
