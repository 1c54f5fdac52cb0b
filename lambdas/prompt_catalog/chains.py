"""Chain validation (on save) and execution order.

A chain's steps form a graph: a step that reads `steps.<id>.output` depends on step `<id>`. The graph is
checked with the standard library's `graphlib` so cycles and references to missing steps are rejected
when the chain is saved; the execution order is the topological order, ties kept in list order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter

from .errors import BadRequestError, UnprocessableError
from .models import ChainContent, ChainStep, ModelParameters, PromptContent, VariableValue
from .rendering import DEFAULT_LIMITS, RenderLimits, check_values, render


@dataclass(frozen=True)
class ResolvedPrompt:
    ref: str
    name: str
    version: int
    content: PromptContent


@dataclass(frozen=True)
class RenderedStep:
    step_id: str
    prompt_ref: str
    version: int
    text: str
    model_parameters: ModelParameters
    # The values `text` was rendered with (the chain's request values and earlier steps' outputs): a caller
    # checks them with the prompt and renders again with their redacted forms.
    inputs: Mapping[str, VariableValue] = field(default_factory=dict)


def step_dependencies(step: ChainStep) -> list[str]:
    return [source.split(".")[1] for source in step.inputs.values() if source.startswith("steps.")]


def execution_order(chain: ChainContent) -> list[str]:
    """Step ids in the order they can run; BadRequestError naming the step on a cycle or a missing step."""
    index = {step.id: i for i, step in enumerate(chain.steps)}
    sorter: TopologicalSorter[str] = TopologicalSorter()
    for i, step in enumerate(chain.steps):
        for var, source in step.inputs.items():
            dep = source.split(".")[1]
            if source.startswith("steps.") and dep not in index:
                raise BadRequestError(
                    f"steps[{i}].inputs.{var}", f"refers to step {dep!r}, which the chain does not have"
                )
        sorter.add(step.id, *step_dependencies(step))
    try:
        sorter.prepare()
    except CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        raise BadRequestError("steps", f"steps form a cycle: {cycle}") from None
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=index.__getitem__)
        order.extend(ready)
        sorter.done(*ready)
    return order


def check_chain(
    chain: ChainContent, resolve: Callable[[str, str], ResolvedPrompt], *, max_steps: int
) -> None:
    """Save-time check: graph, request variables, and each step's inputs against its pinned prompt.

    `resolve(ref, field)` returns the prompt a step points at (raising an error naming `field`).
    """
    if len(chain.steps) > max_steps:
        raise BadRequestError("steps", f"more than {max_steps} steps")
    order = execution_order(chain)
    if chain.output is not None and chain.output not in order:
        raise BadRequestError("output", f"names step {chain.output!r}, which the chain does not have")
    request_types = {v.name: v.type for v in chain.variables}
    for i, step in enumerate(chain.steps):
        prompt = resolve(step.prompt, f"steps[{i}].prompt")
        declared = {v.name: v.type for v in prompt.content.variables}
        for var in sorted(set(declared) - set(step.inputs)):
            raise BadRequestError(f"steps[{i}].inputs.{var}", f"missing: {step.prompt} needs it")
        for var, source in step.inputs.items():
            field = f"steps[{i}].inputs.{var}"
            if var not in declared:
                raise BadRequestError(field, f"{step.prompt} does not declare this variable")
            origin, name = source.split(".")[:2]
            if origin == "steps" and declared[var] != "string":
                raise BadRequestError(field, f"a step output is text but {var} is {declared[var]}")
            if origin == "request" and name not in request_types:
                raise BadRequestError(field, f"request variable {name!r} is not declared in 'variables'")
            if origin == "request" and request_types[name] != declared[var]:
                raise BadRequestError(
                    field, f"request.{name} is {request_types[name]} but {var} is {declared[var]}"
                )


def final_step(chain: ChainContent) -> str:
    return chain.output or execution_order(chain)[-1]


def render_ready_steps(
    chain: ChainContent,
    prompts: Mapping[str, ResolvedPrompt],
    values: Mapping[str, VariableValue],
    step_outputs: Mapping[str, str],
    *,
    limits: RenderLimits = DEFAULT_LIMITS,
) -> tuple[list[RenderedStep], list[str]]:
    """Render every step not yet run whose inputs are all available; return (rendered, still waiting)."""
    check_values(chain.variables, values)
    steps = {step.id: step for step in chain.steps}
    for step_id in step_outputs:
        if step_id not in steps:
            raise UnprocessableError(f"step_outputs.{step_id}", "the chain has no such step")
    rendered: list[RenderedStep] = []
    waiting: list[str] = []
    for step_id in execution_order(chain):
        step = steps[step_id]
        if step_id in step_outputs:
            continue
        if any(dep not in step_outputs for dep in step_dependencies(step)):
            waiting.append(step_id)
            continue
        inputs = {var: _input_value(source, values, step_outputs) for var, source in step.inputs.items()}
        prompt = prompts[step.prompt]
        try:
            text = render(
                prompt.content.template,
                prompt.content.variables,
                inputs,
                limits=limits,
                name=f"prompt {prompt.name}@{prompt.version}",
            )
        except UnprocessableError as exc:
            raise UnprocessableError(f"steps.{step_id}.{exc.field}", exc.message) from None
        rendered.append(
            RenderedStep(step_id, step.prompt, prompt.version, text, prompt.content.model_parameters, inputs)
        )
    return rendered, waiting


def run_chain(
    chain: ChainContent,
    prompts: Mapping[str, ResolvedPrompt],
    values: Mapping[str, VariableValue],
    invoke: Callable[[RenderedStep], str | None],
) -> dict[str, str]:
    """Run a chain end to end with `invoke` (a model call); return every step's output text. `invoke`
    returns None to stop the chain (a filter refused the step): the outputs so far are returned."""
    outputs: dict[str, str] = {}
    while True:
        rendered, _ = render_ready_steps(chain, prompts, values, outputs)
        if not rendered:
            return outputs
        for step in rendered:
            output = invoke(step)
            if output is None:
                return outputs
            outputs[step.step_id] = output


def _input_value(
    source: str, values: Mapping[str, VariableValue], outputs: Mapping[str, str]
) -> VariableValue:
    origin, name = source.split(".")[:2]
    return values[name] if origin == "request" else outputs[name]
