"""Serving settings (re-exported from the deployer Lambda's model) plus the synth-only GPU catalog checks.

`GpuCatalog` is `config/gpu_catalog.yaml`: the GPU instance types per region, a dated price table and the
Deep Learning Containers registry per region. `check_instance_type` and `image_uri_for` use it so a wrong
instance type for a region, or a region without a known image registry, fails before any construct exists.
"""

from __future__ import annotations

import math
from datetime import date
from functools import cache
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field
from serving_deployer.settings import ServingAlarms, ServingMode, ServingSettings
from serving_runtime.packaging import MULTI_MODEL_REFUSAL

CATALOG_FILE = Path(__file__).resolve().parents[2] / "config" / "gpu_catalog.yaml"


class GpuInstance(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    usd_per_hour: Annotated[float, Field(gt=0)]
    gpus: Annotated[int, Field(ge=1)]
    gpu_memory_gib: Annotated[int, Field(ge=1)]
    # Instance-store (NVMe) volumes are encrypted by the Nitro hardware; SageMaker refuses a KMS key for them.
    local_nvme: bool


class GpuCatalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    price_date: date
    price_region: str
    hours_per_month: Annotated[int, Field(ge=672, le=744)]
    instances: dict[str, GpuInstance]
    regions: dict[str, list[str]]
    dlc_registries: dict[str, Annotated[str, Field(pattern=r"^\d{12}$")]]

    def instance(self, instance_type: str) -> GpuInstance:
        return self.instances[instance_type]

    def monthly_usd(self, instance_type: str, instances: float) -> float:
        return self.instances[instance_type].usd_per_hour * self.hours_per_month * instances


@cache
def load_catalog(path: Path = CATALOG_FILE) -> GpuCatalog:
    return GpuCatalog.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


def check_instance_type(
    instance_type: str, *, region: str, field: str, catalog: GpuCatalog | None = None
) -> None:
    """Raise ValueError naming `field` unless `instance_type` is a GPU type the catalog lists for `region`."""
    catalog = catalog or load_catalog()
    offered = catalog.regions.get(region)
    if offered is None:
        raise ValueError(
            f"{field}: region {region} has no GPU instance list in {CATALOG_FILE.name}; "
            f"regions listed: {', '.join(sorted(catalog.regions))}"
        )
    if instance_type not in offered or instance_type not in catalog.instances:
        raise ValueError(
            f"{field}: {instance_type} is not a GPU instance type offered in {region}; allowed: {', '.join(offered)}"
        )


def image_uri_for(
    repository_and_tag: str, *, region: str, field: str, catalog: GpuCatalog | None = None
) -> str:
    """The Deep Learning Containers image URI in `region` (no lookup: the registry comes from the catalog)."""
    catalog = catalog or load_catalog()
    registry = catalog.dlc_registries.get(region)
    if registry is None:
        raise ValueError(
            f"{field}: no Deep Learning Containers registry known for {region}; set an image_uri instead"
        )
    return f"{registry}.dkr.ecr.{region}.amazonaws.com/{repository_and_tag}"


def serving_image_uri(settings: ServingSettings, *, region: str, field: str) -> str:
    if settings.image_uri is not None:
        return settings.image_uri
    return image_uri_for(settings.default_image, region=region, field=f"{field}.image")


def shared_instances(settings: ServingSettings, models: int, per_instance: int | None = None) -> int:
    """Instances the shared endpoint needs to keep `models` fine-tuned models servable at the target load
    (`per_instance` models each; default: the configured `models_per_instance`)."""
    needed = math.ceil(models / (per_instance or settings.models_per_instance)) if models else 0
    floor = max(settings.min_capacity, 1 if settings.mode is ServingMode.MULTI_MODEL_ENDPOINT else 0)
    return max(needed, floor)


def check_adapter_serving(settings: ServingSettings, *, fine_tunes: bool) -> None:
    """Refuse, at config time, a serving mode that cannot serve the adapters this business unit trains."""
    if fine_tunes and settings.stages and settings.mode is ServingMode.MULTI_MODEL_ENDPOINT:
        raise ValueError(
            f"serving.mode: {MULTI_MODEL_REFUSAL} (or set fine_tuning.stages: [] to serve only complete models)"
        )


__all__ = [
    "GpuCatalog",
    "GpuInstance",
    "ServingAlarms",
    "ServingMode",
    "ServingSettings",
    "check_adapter_serving",
    "check_instance_type",
    "image_uri_for",
    "load_catalog",
    "serving_image_uri",
    "shared_instances",
]
