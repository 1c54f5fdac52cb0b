# ruff: noqa: RUF001, RUF003 - look-alike characters are this file's subject
"""The folded view the local rules match on, and its map back to the original text."""

import unicodedata

from guardrail.normalize import NormalizedText, fold_char, resizing_ranges
from guardrail.resizing_ranges import RESIZING_RANGES, UNICODE_VERSION
from hypothesis import given, settings
from hypothesis import strategies as st


def test_the_kept_resizing_table_matches_this_python_s_unicode_data():
    if unicodedata.unidata_version != UNICODE_VERSION:
        # Another Unicode: the table may miss new characters; texts with them take the exact path.
        assert all(len(fold_char(chr(lo))) != 1 for lo, _ in RESIZING_RANGES[:50])
        return
    assert tuple(resizing_ranges()) == RESIZING_RANGES


def test_folding_examples():
    assert NormalizedText("Ｉｇｎｏｒｅ").text == "Ignore"
    assert NormalizedText("іgnоrе").text == "ignore"  # Cyrillic і, о, е
    assert NormalizedText("ig\u200bno\u00adre").text == "ignore"
    assert NormalizedText("i\u0301gnore ﬁle").text == "ignore file"
    assert NormalizedText("jürgen 😀").text == "jurgen 😀"
    assert NormalizedText("한국어").text == "한국어"  # Hangul recomposes


# Characters that fold to nothing, to several characters, or to one other character.
TRICKY = st.sampled_from(["\u200b", "\u00ad", "\u0301", "ﬁ", "½", "ｘ", "о", "😀", "ü", "a", " ", "\ufeff"])


@settings(max_examples=300)
@given(st.lists(st.one_of(TRICKY, st.characters(codec="utf-8")), max_size=40))
def test_every_folded_character_maps_back_inside_the_original(chars):
    original = "".join(chars)
    view = NormalizedText(original)
    for start in range(len(view.text)):
        for end in range(start + 1, min(len(view.text), start + 4) + 1):
            lo, hi = view.original_span(start, end)
            assert 0 <= lo < hi <= len(original)
            # The original span, folded, contains the folded text it came from.
            assert view.text[start:end] in NormalizedText(original[lo:hi]).text


@settings(max_examples=200)
@given(st.text(alphabet="ab \u200b\u0301ﬁ", max_size=30))
def test_the_whole_folded_view_maps_back_to_the_whole_original(original):
    view = NormalizedText(original)
    if view.text:
        lo, hi = view.original_span(0, len(view.text))
        assert NormalizedText(original[lo:hi]).text == view.text


def test_the_kept_digit_table_matches_this_python_s_unicode_data():
    from guardrail.normalize import decimal_zeros
    from guardrail.resizing_ranges import DECIMAL_ZEROS

    if unicodedata.unidata_version != UNICODE_VERSION:
        assert all(unicodedata.decimal(chr(zero)) == 0 for zero in DECIMAL_ZEROS)
        return
    assert tuple(decimal_zeros()) == DECIMAL_ZEROS


def test_digits_of_every_script_fold_to_ascii_digits():
    assert NormalizedText("٤١١١ ١١١١").text == "4111 1111"  # Arabic-Indic
    assert NormalizedText("４１１１ ９").text == "4111 9"  # fullwidth
    assert NormalizedText("𝟒𝟏 ೪").text == "41 4"  # mathematical bold, Kannada


@settings(max_examples=400)
@given(
    st.lists(
        st.one_of(TRICKY, st.sampled_from(["٤", "한", "ᄀ", "ᅡ", "ǅ", "ß"]), st.characters(codec="utf-8")),
        max_size=60,
    )
)
def test_the_fast_paths_fold_exactly_like_the_per_character_path(chars):
    original = "".join(chars)
    view = NormalizedText(original)
    assert view.text == "".join(fold_char(c) for c in original)
    if view.same_offsets:
        assert len(view.text) == len(original)
