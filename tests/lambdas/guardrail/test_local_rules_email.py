"""The e-mail scan: linear time, any script, and exactly what the one-regex form finds."""

from guardrail.layers.local_rules import EMAIL_REGEX, LocalRulesLayer, email_matches
from guardrail.settings import DirectionSettings
from hypothesis import given, settings
from hypothesis import strategies as st

from .conftest import make_request

# Local-part, domain and separator characters (ASCII and not), so runs, "@"s and dots collide often.
EMAIL_ALPHABET = "ab1.-_%+@ xZ/éж"


def _spans(matches) -> list[tuple[int, int]]:
    return [match.span() for match in matches]


@settings(max_examples=400)
@given(st.text(alphabet=EMAIL_ALPHABET, max_size=90))
def test_email_matches_equal_plain_finditer(text):
    assert list(email_matches(text)) == _spans(EMAIL_REGEX.finditer(text))


def test_email_match_continuing_inside_a_run_is_kept():
    # The second address starts right where the first one ends, inside one run of local-part characters.
    text = "a@b.cc1x@d.ee"
    assert list(email_matches(text)) == [(0, 6), (6, 13)]
    assert list(email_matches(text)) == _spans(EMAIL_REGEX.finditer(text))


def test_email_after_a_long_run_without_at_sign():
    text = "x" * 5000 + " ann@example.org " + "a." * 2000 + "b@c.de"
    # A local part holds at most 64 characters: the rest of the run is not part of the address.
    assert [text[s:e] for s, e in email_matches(text)] == [
        "ann@example.org",
        ("a." * 2000 + "b")[-64:] + "@c.de",
    ]


def test_non_ascii_addresses_are_found_whole():
    text = "an jürgen.müller@example.de, почта@пример.рф oder 用户@例子.广告 bitte"
    found = [text[s:e] for s, e in email_matches(text)]
    assert found == ["jürgen.müller@example.de", "почта@пример.рф", "用户@例子.广告"]


def test_layer_flags_email_after_long_token():
    text = "Q" * 20000 + " write to ann@example.org"
    findings = LocalRulesLayer().check(make_request(text), DirectionSettings()).findings
    emails = [f for f in findings if f.type == "EMAIL"]
    assert len(emails) == 1 and emails[0].span is not None
    assert text[emails[0].span.start : emails[0].span.end] == "ann@example.org"
