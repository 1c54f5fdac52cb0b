"""Training examples carry the answer's labels only; evaluation runs in batches; hyperparameters are checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fine_tuning_jobs.evaluate import batches
from fine_tuning_jobs.train import IGNORE_INDEX, answer_only_example, load_hyperparameters
from hypothesis import given, settings
from hypothesis import strategies as st


def test_prompt_positions_are_ignored_by_the_loss_and_the_answer_is_learned() -> None:
    example = answer_only_example([1, 10, 11, 12], [20, 21, 2], max_length=16)
    assert example["input_ids"] == [1, 10, 11, 12, 20, 21, 2]
    assert example["labels"] == [IGNORE_INDEX] * 4 + [20, 21, 2]
    assert example["attention_mask"] == [1] * 7


def test_truncation_cuts_the_prompt_start_and_keeps_the_answer() -> None:
    example = answer_only_example(list(range(100, 110)), [20, 21, 2], max_length=6)
    assert example["input_ids"] == [107, 108, 109, 20, 21, 2]
    assert example["labels"] == [IGNORE_INDEX] * 3 + [20, 21, 2]
    only_answer = answer_only_example([1, 2, 3], list(range(50, 60)), max_length=4)
    assert only_answer["labels"] == [50, 51, 52, 53]


def test_an_empty_answer_is_a_named_error() -> None:
    with pytest.raises(ValueError, match="reference: the answer is empty"):
        answer_only_example([1, 2], [], max_length=8)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(0, 1000), max_size=40),
    st.lists(st.integers(0, 1000), min_size=1, max_size=40),
    st.integers(1, 64),
)
def test_examples_never_exceed_the_length_and_labels_are_a_suffix_of_the_answer(
    prompt: list[int], answer: list[int], max_length: int
) -> None:
    example = answer_only_example(prompt, answer, max_length)
    assert len(example["input_ids"]) == len(example["labels"]) == len(example["attention_mask"]) <= max_length
    learned = [label for label in example["labels"] if label != IGNORE_INDEX]
    assert learned == answer[: len(learned)] and learned
    ignored = len(example["labels"]) - len(learned)
    assert example["input_ids"][:ignored] == prompt[len(prompt) - ignored :] if ignored else True


def test_evaluation_batches_cover_every_record_in_order() -> None:
    records = list(range(10))
    chunks = list(batches(records, 4))
    assert [list(c) for c in chunks] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    with pytest.raises(ValueError, match="EVAL_BATCH_SIZE"):
        list(batches(records, 0))


def test_early_stopping_and_unknown_hyperparameters(tmp_path: Path) -> None:
    path = tmp_path / "hp.json"
    path.write_text(json.dumps({"early_stopping_patience": "2", "batch_size": "8"}))
    values = load_hyperparameters(path)
    assert (values["early_stopping_patience"], values["batch_size"], values["max_length"]) == (
        2.0,
        8.0,
        1024.0,
    )
    path.write_text(json.dumps({"lora_rnk": "8"}))
    with pytest.raises(ValueError, match=r"hyperparameters: unknown name\(s\) lora_rnk"):
        load_hyperparameters(path)
    path.write_text(json.dumps({"epochs": "three"}))
    with pytest.raises(ValueError, match=r"hyperparameters\.epochs: 'three' is not a number"):
        load_hyperparameters(path)
