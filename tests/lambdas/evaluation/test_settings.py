import pytest
from evaluation.settings import CandidateModel, EvaluationSettings
from pydantic import ValidationError

from stacks.settings.evaluation import EvaluationSettings as Reexported

from .fakes import make_settings


def test_defaults_and_round_trip_through_json():
    settings = make_settings()
    assert settings.weights.cost > settings.weights.quality > settings.weights.speed  # the article's order
    assert settings.strict_dataset is True
    assert Reexported is EvaluationSettings
    configured = make_settings(
        candidates=[
            {
                "name": "haiku",
                "provider": "bedrock",
                "model_id": "anthropic.claude-3-haiku",
                "price_per_1k_input_tokens_usd": 0.00025,
                "price_table_date": "2026-11-01",
            }
        ],
        weights={"quality": 0.5, "speed": 0.2, "cost": 0.3},
    )
    assert EvaluationSettings.model_validate_json(configured.model_dump_json()) == configured


def test_weights_must_sum_to_one_and_the_error_names_the_field():
    with pytest.raises(ValidationError, match=r"weights[\s\S]*sum to 1, got 1.2"):
        make_settings(weights={"quality": 0.5, "speed": 0.2, "cost": 0.5})


@pytest.mark.parametrize(("provider", "missing"), [("bedrock", "model_id"), ("sagemaker", "endpoint_name")])
def test_candidate_needs_its_host(provider, missing):
    with pytest.raises(ValidationError, match=missing):
        CandidateModel(name="m", provider=provider)


def test_unknown_field_duplicate_names_and_unknown_gate_model_are_rejected():
    with pytest.raises(ValidationError, match="concurency_limit"):
        make_settings(concurency_limit=3)
    bedrock = {"name": "a", "provider": "bedrock", "model_id": "x"}
    with pytest.raises(ValidationError, match="candidates: model names must be unique, repeated: a"):
        make_settings(candidates=[bedrock, bedrock])
    with pytest.raises(ValidationError, match=r"gate\.model"):
        make_settings(candidates=[bedrock], gate={"model": "b"})


def test_cost_and_map_concurrency():
    candidate = CandidateModel(
        name="m",
        provider="bedrock",
        model_id="x",
        price_per_1k_input_tokens_usd=3,
        price_per_1k_output_tokens_usd=15,
    )
    assert candidate.cost_usd(1000, 2000) == pytest.approx(33.0)
    assert candidate.cost_usd(None, None) is None
    assert make_settings(concurrency_limit=10, batch_workers=4).map_max_concurrency == 2
    small = make_settings(concurrency_limit=2, batch_workers=4)
    assert (small.map_max_concurrency, small.workers_per_batch) == (1, 2)
