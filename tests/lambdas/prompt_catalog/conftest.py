from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.credentials import Credentials
from moto import mock_aws

TABLE = "prompt-catalog"
BODY_BUCKET = "bu-prompt-catalog"
DATASET_BUCKET = "bu-evaluation-datasets"
ACCOUNT = "111122223333"
CALLERS = {
    "bu-a": [f"arn:aws:sts::{ACCOUNT}:assumed-role/bu-a-"],
    "bu-b": [f"arn:aws:sts::{ACCOUNT}:assumed-role/bu-b-"],
    "shared": [
        f"arn:aws:sts::{ACCOUNT}:assumed-role/pipeline-",
        f"arn:aws:sts::{ACCOUNT}:assumed-role/bu-a-shared-",
    ],
}
STAGES = ("dev", "preprod", "prod")
# Each business unit stage's prompt release role: the only identity that moves that stage's alias.
ALIAS_MOVERS = {
    "role": "{business_unit}-{stage}-prompt-release",
    "accounts": {bu: dict.fromkeys(STAGES, ACCOUNT) for bu in ("bu-a", "bu-b")},
}
RELEASE = {
    stage: f"arn:aws:sts::{ACCOUNT}:assumed-role/bu-a-{stage}-prompt-release/deploy" for stage in STAGES
}
ALICE = f"arn:aws:sts::{ACCOUNT}:assumed-role/bu-a-prompt-engineer/alice"
CAROL = f"arn:aws:sts::{ACCOUNT}:assumed-role/bu-a-shared-tester/carol"  # in bu-a and shared
BOB = f"arn:aws:sts::{ACCOUNT}:assumed-role/bu-b-prompt-engineer/bob"


def create_resources(region: str = "us-east-1") -> None:
    """The table and buckets as the stack will declare them (keys and GSI from repository.py)."""
    ddb = boto3.client("dynamodb", region_name=region)
    ddb.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "gsi1pk", "gsi1sk")
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "gsi1",
                "KeySchema": [
                    {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                    {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    s3 = boto3.client("s3", region_name=region)
    for bucket in (BODY_BUCKET, DATASET_BUCKET):
        s3.create_bucket(Bucket=bucket)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_METRICS_NAMESPACE": "test",
        "POWERTOOLS_SERVICE_NAME": "prompt-catalog",
        "TABLE_NAME": TABLE,
        "BODY_BUCKET": BODY_BUCKET,
        "DATASET_BUCKET": DATASET_BUCKET,
        "CALLER_BUSINESS_UNITS": json.dumps(CALLERS),
        "ALIAS_MOVERS": json.dumps(ALIAS_MOVERS),
        "PROMPT_CATALOG_SETTINGS": json.dumps({"inline_body_max_bytes": 2048}),
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        create_resources()
        yield


@pytest.fixture
def handler(aws_env: None) -> Iterator[Any]:
    from prompt_catalog import handler as module

    module.catalog.cache_clear()
    module.callers.cache_clear()
    yield module
    module.catalog.cache_clear()
    module.callers.cache_clear()


class FakeContext:
    function_name = "prompt-catalog"
    memory_limit_in_mb = 256
    invoked_function_arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:prompt-catalog"
    aws_request_id = "req-1"


def api_event(
    method: str,
    path: str,
    body: Any = None,
    *,
    caller: str | None = ALICE,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    raw_body: str | None = None,
) -> dict[str, Any]:
    text = raw_body if raw_body is not None else (None if body is None else json.dumps(body))
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": headers or {},
        "multiValueHeaders": {},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "accountId": ACCOUNT,
            "resourceId": "x",
            "stage": "prod",
            "requestId": "r",
            "httpMethod": method,
            "path": path,
            "resourcePath": path,
            "identity": {"userArn": caller, "caller": "AROAEXAMPLE", "sourceIp": "10.0.0.1"},
        },
        "body": text,
        "isBase64Encoded": False,
    }


Call = Callable[..., tuple[int, Any]]


@pytest.fixture
def call(handler: Any) -> Call:
    """call(method, path, body=None, **event options) -> (status, decoded JSON body)."""

    def _call(method: str, path: str, body: Any = None, **options: Any) -> tuple[int, Any]:
        response = handler.lambda_handler(api_event(method, path, body, **options), FakeContext())
        return response["statusCode"], json.loads(response["body"]) if response.get("body") else None

    return _call


def prompt_body(name: str = "greet", template: str = "Hello {{ who }}!", **extra: Any) -> dict[str, Any]:
    return {"name": name, "template": template, "variables": [{"name": "who"}], **extra}


@pytest.fixture
def catalog(aws_env: None) -> Any:
    """A Catalog on moto clients, without the HTTP layer."""
    from prompt_catalog.repository import CatalogRepository, ObjectStore
    from prompt_catalog.service import Catalog
    from prompt_catalog.settings import PromptCatalogSettings

    s3 = boto3.client("s3")
    repo = CatalogRepository(
        TABLE,
        boto3.client("dynamodb"),
        ObjectStore(BODY_BUCKET, s3),
        inline_body_max_bytes=2048,
        sleep=lambda _: None,
    )
    from prompt_catalog.access import AliasMovers

    return Catalog(
        repo,
        ObjectStore(DATASET_BUCKET, s3),
        PromptCatalogSettings(),
        alias_movers=AliasMovers.model_validate(ALIAS_MOVERS),
    )


class SignedApi:
    """API Gateway with IAM authorization, in-process: the caller is whoever signed the request (moto's STS
    resolves the signature's access key to its identity, as API Gateway does); the path, body and
    x-business-unit header then reach the catalog handler."""

    def __init__(self, handler: Any, stage_path: str = "/prompt-catalog") -> None:
        self.handler = handler
        self.stage_path = stage_path
        self.callers: list[str] = []

    def __call__(self, request: Any) -> tuple[int, bytes]:
        access_key = re.search(r"Credential=([^/]+)/", request.headers["Authorization"])
        assert access_key is not None, "unsigned request"
        sts = boto3.client(
            "sts", region_name="us-east-1", aws_access_key_id=access_key[1], aws_secret_access_key="unused"
        )
        caller = sts.get_caller_identity()["Arn"]
        self.callers.append(caller)
        path = urllib.parse.urlsplit(request.url).path.removeprefix(self.stage_path)
        headers = {k.lower(): v for k, v in request.headers.items() if k.lower() == "x-business-unit"}
        body = request.body.decode() if request.body else None
        event = api_event(request.method, path, caller=caller, raw_body=body, headers=headers)
        response = self.handler.lambda_handler(event, FakeContext())
        return response["statusCode"], response["body"].encode()


def role_session(role_arn: str, session: str) -> Credentials:
    """Credentials of an STS session of `role_arn` (moto), as `aws sts assume-role` would give them."""
    answer = boto3.client("sts", region_name="us-east-1").assume_role(
        RoleArn=role_arn, RoleSessionName=session
    )
    c = answer["Credentials"]
    return Credentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
