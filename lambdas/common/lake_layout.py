"""Where data lives in the lake: zones, which table goes to which zone, and the key scheme.

One bucket per zone. Inside a zone bucket every key starts with `<business_unit>/<scope>/`, the
scope being the stage that produced the data (`dev`, `preprod`, `prod`) or `shared`:

- `<bu>/<stage>/tenant=<tenant_id>/...`: data that belongs to one end user of that stage;
- `<bu>/<stage>/<table>/dt=YYYY-MM-DD/model=<model>/<file>.jsonl`: table data (the Glue tables),
  kept per business unit and stage, not per tenant (`tenant_id` is a column);
- `<bu>/shared/...`: curated, anonymized data every stage of the business unit reads (evaluation
  datasets at `<bu>/shared/datasets/<dataset>/<version>/dataset.jsonl`), written only by the
  audited promotion path (docs/data-lake.md).

The stage is part of the access boundary: a stage's roles reach only `<bu>/<own stage>/` (plus read
on `<bu>/shared/`), so dev can never read or overwrite prod tenants' data. Access control is
prefix-based (IAM, KMS and Lake Formation), so every id that becomes a key segment is checked here:
an id that could leave its prefix ("..", "/", empty) is refused, naming the field.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from enum import StrEnum

from pydantic import TypeAdapter, ValidationError

from common.lake_records import (
    BusinessUnitName,
    EvaluationResultRecord,
    FilterDecisionRecord,
    RatingRecord,
    SafeId,
)


class Zone(StrEnum):
    RAW = "raw"  # tenant uploads, as received
    CURATED = "curated"  # preprocessed training data
    PROMPT_CATALOG = "prompt_catalog"  # prompt catalog exports
    EVALUATION_DATASETS = "evaluation_datasets"
    EVALUATION_RESULTS = "evaluation_results"
    FEEDBACK = "feedback"  # end-user ratings
    FILTER_DECISIONS = "filter_decisions"
    MODEL_METADATA = "model_metadata"


TABLE_ZONES: dict[str, Zone] = {
    EvaluationResultRecord.TABLE: Zone.EVALUATION_RESULTS,
    RatingRecord.TABLE: Zone.FEEDBACK,
    FilterDecisionRecord.TABLE: Zone.FILTER_DECISIONS,
}

# Partition values come from `partition_safe`, which may leave dots: "." and ".." stay refused below.
_PARTITION_VALUE = re.compile(r"^[A-Za-z0-9._\-]{1,256}$")
_business_unit_adapter: TypeAdapter[str] = TypeAdapter(BusinessUnitName)
_safe_id_adapter: TypeAdapter[str] = TypeAdapter(SafeId)


class LakeScope(StrEnum):
    """The second key segment: a stage of the business unit, or the data all its stages share."""

    DEV = "dev"
    PREPROD = "preprod"
    PROD = "prod"
    SHARED = "shared"


LAKE_STAGES: tuple[LakeScope, ...] = (LakeScope.DEV, LakeScope.PREPROD, LakeScope.PROD)
SHARED_DATASETS = "datasets"
DATASET_FILE = "dataset.jsonl"


class LakeLayoutError(ValueError):
    """An id cannot be used as a key segment; `field` names which one."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def _segment(field: str, value: str, adapter: TypeAdapter[str], allowed: str) -> str:
    if not isinstance(value, str) or value in ("", ".", "..") or "/" in value or ".." in value:
        raise LakeLayoutError(field, f"{value!r} cannot be a key segment; allowed: {allowed}")
    try:
        return adapter.validate_python(value)
    except ValidationError:
        raise LakeLayoutError(field, f"{value!r} is not allowed; allowed: {allowed}") from None


def check_business_unit(business_unit: str) -> str:
    return _segment(
        "business_unit",
        business_unit,
        _business_unit_adapter,
        "2-24 of a-z, 0-9, '-', starting with a letter",
    )


_SAFE = "1-128 of A-Z, a-z, 0-9, '.', '_', ':', '-', no '..'"


def check_tenant_id(tenant_id: str) -> str:
    return _segment("tenant_id", tenant_id, _safe_id_adapter, _SAFE)


def check_scope(scope: str) -> LakeScope:
    """A stage name or "shared" (the `<scope>` key segment)."""
    try:
        return LakeScope(scope)
    except ValueError:
        raise LakeLayoutError(
            "stage", f"{scope!r} is not a lake scope; allowed: {', '.join(s.value for s in LakeScope)}"
        ) from None


def check_stage(stage: str) -> LakeScope:
    """A stage name only: tenant and table data always belong to one stage, never to `shared`."""
    checked = check_scope(stage)
    if checked is LakeScope.SHARED:
        raise LakeLayoutError(
            "stage",
            f"{stage!r} holds no tenant or table data; allowed: {', '.join(s.value for s in LAKE_STAGES)}",
        )
    return checked


def zone_for_table(table: str) -> Zone:
    try:
        return TABLE_ZONES[table]
    except KeyError:
        raise LakeLayoutError("table", f"unknown table {table!r}; known: {sorted(TABLE_ZONES)}") from None


def scope_prefix(business_unit: str, scope: str) -> str:
    """`<business_unit>/<scope>/`: a stage's prefix or the business unit's shared prefix."""
    return f"{check_business_unit(business_unit)}/{check_scope(scope).value}/"


def stage_prefix(business_unit: str, stage: str) -> str:
    """`<business_unit>/<stage>/`: everything one stage of a business unit owns in a zone bucket."""
    return f"{check_business_unit(business_unit)}/{check_stage(stage).value}/"


def shared_prefix(business_unit: str) -> str:
    """`<business_unit>/shared/`: curated data every stage of the business unit reads."""
    return scope_prefix(business_unit, LakeScope.SHARED)


def tenant_prefix(business_unit: str, stage: str, tenant_id: str) -> str:
    """`<business_unit>/<stage>/tenant=<tenant_id>/`: data that belongs to one end user of one stage."""
    return f"{stage_prefix(business_unit, stage)}tenant={check_tenant_id(tenant_id)}/"


def table_prefix(business_unit: str, stage: str, table: str) -> str:
    """`<business_unit>/<stage>/<table>/`: where one stage writes one Glue table."""
    zone_for_table(table)
    return f"{stage_prefix(business_unit, stage)}{table}/"


def shared_dataset_key(business_unit: str, dataset: str, version: str) -> str:
    """`<business_unit>/shared/datasets/<dataset>/<version>/dataset.jsonl` (evaluation_datasets zone)."""
    return (
        f"{shared_prefix(business_unit)}{SHARED_DATASETS}/{_segment('dataset', dataset, _safe_id_adapter, _SAFE)}/"
        f"{_segment('version', version, _safe_id_adapter, _SAFE)}/{DATASET_FILE}"
    )


def partition_prefix(business_unit: str, stage: str, table: str, day: date | str, model: str) -> str:
    """`<business_unit>/<stage>/<table>/dt=YYYY-MM-DD/model=<model>/`: one Hive partition."""
    if isinstance(day, datetime):
        day = day.date()
    elif isinstance(day, str):
        try:
            day = date.fromisoformat(day)
        except ValueError:
            raise LakeLayoutError("dt", f"{day!r} is not a date; allowed: YYYY-MM-DD") from None
    if model in (".", "..") or not _PARTITION_VALUE.match(model):
        raise LakeLayoutError(
            "model", f"{model!r} is not a partition value; allowed: A-Z, a-z, 0-9, '.', '_', '-'"
        )
    return f"{table_prefix(business_unit, stage, table)}dt={day.isoformat()}/model={model}/"
