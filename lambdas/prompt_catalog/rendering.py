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
  methods that would build a larger string (`*`, `**`, `%`, `~`, `replace`, `center`, `join`,
  `format`...) are refused before they allocate it;
- memory: every value the template builds (operator, call and filter results, slices, list and dict
  literals, text written inside loops, macros and blocks) is measured when it is made and charged to
  `max_memory_bytes`; one value may take at most a quarter of it. A value is measured expanded, each
  reference counted (`['x' * 10**6] * 1000` is a gigabyte, as `str()` or `tojson` would write it), so
  no later linear step (`string`, `tojson`, `map('upper')`) can amplify a small value into a large one.
  Operations whose result can outgrow their inputs (`*` on lists and integers, `batch` with a fill,
  `slice`, `indent` and `wordwrap` with long strings, `tojson` indentation, `lipsum`, `str.translate`)
  are estimated before they run.

Intercepting the operators also stops their constant folding at compile time. A template that breaks a
bound is the author's error: `RenderLimitError` is an `UnprocessableError` (422 at render, 400 at save,
where the trial render runs) whose message names the template.
"""

from __future__ import annotations

import contextvars
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.filters import FILTERS
from jinja2.nodes import EvalContext
from jinja2.nodes import Template as TemplateAst
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace
from jinja2.visitor import NodeTransformer

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
_VALUE_FILTER = "_bounded_value"
_TEXT_FILTER = "_bounded_text"
_CONCAT_FILTER = "_bounded_concat"
# Any number this long in a format string is a width or precision that could expand the output.
_FORMAT_NUMBER = re.compile(r"\d+")
# A replacement field whose spec holds another field, e.g. '{:{}}': the width comes from an argument.
_NESTED_FIELD = re.compile(r"\{[^{}]*\{")
# Integers: Python refuses to print more than 4,300 digits, so larger products only cost memory and time.
_MAX_INT_BITS = 4 * 4300
# `tojson` indentation is written once per nesting level on every line: keep it a formatting choice.
_MAX_JSON_INDENT = 8
# Lorem ipsum words average under 12 bytes with their separators.
_LIPSUM_WORD_BYTES = 12
_POINTER_BYTES = 8
_REMEMBERED_LENGTH = 256
_SCALARS = {str, int, float, bool, type(None)}
# Parse-tree nodes whose body may run many times per render (or is buffered instead of streamed): the text
# they write is charged to the memory budget.
_REPEATED_BODIES = (
    nodes.For,
    nodes.Macro,
    nodes.CallBlock,
    nodes.FilterBlock,
    nodes.AssignBlock,
    nodes.Block,
)


class RenderLimitError(UnprocessableError):
    """A template exceeded its render budget (steps, depth, output size or memory)."""


@dataclass(frozen=True)
class RenderLimits:
    max_steps: int = 100_000
    max_depth: int = 20
    max_bytes: int = 1_000_000
    max_memory_bytes: int = 32_000_000

    @property
    def max_value_bytes(self) -> int:
        return self.max_memory_bytes // 4


DEFAULT_LIMITS = RenderLimits()


@dataclass
class _Budget:
    limits: RenderLimits
    name: str
    steps: int = 0
    depth: int = 0
    output: int = field(default=0)
    memory: int = 0
    # id -> (container, expanded size): large immutable containers are measured once; holding them keeps
    # their ids unique.
    sizes: dict[int, tuple[Any, int]] = field(default_factory=dict)

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

    def value_size(self, estimate: int) -> None:
        """Refuse, before it is built, a value estimated to take more than one value's share of memory."""
        if estimate > self.limits.max_value_bytes:
            raise RenderLimitError(
                "template",
                f"{self.name}: a value would take more than {self.limits.max_value_bytes} bytes of memory",
            )

    def charge(self, value: Any) -> Any:
        """Measure a value the template just built and charge it to the memory budget; return it."""
        size = self.footprint(value)
        self.value_size(size)
        self.memory += size
        if self.memory > self.limits.max_memory_bytes:
            raise RenderLimitError(
                "template",
                f"{self.name}: built more than {self.limits.max_memory_bytes} bytes of values while rendering",
            )
        return value

    def footprint(self, value: Any) -> int:
        """Bytes `value` takes expanded: each reference to an item counts the item again. Counting stops
        just past the value limit, so measuring costs at most that many items."""
        return self._measure(value, set(), self.limits.max_value_bytes)

    def _measure(self, value: Any, visiting: set[int], cap: int) -> int:
        if isinstance(value, str | bytes | int | float) or value is None:
            return sys.getsizeof(value)
        key = id(value)
        cached = self.sizes.get(key)
        if cached is not None and cached[0] is value:
            return cached[1]
        children: Iterable[Any]
        if isinstance(value, Namespace):  # mutable through `{% set ns.x %}`: never cached
            children = object.__getattribute__(value, "_Namespace__attrs").items()
        elif isinstance(value, dict):
            children = value.items()
        elif isinstance(value, list | tuple | set | frozenset):
            children = value
        else:  # generators, ranges, macros, loop objects: what they yield is measured where it is built
            return sys.getsizeof(value)
        if key in visiting:  # a namespace that holds itself
            return _POINTER_BYTES
        total = sys.getsizeof(value)
        if children is value and set(map(type, value)) <= _SCALARS:
            # Flat sequences (`range(n)|list`, a split string) are measured at C speed.
            total += sum(map(sys.getsizeof, value))
            self._remember(value, total)
            return total
        visiting.add(key)
        for child in children:
            total += self._measure(child, visiting, cap)
            if total > cap:
                break
        visiting.discard(key)
        if not isinstance(value, Namespace):
            self._remember(value, total)
        return total

    def _remember(self, value: Any, size: int) -> None:
        # Only large containers: the cache holds them alive, and small ones are cheap to measure again.
        if len(value) >= _REMEMBERED_LENGTH:
            self.sizes[id(value)] = (value, size)


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("render_budget", default=None)


def _budget() -> _Budget:
    # Outside `render` (e.g. jinja evaluating an expression while compiling) the default limits apply.
    return _BUDGET.get() or _Budget(DEFAULT_LIMITS, "template")


def _length(value: Any) -> int:
    return len(value) if isinstance(value, str | list | tuple) else 0


def _check_format(fmt: Any, args: Any = ()) -> None:
    """Refuse a format string whose widths or precisions (literal, or taken from the arguments with `*`
    or a nested `{}`) or whose arguments would build more than the output budget."""
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
    # The arguments are written into the result: a tuple naming one large string many times is as large.
    budget.value_size(budget.footprint(args))


def _sized(items: Any) -> Any:
    """A list of `items` (a generator or range materialized) so its length can be checked."""
    if isinstance(items, list | tuple | str):
        return items
    return list(_bounded_loop(items))


def _check_lipsum(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    # generate_lorem_ipsum(n=5, html=True, min=20, max=100): n paragraphs of up to `max` words.
    paragraphs = kwargs.get("n", args[0] if args else 5)
    words = kwargs.get("max", args[3] if len(args) > 3 else 100)
    if isinstance(paragraphs, int) and isinstance(words, int):
        _budget().size(max(paragraphs, 0) * max(words, 0) * _LIPSUM_WORD_BYTES)


def _check_expansion(obj: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    """Refuse calls whose result would exceed the output budget, before they allocate it; return the
    arguments to call with (an iterable given to `join` is materialized so it can be measured)."""
    if obj is _LIPSUM:
        _check_lipsum(args, kwargs)
        return args
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
    elif name == "translate" and args and isinstance(args[0], Mapping):
        longest = max((_length(v) for v in args[0].values()), default=1)
        budget.size(len(owner) * max(longest, 1))
    elif name == "join" and args:
        items = _sized(args[0])
        budget.size(len(owner) * len(items) + sum(_length(item) for item in items))
        return (items, *args[1:])
    elif name in ("format", "format_map"):
        _check_format(owner, (*args, *kwargs.values()) if name == "format" else (args[0] if args else {}))
    return args


def _check_multiplication(budget: _Budget, left: Any, right: Any) -> None:
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, str | list | tuple) and isinstance(times, int):
            budget.size(len(seq) * times)
            if not isinstance(seq, str):  # a list repeats references: its items count again each time
                budget.value_size(budget.footprint(seq) * times)
    both_ints = isinstance(left, int) and isinstance(right, int)
    if both_ints and left.bit_length() + right.bit_length() > _MAX_INT_BITS:
        raise RenderLimitError("template", f"{budget.name}: '*' result too large")


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    # Every operator goes through call_binop (and none is constant-folded at compile time).
    intercepted_binops = frozenset({"*", "**", "%", "+", "-", "/", "//"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget = _budget()
        budget.step()
        if operator == "*":
            _check_multiplication(budget, left, right)
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1:
            # Result bits ~ bits(left) * right.
            if right > 0 and abs(left).bit_length() * right > _MAX_INT_BITS:
                raise RenderLimitError("template", f"{budget.name}: '**' result too large")
        elif operator == "%" and isinstance(left, str):
            _check_format(left, right)
        elif (
            operator == "+" and isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple)
        ):
            budget.size(len(left) + len(right))
        return budget.charge(super().call_binop(context, operator, left, right))

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
            return budget.charge(super().call(__context, __obj, *args, **kwargs))
        finally:
            budget.depth -= 1


def _bounded_loop(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = _budget()
    for item in iterable:
        budget.step()
        yield item


def _bounded_value(value: Any) -> Any:
    """A list, tuple or dict literal: measured like any other value the template builds."""
    return _budget().charge(value)


def _bounded_text(value: Any) -> str:
    """Text written inside a loop, macro or block body: it may be buffered, so it is charged."""
    text = str(value)
    _budget().charge(text)
    return text


def _bounded_concat(operands: Sequence[Any]) -> str:
    """`a ~ b ~ ...`: each operand converted in turn, stopping as soon as the total is too large."""
    budget = _budget()
    parts, total = [], 0
    for operand in operands:
        part = str(operand)
        total += len(part)
        budget.size(total)
        parts.append(part)
    return budget.charge("".join(parts))


def _filter_args(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """A filter's own arguments: without jinja's context, eval context or environment passed first."""
    return tuple(a for a in args if not isinstance(a, Context | EvalContext | ImmutableSandboxedEnvironment))


def _bounded_filter(name: str, check: Callable[..., None] | None = None) -> Callable[..., Any]:
    """jinja's filter `name`, with `check` run on its arguments first and its result charged to memory."""
    original = FILTERS[name]

    def bounded(*args: Any, **kwargs: Any) -> Any:
        if check is not None:
            check(*args, **kwargs)
        return _budget().charge(original(*args, **kwargs))

    bounded.__name__ = original.__name__
    # Keep jinja's pass_context / pass_eval_context markers.
    bounded.jinja_pass_arg = getattr(original, "jinja_pass_arg", None)  # type: ignore[attr-defined]
    return bounded


def _width_check(position: int, keyword: str) -> Callable[..., None]:
    def check(*args: Any, **kwargs: Any) -> None:
        own = _filter_args(args)
        width = kwargs.get(keyword, own[position] if len(own) > position else 0)
        text = own[0] if own and isinstance(own[0], str) else ""
        lines = text.count("\n") + 1
        if isinstance(width, str):  # indent(width='>> '): the string itself is the indentation
            width = len(width)
        if isinstance(width, int):
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


def _wordwrap_check(*args: Any, **kwargs: Any) -> None:
    # do_wordwrap(environment, s, width=79, break_long_words=True, wrapstring=None, ...): every line is at
    # least one character, and two consecutive lines hold more than `width`, so lines <= 2 * len / width + 1.
    own = _filter_args(args)
    text = own[0] if own and isinstance(own[0], str) else ""
    width = kwargs.get("width", own[1] if len(own) > 1 else 79)
    wrap = kwargs.get("wrapstring", own[3] if len(own) > 3 else None)
    if isinstance(width, int) and isinstance(wrap, str):
        lines = 2 * len(text) // max(width, 1) + 1
        _budget().size(len(text) + lines * len(wrap))


def _batch_check(*args: Any, **kwargs: Any) -> None:
    # do_batch(value, linecount, fill_with=None): the last batch is padded to `linecount` items.
    own = _filter_args(args)
    fill = kwargs.get("fill_with", own[2] if len(own) > 2 else None)
    count = kwargs.get("linecount", own[1] if len(own) > 1 else 0)
    if fill is not None and isinstance(count, int):
        budget = _budget()
        budget.value_size(count * (_POINTER_BYTES + budget.footprint(fill)))


def _slice_check(*args: Any, **kwargs: Any) -> None:
    # do_slice(value, slices, fill_with=None): one list per slice, even when the value is empty.
    own = _filter_args(args)
    count = kwargs.get("slices", own[1] if len(own) > 1 else 0)
    if isinstance(count, int):
        _budget().value_size(count * sys.getsizeof([]))


def _tojson_check(*args: Any, **kwargs: Any) -> None:
    # do_tojson(eval_ctx, value, indent=None)
    own = _filter_args(args)
    indent = kwargs.get("indent", own[1] if len(own) > 1 else None)
    width = len(indent) if isinstance(indent, str) else indent if isinstance(indent, int) else 0
    if width > _MAX_JSON_INDENT:
        raise RenderLimitError(
            "template", f"{_budget().name}: tojson indent wider than {_MAX_JSON_INDENT} is not allowed"
        )


def _bounded_join(*args: Any, **kwargs: Any) -> Any:
    # do_join(eval_ctx, value, d="", attribute=None): materialize the value so its size can be checked.
    eval_ctx, value, *rest = args
    items = _sized(value)
    sep = kwargs.get("d", rest[0] if rest and isinstance(rest[0], str) else "")
    budget = _budget()
    budget.size(len(sep) * len(items) + sum(_length(i) for i in items))
    return budget.charge(FILTERS["join"](eval_ctx, items, *rest, **kwargs))


_PRE_CHECKS: dict[str, Callable[..., None]] = {
    "center": _width_check(1, "width"),
    "indent": _width_check(1, "width"),
    "replace": _replace_check,
    "format": _format_check,
    "wordwrap": _wordwrap_check,
    "batch": _batch_check,
    "slice": _slice_check,
    "tojson": _tojson_check,
}

_ENV = _BoundedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
_LIPSUM = _ENV.globals["lipsum"]
# Every filter's result is charged; those that can outgrow their input are estimated first.
_ENV.filters.update({name: _bounded_filter(name, _PRE_CHECKS.get(name)) for name in FILTERS})
_bounded_join.jinja_pass_arg = FILTERS["join"].jinja_pass_arg  # type: ignore[attr-defined]
_ENV.filters["join"] = _bounded_join
_ENV.filters[_LOOP_FILTER] = _bounded_loop
_ENV.filters[_VALUE_FILTER] = _bounded_value
_ENV.filters[_TEXT_FILTER] = _bounded_text
_ENV.filters[_CONCAT_FILTER] = _bounded_concat


def _parse(template: str) -> TemplateAst:
    try:
        return _ENV.parse(template)
    except TemplateSyntaxError as exc:
        raise BadRequestError("template", f"syntax error on line {exc.lineno}: {exc.message}") from None


def _filtered(node: nodes.Node, name: str) -> nodes.Filter:
    return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)


class _WithBudget(NodeTransformer):
    """Routes the template's own work through the budget: each `{% for %}` iteration costs a step; list,
    tuple and dict literals, `~` and text written in bodies that repeat or are buffered are charged."""

    def __init__(self) -> None:
        self.repeated = 0

    def generic_visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> Any:
        repeats = isinstance(node, _REPEATED_BODIES)
        self.repeated += repeats
        try:
            node = super().generic_visit(node, *args, **kwargs)
        finally:
            self.repeated -= repeats
        if isinstance(node, nodes.For):
            node.iter = _filtered(node.iter, _LOOP_FILTER)
        elif (
            isinstance(node, nodes.List | nodes.Tuple | nodes.Dict) and getattr(node, "ctx", "load") == "load"
        ):
            return _filtered(node, _VALUE_FILTER)
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Slice):
            return _filtered(node, _VALUE_FILTER)  # jinja compiles `x[a:b]` without the getitem hook
        elif isinstance(node, nodes.Concat):
            return _filtered(nodes.List(node.nodes, lineno=node.lineno), _CONCAT_FILTER)
        elif isinstance(node, nodes.Output) and self.repeated:
            node.nodes = [
                _filtered(nodes.Const(child.data, lineno=child.lineno), _TEXT_FILTER)
                if isinstance(child, nodes.TemplateData)
                else _filtered(child, _TEXT_FILTER)
                for child in node.nodes
            ]
        return node


def _with_budget(ast: TemplateAst) -> TemplateAst:
    result: TemplateAst = _WithBudget().visit(ast)
    return result


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
        return _ENV.from_string(_with_budget(_parse(template)))
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
