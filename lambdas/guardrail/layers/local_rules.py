"""Checks that need no service: deny list, prompt-injection heuristics, maximum length, PII patterns.

Injection heuristics look only at untrusted items: system prompts and tool definitions legitimately
say things like "you are an assistant" or "ignore", and filters are known to fire on them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from guardrail.model import CheckRequest, Finding, FindingAction, LayerResult, Span
from guardrail.settings import DirectionSettings, LocalRules

INJECTION_PATTERNS: tuple[str, ...] = (
    r"\b(ignore|disregard|forget|override)\b.{0,40}\b(previous|prior|above|earlier|all|system)\b.{0,20}"
    r"\b(instructions?|prompts?|rules|directions)\b",
    r"\byou are now\b.{0,40}\b(dan|jailbroken|unrestricted|developer mode)\b",
    r"\b(reveal|print|show|repeat|leak)\b.{0,30}\b(system prompt|hidden instructions|initial instructions)\b",
    r"\bdo anything now\b",
    r"\b(jailbreak|developer mode enabled)\b",
    r"</?(system|assistant)>|\[/?INST\]|<\|im_start\|>",
)


_EMAIL_LOCAL_CHARS = "A-Za-z0-9._%+-"
EMAIL_REGEX = re.compile(rf"[{_EMAIL_LOCAL_CHARS}]+@[A-Za-z0-9.-]+\.[A-Za-z]{{2,}}")
# The same pattern, allowed to start only where a run of local-part characters begins.
_EMAIL_AT_RUN_START = re.compile(rf"(?<![{_EMAIL_LOCAL_CHARS}])" + EMAIL_REGEX.pattern)
_NON_DIGIT = re.compile(r"\D")


def email_matches(text: str) -> Iterator[re.Match[str]]:
    """Exactly the matches of `EMAIL_REGEX.finditer(text)`, in linear instead of quadratic time.

    finditer retries at every position of a long run of local-part characters (a token, a base64
    blob) and each try scans to the end of the run: 16 KB of letters took 0.3 s. The local part can
    only end right before the "@" that follows the run, so a try from inside a run succeeds exactly
    when the try from the run's start (or from where the last match ended) does: only those
    positions need trying.
    """
    pos = 0
    while True:
        match = EMAIL_REGEX.match(text, pos) if pos else None  # continuing inside a run
        if match is None:
            match = _EMAIL_AT_RUN_START.search(text, pos)  # lookbehind sees text before pos
        if match is None:
            return
        yield match
        pos = match.end()


@dataclass(frozen=True)
class _PiiPattern:
    type: str  # Comprehend entity type name, so `pii_actions` applies to both layers
    finditer: Callable[[str], Iterator[re.Match[str]]]


_PII_PATTERNS = (
    _PiiPattern("EMAIL", email_matches),
    _PiiPattern("CREDIT_DEBIT_NUMBER", re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)").finditer),
    _PiiPattern("SSN", re.compile(r"(?<!\d)(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?!\d)").finditer),
)


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _valid(pattern: _PiiPattern, match: str) -> bool:
    if pattern.type == "CREDIT_DEBIT_NUMBER":
        digits = _NON_DIGIT.sub("", match)
        return 13 <= len(digits) <= 19 and luhn_valid(digits)
    return True


@dataclass(frozen=True)
class _Compiled:
    deny_terms: re.Pattern[str] | None
    deny_patterns: tuple[re.Pattern[str], ...]
    injection: re.Pattern[str]


@lru_cache(maxsize=32)
def _compile(rules: LocalRules) -> _Compiled:
    terms = None
    if rules.deny_terms:
        # Whole-word match where the term starts/ends with a word character.
        alternatives = [
            (r"\b" if term[0].isalnum() else "") + re.escape(term) + (r"\b" if term[-1].isalnum() else "")
            for term in rules.deny_terms
        ]
        terms = re.compile("|".join(alternatives), re.IGNORECASE)
    return _Compiled(
        deny_terms=terms,
        deny_patterns=tuple(re.compile(p) for p in rules.deny_patterns),
        injection=re.compile("|".join(f"(?:{p})" for p in INJECTION_PATTERNS), re.IGNORECASE | re.DOTALL),
    )


class LocalRulesLayer:
    name = "local_rules"

    def check(self, request: CheckRequest, settings: DirectionSettings) -> LayerResult:
        rules = settings.local_rules
        compiled = _compile(rules)
        findings: list[Finding] = []
        untrusted = list(request.untrusted())
        length = sum(len(item.text) for _, item in untrusted)
        if length > rules.max_length:
            findings.append(Finding(self.name, "max_length", "block", float(length)))
        for index, item in untrusted:
            findings.extend(self._item_findings(index, item.text, rules, compiled, settings))
        return LayerResult(findings)

    def _item_findings(
        self, index: int, text: str, rules: LocalRules, compiled: _Compiled, settings: DirectionSettings
    ) -> Iterator[Finding]:
        def spans(regex: re.Pattern[str]) -> Iterator[Span]:
            return (Span(index, m.start(), m.end()) for m in regex.finditer(text) if m.end() > m.start())

        if compiled.deny_terms is not None:
            yield from (Finding(self.name, "deny_term", "block", span=s) for s in spans(compiled.deny_terms))
        for pattern in compiled.deny_patterns:
            yield from (Finding(self.name, "deny_pattern", "block", span=s) for s in spans(pattern))
        if rules.injection_heuristics:
            yield from (
                Finding(self.name, "prompt_injection", "block", span=s) for s in spans(compiled.injection)
            )
        if rules.pii_regex_fallback:
            for pii in _PII_PATTERNS:
                for match in pii.finditer(text):
                    if _valid(pii, match.group()):
                        action: FindingAction = settings.pii_actions.get(pii.type, "flag")
                        span = Span(index, match.start(), match.end())
                        yield Finding(self.name, pii.type, action, span=span, is_pii=True)
