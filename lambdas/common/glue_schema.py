"""Glue table definitions derived from the lake record models, and a column check for Athena SQL.

The data lake stack declares its tables from `TABLES`, so the columns cannot drift from what the
writer stores. One table per business unit spans its stages: objects sit under
`<bu>/<stage>/<table>/dt=YYYY-MM-DD/model=<model>/`, and the Glue tables partition by `stage` (an enum
projection; Lake Formation's per-stage data cells filters select on it) and `dt`, not `model`: Athena
projects `dt` from a date range (no crawler, no partition registration), while projecting
`model` would need the `injected` type, which refuses any query without `model = <literal>` (so no
"per model" comparison could run). Athena reads the `model=` folders below a day; queries group by
the `model_id` column instead.

`check_query` needs sqlglot, a test/tooling dependency (requirements-dev.txt): it is imported inside
the function so that the stack and the Lambdas can import this module without it.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from common.lake_layout import TABLE_ZONES, Zone
from common.lake_records import LAKE_RECORD_TYPES, PARTITION_KEYS, LakeRecord

# Glue partition keys: the key scheme's stage segment and `dt` of PARTITION_KEYS (see the module docstring).
GLUE_PARTITION_KEYS: tuple[str, ...] = ("stage", "dt")

# The writer stores pydantic's JSON: one object a line, timestamps as ISO 8601 in UTC.
JSON_SERDE = "org.openx.data.jsonserde.JsonSerDe"
INPUT_FORMAT = "org.apache.hadoop.mapred.TextInputFormat"
OUTPUT_FORMAT = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"

_SCALARS: dict[type, str] = {
    bool: "boolean",  # before int: bool is an int subclass
    int: "bigint",
    float: "double",
    str: "string",
    datetime: "timestamp",
    date: "date",
}


@dataclass(frozen=True)
class GlueColumn:
    name: str
    type: str


@dataclass(frozen=True)
class GlueTable:
    name: str
    zone: Zone
    columns: tuple[GlueColumn, ...]
    partition_keys: tuple[GlueColumn, ...]

    def column_names(self) -> set[str]:
        return {c.name for c in self.columns + self.partition_keys}


class SchemaError(ValueError):
    """A model field has no Hive type, or a query references a column a table does not have."""


def hive_type(annotation: Any) -> str:
    """The Hive type for a pydantic field annotation (Optional unwrapped: every column is nullable)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return hive_type(args[0])
    if origin in (Union, types.UnionType):
        non_null = [a for a in args if a is not type(None)]
        if len(non_null) == 1:
            return hive_type(non_null[0])
        raise SchemaError(f"union {annotation!r} has no single Hive type")
    if origin is Literal:
        return hive_type(type(args[0]))
    if origin is dict:
        return f"map<{hive_type(args[0])},{hive_type(args[1])}>"
    if origin in (list, tuple, set, frozenset):
        return f"array<{hive_type(args[0])}>"
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            fields = ",".join(
                f"{name}:{hive_type(f.annotation)}" for name, f in annotation.model_fields.items()
            )
            return f"struct<{fields}>"
        if issubclass(annotation, Enum):
            return hive_type(type(next(iter(annotation)).value))
        for python_type, hive in _SCALARS.items():
            if issubclass(annotation, python_type):
                return hive
    raise SchemaError(f"no Hive type for {annotation!r}")


def columns_for(record_type: type[LakeRecord]) -> tuple[GlueColumn, ...]:
    return tuple(
        GlueColumn(name, hive_type(field.annotation))
        for name, field in record_type.model_fields.items()
        if name not in PARTITION_KEYS
    )


def table_for(record_type: type[LakeRecord]) -> GlueTable:
    return GlueTable(
        name=record_type.TABLE,
        zone=TABLE_ZONES[record_type.TABLE],
        columns=columns_for(record_type),
        partition_keys=tuple(GlueColumn(key, "string") for key in GLUE_PARTITION_KEYS),
    )


TABLES: dict[str, GlueTable] = {t.TABLE: table_for(t) for t in LAKE_RECORD_TYPES}


def check_query(sql: str, tables: Mapping[str, GlueTable] = TABLES, *, dialect: str = "athena") -> None:
    """Raise `SchemaError` if `sql` references a table or column that `tables` does not declare.

    Table names may be qualified with a database (`finance_lake.ratings`); only the table part is
    matched. Positional parameters (`?`) are allowed.
    """
    import sqlglot  # a test/tooling dependency: imported here, see the module docstring
    from sqlglot import exp
    from sqlglot.errors import OptimizeError, ParseError
    from sqlglot.optimizer.qualify import qualify

    try:
        expression = sqlglot.parse_one(sql, dialect=dialect)
    except ParseError as error:
        raise SchemaError(f"query does not parse: {error}") from None
    for table in expression.find_all(exp.Table):
        if table.name not in tables:
            raise SchemaError(f"unknown table {table.name!r}; known: {sorted(tables)}")
        table.set("db", None)  # one schema for every business unit's database
        table.set("catalog", None)
    schema: dict[str, object] = {
        name: {c.name: "string" for c in t.columns + t.partition_keys} for name, t in tables.items()
    }
    try:
        qualify(expression, schema=schema, dialect=dialect, validate_qualify_columns=True)
    except OptimizeError as error:
        raise SchemaError(f"query references a column the table does not have: {error}") from None
