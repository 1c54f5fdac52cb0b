"""Monthly model (token) spend of each business unit's application for a given request volume.

    python -m tools.model_cost [--config config/platform.yaml] [--requests 100000,1000000]
                               [--input-tokens 600] [--output-tokens 300]

Per business unit: the application's default model at `--requests` answered /invoke calls a month, each of
`--input-tokens` prompt and `--output-tokens` answer tokens, plus the online judge on the configured sample
(the judge reads the question, the answer and its rubric, about `JUDGE_RUBRIC_TOKENS` more, and writes about
`JUDGE_OUTPUT_TOKENS`, once per `evaluation.judge.samples`). Prices: config/model_prices.yaml (dated). A
SageMaker default model has no per-token price: its cost is the GPU instance hours `tools.serving_cost`
prints. Bad arguments exit with status 2 and a message that names the option.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lambdas"))

from common.model_pricing import PriceTable, load_price_table
from stacks.settings import BusinessUnit, load_config

JUDGE_RUBRIC_TOKENS = 350  # the judge prompt's own text (evaluation.judge.JUDGE_PROMPT and system)
JUDGE_OUTPUT_TOKENS = 200  # scores and a two-to-four sentence justification


class UsageError(ValueError):
    """A bad command-line value; the message starts with the option's name."""


@dataclass(frozen=True)
class ModelCostRow:
    business_unit: str
    model: str
    requests: int
    application_usd: float | None  # None: no per-token price (SageMaker endpoint or a model not in the table)
    judge_model: str | None
    judged_requests: int
    judge_usd: float | None

    @property
    def total_usd(self) -> float | None:
        parts = [self.application_usd, self.judge_usd if self.judged_requests else 0.0]
        return None if any(p is None for p in parts) else sum(p for p in parts if p is not None)


def _cost(
    prices: PriceTable, model_id: str | None, calls: int, tokens_in: int, tokens_out: int
) -> float | None:
    price = prices.price_of(model_id) if model_id else None
    if price is None:
        return None
    return calls * (price.cost_usd(tokens_in, tokens_out) or 0.0)


def business_unit_row(
    bu: BusinessUnit, prices: PriceTable, requests: int, input_tokens: int, output_tokens: int
) -> ModelCostRow:
    model = bu.application.default_model
    application = _cost(
        prices, model.model_id if model.provider == "bedrock" else None, requests, input_tokens, output_tokens
    )
    judge = bu.evaluation.judge.model
    online = bu.model_usage.online_evaluation
    judged = round(requests * online.sample_rate) if judge is not None else 0
    judge_usd: float | None = 0.0
    if judged and judge is not None:
        judge_usd = _cost(
            prices,
            judge.model_id if judge.provider == "bedrock" else None,
            judged * bu.evaluation.judge.samples,
            input_tokens + output_tokens + JUDGE_RUBRIC_TOKENS,
            JUDGE_OUTPUT_TOKENS,
        )
    return ModelCostRow(
        business_unit=bu.name,
        model=model.name,
        requests=requests,
        application_usd=application,
        judge_model=judge.name if judge is not None else None,
        judged_requests=judged,
        judge_usd=judge_usd,
    )


def cost_rows(
    config_path: str | None, requests: list[int], input_tokens: int, output_tokens: int
) -> list[ModelCostRow]:
    config = load_config(config_path) if config_path else load_config()
    prices = load_price_table()
    return [
        business_unit_row(bu, prices, n, input_tokens, output_tokens)
        for bu in config.business_units
        for n in requests
    ]


def _positive_ints(option: str, text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(f"{option}: expected comma-separated whole numbers, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise UsageError(f"{option}: numbers must be 0 or more, got {text!r}")
    return values


def _count(option: str, text: str) -> int:
    values = _positive_ints(option, text)
    if len(values) != 1:
        raise UsageError(f"{option}: expected one whole number, got {text!r}")
    return values[0]


def _usd(value: float | None) -> str:
    return "n/a (no per-token price)" if value is None else f"{value:,.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--config", default=None)
    parser.add_argument("--requests", default="100000,1000000", help="answered /invoke calls per month")
    parser.add_argument("--input-tokens", default="600", help="prompt tokens per request (rendered prompt)")
    parser.add_argument("--output-tokens", default="300", help="answer tokens per request")
    args = parser.parse_args(argv)
    try:
        requests = _positive_ints("--requests", args.requests)
        input_tokens = _count("--input-tokens", args.input_tokens)
        output_tokens = _count("--output-tokens", args.output_tokens)
        rows = cost_rows(args.config, requests, input_tokens, output_tokens)
    except ValueError as exc:  # UsageError, or the config loader's error naming the field
        print(f"error: {exc}", file=sys.stderr)
        return 2
    prices = load_price_table()
    print(
        f"Model prices: {prices.price_region} on-demand list prices of {prices.price_date.isoformat()} "
        f"(config/model_prices.yaml); {input_tokens} input + {output_tokens} output tokens per request"
    )
    header = (
        "business unit",
        "model",
        "requests/mo",
        "model USD/mo",
        "judge",
        "judged/mo",
        "judge USD/mo",
        "total USD/mo",
    )
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for row in rows:
        print(
            f"{row.business_unit} | {row.model} | {row.requests:,} | {_usd(row.application_usd)} | "
            f"{row.judge_model or '-'} | {row.judged_requests:,} | {_usd(row.judge_usd)} | {_usd(row.total_usd)}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
