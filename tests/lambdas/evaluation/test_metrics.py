import pytest
from evaluation import metrics
from evaluation.metrics import (
    UNKNOWN_LABEL,
    classification_report,
    match_label,
    normalize,
    quasi_exact_match,
    text_metrics,
    token_f1,
)

from stacks.settings.fine_tuning import TEXT_METRICS


# The nltk METEOR docstring example (nltk/translate/meteor_score.py).
def words(text: str) -> list[str]:
    return text.split()


HYP1 = words("It is a guide to action which ensures that the military always obeys the commands of the party")
REF1 = words("It is a guide to action that ensures that the military will forever heed Party commands")
REF2 = words(
    "It is the guiding principle which guarantees the military forces always being under the command of "
    "the Party"
)
REF3 = words("It is the practical guide for the army always to heed the directions of the party")


def test_meteor_matches_nltk_documented_value_without_wordnet():
    assert round(metrics.meteor(HYP1, REF1), 4) == 0.6944
    assert metrics.meteor(["non", "matching", "hypothesis"], ["this", "is", "a", "cat"]) == 0.0


def test_meteor_multi_reference_documented_value():
    from nltk.stem.porter import PorterStemmer
    from nltk.translate.meteor_score import meteor_score

    score = meteor_score([REF1, REF2, REF3], HYP1, stemmer=PorterStemmer(), wordnet=metrics._NoSynonyms())
    assert round(score, 4) == 0.6944


def test_sacrebleu_documented_corpus_example():
    import sacrebleu

    refs = [
        ["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
        ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."],
    ]
    hyps = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
    assert round(sacrebleu.corpus_bleu(hyps, refs).score, 2) == 48.53


def test_rouge_score_readme_example_by_hand():
    # rouge-score README example: target "The quick brown fox jumps over the lazy dog",
    # prediction "The quick brown dog jumps on the log."
    # unigrams in common: the, quick, brown, dog, jumps, the -> 6 of 8 (prediction) and 6 of 9 (target).
    found = text_metrics(
        "The quick brown dog jumps on the log.", "The quick brown fox jumps over the lazy dog"
    )
    assert found["rouge1"] == pytest.approx(2 * 0.75 * (6 / 9) / (0.75 + 6 / 9))
    # LCS: the quick brown jumps the dog? -> "the quick brown jumps the" = 5 words: P 5/8, R 5/9.
    assert found["rougeL"] == pytest.approx(2 * (5 / 8) * (5 / 9) / (5 / 8 + 5 / 9))


def test_identical_text_scores_one_everywhere():
    found = text_metrics("Rishi Sunak was prime minister.", "Rishi Sunak was prime minister.")
    meteor = found.pop("meteor")
    assert found == {name: 1.0 for name in found}
    # METEOR keeps a small fragmentation penalty even for identical text: 1 - 0.5 * (1/6)**3
    assert meteor == pytest.approx(1 - 0.5 * (1 / 6) ** 3)


def test_the_configs_text_metric_names_are_the_ones_the_engine_computes():
    # Fine-tuning thresholds (stacks/settings/fine_tuning.py) may name only these.
    assert sorted(text_metrics("a b", "a c")) == sorted(TEXT_METRICS)


def test_exact_and_quasi_exact():
    found = text_metrics("The Rishi Sunak!", "rishi sunak")
    assert found["exact_match"] == 0.0
    assert found["quasi_exact_match"] == 1.0
    assert normalize("  An Apple, the  PIE. ") == "apple pie"
    assert quasi_exact_match("x y", "y x") == 0.0


def test_token_f1_by_hand():
    # prediction {rishi, sunak, is, pm} vs gold {rishi, sunak}: P 2/4, R 2/2 -> F1 2/3
    assert token_f1("Rishi Sunak is PM", "Rishi Sunak") == pytest.approx(2 / 3)
    assert token_f1("", "") == 1.0
    assert token_f1("x", "") == 0.0


def test_match_label():
    labels = ["positive", "negative", "neutral"]
    assert match_label("Positive.", labels) == "positive"
    assert match_label("The sentiment is negative", labels) == "negative"
    assert match_label("positive or negative", labels) == UNKNOWN_LABEL
    assert match_label("great", labels) == UNKNOWN_LABEL


def test_classification_report_by_hand():
    pairs = [("pos", "pos"), ("pos", "neg"), ("pos", UNKNOWN_LABEL), ("neg", "neg")]
    report = classification_report(pairs)
    assert report.accuracy == 0.5
    # pos: P 1/1, R 1/3, F1 0.5; neg: P 1/2, R 1/1, F1 2/3
    assert report.per_class["pos"].f1 == pytest.approx(0.5)
    assert report.per_class["neg"].precision == pytest.approx(0.5)
    assert report.precision_macro == pytest.approx(0.75)
    assert report.recall_macro == pytest.approx((1 / 3 + 1) / 2)
    assert report.f1_macro == pytest.approx((0.5 + 2 / 3) / 2)
    assert report.balanced_accuracy == pytest.approx(2 / 3)
    assert UNKNOWN_LABEL not in report.per_class
