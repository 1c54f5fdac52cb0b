from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from app_backend import handler
from app_backend.quotas import TenantQuotas
from app_backend.service import AppService
from app_backend.settings import ApplicationSettings
from app_backend.store import AppStore
from app_backend.uploads import TenantUploads
from app_backend.wiring import S3Candidates
from guardrail.client import InProcessGuardrail
from guardrail.engine import GuardrailEngine
from guardrail.layers.local_rules import LocalRulesLayer
from guardrail.settings import GuardrailSettings
from moto import mock_aws
from prompt_catalog.chains import ResolvedPrompt
from prompt_catalog.models import ChainContent, PromptContent

from common.lake_records import LakeRecord, UsageRecord
from common.model_gateway import ModelRequest, ModelResponse
from common.model_usage import OnlineSample

TABLE = "app-requests"
RAW = "lake-raw"
CANDIDATES = "lake-feedback"  # ratings' evaluation candidates
UPLOAD_ROLE = "arn:aws:iam::123456789012:role/app-upload"
BU = "retail"
USE_CASE = "support-bot"
STAGE = "prod"


class RecordingFilter:
    """Blocks text containing BLOCKME, redacts alice@example.com; records every event."""

    def __init__(self) -> None:
        self.events: list[Mapping[str, Any]] = []

    def check(self, event: Mapping[str, Any]) -> dict[str, Any]:
        self.events.append(event)
        texts = [item["text"] for item in event["content"]]
        findings: list[dict[str, Any]] = []
        action = "allow"
        if any("BLOCKME" in text for text in texts):
            action = "block"
            findings.append({"layer": "local_rules", "type": "DENY", "action": "block"})
        elif any("alice@example.com" in text for text in texts):
            action = "redact"
            findings.append({"layer": "pii", "type": "EMAIL", "action": "redact"})
            texts = [text.replace("alice@example.com", "[EMAIL]") for text in texts]
        verdict = {
            "action": action,
            "text": "\n\n".join(texts),
            "texts": texts,
            "findings": findings,
            "errors": {},
        }
        if "rendered" in event:  # the prompt as the model will see it, redacted like the items
            verdict["rendered"] = event["rendered"].replace("alice@example.com", "[EMAIL]")
        return verdict


@dataclass
class RecordingModel:
    name: str = "fake-model"
    calls: list[ModelRequest] = field(default_factory=list)
    reply: str | None = None  # a fixed answer instead of echoing the prompt

    def invoke(self, request: ModelRequest) -> ModelResponse:
        self.calls.append(request)
        return ModelResponse(text=self.reply or f"answer to: {request.prompt}", latency_ms=1.0)


def local_rules_guard(settings: GuardrailSettings | None = None) -> InProcessGuardrail:
    """The real guardrail engine in-process with the local rules only (Comprehend and Bedrock need an
    account): what it finds in a rendered prompt is what the model must not receive."""
    settings = settings or GuardrailSettings()
    engine = GuardrailEngine(settings, layers={"local_rules": LocalRulesLayer()}, metrics=False)
    return InProcessGuardrail(settings, business_unit=BU, engine=engine)


class RecordingGuard:
    """Passes each event to `guard` and keeps it: what the backend sent to the guardrail, in order."""

    def __init__(self, guard: Any) -> None:
        self.guard = guard
        self.events: list[dict[str, Any]] = []

    def check(self, event: dict[str, Any]) -> dict[str, Any]:
        self.events.append(event)
        return dict(self.guard.check(event))


class FakeCatalog:
    def __init__(self) -> None:
        greet = PromptContent.model_validate(
            {"template": "Hello {{ name }}", "variables": [{"name": "name"}]}
        )
        shout = PromptContent.model_validate(
            {"template": "Shout: {{ text }}", "variables": [{"name": "text"}]}
        )
        self.prompts = {
            ("greet", "prod"): ResolvedPrompt("greet:prod", "greet", 3, greet),
            ("shout", "prod"): ResolvedPrompt("shout:prod", "shout", 1, shout),
        }
        self.chains = {
            ("greet-then-shout", "prod"): ChainContent.model_validate(
                {
                    "variables": [{"name": "name"}],
                    "steps": [
                        {"id": "greet", "prompt": "greet@3", "inputs": {"name": "request.name"}},
                        {"id": "shout", "prompt": "shout:prod", "inputs": {"text": "steps.greet.output"}},
                    ],
                }
            )
        }

    def prompt(self, name: str, alias: str) -> ResolvedPrompt:
        from common.prompt_client import PromptNotFoundError

        if (name, alias) not in self.prompts:
            raise PromptNotFoundError(name)
        return self.prompts[(name, alias)]

    def chain(self, name: str, alias: str) -> tuple[ChainContent, dict[str, ResolvedPrompt]]:
        from common.prompt_client import PromptNotFoundError

        if (name, alias) not in self.chains:
            raise PromptNotFoundError(name)
        return self.chains[(name, alias)], {
            "greet@3": self.prompts[("greet", "prod")],
            "shout:prod": self.prompts[("shout", "prod")],
        }


def pinned(name: str, template: str) -> ResolvedPrompt:
    variables = [{"name": var} for var in sorted(_variables(template))]
    content = PromptContent.model_validate({"template": template, "variables": variables})
    return ResolvedPrompt(f"{name}@1", name, 1, content)


def chain_content(steps: list[tuple[str, str, dict[str, str]]]) -> ChainContent:
    requested = sorted(
        {src.split(".")[1] for _, _, inputs in steps for src in inputs.values() if src.startswith("request.")}
    )
    return ChainContent.model_validate(
        {
            "variables": [{"name": name} for name in requested],
            "steps": [{"id": sid, "prompt": f"{p}@1", "inputs": inputs} for sid, p, inputs in steps],
        }
    )


def _variables(template: str) -> set[str]:
    return set(re.findall(r"\{\{ (\w+) \}\}", template))


class ChainCatalog(FakeCatalog):
    """FakeCatalog plus chains whose steps pin `<name>@1` of the given prompts (name -> template); add a
    chain with `chain_content`."""

    def __init__(self, prompts: Mapping[str, str]) -> None:
        super().__init__()
        self.pinned = {f"{name}@1": pinned(name, template) for name, template in prompts.items()}

    def chain(self, name: str, alias: str) -> tuple[ChainContent, dict[str, ResolvedPrompt]]:
        if (name, alias) not in self.chains:
            return super().chain(name, alias)
        content = self.chains[(name, alias)]
        return content, {step.prompt: self.pinned[step.prompt] for step in content.steps}


@dataclass
class ScriptedModel:
    """Answers each call with the next scripted reply (then echoes): a step's output is what a test says."""

    replies: list[str]
    name: str = "fake-model"
    calls: list[ModelRequest] = field(default_factory=list)

    def invoke(self, request: ModelRequest) -> ModelResponse:
        self.calls.append(request)
        text = self.replies.pop(0) if self.replies else f"answer to: {request.prompt}"
        return ModelResponse(text=text, latency_ms=1.0)


class Messages:
    """A usage or samples queue (`MessageSink`) that keeps what it was sent."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[UsageRecord | OnlineSample] = []
        self.fail = fail

    def send(self, message: UsageRecord | OnlineSample) -> None:
        if self.fail:
            raise RuntimeError("queue unavailable")
        self.sent.append(message)


class ListSink:
    def __init__(self) -> None:
        self.buffer: list[LakeRecord] = []
        self.written: list[Any] = []
        self.fail_next_flush = False

    def append(self, record: LakeRecord) -> None:
        self.buffer.append(record)

    def flush(self) -> list[str]:
        if self.fail_next_flush:
            self.fail_next_flush = False
            raise RuntimeError("lake unavailable")
        self.written.extend(self.buffer)
        self.buffer.clear()
        return ["key"]


class RecordingSts:
    def __init__(self, sts: Any) -> None:
        self._sts = sts
        self.calls: list[dict[str, Any]] = []

    def assume_role(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        return self._sts.assume_role(**kwargs)


@dataclass
class Backend:
    service: AppService
    guard: RecordingFilter
    model: RecordingModel
    tenant_models: list[Mapping[str, Any]]
    ratings: ListSink
    sts: RecordingSts
    table: Any
    s3: Any

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        sub: str | None = "tenant-a",
        headers: dict[str, str] | None = None,
        raw_body: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        event = api_event(method, path, body, sub=sub, headers=headers, raw_body=raw_body)
        answer = handler.app.resolve(event, LambdaContext())  # type: ignore[arg-type]
        return int(answer["statusCode"]), json.loads(answer["body"] or "{}")

    def table_items(self) -> list[dict[str, Any]]:
        """Requests, ratings, fine-tunes and models; rate and quota counters are in `quota_items`."""
        return [item for item in self.table.scan()["Items"] if not str(item["sk"]).startswith("QUOTA#")]

    def quota_items(self) -> list[dict[str, Any]]:
        return [item for item in self.table.scan()["Items"] if str(item["sk"]).startswith("QUOTA#")]

    def objects(self, bucket: str) -> list[str]:
        return [o["Key"] for o in self.s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


class LambdaContext:
    function_name = "app-backend"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:app-backend"
    aws_request_id = "req-1"


def api_event(
    method: str,
    path: str,
    body: Any = None,
    *,
    sub: str | None = "tenant-a",
    headers: dict[str, str] | None = None,
    raw_body: str | None = None,
) -> dict[str, Any]:
    context: dict[str, Any] = {"requestId": "r1", "stage": "v1", "httpMethod": method, "path": path}
    if sub is not None:
        context["authorizer"] = {"claims": {"sub": sub, "token_use": "id"}}
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": headers or {"Content-Type": "application/json"},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": context,
        "body": raw_body if raw_body is not None else (None if body is None else json.dumps(body)),
        "isBase64Encoded": False,
    }


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_METRICS_NAMESPACE": "test",
        "POWERTOOLS_SERVICE_NAME": "app_backend",
    }.items():
        monkeypatch.setenv(name, value)


def create_table(ddb: Any) -> Any:
    return ddb.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    )


# The prompts and chain of FakeCatalog, offered to end users as a use case's config would list them.
OFFERED = {"prompts": ["greet", "shout"], "chains": ["greet-then-shout"]}
# Generous per-tenant limits for tests about other things (property tests reuse one backend per run).
ROOMY = {route: {"per_minute": 10_000, "per_day": 10_000} for route in ("invoke", "uploads", "fine_tunes")}


def build_backend(settings: ApplicationSettings | None = None, fine_tunes: Any = None) -> Backend:
    settings = settings or ApplicationSettings(end_user_catalog=OFFERED, tenant_limits=ROOMY)
    table = create_table(boto3.resource("dynamodb"))
    s3 = boto3.client("s3")
    for bucket in (RAW, CANDIDATES):
        s3.create_bucket(Bucket=bucket)
    guard, model, ratings = RecordingFilter(), RecordingModel(), ListSink()
    sts = RecordingSts(boto3.client("sts"))
    tenant_models: list[Mapping[str, Any]] = []

    def tenant_model(item: Mapping[str, Any]) -> RecordingModel:
        tenant_models.append(item)
        return model

    service = AppService(
        settings=settings,
        business_unit=BU,
        use_case=USE_CASE,
        guard=guard,
        catalog=FakeCatalog(),
        store=AppStore(table),
        default_model=model,
        tenant_model=tenant_model,
        ratings=ratings,
        candidates=S3Candidates(CANDIDATES, s3),
        stage=STAGE,
        uploads=TenantUploads(
            bucket=RAW,
            business_unit=BU,
            stage=STAGE,
            role_arn=UPLOAD_ROLE,
            settings=settings.uploads,
            sts=sts,
        ),
        fine_tunes=fine_tunes,
        quotas=TenantQuotas(table, settings.tenant_limits),
    )
    return Backend(service, guard, model, tenant_models, ratings, sts, table, s3)


@pytest.fixture
def backend(aws_env: None) -> Iterator[Backend]:
    with mock_aws():
        built = build_backend()
        handler.use_service(built.service)
        yield built
        handler.use_service(None)
