from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber
from guardrail.model import CheckRequest, ContentItem, LayerResult


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "test")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "guardrail")


def _stubbed(service: str):
    client = boto3.client(service, region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def comprehend(_aws_env):
    yield from _stubbed("comprehend")


@pytest.fixture
def bedrock(_aws_env):
    yield from _stubbed("bedrock-runtime")


def make_request(*texts: str, direction: str = "input", trusted: tuple[int, ...] = ()) -> CheckRequest:
    return CheckRequest(
        direction=direction,  # type: ignore[arg-type]
        items=tuple(ContentItem(text, index in trusted) for index, text in enumerate(texts)),
        business_unit="retail",
        model_id="anthropic.claude-3:0",
        request_id="req-1",
        tenant_id="tenant-1",
    )


class CountingLayer:
    """A local_rules stand-in that finds nothing and counts its calls."""

    name = "local_rules"

    def __init__(self) -> None:
        self.calls = 0

    def check(self, request, settings) -> LayerResult:
        self.calls += 1
        return LayerResult([])


class ListSink:
    def __init__(self) -> None:
        self.records: list = []

    def append(self, record) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Any real connection attempt fails loudly: tests must use Stubber or fakes."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
