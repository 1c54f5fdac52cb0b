"""tools/seed_prompt_catalog.py: the example seed reaches the catalog through signed API calls."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import pytest
from botocore.credentials import Credentials

from common.prompt_client import PromptClient
from tests.lambdas.prompt_catalog.conftest import RELEASE, FakeContext, api_event
from tools.seed_prompt_catalog import DEFAULT_SEED, SeedError, region_of, seed_catalog

API = "https://abc123.execute-api.us-east-1.amazonaws.com/prompt-catalog"


class InProcessApi:
    """API Gateway in-process: passes the signed request (method, path, body) to the handler as the prod
    release role (the seed sets `prod` aliases, which only that role moves)."""

    def __init__(self, handler: Any) -> None:
        self.handler = handler
        self.signed: list[bool] = []

    def __call__(self, request: Any) -> tuple[int, bytes]:
        self.signed.append("Authorization" in request.headers)
        path = urllib.parse.urlsplit(request.url).path.removeprefix("/prompt-catalog")
        body = request.body.decode() if request.body else None
        event = api_event(request.method, path, caller=RELEASE["prod"], raw_body=body)
        response = self.handler.lambda_handler(event, FakeContext())
        return response["statusCode"], response["body"].encode()


@pytest.fixture
def api(handler: Any) -> tuple[PromptClient, InProcessApi]:
    transport = InProcessApi(handler)
    client = PromptClient(
        API, region="us-east-1", transport=transport, credentials=Credentials("AKID", "secret", "token")
    )
    return client, transport


def test_example_seed_creates_prompts_chain_and_aliases(api: tuple[PromptClient, InProcessApi], call) -> None:
    client, transport = api
    seed = json.loads(DEFAULT_SEED.read_text())
    lines = list(seed_catalog(client, seed))
    assert lines[0] == "created prompts/who-is-head-of-government"
    assert "created chains/pm-birthplace-distance" in lines
    assert all(transport.signed)
    status, prompt = call("GET", "/prompts/birthplace-of-person/aliases/prod")
    assert (status, prompt["version"]) == (200, 1)
    status, render = call(
        "POST", "/chains/pm-birthplace-distance/render", {"variables": seed["example_request"]}
    )
    assert status == 200, render
    # Running it again changes nothing and says so.
    again = list(seed_catalog(client, seed))
    assert again[0] == "exists  prompts/who-is-head-of-government (left as it is)"
    assert call("GET", "/prompts/who-is-head-of-government")[1]["latest_version"] == 1


def test_a_rejected_entry_stops_the_seed_with_the_catalogs_message(
    api: tuple[PromptClient, InProcessApi],
) -> None:
    client, _ = api
    with pytest.raises(SeedError, match=r"prompts/bad: create answered 400: .*template"):
        list(seed_catalog(client, {"prompts": [{"name": "bad", "template": "{{ x }}", "variables": []}]}))


def test_region_comes_from_the_api_url() -> None:
    assert region_of(API) == "us-east-1"
    with pytest.raises(SeedError, match="--api-url"):
        region_of("https://catalog.example.com/")
