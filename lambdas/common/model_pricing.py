"""Estimated cost of model calls from a dated price table (`config/model_prices.yaml`).

The application stack looks up its default model's price at synth time and passes it to the function
as `MODEL_PRICE` (JSON of `ModelPrice`); `make cost` reads the whole table. A cross-region inference
profile id (`eu.amazon.nova-lite-v1:0`) is priced as its base model.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# Geographic prefixes of Bedrock's system-defined cross-region inference profiles.
PROFILE_PREFIXES = frozenset({"us", "eu", "apac", "us-gov", "jp", "au", "ca", "global"})
PRICE_FILE = Path(__file__).resolve().parents[2] / "config" / "model_prices.yaml"
UsdPer1k = Annotated[float, Field(ge=0, le=10)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TokenPrice(_Strict):
    input_per_1k_tokens_usd: UsdPer1k
    output_per_1k_tokens_usd: UsdPer1k


class ModelPrice(TokenPrice):
    """One model's price with the date of the table it came from (what a usage record carries)."""

    price_date: date

    def cost_usd(self, input_tokens: int | None, output_tokens: int | None) -> float | None:
        """None when the host reported no token counts: an unknown cost is not a zero cost."""
        if input_tokens is None and output_tokens is None:
            return None
        return (
            (input_tokens or 0) * self.input_per_1k_tokens_usd
            + (output_tokens or 0) * self.output_per_1k_tokens_usd
        ) / 1000


class PriceTable(_Strict):
    price_date: date
    price_region: str
    models: dict[str, TokenPrice]

    def price_of(self, model_id: str) -> ModelPrice | None:
        """The model's price, or None when the table does not list it."""
        price = self.models.get(base_model_id(model_id))
        if price is None:
            return None
        return ModelPrice(**price.model_dump(), price_date=self.price_date)


def base_model_id(model_id: str) -> str:
    """`eu.amazon.nova-lite-v1:0` -> `amazon.nova-lite-v1:0`; other ids unchanged."""
    geography, _, base = model_id.partition(".")
    return base if geography in PROFILE_PREFIXES and base else model_id


def load_price_table(path: Path = PRICE_FILE) -> PriceTable:
    import yaml  # synth and tooling only: the functions receive one price as JSON

    return PriceTable.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
