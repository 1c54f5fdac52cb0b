"""Request and stored-document models of the catalog: prompts, chains and evaluation datasets.

Names follow `common.evaluation_dataset.PROMPT_REF_PATTERN`, so `name@3` / `name:prod` references in
datasets and chains always parse.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.evaluation_dataset import PromptRef

ResourceName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,63}$")]
AliasName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_\-]{0,31}$")]
VariableName = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,63}$")]
StepId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
# Where a chain step's variable comes from: the chain request, or an earlier step's output text.
InputSource = Annotated[
    str, Field(pattern=r"^(request\.[a-z_][a-z0-9_]{0,63}|steps\.[a-z][a-z0-9_]{0,63}\.output)$")
]
Tag = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/=+\-@ ]*$")]
VariableType = Literal["string", "integer", "number", "boolean"]
VariableValue = str | int | float | bool

Kind = Literal["prompt", "chain", "dataset"]
KINDS: tuple[Kind, ...] = ("prompt", "chain", "dataset")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VariableSpec(Strict):
    name: VariableName
    type: VariableType = "string"
    description: Annotated[str, Field(max_length=512)] = ""


class ModelParameters(Strict):
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.5
    max_tokens: Annotated[int, Field(ge=1, le=200_000)] = 1024
    stop_sequences: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=256)]], Field(max_length=8)
    ] = Field(default_factory=list)


class ResourceMeta(Strict):
    """Fields set once, when a prompt, chain or dataset is created."""

    name: ResourceName
    description: Annotated[str, Field(max_length=1024)] = ""
    tags: Annotated[list[Tag], Field(max_length=20)] = Field(default_factory=list)
    # No `owner`: the owner is the caller's verified identity, never what the body says (extra fields are 400).


class PromptContent(Strict):
    """One immutable prompt version."""

    template: Annotated[str, Field(min_length=1)]
    variables: list[VariableSpec] = Field(default_factory=list)
    model_parameters: ModelParameters = Field(default_factory=ModelParameters)
    comment: Annotated[str, Field(max_length=1024)] = ""

    @model_validator(mode="after")
    def _unique_variables(self) -> PromptContent:
        _reject_duplicate_names([v.name for v in self.variables], "variables")
        return self


class ChainStep(Strict):
    id: StepId
    prompt: PromptRef
    inputs: dict[VariableName, InputSource] = Field(default_factory=dict)


class ChainContent(Strict):
    """One immutable chain version: request variables and steps (validated as a graph on save)."""

    variables: list[VariableSpec] = Field(default_factory=list)
    steps: Annotated[list[ChainStep], Field(min_length=1)]
    output: StepId | None = None
    comment: Annotated[str, Field(max_length=1024)] = ""

    @model_validator(mode="after")
    def _unique_names(self) -> ChainContent:
        _reject_duplicate_names([v.name for v in self.variables], "variables")
        _reject_duplicate_names([s.id for s in self.steps], "steps")
        return self


class DatasetContent(Strict):
    """One dataset version: records inline (`records`) or as JSON-lines text (`jsonl`), not both."""

    records: list[dict[str, object]] | None = None
    jsonl: str | None = None
    comment: Annotated[str, Field(max_length=1024)] = ""

    @model_validator(mode="after")
    def _one_source(self) -> DatasetContent:
        if (self.records is None) == (self.jsonl is None):
            raise ValueError("give exactly one of 'records' (a JSON list) or 'jsonl' (JSON-lines text)")
        return self


class AcceptRecords(Strict):
    """Records accepted into a dataset (review API): the next version is the latest one plus these."""

    records: Annotated[list[dict[str, object]], Field(min_length=1, max_length=1000)]
    accepted_by: Annotated[str, Field(min_length=1, max_length=512)]
    source: Annotated[str, Field(min_length=1, max_length=128)] = "review"
    comment: Annotated[str, Field(max_length=1024)] = ""


class CreatePrompt(ResourceMeta, PromptContent):
    pass


class CreateChain(ResourceMeta, ChainContent):
    pass


class CreateDataset(ResourceMeta, DatasetContent):
    pass


class MoveAlias(Strict):
    version: Annotated[int, Field(ge=1, strict=True)]


class Selector(Strict):
    """Which version to use: a number or an alias; neither means the latest version."""

    version: Annotated[int, Field(ge=1, strict=True)] | None = None
    alias: AliasName | None = None

    @model_validator(mode="after")
    def _not_both(self) -> Selector:
        if self.version is not None and self.alias is not None:
            raise ValueError("give 'version' or 'alias', not both")
        return self


class RenderPrompt(Selector):
    variables: dict[VariableName, VariableValue] = Field(default_factory=dict)


class RenderChain(Selector):
    variables: dict[VariableName, VariableValue] = Field(default_factory=dict)
    step_outputs: dict[StepId, str] = Field(default_factory=dict)


class RenderDataset(Selector):
    pass


def _reject_duplicate_names(names: list[str], field: str) -> None:
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name in seen:
            raise ValueError(f"{field}[{index}]: duplicate name {name!r}")
        seen.add(name)
