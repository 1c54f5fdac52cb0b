from guardrail.segments import pii_chunks, split_utf8, toxicity_batches
from hypothesis import given
from hypothesis import strategies as st


def test_ascii_text_under_the_limit_is_one_piece():
    pieces = split_utf8("hello world", 1024)
    assert [(p.start, p.text) for p in pieces] == [(0, "hello world")]


def test_splits_after_last_whitespace_that_fits():
    pieces = split_utf8("aaaa bbbb cccc", 10)
    assert [p.text for p in pieces] == ["aaaa bbbb ", "cccc"]
    assert [p.start for p in pieces] == [0, 10]


def test_never_splits_inside_a_multibyte_character():
    text = "é" * 600  # 2 bytes each, no whitespace: 1200 bytes
    pieces = split_utf8(text, 1024)
    assert [len(p.text.encode()) for p in pieces] == [1024, 176]
    assert [p.start for p in pieces] == [0, 512]


def test_four_byte_emoji_at_the_boundary_moves_to_the_next_piece():
    text = "a" * 1022 + "😀" + "b"  # the emoji would straddle byte 1024
    pieces = split_utf8(text, 1024)
    assert [p.text for p in pieces] == ["a" * 1022, "😀b"]
    assert pieces[1].start == 1022


def test_toxicity_batches_hold_at_most_ten_segments():
    text = ("word " * 200 + "\n") * 30  # about 30 KB
    batches = toxicity_batches([text])
    assert all(len(batch) <= 10 for batch in batches)
    assert sum(len(batch) for batch in batches) == len([p for p in split_utf8(text, 1024) if p.text.strip()])
    assert len(batches) == 3


def test_texts_share_toxicity_calls_and_keep_their_index():
    system, message = "You are a helpful assistant.", "word " * 300  # 1.5 KB: two segments
    (batch,) = toxicity_batches([system, "  ", message])
    assert [(index, piece.start) for index, piece in batch] == [(0, 0), (2, 0), (2, batch[2][1].start)]
    assert "".join(piece.text for index, piece in batch if index == 2) == message


def test_blank_pieces_are_not_sent():
    assert toxicity_batches(["   \n  "]) == []
    assert pii_chunks(" " * 10) == []


@given(st.text(min_size=1, max_size=3000), st.integers(min_value=4, max_value=1100))
def test_pieces_cover_the_text_exactly_within_the_byte_limit(text, limit):
    text = text.encode("utf-8", "ignore").decode("utf-8")  # drop lone surrogates
    pieces = split_utf8(text, limit)
    assert "".join(p.text for p in pieces) == text
    assert all(len(p.text.encode("utf-8")) <= limit for p in pieces)
    assert all(text[p.start : p.end] == p.text for p in pieces)
