# ruff: noqa: RUF001 - look-alike characters are this file's subject
"""The view of a text the local rules match on, and the way back to the original's offsets.

Folding: compatibility decomposition (NFKD: fullwidth forms, mathematical letters, ligatures, superscripts),
combining marks (Mn, Me) and format characters (Cf: zero-width spaces and joiners, soft hyphens, bidi
controls, tag characters) removed, canonical recomposition (NFC), then letters of other scripts that are
drawn like ASCII letters (`CONFUSABLES`) folded to them, and decimal digits of other scripts to ASCII digits. Matches are found in the folded view; spans are
mapped back so the redaction replaces the original characters, marks and invisible characters included.

Most text is ASCII or folds one character to one character: then the view has the same offsets as the
original and is built by a few whole-string calls (no per-character Python loop).
"""

from __future__ import annotations

import re
import sys
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass
from functools import cache, lru_cache

from guardrail.resizing_ranges import DECIMAL_ZEROS, RESIZING_RANGES

# A subset of Unicode's confusables.txt: Cyrillic, Greek, Armenian and Latin-extension letters that render
# like one ASCII letter. Compatibility forms (fullwidth, mathematical) are already folded by NFKD.
CONFUSABLES: dict[str, str] = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c",
    "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w",
    "һ": "h", "ӏ": "l", "ѵ": "v", "ь": "b", "г": "r",
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T",
    "Х": "X", "У": "Y", "Ѕ": "S", "І": "I", "Ј": "J", "Ԁ": "D", "Ԛ": "Q", "Ԝ": "W", "Һ": "H", "Ӏ": "I",
    # Greek
    "α": "a", "β": "b", "γ": "y", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p",
    "τ": "t", "υ": "u", "χ": "x", "ω": "w",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O",
    "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
    # Armenian
    "օ": "o", "ս": "u", "հ": "h", "ո": "n", "ց": "g", "զ": "q",
    # Latin extensions
    "ı": "i", "ɑ": "a", "ɡ": "g", "ǀ": "l", "ɩ": "i", "ʏ": "y", "ᴀ": "A", "ᴄ": "c", "ᴏ": "o", "ᴜ": "u",
}  # fmt: skip
# Decimal digits of every script read as ASCII digits: "٤١١١ ..." is a card number, and the digit patterns
# and checksums (Luhn, mod 97) then see digits they can compute with.
DIGITS: dict[str, str] = {chr(zero + value): str(value) for zero in DECIMAL_ZEROS for value in range(10)}
_FOLDS = {**CONFUSABLES, **DIGITS}
# BMP only (a class beyond it compiles to a slow list): astral text takes the per-character path below.
_CONFUSABLE_RE = re.compile("[" + "".join(re.escape(c) for c in _FOLDS if ord(c) <= 0xFFFF) + "]")
_DROPPED_CATEGORIES = frozenset({"Mn", "Me", "Cf"})
_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")
_ASCII = bytes(range(128))
# Up to this many distinct non-ASCII characters, one `str.replace` per character is the cheapest fold.
_FEW = 16


def _fold(char: str) -> str:
    """One character's folded form: usually one character, empty for marks and format characters,
    several for ligatures and the like."""
    if unicodedata.category(char) in _DROPPED_CATEGORIES:
        return ""
    decomposed = unicodedata.normalize("NFKD", char)
    kept = "".join(c for c in decomposed if unicodedata.category(c) not in _DROPPED_CATEGORIES)
    composed = unicodedata.normalize("NFC", kept)
    return "".join(_FOLDS.get(c, c) for c in composed)


fold_char = cache(_fold)


def resizing_ranges() -> list[tuple[int, int]]:
    """Ranges of code points whose folded form is not exactly one character, computed with this Python's
    Unicode data (about 0.3 s: `resizing_ranges.py` keeps the result)."""
    ranges: list[tuple[int, int]] = []
    for code in range(0x80, sys.maxunicode + 1):
        if 0xD800 <= code <= 0xDFFF or unicodedata.category(chr(code)) in ("Cn", "Co"):
            continue  # surrogates, unassigned and private use fold to themselves
        if len(_fold(chr(code))) != 1:
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))
    return ranges


def _char_class(ranges: tuple[tuple[int, int], ...]) -> re.Pattern[str]:
    parts = "".join(
        re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}" for lo, hi in ranges
    )
    return re.compile(f"[{parts}]")


# Text without these folds one-to-one, so its offsets need no map. A class with characters beyond the BMP
# compiles to a slow range list, so above U+FFFF a coarse class stands in: all of the planes' resizing
# characters and digits lie in it (emoji fold to themselves); text in it takes the exact per-character path.
_RESIZING = _char_class(tuple(r for r in RESIZING_RANGES if r[1] <= 0xFFFF))
_MAYBE_RESIZING_ASTRAL = re.compile("[\U00010000-\U0001f2ff\U0001fbf0-\U0001fbf9\U000e0000-\U000e01ef]")


@dataclass(frozen=True)
class _Segment:
    folded_start: int
    original_start: int
    # For a folded non-ASCII run: per folded character, its character's offset in the run; None: the
    # segment is copied unchanged (offsets shift by a constant).
    origin: tuple[int, ...] | None


class NormalizedText:
    """`text`: the folded view of `original`; `original_span` maps a span of it back."""

    __slots__ = ("_segments", "_starts", "original", "text")

    def __init__(self, original: str) -> None:
        self.original = original
        self._segments: list[_Segment] | None = None  # None: same offsets as the original
        self._starts: list[int] = []
        if original.isascii():
            self.text = original
            return
        # Mostly ASCII with a few distinct other characters (accents, an emoji): each folds on its own.
        distinct = set(
            original.encode("utf-8", "surrogatepass").translate(None, _ASCII).decode("utf-8", "surrogatepass")
        )
        if len(distinct) <= _FEW and all(len(fold_char(c)) == 1 for c in distinct):
            for char in distinct:
                if (folded_char := fold_char(char)) != char:
                    original = original.replace(char, folded_char)
            self.text = original
            return
        if _RESIZING.search(original) is None and _MAYBE_RESIZING_ASTRAL.search(original) is None:
            # Marks that NFKD splits off (and nothing else) are in the resizing class: drop them, recompose.
            folded = _RESIZING.sub("", unicodedata.normalize("NFKD", original))
            # Same length: every character decomposed to one character, which NFC leaves as it is; NFC is
            # then skipped (it costs as much as the rest). Else composition (Hangul) must bring it back.
            if len(folded) != len(original):
                folded = unicodedata.normalize("NFC", folded)
            if len(folded) == len(original):  # composition across characters would change the length
                self.text = _CONFUSABLE_RE.sub(lambda m: _FOLDS[m.group()], folded)
                return
        self.text = self._fold_runs(original)

    def _fold_runs(self, original: str) -> str:
        parts: list[str] = []
        segments: list[_Segment] = []
        folded_pos = original_pos = 0
        for match in _NON_ASCII_RUN.finditer(original):
            if match.start() > original_pos:
                segments.append(_Segment(folded_pos, original_pos, None))
                parts.append(original[original_pos : match.start()])
                folded_pos += match.start() - original_pos
            run, origin = _fold_run(match.group())
            segments.append(_Segment(folded_pos, match.start(), origin))
            parts.append(run)
            folded_pos += len(run)
            original_pos = match.end()
        segments.append(_Segment(folded_pos, original_pos, None))
        parts.append(original[original_pos:])
        self._segments = segments
        self._starts = [segment.folded_start for segment in segments]
        return "".join(parts)

    @property
    def same_offsets(self) -> bool:
        """The view has the original's offsets (no span needs mapping)."""
        return self._segments is None

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """[start, end) of the folded view as the smallest span of the original that covers it."""
        if self._segments is None or end <= start:
            return start, end
        return self._original_offset(start, last=False), self._original_offset(end - 1, last=True)

    def _original_offset(self, position: int, *, last: bool) -> int:
        segments = self._segments
        assert segments is not None
        # Empty segments (a run that folded to nothing) share a start with the next one: take the last.
        segment = segments[bisect_right(self._starts, position) - 1]
        offset = position - segment.folded_start
        if segment.origin is None:
            return segment.original_start + offset + (1 if last else 0)
        return segment.original_start + segment.origin[offset] + (1 if last else 0)


@lru_cache(maxsize=4096)
def _fold_run(run: str) -> tuple[str, tuple[int, ...]]:
    folded: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(run):
        replacement = fold_char(char)
        folded.append(replacement)
        origin.extend([index] * len(replacement))
    return "".join(folded), tuple(origin)


def normalize(text: str) -> NormalizedText:
    return NormalizedText(text)


def decimal_zeros() -> list[int]:
    """Zeros of the non-ASCII decimal digit sets (`resizing_ranges.DECIMAL_ZEROS`)."""
    return [
        code
        for code in range(0x80, sys.maxunicode + 1)
        if unicodedata.category(chr(code)) == "Nd" and unicodedata.decimal(chr(code)) == 0
    ]


if __name__ == "__main__":  # regenerate resizing_ranges.py's tables
    print(f"UNICODE_VERSION = {unicodedata.unidata_version!r}")
    print(tuple(decimal_zeros()))
    print(tuple(resizing_ranges()))
