"""Split text to the size limits of the Comprehend APIs without cutting a character in two.

Limits are in UTF-8 bytes while offsets are in characters (code points), so every piece carries the
character offset of its start in the original text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

TOXICITY_SEGMENT_BYTES = 1024
TOXICITY_SEGMENTS_PER_CALL = 10
PII_CHUNK_BYTES = 100_000
_ASCII_SPACE = b" \t\n\r\f\v"


@dataclass(frozen=True)
class Piece:
    start: int  # character offset in the source text
    text: str

    @property
    def end(self) -> int:
        return self.start + len(self.text)


def _cut(data: bytes, start: int, max_bytes: int) -> int:
    """Byte index where the piece starting at `start` ends."""
    end = start + max_bytes
    if end >= len(data):
        return len(data)
    # Step back over UTF-8 continuation bytes (10xxxxxx) so `end` is a character boundary.
    while data[end] & 0xC0 == 0x80:
        end -= 1
    # Prefer to end after the last whitespace, keeping words (and most entities) whole.
    space = max(data.rfind(bytes([c]), start, end) for c in _ASCII_SPACE)
    return space + 1 if space > start else end


def split_utf8(text: str, max_bytes: int) -> list[Piece]:
    """Pieces of at most `max_bytes` UTF-8 bytes each, covering `text` exactly and in order."""
    if max_bytes < 4:
        raise ValueError("max_bytes must hold at least one character (4 bytes)")
    data = text.encode("utf-8")
    pieces: list[Piece] = []
    byte_pos, char_pos = 0, 0
    while byte_pos < len(data):
        end = _cut(data, byte_pos, max_bytes)
        chunk = data[byte_pos:end].decode("utf-8")
        pieces.append(Piece(char_pos, chunk))
        byte_pos, char_pos = end, char_pos + len(chunk)
    return pieces


def toxicity_batches(texts: Sequence[str]) -> list[list[tuple[int, Piece]]]:
    """The non-blank segments of at most 1 KB of all `texts`, as (index of the text, segment), ten per
    DetectToxicContent call (the API scores each segment on its own, so texts may share a call)."""
    segments = [
        (index, piece)
        for index, text in enumerate(texts)
        for piece in split_utf8(text, TOXICITY_SEGMENT_BYTES)
        if piece.text.strip()
    ]
    return [
        segments[first : first + TOXICITY_SEGMENTS_PER_CALL]
        for first in range(0, len(segments), TOXICITY_SEGMENTS_PER_CALL)
    ]


def pii_chunks(text: str) -> list[Piece]:
    """Chunks of at most 100 KB for DetectPiiEntities; blank chunks are dropped (the API needs text)."""
    return [piece for piece in split_utf8(text, PII_CHUNK_BYTES) if piece.text.strip()]
