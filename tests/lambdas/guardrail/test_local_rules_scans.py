"""The local rules' fast scans find exactly what the plain regular expressions find (the shape view, the
deny pattern's locator, the deny terms by `str.find`), on random and adversarial texts."""

from __future__ import annotations

import re

from guardrail.layers.local_rules import (
    _DIGIT_RUN,
    _IBAN,
    DenyPattern,
    _deny_pattern,
    deny_pattern_spans,
    is_card_format,
    shape_of,
)
from guardrail.normalize import NormalizedText
from hypothesis import given, settings
from hypothesis import strategies as st

# The patterns as they read on the folded text itself.
DIGIT_RUN = re.compile(r"\d[\d ()./-]{5,}\d")
IBAN = re.compile(r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}")
CARD_RUN = re.compile(r"(?:\d[ -]?){12,18}\d")

# Characters the scans care about, their look-alikes and neighbours: digits of other scripts, separators,
# capitals, lower case, non-ASCII letters, an emoji.
ALPHABET = st.sampled_from([*"0123456789 -()./ADEGBZ az?@", "\u0664", "\uff14", "é", "Ж", "😀", "\u200b"])


def spans(matches: object) -> list[tuple[int, int]]:
    return [m.span() for m in matches]  # type: ignore[attr-defined]


@settings(max_examples=400)
@given(st.lists(ALPHABET, max_size=80))
def test_digit_runs_and_ibans_on_the_shape_are_those_of_the_folded_text(chars):
    folded = NormalizedText("".join(chars)).text
    shape = shape_of(folded)
    assert len(shape) == len(folded)
    assert spans(_DIGIT_RUN.finditer(shape)) == spans(DIGIT_RUN.finditer(folded))
    assert spans(_IBAN.finditer(shape)) == spans(IBAN.finditer(folded))
    for start, end in spans(DIGIT_RUN.finditer(folded)):
        assert is_card_format(shape[start:end]) == bool(CARD_RUN.fullmatch(folded, start, end))


PATTERNS = st.sampled_from(
    [r"\bORD-\d{6}\b", r"\bab", r"\ba|b", r"\bab?", r"\ba(?:b|)", r"\bx*", r"\b\d+", r"ab"]
)


@settings(max_examples=400)
@given(PATTERNS, st.text(alphabet="abxORD-0123456 _", max_size=60))
def test_a_located_deny_pattern_finds_what_finditer_finds(source, text):
    deny = _deny_pattern(source)
    expected = [m.span() for m in re.finditer(source, text) if m.end() > m.start()]
    assert list(deny_pattern_spans(text, deny)) == expected
    plain = DenyPattern(re.compile(source), None)
    assert list(deny_pattern_spans(text, plain)) == expected


def test_only_a_leading_boundary_before_a_literal_gets_a_locator():
    assert _deny_pattern(r"\bORD-\d{6}\b").locator is not None
    assert _deny_pattern(r"\b\d{6}").locator is None
    assert _deny_pattern(r"ORD-\d{6}").locator is None
    assert _deny_pattern(r"\\bORD").locator is None  # an escaped backslash, then "bORD"


def test_adversarial_runs_are_scanned_like_the_plain_patterns():
    for text in (
        "1 2-3.4/5(6)7 " * 300,
        "DE00 AAAA 0000 AAAA " * 200,
        "4111 1111 1111 1111 " * 200,
        "AA00" * 1000 + " 1",
    ):
        shape = shape_of(text)
        assert spans(_DIGIT_RUN.finditer(shape)) == spans(DIGIT_RUN.finditer(text))
        assert spans(_IBAN.finditer(shape)) == spans(IBAN.finditer(text))


def test_card_and_phone_numbers_in_arabic_indic_digits_are_found_and_redacted_in_the_original():
    from guardrail.layers.local_rules import LocalRulesLayer
    from guardrail.model import CheckRequest, ContentItem
    from guardrail.settings import DirectionSettings

    arabic = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
    card, phone = "4111 1111 1111 1111".translate(arabic), "+1 415 555 2671".translate(arabic)
    text = f"card {card}, call {phone}"
    request = CheckRequest("input", (ContentItem(text),), "retail", "m", "r-1")
    findings = LocalRulesLayer().check(request, DirectionSettings()).findings
    found = {f.type: text[f.span.start : f.span.end] for f in findings if f.span is not None}
    assert found == {"CREDIT_DEBIT_NUMBER": card, "PHONE": phone}
