"""Monthly cost of each business unit's configured GPU serving vs one endpoint per model.

    python -m tools.serving_cost [--config config/platform.yaml] [--models 10,100,1000] [--price-region R]

Shared: the instances the configured endpoint needs for N fine-tuned models (per instance: the measured
adapters per GPU for inference components, else `models_per_instance`; tools/serving_capacity.py; never below
`min_capacity`), capped at `max_capacity` as the endpoint's autoscaling is; a capped row says how
many models that capacity serves. Dedicated: N endpoints, each on one instance of the same type (a
single-model endpoint cannot scale below one instance). Prices come from config/gpu_catalog.yaml, for the
business unit's region; a region without prices there is refused (exit 2) unless --price-region names the
catalog region whose prices to use instead, which every row then shows.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lambdas"))

from stacks.settings import PlatformConfig
from stacks.settings.serving import GpuCatalog, load_catalog, shared_instances
from tools.cli import fail, load_config_or_exit
from tools.serving_capacity import capacity_notes, measured_capacity, models_per_instance


@dataclass(frozen=True)
class CostRow:
    business_unit: str
    stage: str
    region: str
    price_region: str
    serving: str
    models: int
    needed: int  # instances the models need at models_per_instance
    instances: int  # what the endpoint runs: needed, capped at max_capacity
    max_capacity: int
    served_at_cap: int  # models the capped capacity serves at the target load
    shared_usd: float
    dedicated_usd: float

    @property
    def capped(self) -> bool:
        return self.needed > self.instances


class NoPricesError(ValueError):
    """The catalog holds no prices for a business unit's region."""


def price_region_for(catalog: GpuCatalog, region: str, override: str | None) -> str:
    if override is not None:
        if override != catalog.price_region:
            raise NoPricesError(
                f"--price-region: config/gpu_catalog.yaml holds prices for {catalog.price_region} only, "
                f"not {override}"
            )
        return override
    if region != catalog.price_region:
        raise NoPricesError(
            f"no prices for {region} in config/gpu_catalog.yaml (it holds {catalog.price_region} on-demand "
            f"prices); add them there, or pass --price-region {catalog.price_region} (make: "
            f"COST_FLAGS=--price-region={catalog.price_region}) to estimate at {catalog.price_region} prices"
        )
    return region


def cost_rows(
    config: PlatformConfig,
    models: Sequence[int],
    *,
    catalog: GpuCatalog | None = None,
    price_region: str | None = None,
) -> list[CostRow]:
    catalog = catalog or load_catalog()
    rows: list[CostRow] = []
    measured = measured_capacity()
    for bu in config.business_units:
        serving = bu.serving
        region = bu.region or config.home_region
        if not serving.stages:
            continue
        prices_of = price_region_for(catalog, region, price_region)
        per_instance, _ = models_per_instance(serving, catalog.instance(serving.instance_type), measured)
        for stage in serving.stages:
            for n in models:
                needed = shared_instances(serving, n, per_instance)
                instances = min(needed, serving.max_capacity)
                rows.append(
                    CostRow(
                        business_unit=bu.name,
                        stage=stage,
                        region=region,
                        price_region=prices_of,
                        serving=f"{serving.mode.value} {serving.instance_type}",
                        models=n,
                        needed=needed,
                        instances=instances,
                        max_capacity=serving.max_capacity,
                        served_at_cap=serving.max_capacity * per_instance,
                        shared_usd=catalog.monthly_usd(serving.instance_type, instances),
                        dedicated_usd=catalog.monthly_usd(serving.instance_type, n),
                    )
                )
    return rows


def format_row(row: CostRow) -> str:
    if row.capped:
        saving = "-"
        note = (
            f"capped at max_capacity {row.max_capacity}: serves {row.served_at_cap:,} models at the target "
            f"load; {row.needed} instances serve all"
        )
    else:
        saving = f"{row.dedicated_usd / row.shared_usd:,.0f}x" if row.shared_usd else "all (scaled to zero)"
        note = ""
    return (
        f"{row.business_unit} | {row.stage} | {row.region} | {row.price_region} | {row.serving} | {row.models:,} "
        f"| {row.instances} | {row.shared_usd:,.0f} | {row.dedicated_usd:,.0f} | {saving} | {note}"
    )


def parse_models(text: str) -> list[int]:
    try:
        models = [int(n) for n in text.split(",")]
    except ValueError:
        raise fail(
            f"--models: {text!r} is not a comma-separated list of whole numbers such as 10,100,1000"
        ) from None
    if any(n < 1 for n in models):
        raise fail(f"--models: {text!r}: every count must be at least 1")
    return models


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="config file (default: config/platform.yaml)")
    parser.add_argument("--models", default="10,100,1000", help="model counts to price, comma-separated")
    parser.add_argument("--price-region", default=None, help="use this catalog region's prices for every row")
    args = parser.parse_args(argv)
    models = parse_models(args.models)
    config = load_config_or_exit(args.config)
    catalog = load_catalog()
    try:
        rows = cost_rows(config, models, catalog=catalog, price_region=args.price_region)
    except NoPricesError as error:
        raise fail(str(error)) from None
    print(
        f"Prices: on-demand list prices of {catalog.price_date.isoformat()} for the region in the 'prices' "
        f"column, {catalog.hours_per_month} h/month (config/gpu_catalog.yaml)"
    )
    for note in capacity_notes(config, catalog):
        print(note)
    header = (
        "business unit",
        "stage",
        "region",
        "prices",
        "serving",
        "models",
        "instances",
        "shared USD/mo",
        "1 endpoint/model USD/mo",
        "saving",
        "note",
    )
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for row in rows:
        print(format_row(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
