from __future__ import annotations

from typing import Any

import pytest
from prompt_catalog.chains import ResolvedPrompt, check_chain, execution_order, run_chain
from prompt_catalog.errors import BadRequestError
from prompt_catalog.models import ChainContent, PromptContent
from prompt_catalog.seed import EXAMPLES, load_seed

from tests.lambdas.prompt_catalog.conftest import RELEASE, prompt_body

ECHO = PromptContent.model_validate({"template": "{{ text }}", "variables": [{"name": "text"}]})


def chain(*steps, variables=({"name": "q"},), output=None):
    return ChainContent(variables=list(variables), steps=list(steps), output=output)


def step(step_id, **inputs):
    return {"id": step_id, "prompt": "echo@1", "inputs": inputs}


def resolve_echo(ref, field):
    return ResolvedPrompt(ref, "echo", 1, ECHO)


def test_order_follows_dependencies_not_list_position():
    c = chain(step("b", text="steps.a.output"), step("a", text="request.q"), step("c", text="steps.b.output"))
    assert execution_order(c) == ["a", "b", "c"]


def test_cycle_is_rejected_naming_the_steps():
    c = chain(step("a", text="steps.b.output"), step("b", text="steps.a.output"))
    with pytest.raises(BadRequestError) as err:
        check_chain(c, resolve_echo, max_steps=10)
    assert err.value.field == "steps"
    assert "cycle" in err.value.message and "a" in err.value.message and "b" in err.value.message


def test_self_reference_is_a_cycle():
    with pytest.raises(BadRequestError, match="cycle"):
        execution_order(chain(step("a", text="steps.a.output")))


def test_missing_step_and_undeclared_request_variable_are_rejected():
    with pytest.raises(BadRequestError) as err:
        check_chain(chain(step("a", text="steps.ghost.output")), resolve_echo, max_steps=10)
    assert err.value.field == "steps[0].inputs.text"
    with pytest.raises(BadRequestError) as err:
        check_chain(chain(step("a", text="request.nope")), resolve_echo, max_steps=10)
    assert err.value.field == "steps[0].inputs.text"
    with pytest.raises(BadRequestError) as err:
        check_chain(chain(step("a")), resolve_echo, max_steps=10)
    assert (err.value.field, "missing" in err.value.message) == ("steps[0].inputs.text", True)


def test_run_chain_feeds_outputs_forward():
    c = chain(step("a", text="request.q"), step("b", text="steps.a.output"))
    seen = []

    def invoke(rendered):
        seen.append(rendered.text)
        return rendered.text.upper() + "!"

    outputs = run_chain(c, {"echo@1": resolve_echo("echo@1", "")}, {"q": "hi"}, invoke)
    assert outputs == {"a": "HI!", "b": "HI!!"}
    assert seen == ["hi", "HI!"]


def test_run_chain_passes_each_steps_inputs_and_stops_where_invoke_returns_none():
    c = chain(step("a", text="request.q"), step("b", text="steps.a.output"), step("c", text="steps.b.output"))
    seen = []

    def invoke(rendered):
        seen.append((rendered.step_id, dict(rendered.inputs)))
        return None if rendered.step_id == "b" else "out"

    outputs = run_chain(c, {"echo@1": resolve_echo("echo@1", "")}, {"q": "hi"}, invoke)
    assert outputs == {"a": "out"}  # b refused: c never ran
    assert seen == [("a", {"text": "hi"}), ("b", {"text": "out"})]


def test_example_seed_validates_and_runs_three_steps(catalog):
    # In-process, one identity both creates and moves `prod`: the prod release role (prod is stage-bound).
    seed = load_seed(catalog, "bu-a", RELEASE["prod"], EXAMPLES / "uk_pm_birthplace.json")
    request = seed["example_request"]
    first = catalog.render_chain("bu-a", "pm-birthplace-distance", {"alias": "prod", "variables": request})
    assert first["order"] == ["head_of_government", "birthplace", "distance"]
    assert [s["id"] for s in first["steps"]] == ["head_of_government"]
    assert first["steps"][0]["text"] == (
        "Who is the current prime minister of the United Kingdom? Answer with the person's full name only."
    )
    assert first["waiting"] == ["birthplace", "distance"]

    # A fake model with fixed answers stands in for Bedrock: the chain pipes each answer forward.
    answers = {"head_of_government": "Jane Example", "birthplace": "York, England", "distance": "280"}
    outputs: dict[str, str] = {}
    texts = {}
    while True:
        page = catalog.render_chain(
            "bu-a", "pm-birthplace-distance", {"variables": request, "step_outputs": outputs}
        )
        if not page["steps"]:
            break
        for s in page["steps"]:
            texts[s["id"]] = s["text"]
            outputs[s["id"]] = answers[s["id"]]
    assert texts["birthplace"].startswith("Where was Jane Example born?")
    assert texts["distance"].startswith("How far is York, England from London in a straight line?")
    assert "in kilometres" in texts["distance"]
    assert page["output_step"] == "distance" and outputs["distance"] == "280"


def test_chain_routes_reject_bad_steps_and_write_nothing(call):
    call("POST", "/prompts", prompt_body())
    good: dict[str, Any] = {
        "name": "c1",
        "variables": [{"name": "q"}],
        "steps": [{"id": "a", "prompt": "greet@1", "inputs": {"who": "request.q"}}],
    }
    status, err = call("POST", "/chains", {**good, "steps": [{**good["steps"][0], "prompt": "greet@9"}]})
    assert (status, err["field"]) == (400, "body.steps[0].prompt")
    status, err = call("POST", "/chains", {**good, "steps": [{**good["steps"][0], "prompt": "greet:prod"}]})
    assert (status, err["field"]) == (400, "body.steps[0].prompt")  # alias not set yet
    status, err = call("POST", "/chains", {**good, "variables": [{"name": "q", "type": "integer"}]})
    assert (status, err["field"]) == (400, "body.steps[0].inputs.who")
    assert call("GET", "/chains")[1]["items"] == []

    assert call("POST", "/chains", good)[0] == 201
    status, rendered = call("POST", "/chains/c1/render", {"variables": {"q": "Bo"}})
    assert (status, rendered["steps"][0]["text"]) == (200, "Hello Bo!")
    status, err = call("POST", "/chains/c1/render", {"variables": {}})
    assert (status, err["field"]) == (422, "variables.q")
    status, err = call("POST", "/chains/c1/render", {"variables": {"q": "x"}, "step_outputs": {"zz": "y"}})
    assert (status, err["field"]) == (422, "step_outputs.zz")
    status, v2 = call(
        "POST", "/chains/c1/versions", {**{k: v for k, v in good.items() if k != "name"}, "comment": "same"}
    )
    assert (status, v2["version"]) == (201, 2)
