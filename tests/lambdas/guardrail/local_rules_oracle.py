"""The local rules' scans as they were before the two-stage injection scan and the one-pass PII scan
(main at d289b36): plain `finditer` over the whole text, one search per mention. Kept only as the oracle of
`test_local_rules_differential.py`: the fast scans must find exactly what these find."""

from __future__ import annotations

import re
from collections.abc import Iterator

from guardrail.layers.local_rules import (
    _CONTEXT,
    _QUOTES,
    _SENTENCE_END,
    INJECTION_PATTERNS,
    _injection_suspected,
)

MENTION_CUES = re.compile(
    r"\b(?:prompt injections?|injection attacks?|jailbreak(?:s|ing)? (?:attempts?|attacks?|prompts?|techniques?)"
    r"|such as|for example|e\.g\.|like the phrase|the phrase|phrases like|the sentence|the words|means?|meaning"
    r"|detect(?:s|ed|ing|ion)?|classif(?:y|ies|ier)|defend|protect(?:s|ing)? against|red[- ]team(?:ing)?"
    r"|attackers?|researchers?|paper|article|blog|talk about|explain|what does|what do|why do|how do (?:i|we|you) "
    r"(?:stop|prevent|detect|block|handle|defend)"
    r"|(?:on|in) (?:my|the|your|an?) (?:android|iphone|phone|device|browser|chrome|firefox|windows|mac|pc|tv|router))\b",
    re.IGNORECASE,
)
INJECTION = re.compile("|".join(f"(?:{p})" for p in INJECTION_PATTERNS), re.IGNORECASE)


def is_mention(text: str, start: int, end: int) -> bool:
    window_start = max(0, start - _CONTEXT)
    line_start = max(text.rfind("\n", window_start, start) + 1, window_start)
    before = text[line_start:start]
    after = text[end : end + _CONTEXT]
    if sum(before.count(q) for q in _QUOTES) % 2 == 1 or (before.count("'") % 2 == 1 and "'" in after):
        return True
    sentence_start = max(
        (m.end() for m in _SENTENCE_END.finditer(text, window_start, start)), default=window_start
    )
    following = _SENTENCE_END.search(text, end, end + _CONTEXT)
    sentence_end = following.start() if following else min(len(text), end + _CONTEXT)
    return MENTION_CUES.search(text, sentence_start, sentence_end) is not None


def injection_spans(folded: str) -> Iterator[tuple[int, int]]:
    if not _injection_suspected(folded):
        return
    for match in INJECTION.finditer(folded):
        if match.end() > match.start() and not is_mention(folded, match.start(), match.end()):
            yield match.start(), match.end()
