"""Random bodies, paths and query strings at every route: never a 5xx, and a 4xx writes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends
from moto.s3.models import s3_backends

from tests.lambdas.prompt_catalog.conftest import (
    BODY_BUCKET,
    DATASET_BUCKET,
    RELEASE,
    TABLE,
    FakeContext,
    api_event,
)

PROMPT: dict[str, Any] = {
    "template": "Hello {{ who }}, {{ n }}",
    "variables": [{"name": "who"}, {"name": "n", "type": "integer"}],
}
CHAIN: dict[str, Any] = {
    "variables": [{"name": "q"}],
    "steps": [{"id": "a", "prompt": "greet@1", "inputs": {"who": "request.q"}}],
}
CHAIN["steps"][0]["inputs"]["n"] = "request.k"
CHAIN["variables"].append({"name": "k", "type": "integer"})
DATASET: dict[str, Any] = {
    "records": [
        {"id": "r1", "prompt_ref": "greet@1", "variables": {"who": "A", "n": 1}},
        {"id": "r2", "input": "x"},
    ]
}
CONTENT: dict[str, Any] = {"prompts": PROMPT, "chains": CHAIN, "datasets": DATASET}
EXISTING = {"prompts": "greet", "chains": "c1", "datasets": "d1"}
RENDER: dict[str, Any] = {
    "prompts": {"version": 1, "variables": {"who": "A", "n": 2}},
    "chains": {"alias": "prod", "variables": {"q": "A", "k": 2}, "step_outputs": {}},
    "datasets": {"version": 1},
}

# (method, path template, valid body) for every route; {kinds} and {name} are filled per example.
ROUTES = [
    ("POST", "/{kinds}", lambda kinds: {"name": "fresh", **CONTENT[kinds]}),
    ("GET", "/{kinds}", lambda kinds: None),
    ("GET", "/{kinds}/{name}", lambda kinds: None),
    ("POST", "/{kinds}/{name}/versions", lambda kinds: CONTENT[kinds]),
    ("GET", "/{kinds}/{name}/versions/1", lambda kinds: None),
    ("GET", "/{kinds}/{name}/aliases/prod", lambda kinds: None),
    ("PUT", "/{kinds}/{name}/aliases/prod", lambda kinds: {"version": 1}),
    ("POST", "/{kinds}/{name}/archive", lambda kinds: None),
    ("POST", "/{kinds}/{name}/render", lambda kinds: RENDER[kinds]),
]

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn, valid: Any) -> Any:
    """A valid body with one field (top level or one level down) replaced, removed or added."""
    if not isinstance(valid, dict) or draw(st.booleans()):
        return draw(json_values)
    body = json.loads(json.dumps(valid))
    target = body
    nested = [k for k, v in body.items() if isinstance(v, dict)]
    if draw(st.booleans()) and nested:
        target = body[draw(st.sampled_from(nested))]
    key = draw(st.sampled_from([*target, "unexpected"]))
    if draw(st.booleans()):
        target.pop(key, None)
    else:
        target[key] = draw(json_values)
    return body


PARTITION = "aws"


def snapshot() -> tuple[Any, ...]:
    """Table items and bucket objects, read from moto's in-memory backends (an API scan per example
    would dominate the run time)."""
    table = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].tables[TABLE]
    items = sorted(json.dumps(item.to_json(), sort_keys=True) for item in table.all_items())
    buckets = s3_backends[DEFAULT_ACCOUNT_ID][PARTITION].buckets
    objects = [
        sorted((k.name, k.etag) for k in buckets[b].keys.values()) for b in (BODY_BUCKET, DATASET_BUCKET)
    ]
    return items, objects


@pytest.fixture
def seeded(call):
    assert call("POST", "/prompts", {"name": "greet", **PROMPT})[0] == 201
    assert call("PUT", "/prompts/greet/aliases/prod", {"version": 1}, caller=RELEASE["prod"])[0] == 200
    assert call("POST", "/chains", {"name": "c1", **CHAIN})[0] == 201
    assert call("PUT", "/chains/c1/aliases/prod", {"version": 1}, caller=RELEASE["prod"])[0] == 200
    assert call("POST", "/datasets", {"name": "d1", **DATASET})[0] == 201
    items, (_, dataset_objects) = snapshot()
    assert len(items) == 10 and len(dataset_objects) == 1  # the snapshot sees what the API wrote
    return call


@pytest.mark.parametrize("kinds", ["prompts", "chains", "datasets"])
@pytest.mark.parametrize(("method", "path", "valid"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_requests_never_5xx_and_rejections_write_nothing(
    seeded, handler, kinds, method, path, valid, data
):
    name = data.draw(
        st.sampled_from([EXISTING[kinds], "missing"]) | st.text(min_size=1, max_size=12), label="name"
    )
    name = "".join(c for c in name if c not in "/?#") or "x"
    body_kind = data.draw(st.sampled_from(["mutated", "raw"]), label="body kind")
    raw_body = (
        data.draw(st.text(max_size=40), label="raw")
        if body_kind == "raw"
        else json.dumps(data.draw(mutated(valid(kinds)), label="body"))
    )
    query = data.draw(
        st.none() | st.dictionaries(st.sampled_from(["limit", "tag", "next_token", "x"]), st.text(max_size=8))
    )
    before = snapshot()
    event = api_event(method, path.format(kinds=kinds, name=name), raw_body=raw_body, query=query)
    response = handler.lambda_handler(event, FakeContext())
    status = response["statusCode"]
    assert status < 500, response["body"]
    if status >= 400:
        assert "message" in json.loads(response["body"]) or status == 404
        assert snapshot() == before
