"""Template checks and rendering with jinja2's sandbox.

`ImmutableSandboxedEnvironment` blocks attribute access to internals, code execution and mutation of
values; `StrictUndefined` turns any unknown name into an error instead of an empty string. Save-time
checks compare the declared variables with the names the template reads; render-time checks compare
the supplied values with the declarations, so every mistake names its variable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, meta
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.nodes import Template as TemplateAst
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import BadRequestError, UnprocessableError
from .models import VariableSpec, VariableValue

_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)

_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def _parse(template: str) -> TemplateAst:
    try:
        return _ENV.parse(template)
    except TemplateSyntaxError as exc:
        raise BadRequestError("template", f"syntax error on line {exc.lineno}: {exc.message}") from None


def check_template(
    template: str, variables: Sequence[VariableSpec], *, max_bytes: int, max_variables: int
) -> None:
    """Reject a template at save time: too large, bad syntax, or declarations that differ from its use."""
    if len(template.encode()) > max_bytes:
        raise BadRequestError("template", f"larger than {max_bytes} bytes")
    if len(variables) > max_variables:
        raise BadRequestError("variables", f"more than {max_variables} declared")
    used = meta.find_undeclared_variables(_parse(template)) - set(_ENV.globals)
    declared = {v.name for v in variables}
    for name in sorted(used - declared):
        raise BadRequestError(f"variables.{name}", "used by the template but not declared")
    for name in sorted(declared - used):
        raise BadRequestError(f"variables.{name}", "declared but not used by the template")


def check_values(
    variables: Sequence[VariableSpec], values: Mapping[str, object], field: str = "variables"
) -> None:
    """Render-time check: every declared variable given, nothing extra, each of its declared type."""
    declared = {v.name: v for v in variables}
    for name in sorted(set(values) - set(declared)):
        raise UnprocessableError(f"{field}.{name}", "not declared by the template")
    for spec in variables:
        if spec.name not in values:
            raise UnprocessableError(f"{field}.{spec.name}", f"missing (expected {spec.type})")
        value = values[spec.name]
        # bool is an int subclass in Python; a JSON true is not a number here.
        wrong_bool = isinstance(value, bool) and spec.type != "boolean"
        if wrong_bool or not isinstance(value, _PYTHON_TYPES[spec.type]):
            raise UnprocessableError(
                f"{field}.{spec.name}", f"expected {spec.type}, got {type(value).__name__}"
            )


@lru_cache(maxsize=512)
def _compiled(template: str) -> Template:
    return _ENV.from_string(template)


def render(template: str, variables: Sequence[VariableSpec], values: Mapping[str, VariableValue]) -> str:
    check_values(variables, values)
    try:
        return str(_compiled(template).render(dict(values)))
    except SecurityError as exc:
        raise UnprocessableError("template", f"blocked by the sandbox: {exc}") from None
    except TemplateError as exc:
        raise UnprocessableError("template", f"failed to render: {exc}") from None
    except (ArithmeticError, TypeError, ValueError) as exc:
        # A template expression that fails on these values (e.g. division by zero) is the author's error.
        raise UnprocessableError("template", f"failed to render: {exc}") from None
