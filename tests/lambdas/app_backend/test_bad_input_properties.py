"""Random bodies and headers at every route: never a 5xx, and a refused request writes nothing."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import CANDIDATES, RAW, Backend

ROUTES = [
    ("POST", "/invoke"),
    ("POST", "/ratings"),
    ("POST", "/uploads"),
    ("GET", "/uploads"),
    ("POST", "/fine-tunes"),
    ("GET", "/fine-tunes/0123456789abcdef0123456789abcdef"),
    ("GET", "/fine-tunes/x"),
    ("GET", "/models"),
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(
    [
        "prompt",
        "chain",
        "alias",
        "variables",
        "model",
        "request_id",
        "stars",
        "thumbs",
        "comment",
        "file_name",
        "content_type",
        "model_name",
        "tenant_id",
    ]
)
bodies = st.one_of(
    st.none(),
    st.text(max_size=40),
    json_values.map(json.dumps),
    st.dictionaries(field_names, json_values, max_size=5).map(json.dumps),
)
headers = st.dictionaries(st.text(min_size=1, max_size=20), st.text(max_size=40), max_size=4)
subs = st.one_of(st.just("tenant-a"), st.none(), st.text(max_size=20))


def _state(backend: Backend) -> tuple[Any, ...]:
    # Rate and quota counters (QUOTA# items, not in table_items) count attempts by design.
    return (
        json.dumps(backend.table_items(), sort_keys=True, default=str),
        tuple(backend.objects(RAW)),
        tuple(backend.objects(CANDIDATES)),
        len(backend.ratings.written),
        len(backend.model.calls),
    )


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), body=bodies, header_map=headers, sub=subs)
def test_no_5xx_and_refusals_write_nothing(
    backend: Backend, route: tuple[str, str], body: str | None, header_map: dict[str, str], sub: str | None
) -> None:
    method, path = route
    before = _state(backend)

    status, answer = backend.call(method, path, sub=sub, headers=header_map, raw_body=body)

    assert status < 500 or (status == 503 and path.startswith("/fine-tunes")), answer
    if status >= 400:
        assert answer.get("field"), answer
        assert _state(backend) == before


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.fixed_dictionaries(
        {"prompt": st.sampled_from(["greet", "nope"])},
        optional={"variables": st.dictionaries(st.sampled_from(["name", "other"]), json_values, max_size=2)},
    )
)
def test_near_valid_invoke_bodies_answer_200_or_a_4xx_that_writes_nothing(
    backend: Backend, body: dict[str, Any]
) -> None:
    before = _state(backend)

    status, answer = backend.call("POST", "/invoke", body)

    assert status in (200, 400, 403, 404, 422), answer
    if status != 200:
        assert _state(backend) == before
