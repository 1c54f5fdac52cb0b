"""The evaluation prompt catalog's record format, shared by the catalog (writer) and the engine (reader).

A dataset is a JSON-lines file; each line is one `EvaluationRecord`. A record either names a prompt in
the catalog (`prompt_ref`, rendered with `variables`) or carries its `input` text directly. A record
with `reference_output` or `labels` is labeled; one without is scored by LLM-as-judge or humans.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from common.lake_layout import DATASET_FILE, shared_dataset_key

RecordId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")]
# "name@version" (immutable) or "name:alias" (moves with the alias), e.g. "summarize@3", "summarize:prod".
PROMPT_REF_PATTERN = r"^[a-z0-9][a-z0-9_\-]{0,63}(@[1-9][0-9]*|:[a-z][a-z0-9_\-]{0,31})$"
PromptRef = Annotated[str, Field(pattern=PROMPT_REF_PATTERN)]


def dataset_version_prefix(business_unit: str, dataset: str) -> str:
    """`<bu>/shared/datasets/<dataset>/`: every version of one dataset in the lake's evaluation_datasets zone."""
    return shared_dataset_key(business_unit, dataset, "1").removesuffix(f"1/{DATASET_FILE}")


def dataset_version_key(business_unit: str, dataset: str, version: int) -> str:
    """`<bu>/shared/datasets/<dataset>/<version>/dataset.jsonl`: one immutable dataset version (the one home
    of evaluation datasets; written only by the prompt catalog, read by every stage of the business unit)."""
    return shared_dataset_key(business_unit, dataset, str(int(version)))


class EvaluationRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: RecordId
    prompt_ref: PromptRef | None = None
    input: Annotated[str, Field(min_length=1, max_length=100_000)] | None = None
    variables: dict[str, str | int | float | bool] = Field(default_factory=dict)
    reference_output: str | None = None
    category: Annotated[str, Field(min_length=1, max_length=64)] = "default"
    labels: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _exactly_one_source(self) -> EvaluationRecord:
        if (self.prompt_ref is None) == (self.input is None):
            raise ValueError("give exactly one of 'prompt_ref' (a catalog prompt) or 'input' (literal text)")
        if self.input is not None and self.variables:
            raise ValueError("'variables' only apply to 'prompt_ref' records")
        return self

    @property
    def is_labeled(self) -> bool:
        return self.reference_output is not None or bool(self.labels)


@dataclass(frozen=True)
class DatasetLineError:
    line_number: int
    message: str


class DatasetFormatError(ValueError):
    """Raised in strict mode for the first malformed line; names the line and the field."""

    def __init__(self, error: DatasetLineError) -> None:
        super().__init__(f"line {error.line_number}: {error.message}")
        self.error = error


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "record"
        parts.append(f"{field}: {err['msg']}")
    return "; ".join(parts)


def parse_line(line: str, line_number: int) -> EvaluationRecord:
    """Parse one JSON line; raise DatasetFormatError naming the line number and field."""
    try:
        raw: Any = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(DatasetLineError(line_number, f"not valid JSON ({exc.msg})")) from None
    try:
        return EvaluationRecord.model_validate(raw)
    except ValidationError as exc:
        raise DatasetFormatError(DatasetLineError(line_number, _describe(exc))) from None


def read_records(
    lines: Iterable[str], *, strict: bool = True, errors: list[DatasetLineError] | None = None
) -> Iterator[EvaluationRecord]:
    """Yield records from JSON lines (1-based numbering, blank lines ignored).

    strict=True raises on the first malformed line; strict=False skips it and appends the problem
    to `errors`, so a run can report every bad line at the end. Duplicate ids are malformed lines too.
    """
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = parse_line(line, number)
            if record.id in seen:
                raise DatasetFormatError(DatasetLineError(number, f"id: duplicate record id {record.id!r}"))
        except DatasetFormatError as exc:
            if strict:
                raise
            if errors is not None:
                errors.append(exc.error)
            continue
        seen.add(record.id)
        yield record


def dump_records(records: Iterable[EvaluationRecord]) -> str:
    """Serialize records as JSON lines (the exact format `read_records` reads)."""
    return "".join(r.model_dump_json(exclude_defaults=True) + "\n" for r in records)
