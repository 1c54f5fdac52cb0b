from __future__ import annotations

import json
import urllib.parse

import pytest
from botocore.credentials import Credentials

from common.prompt_client import CatalogUnavailableError, PromptClient, PromptFetchError, PromptNotFoundError
from tests.lambdas.prompt_catalog.conftest import ALICE, RELEASE, FakeContext, api_event, prompt_body

API = "https://abc123.execute-api.us-east-1.amazonaws.com/prod"
CREDENTIALS = Credentials("AKIDEXAMPLE", "secret", "session-token")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class HandlerTransport:
    """Sends the signed request to the catalog handler in-process, as API Gateway would."""

    def __init__(self, handler) -> None:
        self.handler = handler
        self.requests: list = []
        self.fail_with = None

    def __call__(self, request):
        self.requests.append(request)
        if self.fail_with is not None:
            if isinstance(self.fail_with, Exception):
                raise self.fail_with
            return self.fail_with, b"{}"
        url = urllib.parse.urlsplit(request.url)
        path = url.path.removeprefix("/prod")
        response = self.handler.lambda_handler(api_event(request.method, path, caller=ALICE), FakeContext())
        return response["statusCode"], response["body"].encode()


@pytest.fixture
def catalog_api(call, handler):
    assert call("POST", "/prompts", prompt_body())[0] == 201
    assert call("PUT", "/prompts/greet/aliases/prod", {"version": 1}, caller=RELEASE["prod"])[0] == 200
    return HandlerTransport(handler)


def make_client(transport, clock, **kwargs):
    return PromptClient(
        API,
        region="us-east-1",
        ttl_seconds=60,
        max_stale_seconds=600,
        transport=transport,
        credentials=CREDENTIALS,
        clock=clock,
        **kwargs,
    )


def test_fetch_by_alias_is_signed_and_cached_for_the_ttl(catalog_api):
    clock = Clock()
    client = make_client(catalog_api, clock)
    first = client.get("greet", "prod")
    assert (first.version, first.template, first.stale) == (1, "Hello {{ who }}!", False)
    auth = catalog_api.requests[0].headers["Authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/us-east-1/execute-api/aws4_request" in auth
    assert catalog_api.requests[0].headers["X-Amz-Security-Token"] == "session-token"

    clock.now += 59
    assert client.get("greet", "prod") is first
    assert len(catalog_api.requests) == 1
    clock.now += 2
    assert client.get("greet", "prod").version == 1
    assert len(catalog_api.requests) == 2


def test_alias_move_is_seen_after_the_ttl(catalog_api, call):
    clock = Clock()
    client = make_client(catalog_api, clock)
    assert client.get("greet").version == 1
    call("POST", "/prompts/greet/versions", {"template": "Hey {{ who }}", "variables": [{"name": "who"}]})
    call("PUT", "/prompts/greet/aliases/prod", {"version": 2}, caller=RELEASE["prod"])
    assert client.get("greet").version == 1
    clock.now += 61
    assert client.get("greet").template == "Hey {{ who }}"


@pytest.mark.parametrize("failure", [503, 429, CatalogUnavailableError("connection refused")])
def test_outage_serves_the_stale_copy_until_max_stale(catalog_api, failure):
    clock = Clock()
    client = make_client(catalog_api, clock)
    client.get("greet")
    catalog_api.fail_with = failure
    clock.now += 300
    stale = client.get("greet")
    assert (stale.version, stale.stale) == (1, True)
    clock.now += 400  # past ttl + max_stale
    with pytest.raises(CatalogUnavailableError):
        client.get("greet")


def test_outage_without_a_cached_copy_raises(catalog_api):
    catalog_api.fail_with = 502
    with pytest.raises(CatalogUnavailableError):
        make_client(catalog_api, Clock()).get("greet")


def test_not_found_and_forbidden_are_not_masked_by_the_cache(catalog_api):
    clock = Clock()
    client = make_client(catalog_api, clock)
    with pytest.raises(PromptNotFoundError):
        client.get("greet", "dev")
    client.get("greet")
    catalog_api.fail_with = 403
    clock.now += 61
    with pytest.raises(PromptFetchError) as err:
        client.get("greet")
    assert not isinstance(err.value, CatalogUnavailableError)


def test_business_unit_header_is_sent_when_configured(catalog_api):
    client = make_client(catalog_api, Clock(), business_unit="bu-a")
    client.get("greet")
    assert catalog_api.requests[0].headers["x-business-unit"] == "bu-a"
    assert json.loads(json.dumps(client.get("greet").model_parameters))["max_tokens"] == 1024
