"""Checks that need no service: deny list, prompt-injection heuristics, maximum length, PII patterns.

Everything matches on a normalized view of the text (`guardrail.normalize`: NFKC, format characters and
combining marks removed, look-alike letters folded), and every span is mapped back to the original
characters, so a zero-width space, a Cyrillic o or a fullwidth digit neither hides a match nor survives
its redaction.

Injection heuristics look only at untrusted items: system prompts and tool definitions legitimately say
things like "you are an assistant" or "ignore", and the heuristics would fire on them. They are the
fallback; the Bedrock guardrail's prompt-attack filter is the input's detector by default.

Cost is linear in the text: every pattern starts with a literal or a small character class (Python's
`re` then skips ahead in C), the injection patterns run only when one of their anchor words occurs and
then as one regular expression per first word that starts with that word (`injection_spans`), and
candidates are validated in Python (Luhn, mod-97, phone metadata) only where a cheap scan found one.
"""

from __future__ import annotations

import re
import string
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from heapq import heapify, heappop, heapreplace
from typing import AnyStr, NamedTuple

import phonenumbers

from guardrail.model import CheckRequest, Finding, FindingAction, LayerResult, Span
from guardrail.normalize import NormalizedText
from guardrail.settings import DirectionSettings, LocalRules

# ---- prompt injection ------------------------------------------------------------------------------------

# Nouns that name an assistant's controls. The first group also names ordinary things ("the rules of
# chess", "instructions for the coffee machine"): followed by of/for/about/on they count only when what
# follows is the assistant or this conversation.
_GENERAL_CONTROL_NOUN = r"(?:instructions?|directions|directives?|guidelines?|rules|polic(?:y|ies)|commands?)"
_AI_CONTROL_NOUN = (
    r"(?:(?:system )?prompts?|guardrails?|restrictions?|constraints?|programming|safeguards?"
    r"|(?:content |safety )?filters?|system message)"
)
_NOT_ABOUT_SOMETHING_ELSE = (
    r"(?!\s+(?:of|for|about|on)\s+(?!(?:the|this|that|your|my|any)\s+(?:ai|assistant|model|chat|conversation"
    r"|system|request|session|question|one|task|answer|reply)\b))"
)
_LIMITS = r"(?:rules|restrictions|limits|limitations|filters|guidelines|censorship|boundaries|guardrails)"
# Every pattern but the markup one, as branches `\b(?:option|option...)rest`: each option starts with a
# literal first word, which finds the pattern's candidates (see `injection_spans`); a pattern's branches are
# joined with "|". Each rest starts with a non-word character (or `\b`), so only the options whose first
# word is the text's word at a position can match there.
_WORD_PATTERN_BRANCHES: tuple[tuple[tuple[tuple[str, ...], str], ...], ...] = (
    # "ignore all previous instructions", "disregard your guidelines", "forget the rules you were given"
    ((("ignore", "ignoring", "disregard", "disregarding", "forget", "forgetting", "override", "overriding",
       "bypass", "bypassing", "skip", "discard", "neglect", "abandon", "drop", "set aside", "put aside",
       "throw away", "pay no (?:attention|heed) to", "stop (?:following|obeying)",
       "(?:do not|don't|dont|no longer) (?:follow|obey|adhere to|comply with)"),
      rf"\W+(?:[\w'-]+\W+){{0,5}}?(?:{_GENERAL_CONTROL_NOUN}\b{_NOT_ABOUT_SOMETHING_ELSE}|{_AI_CONTROL_NOUN}\b)"),),
    ((("ignore", "disregard", "forget"),
      r"\s+(?:all\s+|everything\s+)?(?:of\s+)?(?:the\s+)?(?:above|preceding)"
      r"(?:\s+(?:text|instructions|prompt|messages?))?\s*(?:and\b|,|;|\.|!)"),),
    ((("your", "all", "the", "any"),
      r"\s+(?:previous\s+|prior\s+|safety\s+|content\s+|old\s+)?(?:rules|restrictions"
      r"|guidelines|instructions|filters|guardrails|policies)\s+(?:no longer apply|(?:are|is)\s+(?:now\s+)?"
      r"(?:void|lifted|disabled|suspended|off|cancel(?:l)?ed)|do not apply|don't apply)"),),
    ((("forget", "ignore", "disregard"),
      r"\W+(?:everything|anything|all)\W+(?:(?:you(?:'ve| have)? (?:been |were )?(?:told|given|said))"
      r"|(?:above|before|so far|previously|earlier))"),),
    # personas without limits: "you are now DAN", "act as an AI without restrictions", "developer mode"
    ((("you",),
      rf"(?: are|'re)\s+(?:now\s+|no longer\s+)(?:[\w'-]+\s+){{0,3}}?(?:dan|jailbroken|unrestricted|unfiltered"
      rf"|uncensored|evil|free of|free from|without (?:any )?{_LIMITS}|not bound by)"),),
    ((("act", "behave", "respond", "answer", "pretend", "roleplay", "role-play"),
      rf"\s+(?:as|like|to be|that you are|you are)\b.{{0,80}}?\b(?:no|without|free of|free from|ignores? (?:all "
      rf"|any |your )?|bypass(?:es)? (?:all |any )?|not bound by (?:any )?)\s*(?:any\s+)?(?:ethical\s+|moral\s+"
      rf"|content\s+|safety\s+)?{_LIMITS}"),),
    ((("enable", "enter", "activate", "switch to", "turn on", "engage", "you are in"),
      r"\W+(?:\w+\W+){0,2}?(?:developer|god|dan|jailbreak|unrestricted|unfiltered|debug|admin|sudo|root)"
      r" mode\b"),),
    ((("do anything now",), r"\b"),),
    ((("you are", "you're", "you have been", "you've been"), r" jailbroken\b"),
     (("jailbreak",), r" (?:mode|prompt activated|enabled)\b")),
    # prompt extraction: "print your system prompt", "repeat the text above"
    ((("reveal", "print", "show", "repeat", "output", "leak", "display", "tell me", "give me", "write out",
       "dump", "recite", "spell out", "what (?:is|are|was|were)"),
      r"\W+(?:\w+\W+){0,4}?(?:(?:your|the|this chat's|the assistant's|its) (?:system (?:prompt|message)"
      r"|initial (?:prompt|instructions)|hidden (?:prompt|instructions|rules)|original (?:prompt|instructions)"
      r"|(?:instructions|prompt|guidelines|rules) (?:you were|you've been|you have been) given)|(?:everything"
      r"|all|the text|the words) (?:above|before this)(?: this)?(?: line| message)?)"),),
    # new orders smuggled as the conversation's structure
    ((("new", "updated", "revised", "real", "actual", "true", "secret"),
      r" (?:system )?(?:instructions?|directives?|prompt|orders)\s*:"),),
    ((("system override",), r"\b"),),
    ((("from now on",), r",?\s+(?:you\s+(?:will|must|shall|are to)|ignore|disregard|there are no)\b"),),
)  # fmt: skip
_MARKUP_PATTERN = (
    r"<\|(?:im_start|im_end|system|endoftext)\|>|\[/?INST\]|<</?SYS>>|</?(?:system|assistant)>"
    r"|(?:^|\n)\s*#{2,}\s*(?:system|instructions?)\s*:"
)


def _alternation(options: tuple[str, ...]) -> str:
    return options[0] if len(options) == 1 else f"(?:{'|'.join(options)})"


INJECTION_PATTERNS: tuple[str, ...] = (
    *(
        "|".join(rf"\b{_alternation(options)}{rest}" for options, rest in branches)
        for branches in _WORD_PATTERN_BRANCHES
    ),
    _MARKUP_PATTERN,
)
# Every injection pattern needs one of these words: a text without any skips the patterns (the common case).
_INJECTION_ANCHORS = frozenset(
    [
        "instruction",
        "instructions",
        "prompt",
        "prompts",
        "directive",
        "directives",
        "guideline",
        "guidelines",
        "guardrail",
        "guardrails",
        "restriction",
        "restrictions",
        "constraint",
        "constraints",
        "rules",
        "policy",
        "policies",
        "programming",
        "directions",
        "preceding",
        "override",
        "apply",
        "void",
        "lifted",
        "disabled",
        "safeguard",
        "safeguards",
        "filter",
        "filters",
        "message",
        "command",
        "commands",
        "everything",
        "anything",
        "all",
        "dan",
        "jailbroken",
        "jailbreak",
        "unrestricted",
        "unfiltered",
        "uncensored",
        "evil",
        "free",
        "bound",
        "limits",
        "limitations",
        "censorship",
        "boundaries",
        "mode",
        "above",
        "before",
        "orders",
        "now",
        "inst",
        "sys",
        "im_start",
        "im_end",
        "endoftext",
        "system",
    ]
)
_WORD_TABLE = bytes.maketrans(
    (string.punctuation.replace("_", "") + string.ascii_uppercase).encode(),
    b" " * (len(string.punctuation) - 1) + string.ascii_lowercase.encode(),
)


_INJECTION_ANCHOR_BYTES = frozenset(word.encode() for word in _INJECTION_ANCHORS)


# The scan is linear with a small constant, also on a text full of anchor words: `re` tries a pattern that
# starts with `\b` at every position (about 0.6 us a character for the whole alternation), so each first
# word gets one regular expression that starts with the word itself, a literal that `re` searches for in C:
# the word, the `\b` before it as a lookbehind, then the branches of every pattern that starts with it, in
# the alternation's order (`_WORD_REGEXES`). Only the words that occur in the text are searched, and a word
# only where one of its patterns' required words occur too (`_REQUIRED_WORDS`); the searches are merged by
# position as `finditer` with the whole alternation would find them (`_leftmost_first`).
def _flat_options(option: str) -> list[str]:
    """An option as options that each start with a literal word: `(?:a|b) c` gives `a c` and `b c`."""
    group = re.fullmatch(r"\(\?:([^()]*)\)(.*)", option)
    return [first + group[2] for first in group[1].split("|")] if group else [option]


def _first_word(option: str) -> str:
    word = re.match(r"[a-z]+", option)
    assert word is not None, option  # every option starts with a literal lower-case word
    return word.group()


# Per pattern, its first words in order (tests check that every match starts with one).
_FIRST_WORDS: tuple[tuple[str, ...], ...] = tuple(
    tuple(
        dict.fromkeys(
            _first_word(flat)
            for options, _ in branches
            for option in options
            for flat in _flat_options(option)
        )
    )
    for branches in _WORD_PATTERN_BRANCHES
)
_CONTROL_NOUNS = (
    "instruction", "instructions", "directions", "directive", "directives", "guideline", "guidelines", "rules",
    "policy", "policies", "command", "commands", "prompt", "prompts", "guardrail", "guardrails", "restriction",
    "restrictions", "constraint", "constraints", "programming", "safeguard", "safeguards", "filter", "filters",
)  # fmt: skip
# Words of which every match of a pattern holds one per group, each as a whole word (spaces or punctuation
# around it in the pattern): a first word whose patterns all lack one is not searched, which spares the
# searches for common words ("the", "all", "you", "what") in most texts. Patterns 1 and 5 have no such word.
_REQUIRED_WORDS: dict[int, tuple[tuple[str, ...], ...]] = {
    0: ((*_CONTROL_NOUNS, "message"),),
    2: (
        ("rules", "restrictions", "guidelines", "instructions", "filters", "guardrails", "policies"),
        ("longer", "are", "is", "not", "don"),
    ),
    3: (("everything", "anything", "all"),),
    4: (("are", "re"), ("now", "longer")),
    6: (("mode",),),
    7: (("anything",), ("now",)),
    8: (("jailbroken", "jailbreak"),),
    9: (("system", "initial", "hidden", "original", "were", "been", "everything", "all", "text", "words"),),
    10: (("instruction", "instructions", "directive", "directives", "prompt", "orders"),),
    11: (("override",),),
    12: (("now",), ("on",)),
}
_REQUIRED_WORD_BYTES = {
    index: tuple(frozenset(word.encode() for word in group) for group in groups)
    for index, groups in _REQUIRED_WORDS.items()
}


def _word_regex_sources() -> dict[str, tuple[str, frozenset[int]]]:
    """Per first word: its regular expression and the indexes of the patterns that start with it."""
    branches_by_word: dict[str, list[str]] = {}
    patterns_by_word: dict[str, set[int]] = {}
    for index, branches in enumerate(_WORD_PATTERN_BRANCHES):
        for options, rest in branches:
            suffixes: dict[str, list[str]] = {}
            for flat in (flat for option in options for flat in _flat_options(option)):
                word = _first_word(flat)
                suffixes.setdefault(word, []).append(flat[len(word) :])
            for word, word_suffixes in suffixes.items():
                branches_by_word.setdefault(word, []).append(f"(?:{'|'.join(word_suffixes)}){rest}")
                patterns_by_word.setdefault(word, set()).add(index)
    return {
        word: (
            rf"{word}(?<!\w{word})(?:{'|'.join(f'(?:{branch})' for branch in branches)})",
            frozenset(patterns_by_word[word]),
        )
        for word, branches in branches_by_word.items()
    }


_WORD_REGEX_SOURCES = _word_regex_sources()
# Matched on the lower-case text: the patterns but the markup one have no upper-case literal (a test checks it).
_WORD_REGEXES = {word.encode(): re.compile(source) for word, (source, _) in _WORD_REGEX_SOURCES.items()}
_PATTERNS_OF_WORD = {word.encode(): patterns for word, (_, patterns) in _WORD_REGEX_SOURCES.items()}


@cache
def _case_insensitive_word_regexes() -> dict[bytes, re.Pattern[str]]:
    """For a text whose lower-case form has another length (never seen once folded): slower, as exact."""
    return {
        word.encode(): re.compile(source, re.IGNORECASE) for word, (source, _) in _WORD_REGEX_SOURCES.items()
    }


# On the shape (lower case, every non-ASCII character "?"), a class of the text widens to itself plus "?".
_S = r"[\t-\r\x1c-\x20?]"  # \s
_WORD_END = r"(?![a-z0-9_])"  # what follows a word: a non-word character or the end (as for `\b`)
_LITERAL_UNITS = re.compile(r"(?:[a-z ]|\\\.)*")  # lower-case letters, spaces and escaped dots


def _literal_start(source: str) -> tuple[str, str]:
    """A regular expression as its literal start and the rest: the letters, spaces and escaped dots it
    starts with, but one that a quantifier follows (" injections?" gives " injection" and "s?")."""
    literal = _LITERAL_UNITS.match(source)
    end = literal.end() if literal else 0
    if source[end : end + 1] in ("?", "*", "+", "{") and end:
        end -= 2 if source[end - 2 : end] == "\\." else 1
    return source[:end].replace("\\", ""), source[end:]


def _word_finders(follows: dict[str, str]) -> dict[bytes, re.Pattern[bytes]]:
    """For each word, a pattern that finds it on the shape as a whole word followed by what must follow it.
    The pattern starts with the word and the literal start of what follows ("in " for "in"), which `re`
    searches for at memory speed (a common word inside other words is then no candidate); the byte before
    the word is checked after it (a lookbehind), the rest with a lookahead, so no candidate hides another."""
    finders = {}
    for word, rest in follows.items():
        literal, following = _literal_start(rest)
        prefix = re.escape(word + literal)
        finders[word.encode()] = re.compile(f"{prefix}(?<![a-z0-9_]{prefix})(?={following})".encode())
    return finders


# The words of the shape: every byte that is not a word character (after lower-casing) splits.
_SPLIT_TABLE = bytes(
    c if chr(c).isascii() and (chr(c).isalnum() or c == ord("_")) else 32 for c in range(256)
)
# The markup pattern's starts, widened: "<|", "[INST]", "<<SYS>>", "<system>", a line that opens with "##".
_MARKUP_CANDIDATE = re.compile(
    rf"<(?=\||<|/?(?:sys|system|assistant)>|/?sys>)|\[(?=/?inst\])|\n(?={_S}*##)".encode()
)
_MARKUP_REGEX = re.compile(_MARKUP_PATTERN, re.IGNORECASE)

# Mentions are not attacks: a phrase in quotes, or a sentence that talks about attacks. A cue is a first word
# and what follows it, all literal (no class), so the same text finds its candidates on the shape.
_DEVICE_CUE = (
    " (?:my|the|your|an?) (?:android|iphone|phone|device|browser|chrome|firefox|windows|mac|pc|tv|router)"
)
_CUE_FOLLOWS: dict[str, str] = {
    "prompt": " injections?",
    "injection": " attacks?",
    **dict.fromkeys(
        ("jailbreak", "jailbreaks", "jailbreaking"), " (?:attempts?|attacks?|prompts?|techniques?)"
    ),
    "such": " as",
    "for": " example",
    "e": r"\.g\.",
    "like": " the phrase",
    "the": " (?:phrase|sentence|words)",
    "phrases": " like",
    **dict.fromkeys(
        (
            "mean",
            "means",
            "meaning",
            "detect",
            "detects",
            "detected",
            "detecting",
            "detection",
            "classify",
            "classifies",
            "classifier",
            "defend",
            "attacker",
            "attackers",
            "researcher",
            "researchers",
            "paper",
            "article",
            "blog",
            "explain",
        ),
        "",
    ),
    **dict.fromkeys(("protect", "protects", "protecting"), " against"),
    "red": "[- ]team(?:ing)?",
    "talk": " about",
    "what": " do(?:es)?",
    "why": " do",
    "how": " do (?:i|we|you) (?:stop|prevent|detect|block|handle|defend)",
    "on": _DEVICE_CUE,
    "in": _DEVICE_CUE,
}
_MENTION_CUES = re.compile(
    rf"\b(?:{'|'.join(word + rest for word, rest in _CUE_FOLLOWS.items())})\b", re.IGNORECASE
)
_CUE_FINDERS = _word_finders({word: rest or _WORD_END for word, rest in _CUE_FOLLOWS.items()})
# How far past its start a cue's match reads: its longest match, then the character its `\b` looks at.
_CUE_REACH = 24
_QUOTES = '"“”«»„`'
_SENTENCE_END = re.compile(r"[.!?\n]")
_CONTEXT = 300  # characters looked at around a match: bounded, so many matches stay linear


def lower_shape_of(text: str) -> bytes:
    """One byte per character of `text`: ASCII in lower case, anything else "?". `b" "` in front, so that
    the character before position 0 is a non-word byte (text offset = shape offset - 1)."""
    return b" " + text.encode("ascii", "replace").lower()


def _word_starts(
    shape: bytes, finders: dict[bytes, re.Pattern[bytes]], present: frozenset[bytes]
) -> list[tuple[int, bytes]]:
    """(text offset, word) of the finders' matches, for the words of `finders` that occur in the text."""
    return [(m.start() - 1, word) for word in present & finders.keys() for m in finders[word].finditer(shape)]


_SCANNED_WORDS = frozenset(_WORD_REGEXES).union(
    _CUE_FINDERS, (word.encode() for groups in _REQUIRED_WORDS.values() for group in groups for word in group)
)
# Printable ASCII and white space: a text of nothing else splits into the same words with
# `_WORD_TABLE` (the anchor check) as with `_SPLIT_TABLE`.
_PLAIN_BYTES = bytes(range(0x09, 0x0E)) + bytes(range(0x20, 0x7F))


class _Mentions:
    """`_is_mention` for many matches in one text: the sentence ends and the mention cues are found once
    (cues: candidates on the shape, each confirmed with `match`), so each match costs a few bisections
    instead of a search through 600 characters."""

    def __init__(self, text: str, shape: bytes, present: frozenset[bytes]) -> None:
        self.text = text
        self.quotes = any(q in text for q in _QUOTES) or "'" in text
        self.candidates = sorted(offset for offset, _ in _word_starts(shape, _CUE_FINDERS, present))
        self.cues = [c for c in self.candidates if _MENTION_CUES.match(text, c)]
        self.ends = [m.start() for m in _SENTENCE_END.finditer(text)] if self.candidates else []
        # No cue, no quote: nothing makes a match a mention.
        self.possible = bool(self.candidates) or self.quotes

    def is_mention(self, start: int, end: int) -> bool:
        if not self.possible:
            return False
        text = self.text
        window_start = max(0, start - _CONTEXT)
        if self.quotes:
            line_start = max(text.rfind("\n", window_start, start) + 1, window_start)
            before = text[line_start:start]
            quotes = sum(before.count(q) for q in _QUOTES)
            if quotes % 2 == 1 or (before.count("'") % 2 == 1 and "'" in text[end : end + _CONTEXT]):
                return True  # inside quotes
        ends = self.ends
        i = bisect_left(ends, start) - 1
        sentence_start = ends[i] + 1 if i >= 0 and ends[i] >= window_start else window_start
        j = bisect_left(ends, end)
        sentence_end = (
            ends[j] if j < len(ends) and ends[j] < end + _CONTEXT else min(len(text), end + _CONTEXT)
        )
        # A cue that ends (with the `\b` after it) before `sentence_end` reads as on the whole text.
        safe_end = sentence_end - _CUE_REACH
        cues = self.cues
        k = bisect_left(cues, sentence_start)
        if k < len(cues) and cues[k] < safe_end:
            return True
        candidates = self.candidates
        for k in range(bisect_left(candidates, max(sentence_start, safe_end)), len(candidates)):
            candidate = candidates[k]
            if candidate > sentence_end:
                break
            if _MENTION_CUES.match(text, candidate, sentence_end):
                return True
        return False


def _is_mention(text: str, start: int, end: int) -> bool:
    shape = lower_shape_of(text)
    return _Mentions(
        text, shape, _SCANNED_WORDS.intersection(shape.translate(_SPLIT_TABLE).split())
    ).is_mention(start, end)


# ---- PII ----------------------------------------------------------------------------------------------------

# Local part: up to 64 word characters or ._%+- (any script), right before the "@". Scanned backwards from
# each "@" on the reversed text, so a long run without an "@" costs nothing (no quadratic retries).
_EMAIL_LOCAL_REVERSED = re.compile(r"[\w.%+-]{1,64}")
_EMAIL_DOMAIN = re.compile(r"(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,63}")
# The same e-mail as one regular expression: what `email_matches` must find (a test checks it).
EMAIL_REGEX = re.compile(r"[\w.%+-]{1,64}@" + _EMAIL_DOMAIN.pattern)
_AT_DOMAIN = re.compile("@" + _EMAIL_DOMAIN.pattern)

# The scans for digit runs and IBANs run on the text's shape: one byte per character, every digit "0",
# every capital "A" (in the folded view every decimal digit is ASCII). A pattern that starts with a character
# class makes `re` test each position in turn, about 10 ns a character; on the shape the same pattern starts
# with a literal, which `re` finds at memory speed. Two C calls build the shape.
_SHAPE = bytes.maketrans(b"0123456789" + string.ascii_uppercase.encode(), b"0" * 10 + b"A" * 26)
# Digit runs: card, SSN and phone candidates in one scan (a leading "+" or "(" is taken from the text
# before the run); validated in Python.
_DIGIT_RUN = re.compile(rb"0[0 ()./-]{5,}0")  # on the shape: \d[\d ()./-]{5,}\d
# A run that is one card as written ("4111 1111 1111 1111", "4111-1111-..."), on the shape.
_CARD_FORMAT = re.compile(rb"(?:0[ -]?){12,18}0")
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_SSN = re.compile(r"(?<!\d)(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?!\d)")
_NON_DIGIT = re.compile(r"\D")
_PHONE_SHAPE = re.compile(r"[+(]?\d[\d ().-]{5,}\d")
# Dates and version numbers have a phone number's digits but not its meaning.
_DATE_OR_VERSION = re.compile(
    r"\d{4}[-./]\d{1,2}[-./]\d{1,4}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}|\d+(?:\.\d+){2,}"
)
# Access key ids (AKIA long-term, ASIA temporary, ...): 20 upper-case base32 characters.
_AWS_ACCESS_KEY = re.compile(r"A(?:KIA|SIA|ROA|IDA|GPA|NPA|NVA|PKA|CCA|BIA)[A-Z0-9]{16}(?![A-Za-z0-9])")
# A secret access key is 40 base64 characters: only next to a word that names it, else hashes would match.
_AWS_SECRET = re.compile(
    r"secret(?:[ _-]?access)?(?:[ _-]?key)?[\"']?\s*(?:[:=]|=>|is)\s*[\"']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
    re.IGNORECASE,
)
_IBAN = re.compile(rb"AA00(?: ?[A0]){11,30}")  # on the shape: [A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}
# ISO 13616 lengths of the countries that issue IBANs.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip
# Letters as their values 10..35 (one C call: a generator over the characters cost 3 us an IBAN).
_IBAN_LETTER_VALUES = {ord(letter): str(value) for value, letter in enumerate(string.ascii_uppercase, 10)} | {
    ord(letter): str(value) for value, letter in enumerate(string.ascii_lowercase, 10)
}
# Per IBAN length, the start of a candidate (single spaces between its characters) with that many characters.
_IBAN_PREFIXES = {
    length: re.compile(f"(?:[^ ] ?){{{length - 1}}}[^ ]") for length in set(IBAN_LENGTHS.values())
}
_LUHN_DOUBLED = bytes.maketrans(b"0123456789", b"0246813579")


def luhn_valid(digits: str | bytes) -> bool:
    data = digits.encode() if isinstance(digits, str) else digits
    odd, even = data[-1::-2], data[-2::-2].translate(_LUHN_DOUBLED)
    return (sum(odd) + sum(even) - 48 * len(data)) % 10 == 0


def iban_valid(candidate: str) -> bool:
    """ISO 13616: the country's length, then mod 97 of the rearranged number (letters as 10..35) is 1."""
    iban = candidate.replace(" ", "")
    if IBAN_LENGTHS.get(iban[:2]) != len(iban):
        return False
    rearranged = iban[4:] + iban[:4]
    return int(rearranged.translate(_IBAN_LETTER_VALUES)) % 97 == 1


def email_matches(text: str) -> list[tuple[int, int]]:
    """(start, end) of every e-mail address: exactly `EMAIL_REGEX.finditer(text)`'s spans, in linear time."""
    return [(start, end) for _, start, end in _email_findings(text)]


def _email_findings(text: str) -> list[tuple[str, int, int]]:
    """("EMAIL", start, end) of `email_matches`. An "@" and its domain are found forwards in one C pass (a
    domain holds no "@", so none is skipped); the local part backwards from the "@", on the reversed text,
    so a long run without an "@" costs nothing."""
    if "@" not in text:
        return []
    found: list[tuple[str, int, int]] = []
    reversed_text = text[::-1]
    size = len(text)
    previous_end = 0
    local_part = _EMAIL_LOCAL_REVERSED.match
    for domain in _AT_DOMAIN.finditer(text):
        at = domain.start()
        # The local part may not reach back into the previous match.
        if at > previous_end and (local := local_part(reversed_text, size - at, size - previous_end)):
            previous_end = domain.end()
            found.append(("EMAIL", size - local.end(), previous_end))  # (the match starts at size - at)
    return found


def shape_of(text: str) -> bytes:
    """One byte per character of `text` (folded): digits "0", capitals "A", other ASCII as is, the rest "?"."""
    return text.encode("ascii", "replace").translate(_SHAPE)


# The longest card number as written: 19 digits and 18 separators.
_LONGEST_CARD = 37


@lru_cache(maxsize=512)
def is_card_format(run_shape: bytes) -> bool:
    """Whether a digit run is one card number as written, from its shape: 13-19 digits with single spaces
    or hyphens between them. Cached by the shape: texts repeat a few formats ("0000 0000 0000 0000"), and
    the pattern's repeated group costs `re` about a microsecond a run."""
    return _CARD_FORMAT.fullmatch(run_shape) is not None


def _digit_run_findings(
    text: str, encoded: bytes, shape: bytes, region: str, add: Callable[[tuple[str, int, int]], None]
) -> None:
    """Cards, SSNs and phone numbers in the digit runs. `encoded`: the text as ASCII ("?" for the rest)."""
    doubled = _LUHN_DOUBLED
    for run in _DIGIT_RUN.finditer(shape):
        start, end = run.span()
        # One card as written, then the checksum (`luhn_valid`, inlined)
        if end - start <= _LONGEST_CARD and is_card_format(run.group()):
            digits = encoded[start:end].translate(None, b" -")
            if (sum(digits[-1::-2] + digits[-2::-2].translate(doubled)) - 48 * len(digits)) % 10 == 0:
                add(("CREDIT_DEBIT_NUMBER", start, end))
                continue
        _mixed_run_findings(text, run, region, add)


def _mixed_run_findings(
    text: str, run: re.Match[bytes], region: str, add: Callable[[tuple[str, int, int]], None]
) -> None:
    """A digit run that is not one valid card as written: cards inside it, SSNs, else a phone number."""
    start, end = run.span()
    found = False
    for card in _CARD.finditer(text, start, end):
        digits = _NON_DIGIT.sub("", card.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            found = True
            add(("CREDIT_DEBIT_NUMBER", card.start(), card.end()))
    if b"-" in run.group():
        for ssn in _SSN.finditer(text, start, end):
            found = True
            add(("SSN", ssn.start(), ssn.end()))
    if not found and region:
        if start and text[start - 1] in "+(":
            start -= 1
        phone = _phone_span(text, start, end, region)
        if phone is not None:
            add(("PHONE", *phone))


def _phone_span(text: str, start: int, end: int, region: str) -> tuple[int, int] | None:
    """A digit run that the phone metadata (phonenumbers) accepts as a valid number of some region."""
    shape = _PHONE_SHAPE.match(text, start, end)
    if shape is None:
        return None
    digits = _NON_DIGIT.sub("", shape.group())
    if not 7 <= len(digits) <= 15 or _DATE_OR_VERSION.fullmatch(shape.group()):
        return None
    try:
        number = phonenumbers.parse(shape.group(), region)
    except phonenumbers.NumberParseException:
        return None
    return shape.span() if phonenumbers.is_valid_number(number) else None


def pii_spans(
    text: str, phone_region: str = "US", encoded: bytes | None = None
) -> list[tuple[str, int, int]]:
    """(Comprehend entity type, start, end) of every PII pattern match in (normalized) `text`. `encoded`:
    `text.encode("ascii", "replace")`, when the caller has it."""
    found = _email_findings(text)
    add = found.append
    if encoded is None:
        encoded = text.encode("ascii", "replace")
    shape = encoded.translate(_SHAPE)  # `shape_of(text)`
    _digit_run_findings(text, encoded, shape, phone_region, add)
    _key_findings(text, encoded, add)
    _iban_findings(text, shape, add)
    return found


def _key_findings(text: str, encoded: bytes, add: Callable[[tuple[str, int, int]], None]) -> None:
    for key in _AWS_ACCESS_KEY.finditer(text):
        if key.start() == 0 or not text[key.start() - 1].isalnum():
            add(("AWS_ACCESS_KEY", key.start(), key.end()))
    # The pattern is case-insensitive, so the check that skips texts without the word must be too
    # ("SeCrEt"); in bytes, as that is faster.
    if b"secret" in encoded.lower():
        for secret in _AWS_SECRET.finditer(text):
            add(("AWS_SECRET_KEY", secret.start(1), secret.end(1)))


def _iban_findings(text: str, shape: bytes, add: Callable[[tuple[str, int, int]], None]) -> None:
    for iban in _IBAN.finditer(shape):
        start, end = iban.span()
        if start and text[start - 1].isalnum():
            continue
        # The pattern is greedy: of the candidate's prefixes that end on a character, only the one with as
        # many characters as its country's IBANs have can be valid (one mod-97 check, not one per length).
        length = IBAN_LENGTHS.get(text[start : start + 2])
        prefix = _IBAN_PREFIXES[length].match(text, start, end) if length else None
        if prefix is not None and iban_valid(prefix.group()):
            add(("INTERNATIONAL_BANK_ACCOUNT_NUMBER", start, prefix.end()))


# ---- the layer -----------------------------------------------------------------------------------------------


class DenyPattern(NamedTuple):
    pattern: re.Pattern[str]
    # The pattern without a leading `\b` when a literal follows: `re` finds a literal in C, while a pattern
    # that starts with `\b` is tried at every position (the common `\bORD-\d{6}\b` costs 30x more).
    locator: re.Pattern[str] | None


@dataclass(frozen=True)
class _Compiled:
    # Deny terms, folded and lower-cased like the text they are matched in.
    deny_term_list: tuple[str, ...]
    deny_patterns: tuple[DenyPattern, ...]


_BY_IDENTITY: dict[int, tuple[LocalRules, _Compiled]] = {}


def _compile(rules: LocalRules) -> _Compiled:
    """The compiled rules, found by the settings object's identity first: hashing a settings model (the
    cache key by value) costs more than a whole check of a short text."""
    hit = _BY_IDENTITY.get(id(rules))
    if hit is not None and hit[0] is rules:
        return hit[1]
    compiled = _compile_rules(rules)
    if len(_BY_IDENTITY) >= 32:
        _BY_IDENTITY.clear()
    _BY_IDENTITY[id(rules)] = (rules, compiled)  # holding `rules` keeps its id from being reused
    return compiled


@lru_cache(maxsize=32)
def _compile_rules(rules: LocalRules) -> _Compiled:
    folded = tuple(sorted({NormalizedText(t).text.lower() for t in rules.deny_terms}, key=len, reverse=True))
    return _Compiled(
        deny_term_list=folded,
        deny_patterns=tuple(_deny_pattern(p) for p in rules.deny_patterns),
    )


def _deny_pattern(source: str) -> DenyPattern:
    locator = None
    if source.startswith("\\b") and source[2:3].isalnum():
        try:
            locator = re.compile(source[2:])
        except re.error:
            locator = None
    return DenyPattern(re.compile(source), locator)


def deny_pattern_spans(text: str, deny: DenyPattern) -> Iterator[tuple[int, int]]:
    """The non-empty matches of `deny.pattern.finditer(text)`. With a locator: every position where the
    pattern matches is one where the locator (the pattern without its leading zero-width `\\b`) matches,
    so the locator's matches, in order, are the only places to try the pattern."""
    pos = 0
    if deny.locator is not None:
        # (`search` reads a position past the end as the end: stop there.)
        while pos <= len(text) and (candidate := deny.locator.search(text, pos)) is not None:
            match = deny.pattern.match(text, candidate.start())
            if match is None:
                pos = candidate.start() + 1
            elif match.end() > match.start():
                yield match.span()
                pos = match.end()
            else:  # an empty match: `finditer`'s own rules for what follows it, from here on
                pos = candidate.start()
                break
        else:
            return
    for match in deny.pattern.finditer(text, pos):
        if match.end() > match.start():
            yield match.span()


def deny_term_spans(
    folded: str, term_list: tuple[str, ...], encoded: bytes | None = None
) -> Iterator[tuple[int, int]]:
    """Whole-word, case-insensitive matches of the deny terms: a term that starts (ends) with a letter or
    digit must not continue a word there. At each position the longest whole-word term wins; matches do
    not overlap. Each term is found with `find` (a fast C search): cost is the text's length times the
    number of terms, far below one regular expression pass for the few terms a business unit lists.
    `encoded`: `folded.encode("ascii", "replace")`, when the caller has it."""
    if not folded.isascii() and all(term.isascii() and "?" not in term for term in term_list):
        # ASCII terms in the lower-case ASCII bytes ("?" for the rest): no other character of a folded
        # view lower-cases to ASCII, and bytes are searched faster than a wide string (which `lower`
        # also makes slowly).
        if encoded is None:
            encoded = folded.encode("ascii", "replace")
        hits = _term_hits(encoded.lower(), [t.encode() for t in term_list], folded)
    else:
        lowered = folded.lower()
        if len(lowered) != len(folded):  # lower() changes the length of a few characters: keep offsets exact
            lowered = "".join(c if len(c.lower()) != 1 else c.lower() for c in folded)
        hits = _term_hits(lowered, list(term_list), folded)
    return _longest_first(hits)


def _longest_first(hits: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """(start, end) of the hits (start, -length) that do not overlap an earlier one, the longest first."""
    hits.sort()
    pos = 0
    for start, negative_length in hits:
        if start >= pos:
            pos = start - negative_length
            yield start, pos


def _term_hits(haystack: AnyStr, terms: list[AnyStr], folded: str) -> list[tuple[int, int]]:
    """(start, -length) of the whole-word occurrences of each term in `haystack` (offsets of `folded`)."""
    hits: list[tuple[int, int]] = []
    for term in terms:
        start = haystack.find(term)
        while start >= 0:
            if _whole_word(folded, start, start + len(term), term):
                hits.append((start, -len(term)))
            start = haystack.find(term, start + 1)
    return hits


def _whole_word(text: str, start: int, end: int, term: str | bytes) -> bool:
    # (a term's first and last characters are ASCII when it is bytes: `isalnum` reads them alike)
    return not (
        (term[:1].isalnum() and start and _is_word_char(text[start - 1]))
        or (term[-1:].isalnum() and end < len(text) and _is_word_char(text[end]))
    )


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


_Search = Callable[[str, int], "re.Match[str] | None"]  # `Pattern.search`: the next match from a position


def injection_spans(folded: str) -> list[tuple[int, int]]:
    """Spans of `folded` (normalized) text that read as a prompt-injection attempt, not as a mention of one:
    the matches of `finditer` with the alternation of `INJECTION_PATTERNS` (case-insensitive), found by
    the first words' regular expressions (`_WORD_REGEXES`) and the markup pattern's candidates."""
    # Every pattern needs one of the anchor words: a text without any skips the scan (the common case).
    words = folded.encode("ascii", "ignore").translate(_WORD_TABLE).split()
    if _INJECTION_ANCHOR_BYTES.isdisjoint(words):
        return []
    shape = lower_shape_of(folded)
    if not folded.isascii() or shape.translate(None, _PLAIN_BYTES):
        # Other than printable ASCII and white space: the anchor check's words are not the shape's words.
        words = shape.translate(_SPLIT_TABLE).split()
    present = _SCANNED_WORDS.intersection(words)
    # Case-insensitive matching is the lower-case text matched case-sensitively (twice as fast), as no
    # character of a folded view other than ASCII letters is a case variant of one (a test checks it).
    lowered = folded.lower()
    regexes = _WORD_REGEXES
    if len(lowered) != len(folded):
        lowered, regexes = folded, _case_insensitive_word_regexes()
    matches = _leftmost_first(
        lowered, [regexes[word] for word in _words_to_search(present)], _markup_matches(shape, lowered)
    )
    if not matches:
        return []
    mentions = _Mentions(folded, shape, present)
    if not mentions.possible:
        return matches
    return [(start, end) for start, end in matches if not mentions.is_mention(start, end)]


def _words_to_search(present: frozenset[bytes]) -> list[bytes]:
    """The first words in `present` (the text's words) that start a pattern whose required words are too."""
    possible: dict[int, bool] = {}  # pattern index -> its required words are present (decided once)
    words = []
    for word in present & _WORD_REGEXES.keys():
        for index in _PATTERNS_OF_WORD[word]:
            found = possible.get(index)
            if found is None:
                groups = _REQUIRED_WORD_BYTES.get(index, ())
                found = possible[index] = all(not group.isdisjoint(present) for group in groups)
            if found:
                words.append(word)
                break
    return words


def _markup_matches(shape: bytes, lowered: str) -> list[re.Match[str]]:
    """The markup pattern's match at each of its candidates (the text's start, and `_MARKUP_CANDIDATE`'s)."""
    starts = [0]
    if b"<" in shape or b"[" in shape or b"\n" in shape:
        starts += (m.start() - 1 for m in _MARKUP_CANDIDATE.finditer(shape))
    return [match for start in sorted(set(starts)) if (match := _MARKUP_REGEX.match(lowered, start))]


def _leftmost_first(
    text: str, regexes: list[re.Pattern[str]], markup: list[re.Match[str]]
) -> list[tuple[int, int]]:
    """(start, end) of the matches that `finditer` of the patterns' alternation finds: each regular
    expression's next match from the current position, the leftmost first (at one position only one first
    word, or markup, can match); one whose next match starts inside the previous match searches again
    after it."""
    if not markup and len(regexes) <= 1:  # one regular expression: its own `finditer`
        return [match.span() for regex in regexes for match in regex.finditer(text)]
    markup_starts = [match.start() for match in markup]

    def next_markup(_text: str, pos: int) -> re.Match[str] | None:
        i = bisect_left(markup_starts, pos)
        return markup[i] if i < len(markup) else None

    searches: list[_Search] = [regex.search for regex in regexes]
    if markup:
        searches.append(next_markup)
    heap: list[tuple[int, int, re.Match[str], _Search]] = []
    for order, search in enumerate(searches):
        if (match := search(text, 0)) is not None:
            heap.append((match.start(), order, match, search))
    heapify(heap)
    spans = []
    pos = 0
    while heap:
        start, order, match, search = heap[0]
        if start >= pos:
            pos = match.end()  # every pattern matches at least one character (a test checks it)
            spans.append((start, pos))
        following = search(text, pos)
        if following is None:
            heappop(heap)
        else:
            heapreplace(heap, (following.start(), order, following, search))
    return spans


class LocalRulesLayer:
    name = "local_rules"

    def check(self, request: CheckRequest, settings: DirectionSettings) -> LayerResult:
        rules = settings.local_rules
        compiled = _compile(rules)
        findings: list[Finding] = []
        untrusted = {index for index, _ in request.untrusted()}
        length = sum(len(request.items[index].text) for index in untrusted)
        if length > rules.max_length:
            findings.append(Finding(self.name, "max_length", "block", float(length)))
        for index, text in request.scanned():
            # The whole view repeats the items: injection is checked per item (a template is trusted text).
            findings.extend(
                self._findings(index, text, rules, compiled, settings, injection=index in untrusted)
            )
        return LayerResult(findings)

    def _findings(
        self,
        index: int,
        text: str,
        rules: LocalRules,
        compiled: _Compiled,
        settings: DirectionSettings,
        *,
        injection: bool,
    ) -> list[Finding]:
        view = NormalizedText(text)
        folded = view.text
        # The text as ASCII bytes ("?" for the rest), shared by the scans that read it.
        encoded = folded.encode("ascii", "replace")
        # (type, action, spans) in the folded view, for the scans that found any; mapped to the original's
        # offsets at the end.
        found: list[tuple[str, FindingAction, list[tuple[int, int]]]] = []
        if compiled.deny_term_list and (
            spans := list(deny_term_spans(folded, compiled.deny_term_list, encoded))
        ):
            found.append(("deny_term", "block", spans))
        for deny in compiled.deny_patterns:
            if spans := list(deny_pattern_spans(folded, deny)):
                found.append(("deny_pattern", "block", spans))
        if injection and rules.injection_heuristics and (spans := injection_spans(folded)):
            found.append(("prompt_injection", "block", spans))
        pii = pii_spans(folded, rules.phone_region, encoded) if rules.pii_regex_fallback else []
        if not found and not pii:
            return []
        if not view.same_offsets:
            original = view.original_span
            found = [(kind, action, [original(s, e) for s, e in spans]) for kind, action, spans in found]
            pii = [(kind, *original(s, e)) for kind, s, e in pii]
        # tuple.__new__ is C; a named tuple's own __new__ (and `_make`) is a Python function, twice the cost.
        name, new = self.name, tuple.__new__
        findings = [
            new(Finding, (name, kind, action, None, new(Span, (index, s, e)), False))
            for kind, action, spans in found
            for s, e in spans
        ]
        if pii:
            actions = {kind: settings.pii_action(kind) for kind in {span[0] for span in pii}}
            findings += [
                new(Finding, (name, kind, actions[kind], None, new(Span, (index, s, e)), True))
                for kind, s, e in pii
            ]
        return findings
