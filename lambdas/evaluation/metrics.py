"""Scores of one output against its reference, and classification metrics over many labels.

Free-text metrics come from the maintained libraries (rouge-score, sacrebleu, nltk). All scores
are on a 0..1 scale (sacrebleu's 0..100 BLEU is divided by 100) so that they aggregate alike.

METEOR: nltk's implementation is used with exact and Porter-stem matching only. Its WordNet
synonym stage needs the WordNet corpus, which no PyPI package ships and which the Lambda may not
download, so a `_NoSynonyms` stand-in answers "no synonyms". Scores can be lower than METEOR with
WordNet where the output paraphrases the reference with synonyms.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

UNKNOWN_LABEL = "unknown"
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_TOKENS = re.compile(r"\w+|[^\w\s]")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (the usual quasi-exact normalization)."""
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION))
    return " ".join(text.split())


def exact_match(output: str, reference: str) -> float:
    return float(output.strip() == reference.strip())


def quasi_exact_match(output: str, reference: str) -> float:
    return float(normalize(output) == normalize(reference))


def token_f1(output: str, reference: str) -> float:
    """F1 of the normalized word bags (SQuAD style)."""
    predicted, gold = normalize(output).split(), normalize(reference).split()
    if not predicted or not gold:
        return float(predicted == gold)
    common = sum((Counter(predicted) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


@lru_cache(maxsize=1)
def _rouge() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


class _NoSynonyms:
    """Stands in for nltk's WordNet reader: METEOR's synonym stage then matches nothing."""

    def synsets(self, *_args: object, **_kwargs: object) -> list[object]:
        return []


@lru_cache(maxsize=1)
def _meteor() -> tuple[Any, Any]:
    from nltk.stem.porter import PorterStemmer
    from nltk.translate.meteor_score import meteor_score

    return meteor_score, PorterStemmer()


def meteor(output_tokens: Sequence[str], reference_tokens: Sequence[str]) -> float:
    score, stemmer = _meteor()
    return float(score([reference_tokens], output_tokens, stemmer=stemmer, wordnet=_NoSynonyms()))


def bleu(output: str, reference: str) -> float:
    import sacrebleu

    return min(1.0, float(sacrebleu.sentence_bleu(output, [reference]).score) / 100)


def text_metrics(output: str, reference: str) -> dict[str, float]:
    """Every free-text metric of one output against one reference."""
    rouge = _rouge().score(reference, output)
    return {
        "exact_match": exact_match(output, reference),
        "quasi_exact_match": quasi_exact_match(output, reference),
        "token_f1": token_f1(output, reference),
        "rouge1": rouge["rouge1"].fmeasure,
        "rouge2": rouge["rouge2"].fmeasure,
        "rougeL": rouge["rougeL"].fmeasure,
        "bleu": bleu(output, reference),
        "meteor": meteor(_TOKENS.findall(output), _TOKENS.findall(reference)),
    }


def match_label(output: str, labels: Iterable[str]) -> str:
    """Map a model's answer onto one known label; anything else is `unknown`, not an error.

    An answer equal to a label (normalized) wins; otherwise exactly one label named as a whole
    word in the answer ("Sentiment: positive."); several or none -> unknown.
    """
    by_normal = {normalize(label): label for label in labels}
    answer = normalize(output)
    if answer in by_normal:
        return by_normal[answer]
    words = f" {answer} "
    found = {label for norm, label in by_normal.items() if norm and f" {norm} " in words}
    return found.pop() if len(found) == 1 else UNKNOWN_LABEL


@dataclass(frozen=True)
class ClassMetrics:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class ClassificationReport:
    accuracy: float
    precision_macro: float
    recall_macro: float
    f1_macro: float
    balanced_accuracy: float
    per_class: dict[str, ClassMetrics]
    count: int

    def as_metrics(self) -> dict[str, float]:
        return {
            "accuracy": self.accuracy,
            "precision_macro": self.precision_macro,
            "recall_macro": self.recall_macro,
            "f1_macro": self.f1_macro,
            "balanced_accuracy": self.balanced_accuracy,
        }


def classification_report(pairs: Sequence[tuple[str, str]]) -> ClassificationReport:
    """Metrics over (gold, predicted) pairs.

    Macro averages run over the gold classes: an `unknown` prediction is always wrong and lowers
    recall, but `unknown` is not a class of its own in the averages (no gold record has it).
    """
    if not pairs:
        return ClassificationReport(0.0, 0.0, 0.0, 0.0, 0.0, {}, 0)
    classes = sorted({gold for gold, _ in pairs})
    per_class: dict[str, ClassMetrics] = {}
    for label in classes:
        tp = sum(1 for g, p in pairs if g == label and p == label)
        fp = sum(1 for g, p in pairs if g != label and p == label)
        fn = sum(1 for g, p in pairs if g == label and p != label)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = ClassMetrics(precision, recall, f1, tp + fn)
    n = len(classes)
    recall_macro = sum(m.recall for m in per_class.values()) / n
    return ClassificationReport(
        accuracy=sum(1 for g, p in pairs if g == p) / len(pairs),
        precision_macro=sum(m.precision for m in per_class.values()) / n,
        recall_macro=recall_macro,
        f1_macro=sum(m.f1 for m in per_class.values()) / n,
        balanced_accuracy=recall_macro,
        per_class=per_class,
        count=len(pairs),
    )
