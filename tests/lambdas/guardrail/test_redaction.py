from guardrail.redaction import TypedSpan, merge_spans, redact, redact_literals
from hypothesis import given
from hypothesis import strategies as st


def test_replaces_span_with_type():
    assert redact("mail me at a@b.co now", [TypedSpan(11, 17, "EMAIL")]) == "mail me at [EMAIL] now"


def test_overlapping_spans_merge_into_one_placeholder():
    spans = [TypedSpan(0, 4, "NAME"), TypedSpan(2, 8, "ADDRESS"), TypedSpan(8, 10, "PHONE")]
    assert merge_spans(spans) == [TypedSpan(0, 10, "NAME")]
    assert redact("0123456789xyz", spans) == "[NAME]xyz"


def test_non_ascii_offsets_are_characters():
    text = "Grüße, ich bin Jürgen 😀 aus Köln"
    start = text.index("Jürgen")
    assert redact(text, [TypedSpan(start, start + 6, "NAME")]) == "Grüße, ich bin [NAME] 😀 aus Köln"


def test_literal_redaction_replaces_longest_first():
    assert redact_literals("Ann Lee and Ann", [("Ann", "NAME"), ("Ann Lee", "NAME")]) == "[NAME] and [NAME]"


SECRET = "§"
plain = st.text(alphabet=st.characters(blacklist_characters=SECRET, blacklist_categories=["Cs"]), max_size=20)


@given(st.lists(st.tuples(plain, st.integers(min_value=0, max_value=6)), min_size=1, max_size=8), st.data())
def test_no_detected_character_survives(parts, data):
    text, spans = "", []
    for filler, secret_len in parts:
        text += filler
        if secret_len:
            spans.append(TypedSpan(len(text), len(text) + secret_len, "X"))
        text += SECRET * secret_len
    # Extra spans that overlap the secrets and each other arbitrarily.
    for _ in range(data.draw(st.integers(0, 4))):
        start = data.draw(st.integers(0, len(text)))
        spans.append(TypedSpan(start, data.draw(st.integers(start, len(text))), "Y"))
    assert SECRET not in redact(text, spans)
