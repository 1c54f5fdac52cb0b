"""Where data lives in the lake: zones, which table goes to which zone, and the key scheme.

One bucket per zone. Inside a zone bucket every key starts with `<business_unit>/`; data that
belongs to an end user continues with `tenant=<tenant_id>/`. Table data (the Glue tables) is kept
per business unit, not per tenant (`tenant_id` is a column), so one table location covers a
business unit: `<business_unit>/<table>/dt=YYYY-MM-DD/model=<model>/<file>.jsonl`.

Access control is prefix-based (IAM and Lake Formation), so every id that becomes a key segment is
checked here: an id that could leave its prefix ("..", "/", empty) is refused.
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
    UsageRecord,
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
    # Usage of the models (tokens, latency, estimated cost per call) is metadata about the models' use.
    UsageRecord.TABLE: Zone.MODEL_METADATA,
}

# Partition values come from `partition_safe`, which may leave dots: "." and ".." stay refused below.
_PARTITION_VALUE = re.compile(r"^[A-Za-z0-9._\-]{1,256}$")
_business_unit_adapter: TypeAdapter[str] = TypeAdapter(BusinessUnitName)
_safe_id_adapter: TypeAdapter[str] = TypeAdapter(SafeId)


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


def check_tenant_id(tenant_id: str) -> str:
    return _segment(
        "tenant_id", tenant_id, _safe_id_adapter, "1-128 of A-Z, a-z, 0-9, '.', '_', ':', '-', no '..'"
    )


def zone_for_table(table: str) -> Zone:
    try:
        return TABLE_ZONES[table]
    except KeyError:
        raise LakeLayoutError("table", f"unknown table {table!r}; known: {sorted(TABLE_ZONES)}") from None


def business_unit_prefix(business_unit: str) -> str:
    """`<business_unit>/`: everything one business unit owns in a zone bucket."""
    return f"{check_business_unit(business_unit)}/"


def tenant_prefix(business_unit: str, tenant_id: str) -> str:
    """`<business_unit>/tenant=<tenant_id>/`: data that belongs to one end user."""
    return f"{business_unit_prefix(business_unit)}tenant={check_tenant_id(tenant_id)}/"


def table_prefix(business_unit: str, table: str) -> str:
    """`<business_unit>/<table>/`: the Glue table location for one business unit."""
    zone_for_table(table)
    return f"{business_unit_prefix(business_unit)}{table}/"


def partition_prefix(business_unit: str, table: str, day: date | str, model: str) -> str:
    """`<business_unit>/<table>/dt=YYYY-MM-DD/model=<model>/`: one Hive partition."""
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
    return f"{table_prefix(business_unit, table)}dt={day.isoformat()}/model={model}/"
