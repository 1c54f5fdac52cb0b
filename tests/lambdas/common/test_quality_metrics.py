"""The rating metric the app backend emits: one rating, low or not, with the contract's dimensions."""

from __future__ import annotations

import json

import pytest

from common.quality_metrics import emit_rating, is_low_rating


@pytest.mark.parametrize(
    ("rating_type", "value", "low"),
    [("stars", 1, True), ("stars", 2, True), ("stars", 3, False), ("thumbs", 0, True), ("thumbs", 1, False)],
)
def test_low_ratings_are_two_stars_or_less_and_thumbs_down(rating_type, value, low):
    assert is_low_rating(rating_type, value) is low


def test_emit_rating_writes_one_emf_blob_with_the_contract_dimensions(capsys):
    emit_rating("retail", "stars", 1)
    (blob,) = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert blob["ratings"] == [1.0] and blob["low_ratings"] == [1.0]
    assert blob["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["business_unit", "service"]]
    assert blob["service"] == "app" and blob["business_unit"] == "retail"
