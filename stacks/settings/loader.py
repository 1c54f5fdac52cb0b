"""Load and validate the platform config, turning pydantic errors into messages a person can act on.

All validation happens here, before any construct exists: the typed models (`stacks/settings/*.py`) check
each section, then `stacks.settings.validation` checks the whole config (reserved names, collisions, name
lengths, GPU types per region). Every problem becomes one line `field: what is wrong and what is allowed`.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from stacks.settings import validation
from stacks.settings.platform import PlatformConfig
from stacks.settings.suggest import did_you_mean

_RELATIVE_FIELD = re.compile(r"^[a-z_][a-z0-9_]*(\[\d+\])?(\.[a-z_][a-z0-9_]*(\[\d+\])?)*$")
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO_ROOT / "config" / "platform.yaml"


class ConfigError(ValueError):
    """Raised for any invalid config; `problems` lists one 'field: what is wrong and what is allowed' each."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"invalid platform config {source}:\n" + "\n".join(f"  - {p}" for p in problems))


# Regular expressions of the config's name fields, in words (a raw regex is no answer for a person).
PATTERN_WORDS: dict[str, str] = {
    r"^[a-z][a-z0-9-]{0,14}[a-z0-9]$": (
        "2-16 characters: lowercase letters, digits and hyphens, starting with a letter and not ending with "
        "a hyphen"
    ),
    r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$": (
        "2-32 characters: lowercase letters, digits and hyphens, starting with a letter and not ending with "
        "a hyphen"
    ),
    r"^[a-z][a-z0-9]{1,9}$": "2-10 characters: lowercase letters and digits, starting with a letter",
    r"^[A-Za-z0-9_.:/=+\-@ ]+$": "letters, digits, spaces and _ . : / = + - @ only",
    r"^ml\.[a-z0-9]+\.[a-z0-9]+$": "a SageMaker instance type such as ml.g5.2xlarge",
}
_QUOTED = re.compile(r"'([^']*)'")


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _field_path(loc: tuple[int | str, ...]) -> str:
    """`business_units[0].serving.stages[1]`; a key that is not a plain word is quoted: `organization[':']`."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            path += f".{part}" if path else part
        else:
            path += f"[{part!r}]"
    return path


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as `list[X]`, `X | None` or `Annotated[X, ...]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """Keys the model at `loc` (the parent of an unknown key) accepts, by their YAML spelling."""
    model: type[BaseModel] | None = PlatformConfig
    for part in loc:
        if model is None:
            return []
        if isinstance(part, int):
            continue
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        model = _model_in(field.annotation) if field else None
    if model is None:
        return []
    return [f.alias or n for n, f in model.model_fields.items()]


def _describe(error: Any) -> str:
    loc: tuple[int | str, ...] = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        keys = _allowed_keys(loc[:-1])
        return f"{_field_path(loc)}: unknown key{did_you_mean(str(loc[-1]), keys)}; allowed keys: {', '.join(keys)}"
    if kind == "missing":
        return f"{_field_path(loc)}: required but missing"
    message = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind in ("enum", "literal_error"):
        choices = _QUOTED.findall(str(error.get("ctx", {}).get("expected", "")))
        message = f"{message} (got {error['input']!r}){did_you_mean(str(error['input']), choices)}"
    elif kind == "string_pattern_mismatch":
        pattern = str(error.get("ctx", {}).get("pattern", ""))
        words = PATTERN_WORDS.get(pattern, f"text matching the pattern {pattern}")
        message = f"{error['input']!r} is not allowed here: write {words}"
    path = _field_path(loc)
    # Cross-field checks name the field they are about ("sandbox_account: required ..."), relative to loc.
    head, sep, rest = message.partition(": ")
    if sep and _RELATIVE_FIELD.match(head):
        return f"{path}.{head}: {rest}" if path else f"{head}: {rest}"
    return f"{path}: {message}" if path else message


def parse_config(raw: Any, source: str = "<memory>") -> PlatformConfig:
    if not isinstance(raw, dict):
        raise ConfigError(
            source,
            ["(top level): the file must hold a YAML mapping with the platform settings at its top level"],
        )
    try:
        config = PlatformConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(source, [_describe(e) for e in exc.errors()]) from None
    found = validation.problems(config)
    if found:
        raise ConfigError(source, found)
    return config


def load_config(path: str | Path | None = None) -> PlatformConfig:
    """Load the config named by `path` (relative to the repository root) or the embedded default."""
    config_path = Path(path) if path else DEFAULT_CONFIG
    if not config_path.is_absolute():
        config_path = REPO_ROOT / config_path
    if not config_path.is_file():
        raise ConfigError(
            str(config_path),
            [
                "config: file not found; give a path relative to the repository root, such as config/sandbox.yaml"
            ],
        )
    try:
        raw = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(exc, "problem", None) or "unreadable"
        raise ConfigError(str(config_path), [f"config: not valid YAML{line}: {problem}"]) from None
    return parse_config(raw, str(config_path))
