"""Monthly cost of each business unit's configured GPU serving vs one endpoint per model.

    python -m tools.serving_cost [--config config/platform.yaml] [--models 10,100,1000]

Shared: the instances the configured endpoint needs for N fine-tuned models (`models_per_instance` each,
never below `min_capacity`). Dedicated: N endpoints, each on one instance of the same type (a
single-model endpoint cannot scale below one instance). Prices come from config/gpu_catalog.yaml.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lambdas"))

from stacks.settings import load_config
from stacks.settings.serving import load_catalog, shared_instances
from tools.serving_capacity import capacity_notes, measured_capacity, models_per_instance


def cost_rows(
    config_path: str | None, models: list[int]
) -> list[tuple[str, str, str, int, int, float, float]]:
    config = load_config(config_path) if config_path else load_config()
    catalog = load_catalog()
    rows: list[tuple[str, str, str, int, int, float, float]] = []
    measured = measured_capacity()
    for bu in config.business_units:
        serving = bu.serving
        per_instance, _ = models_per_instance(serving, catalog.instance(serving.instance_type), measured)
        for stage in serving.stages:
            for n in models:
                shared = shared_instances(serving, n, per_instance)
                rows.append(
                    (
                        bu.name,
                        stage,
                        f"{serving.mode.value} {serving.instance_type}",
                        n,
                        shared,
                        catalog.monthly_usd(serving.instance_type, shared),
                        catalog.monthly_usd(serving.instance_type, n),
                    )
                )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None)
    parser.add_argument("--models", default="10,100,1000")
    args = parser.parse_args(argv)
    models = [int(n) for n in args.models.split(",")]
    catalog = load_catalog()
    print(
        f"Prices: {catalog.price_region} on-demand list prices of {catalog.price_date.isoformat()}, "
        f"{catalog.hours_per_month} h/month (config/gpu_catalog.yaml)"
    )
    for note in capacity_notes(load_config(args.config) if args.config else load_config(), catalog):
        print(note)
    header = (
        "business unit",
        "stage",
        "serving",
        "models",
        "instances",
        "shared USD/mo",
        "1 endpoint/model USD/mo",
        "saving",
    )
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for bu, stage, serving, n, instances, shared, dedicated in cost_rows(args.config, models):
        saving = f"{dedicated / shared:,.0f}x" if shared else "all (scaled to zero)"
        print(
            f"{bu} | {stage} | {serving} | {n:,} | {instances} | {shared:,.0f} | {dedicated:,.0f} | {saving}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
