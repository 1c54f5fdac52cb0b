"""The local rules' scans as they were before the two-stage injection scan and the faster PII and deny-term
scans (main at d289b36): plain `finditer` over the whole text, one search per mention. Kept only as the oracle of
`test_local_rules_differential.py`: the fast scans must find exactly what these find."""

from __future__ import annotations

import re
from collections.abc import Iterator

from guardrail.layers.local_rules import (
    _AI_CONTROL_NOUN,
    _CONTEXT,
    _DIGIT_RUN,
    _EMAIL_DOMAIN,
    _EMAIL_LOCAL_REVERSED,
    _GENERAL_CONTROL_NOUN,
    _IBAN,
    _INJECTION_ANCHOR_BYTES,
    _LIMITS,
    _NOT_ABOUT_SOMETHING_ELSE,
    _QUOTES,
    _SENTENCE_END,
    _WORD_TABLE,
    IBAN_LENGTHS,
    _key_findings,
    _longest_first,
    _mixed_run_findings,
    _term_hits,
    luhn_valid,
    shape_of,
)
from guardrail.normalize import NormalizedText
from guardrail.settings import DirectionSettings

# The injection patterns as d289b36 wrote them (the layer now builds them from its first words' branches):
# a copy, so that a change to how the layer puts its patterns together shows as a difference (the nouns and
# limits are the layer's own).
_OVERRIDE_VERB = (
    r"(?:ignore|ignoring|disregard|disregarding|forget|forgetting|override|overriding|bypass|bypassing"
    r"|skip|discard|neglect|abandon|drop|set aside|put aside|throw away|pay no (?:attention|heed) to"
    r"|stop (?:following|obeying)|(?:do not|don't|dont|no longer) (?:follow|obey|adhere to|comply with))"
)
INJECTION_PATTERNS: tuple[str, ...] = (
    # "ignore all previous instructions", "disregard your guidelines", "forget the rules you were given"
    rf"\b{_OVERRIDE_VERB}\W+(?:[\w'-]+\W+){{0,5}}?(?:{_GENERAL_CONTROL_NOUN}\b{_NOT_ABOUT_SOMETHING_ELSE}|{_AI_CONTROL_NOUN}\b)",
    r"\b(?:ignore|disregard|forget)\s+(?:all\s+|everything\s+)?(?:of\s+)?(?:the\s+)?(?:above|preceding)"
    r"(?:\s+(?:text|instructions|prompt|messages?))?\s*(?:and\b|,|;|\.|!)",
    r"\b(?:your|all|the|any)\s+(?:previous\s+|prior\s+|safety\s+|content\s+|old\s+)?(?:rules|restrictions"
    r"|guidelines|instructions|filters|guardrails|policies)\s+(?:no longer apply|(?:are|is)\s+(?:now\s+)?"
    r"(?:void|lifted|disabled|suspended|off|cancel(?:l)?ed)|do not apply|don't apply)",
    r"\b(?:forget|ignore|disregard)\W+(?:everything|anything|all)\W+(?:(?:you(?:'ve| have)? (?:been |were )?(?:told|given|said))|(?:above|before|so far|previously|earlier))",
    # personas without limits: "you are now DAN", "act as an AI without restrictions", "developer mode"
    rf"\byou(?: are|'re)\s+(?:now\s+|no longer\s+)(?:[\w'-]+\s+){{0,3}}?(?:dan|jailbroken|unrestricted|unfiltered|uncensored|evil|free of|free from|without (?:any )?{_LIMITS}|not bound by)",
    rf"\b(?:act|behave|respond|answer|pretend|roleplay|role-play)\s+(?:as|like|to be|that you are|you are)\b.{{0,80}}?\b(?:no|without|free of|free from|ignores? (?:all |any |your )?|bypass(?:es)? (?:all |any )?|not bound by (?:any )?)\s*(?:any\s+)?(?:ethical\s+|moral\s+|content\s+|safety\s+)?{_LIMITS}",
    r"\b(?:enable|enter|activate|switch to|turn on|engage|you are in)\W+(?:\w+\W+){0,2}?(?:developer|god|dan|jailbreak|unrestricted|unfiltered|debug|admin|sudo|root) mode\b",
    r"\bdo anything now\b",
    r"\b(?:you are|you're|you have been|you've been) jailbroken\b|\bjailbreak (?:mode|prompt activated|enabled)\b",
    # prompt extraction: "print your system prompt", "repeat the text above"
    r"\b(?:reveal|print|show|repeat|output|leak|display|tell me|give me|write out|dump|recite|spell out|what (?:is|are|was|were))\W+(?:\w+\W+){0,4}?(?:(?:your|the|this chat's|the assistant's|its) (?:system (?:prompt|message)|initial (?:prompt|instructions)|hidden (?:prompt|instructions|rules)|original (?:prompt|instructions)|(?:instructions|prompt|guidelines|rules) (?:you were|you've been|you have been) given)|(?:everything|all|the text|the words) (?:above|before this)(?: this)?(?: line| message)?)",
    # new orders smuggled as the conversation's structure
    r"\b(?:new|updated|revised|real|actual|true|secret) (?:system )?(?:instructions?|directives?|prompt|orders)\s*:",
    r"\bsystem override\b",
    r"\bfrom now on,?\s+(?:you\s+(?:will|must|shall|are to)|ignore|disregard|there are no)\b",
    r"<\|(?:im_start|im_end|system|endoftext)\|>|\[/?INST\]|<</?SYS>>|</?(?:system|assistant)>|(?:^|\n)\s*#{2,}\s*(?:system|instructions?)\s*:",
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
    if _INJECTION_ANCHOR_BYTES.isdisjoint(folded.encode("ascii", "ignore").translate(_WORD_TABLE).split()):
        return
    for match in INJECTION.finditer(folded):
        if match.end() > match.start() and not is_mention(folded, match.start(), match.end()):
            yield match.start(), match.end()


# ---- PII and deny terms -------------------------------------------------------------------------------------

CARD_RUN = re.compile(rb"(?:0[ -]?){12,18}0")  # on the shape


def email_matches(text: str) -> Iterator[tuple[int, int]]:
    at = text.find("@")
    if at < 0:
        return
    reversed_text = text[::-1]
    size = len(text)
    previous_end = 0
    while at >= 0:
        domain = _EMAIL_DOMAIN.match(text, at + 1)
        if domain is not None and at > previous_end:
            local = _EMAIL_LOCAL_REVERSED.match(reversed_text, size - at, size - previous_end)
            if local is not None:
                start = at - (local.end() - local.start())
                yield start, domain.end()
                previous_end = domain.end()
                at = text.find("@", previous_end)
                continue
        at = text.find("@", at + 1)


def digit_run_findings(text: str, shape: bytes, region: str) -> list[tuple[str, int, int]]:
    found: list[tuple[str, int, int]] = []
    for run in _DIGIT_RUN.finditer(shape):
        start, end = run.span()
        if CARD_RUN.fullmatch(shape, start, end) and luhn_valid(
            text[start:end].encode().translate(None, b" -")
        ):
            found.append(("CREDIT_DEBIT_NUMBER", start, end))
        else:
            _mixed_run_findings(text, run, region, found.append)  # unchanged
    return found


def iban_valid(candidate: str) -> bool:
    iban = candidate.replace(" ", "")
    if IBAN_LENGTHS.get(iban[:2]) != len(iban):
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def iban_findings(text: str, shape: bytes) -> list[tuple[str, int, int]]:
    found = []
    for iban in _IBAN.finditer(shape):
        start, end = iban.span()
        if start and text[start - 1].isalnum():
            continue
        candidate = text[start:end]  # and its shorter prefixes that end on a character, longest first
        for length in range(len(candidate), 14, -1):
            if candidate[length - 1] != " " and iban_valid(candidate[:length]):
                found.append(("INTERNATIONAL_BANK_ACCOUNT_NUMBER", start, start + length))
                break
    return found


def pii_spans(text: str, phone_region: str = "US") -> list[tuple[str, int, int]]:
    found = [("EMAIL", start, end) for start, end in email_matches(text)] if "@" in text else []
    shape = shape_of(text)
    found += digit_run_findings(text, shape, phone_region)
    _key_findings(text, text.encode("ascii", "replace"), found.append)  # unchanged
    found += iban_findings(text, shape)
    return found


def deny_term_spans(folded: str, term_list: tuple[str, ...]) -> Iterator[tuple[int, int]]:
    lowered = folded.lower()
    if len(lowered) != len(folded):
        lowered = "".join(c if len(c.lower()) != 1 else c.lower() for c in folded)
    return _longest_first(_term_hits(lowered, list(term_list), folded))


def layer_findings(text: str, settings: DirectionSettings) -> list[tuple[str, str, int, int, bool]]:
    """(type, action, start, end, is PII) of the layer's findings for one untrusted item, as before."""
    rules = settings.local_rules
    view = NormalizedText(text)
    folded = view.text
    found: list[tuple[str, str, int, int, bool]] = []
    terms = tuple(sorted({NormalizedText(t).text.lower() for t in rules.deny_terms}, key=len, reverse=True))
    found += [("deny_term", "block", s, e, False) for s, e in deny_term_spans(folded, terms)]
    for source in rules.deny_patterns:
        found += [
            ("deny_pattern", "block", *m.span(), False)
            for m in re.finditer(source, folded)
            if m.end() > m.start()
        ]
    if rules.injection_heuristics:
        found += [("prompt_injection", "block", s, e, False) for s, e in injection_spans(folded)]
    if rules.pii_regex_fallback:
        found += [
            (kind, settings.pii_action(kind), s, e, True)
            for kind, s, e in pii_spans(folded, rules.phone_region)
        ]
    return [(kind, action, *view.original_span(s, e), pii) for kind, action, s, e, pii in found]
