"""Template checks and bounded rendering with jinja2's sandbox.

`ImmutableSandboxedEnvironment` blocks attribute access to internals, code execution and mutation of
values; `StrictUndefined` turns any unknown name into an error instead of an empty string. Save-time
checks compare the declared variables with the names the template reads and trial-render the template
with sample values of the declared types; render-time checks compare the supplied values with the
declarations, so every mistake names its variable.

The sandbox alone does not bound cost: nested loops run for hours, `'x' * 10**9` or
`s|replace('', s)` allocate gigabytes, a macro that calls itself exhausts the stack, and jinja's
compile-time constant folding evaluates `2**30000000` before anything is rendered. Rendering here is
therefore bounded by a per-render budget (`RenderLimits`):

- steps: every loop iteration, call, attribute and item lookup costs one step (loops are counted by
  wrapping each `{% for %}` iterable in the parse tree, calls and lookups by the sandbox's hooks);
- depth: nested calls (macros calling macros, recursive loops) stop at `max_depth`;
- output: the rendered text is streamed and stops at `max_bytes` of UTF-8; operators and string
  methods that would build a larger value (`*`, `**`, `%`, `replace`, `center`, `join`, `format`...)
  are refused before they allocate it.

Intercepting `*`, `**` and `%` also stops their constant folding at compile time. A template that
breaks a bound is the author's error: `RenderLimitError` is an `UnprocessableError` (422 at render,
400 at save, where the trial render runs) whose message names the template.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.filters import FILTERS
from jinja2.nodes import Template as TemplateAst
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import BadRequestError, UnprocessableError
from .models import VariableSpec, VariableValue

_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}
# Trial-render values per declared type: non-zero and non-empty, so ordinary arithmetic and loops run.
SAMPLE_VALUES: dict[str, VariableValue] = {
    "string": "sample text",
    "integer": 7,
    "number": 2.5,
    "boolean": True,
}
_LOOP_FILTER = "_bounded_loop"
# Any number this long in a format string is a width or precision that could expand the output.
_FORMAT_NUMBER = re.compile(r"\d+")
# A replacement field whose spec holds another field, e.g. '{:{}}': the width comes from an argument.
_NESTED_FIELD = re.compile(r"\{[^{}]*\{")


class RenderLimitError(UnprocessableError):
    """A template exceeded its render budget (steps, depth or output size)."""


@dataclass(frozen=True)
class RenderLimits:
    max_steps: int = 100_000
    max_depth: int = 20
    max_bytes: int = 1_000_000


DEFAULT_LIMITS = RenderLimits()


@dataclass
class _Budget:
    limits: RenderLimits
    name: str
    steps: int = 0
    depth: int = 0
    output: int = field(default=0)

    def step(self, count: int = 1) -> None:
        self.steps += count
        if self.steps > self.limits.max_steps:
            raise RenderLimitError(
                "template", f"{self.name}: more than {self.limits.max_steps} render steps (loops, calls)"
            )

    def size(self, estimate: int) -> None:
        if estimate > self.limits.max_bytes:
            raise RenderLimitError(
                "template", f"{self.name}: would render more than {self.limits.max_bytes} bytes"
            )


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("render_budget", default=None)


def _budget() -> _Budget:
    # Outside `render` (e.g. jinja evaluating an expression while compiling) the default limits apply.
    return _BUDGET.get() or _Budget(DEFAULT_LIMITS, "template")


def _length(value: Any) -> int:
    return len(value) if isinstance(value, str | list | tuple) else 0


def _check_format(fmt: Any, args: Any = ()) -> None:
    """Refuse a format string whose widths or precisions (literal, or taken from the arguments with `*`
    or a nested `{}`) would build more than the output budget."""
    if not isinstance(fmt, str):
        return
    budget = _budget()
    # Digit runs are compared by length first: a 40-digit width is not converted to an int.
    numbers = _FORMAT_NUMBER.findall(fmt)
    widest = max((int(n) if len(n) < 12 else 10**12 for n in numbers), default=0)
    if "*" in fmt or _NESTED_FIELD.search(fmt):
        values = (
            args.values()
            if isinstance(args, Mapping)
            else args
            if isinstance(args, tuple | list)
            else (args,)
        )
        widest = max([widest, *(abs(v) for v in values if isinstance(v, int) and not isinstance(v, bool))])
    budget.size(len(fmt) + widest)


def _sized(items: Any) -> Any:
    """A list of `items` (a generator or range materialized) so its length can be checked."""
    if isinstance(items, list | tuple | str):
        return items
    return list(_bounded_loop(items))


def _check_expansion(obj: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    """Refuse str methods whose result would exceed the output budget, before they allocate it; return
    the arguments to call with (an iterable given to `join` is materialized so it can be measured)."""
    target = getattr(obj, "__wrapped__", obj)  # the sandbox wraps str.format
    owner, name = getattr(target, "__self__", None), getattr(target, "__name__", "")
    if not isinstance(owner, str):
        return args
    budget = _budget()
    if name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        old, new = args[0], args[1]
        occurrences = len(owner) + 1 if old == "" else owner.count(old)
        if len(args) > 2 and isinstance(args[2], int) and args[2] >= 0:
            occurrences = min(occurrences, args[2])
        budget.size(len(owner) + occurrences * max(len(new) - len(old), 0))
    elif name in ("center", "ljust", "rjust", "zfill") and args and isinstance(args[0], int):
        budget.size(max(len(owner), args[0]))
    elif name == "expandtabs":
        tabsize = args[0] if args and isinstance(args[0], int) else kwargs.get("tabsize", 8)
        budget.size(len(owner) * max(int(tabsize), 1))
    elif name == "join" and args:
        items = _sized(args[0])
        budget.size(len(owner) * len(items) + sum(_length(item) for item in items))
        return (items, *args[1:])
    elif name in ("format", "format_map"):
        _check_format(owner, (*args, *kwargs.values()) if name == "format" else (args[0] if args else {}))
    return args


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    # Intercepted operators go through call_binop (and are not constant-folded at compile time).
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget = _budget()
        budget.step()
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int):
                    budget.size(len(seq) * times)
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1:
            # Result digits ~ bits * log10(2); Python refuses to print ints over 4300 digits anyway.
            if right > 0 and abs(left).bit_length() * right > 4 * 4300:
                raise RenderLimitError("template", f"{budget.name}: '**' result too large")
        elif operator == "%" and isinstance(left, str):
            _check_format(left, right)
        elif (
            operator == "+" and isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple)
        ):
            budget.size(len(left) + len(right))
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        _budget().step()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _budget().step()
        return super().getitem(obj, argument)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        budget = _budget()
        budget.step()
        args = _check_expansion(__obj, args, kwargs)
        if budget.depth >= budget.limits.max_depth:
            raise RenderLimitError(
                "template", f"{budget.name}: calls nested deeper than {budget.limits.max_depth} (recursion)"
            )
        budget.depth += 1
        try:
            return super().call(__context, __obj, *args, **kwargs)
        finally:
            budget.depth -= 1


def _bounded_loop(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = _budget()
    for item in iterable:
        budget.step()
        yield item


def _bounded_filter(name: str, check: Callable[..., None]) -> Callable[..., Any]:
    original = FILTERS[name]

    def bounded(*args: Any, **kwargs: Any) -> Any:
        check(*args, **kwargs)
        return original(*args, **kwargs)

    bounded.__name__ = original.__name__
    # Keep jinja's pass_context / pass_eval_context markers.
    bounded.jinja_pass_arg = getattr(original, "jinja_pass_arg", None)  # type: ignore[attr-defined]
    return bounded


def _width_check(position: int, keyword: str) -> Callable[..., None]:
    def check(*args: Any, **kwargs: Any) -> None:
        width = kwargs.get(keyword, args[position] if len(args) > position else 0)
        if isinstance(width, int):
            text = next((a for a in args if isinstance(a, str)), "")
            lines = text.count("\n") + 1
            _budget().size(len(text) + width * lines)

    return check


def _replace_check(*args: Any, **kwargs: Any) -> None:
    strings = [a for a in args if isinstance(a, str)]
    if len(strings) >= 3:
        _check_expansion(strings[0].replace, tuple(strings[1:3]), {})


def _format_check(*args: Any, **kwargs: Any) -> None:
    # do_format(value, *args, **kwargs): the format string, then its arguments.
    fmt_index = next((i for i, a in enumerate(args) if isinstance(a, str)), None)
    if fmt_index is not None:
        _check_format(args[fmt_index], (*args[fmt_index + 1 :], *kwargs.values()))


def _bounded_join(*args: Any, **kwargs: Any) -> Any:
    # do_join(eval_ctx, value, d="", attribute=None): materialize the value so its size can be checked.
    eval_ctx, value, *rest = args
    items = _sized(value)
    sep = kwargs.get("d", rest[0] if rest and isinstance(rest[0], str) else "")
    _budget().size(len(sep) * len(items) + sum(_length(i) for i in items))
    return FILTERS["join"](eval_ctx, items, *rest, **kwargs)


_ENV = _BoundedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
_ENV.filters[_LOOP_FILTER] = _bounded_loop
_ENV.filters["center"] = _bounded_filter("center", _width_check(1, "width"))
_ENV.filters["indent"] = _bounded_filter("indent", _width_check(1, "width"))
_ENV.filters["replace"] = _bounded_filter("replace", _replace_check)
_ENV.filters["format"] = _bounded_filter("format", _format_check)
_bounded_join.jinja_pass_arg = FILTERS["join"].jinja_pass_arg  # type: ignore[attr-defined]
_ENV.filters["join"] = _bounded_join


def _parse(template: str) -> TemplateAst:
    try:
        return _ENV.parse(template)
    except TemplateSyntaxError as exc:
        raise BadRequestError("template", f"syntax error on line {exc.lineno}: {exc.message}") from None


def _with_loop_budget(ast: TemplateAst) -> TemplateAst:
    """Wrap every `{% for %}` iterable so that each iteration costs a step."""
    for loop in ast.find_all(nodes.For):
        loop.iter = nodes.Filter(loop.iter, _LOOP_FILTER, [], [], None, None, lineno=loop.lineno)
    return ast


def check_template(
    template: str,
    variables: Sequence[VariableSpec],
    *,
    max_bytes: int,
    max_variables: int,
    limits: RenderLimits = DEFAULT_LIMITS,
    name: str = "template",
) -> None:
    """Reject a template at save time: too large, bad syntax, declarations that differ from its use, or a
    trial render with sample values of the declared types that fails or breaks a render bound."""
    if len(template.encode()) > max_bytes:
        raise BadRequestError("template", f"larger than {max_bytes} bytes")
    if len(variables) > max_variables:
        raise BadRequestError("variables", f"more than {max_variables} declared")
    used = meta.find_undeclared_variables(_parse(template)) - set(_ENV.globals)
    declared = {v.name for v in variables}
    for unused in sorted(used - declared):
        raise BadRequestError(f"variables.{unused}", "used by the template but not declared")
    for unused in sorted(declared - used):
        raise BadRequestError(f"variables.{unused}", "declared but not used by the template")
    samples = {v.name: SAMPLE_VALUES[v.type] for v in variables}
    try:
        render(template, variables, samples, limits=limits, name=name)
    except UnprocessableError as exc:
        raise BadRequestError("template", f"trial render with sample values failed: {exc.message}") from None


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
    try:
        return _ENV.from_string(_with_loop_budget(_parse(template)))
    except BadRequestError as exc:
        raise UnprocessableError("template", exc.message) from None


def render(
    template: str,
    variables: Sequence[VariableSpec],
    values: Mapping[str, VariableValue],
    *,
    limits: RenderLimits = DEFAULT_LIMITS,
    name: str = "template",
) -> str:
    """The rendered text, or UnprocessableError (field `template`, message naming `name`)."""
    check_values(variables, values)
    budget = _Budget(limits, name)
    token = _BUDGET.set(budget)
    chunks: list[str] = []
    try:
        for chunk in _compiled(template).generate(dict(values)):
            budget.output += len(chunk.encode("utf-8", "surrogatepass"))
            budget.size(budget.output)
            chunks.append(chunk)
    except UnprocessableError as exc:
        raise type(exc)("template", exc.message) from None
    except SecurityError as exc:
        raise UnprocessableError("template", f"{name}: blocked by the sandbox: {exc}") from None
    except TemplateError as exc:
        raise UnprocessableError("template", f"{name}: failed to render: {exc}") from None
    except RecursionError:
        raise RenderLimitError("template", f"{name}: recursion too deep") from None
    except MemoryError:
        raise RenderLimitError("template", f"{name}: ran out of memory") from None
    except (ArithmeticError, AttributeError, TypeError, ValueError, LookupError) as exc:
        # A template expression that fails on these values (e.g. division by zero) is the author's error.
        raise UnprocessableError("template", f"{name}: failed to render: {exc}") from None
    finally:
        _BUDGET.reset(token)
    return "".join(chunks)
