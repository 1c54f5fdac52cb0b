"""API Gateway (REST, IAM auth) entry point of the prompt catalog.

Routes, the same for `prompts`, `chains` and `datasets` (`<kinds>` below):

| method | path                                 | does                                          |
| ------ | ------------------------------------ | --------------------------------------------- |
| POST   | /<kinds>                             | create (name, meta and version 1)             |
| GET    | /<kinds>?tag=&include_archived=&limit=&next_token= | list the caller's business unit |
| GET    | /<kinds>/{name}                      | metadata, latest version number, aliases      |
| POST   | /<kinds>/{name}/versions             | add an immutable version (next number)        |
| GET    | /<kinds>/{name}/versions/{version}   | get one version                               |
| GET    | /<kinds>/{name}/aliases/{alias}      | get the version an alias points at            |
| PUT    | /<kinds>/{name}/aliases/{alias}      | move it: `{"version": n}`; records who and when |
| POST   | /<kinds>/{name}/archive              | archive (nothing is deleted)                  |
| POST   | /<kinds>/{name}/render               | prompt text / chain steps ready / dataset inputs |
| POST   | /datasets/{name}/records             | accept records: a new version = latest + these |

Dataset versions live in the lake's evaluation_datasets zone at
`<bu>/shared/datasets/<name>/<version>/dataset.jsonl` (DATASET_BUCKET), written once, never overwritten.

The caller's business unit comes from the IAM identity (see `access.py`); a resource of another unit
is simply not found (404), so names do not leak.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from .access import BUSINESS_UNIT_HEADER, AliasMovers, CallerMap, resolve_business_unit
from .errors import BadRequestError, CatalogError
from .models import Kind
from .repository import CatalogRepository, ObjectStore
from .service import Catalog
from .settings import PromptCatalogSettings

logger = Logger()
tracer = Tracer()
metrics = Metrics()
app = APIGatewayRestResolver()

KIND_PATHS: dict[str, Kind] = {"prompts": "prompt", "chains": "chain", "datasets": "dataset"}


@lru_cache(maxsize=1)
def catalog() -> Catalog:
    """Built on first use, from env vars the stack sets (TABLE_NAME, BODY_BUCKET, DATASET_BUCKET,
    ALIAS_MOVERS)."""
    settings = PromptCatalogSettings.from_env()
    s3 = boto3.client("s3")
    repo = CatalogRepository(
        os.environ["TABLE_NAME"],
        boto3.client("dynamodb"),
        ObjectStore(os.environ["BODY_BUCKET"], s3),
        inline_body_max_bytes=settings.inline_body_max_bytes,
    )
    return Catalog(
        repo,
        ObjectStore(os.environ["DATASET_BUCKET"], dataset_writer_s3(s3)),
        settings,
        alias_movers=AliasMovers.from_env(),
    )


def dataset_writer_s3(default: Any) -> Any:
    """S3 as the dataset promotion role (the only writer of the lake's `<bu>/shared/`), credentials
    refreshed before they expire; the function's own client where no role is configured (tests)."""
    role_arn = os.environ.get("DATASET_WRITER_ROLE_ARN")
    if not role_arn:
        return default
    from botocore.credentials import RefreshableCredentials
    from botocore.session import get_session

    sts = boto3.client("sts")

    def refresh() -> dict[str, str]:
        issued = sts.assume_role(RoleArn=role_arn, RoleSessionName="prompt-catalog-datasets")["Credentials"]
        return {
            "access_key": issued["AccessKeyId"],
            "secret_key": issued["SecretAccessKey"],
            "token": issued["SessionToken"],
            "expiry_time": issued["Expiration"].isoformat(),
        }

    session = get_session()
    session._credentials = RefreshableCredentials.create_from_metadata(
        metadata=refresh(), refresh_using=refresh, method="sts-assume-role"
    )
    return boto3.Session(botocore_session=session).client("s3")


@lru_cache(maxsize=1)
def callers() -> CallerMap:
    return CallerMap.from_env()


def _caller() -> tuple[str, str]:
    """(business unit, caller ARN) of the current request."""
    arn = app.current_event.request_context.identity.user_arn
    requested = app.current_event.headers.get(BUSINESS_UNIT_HEADER)  # case-insensitive mapping
    return resolve_business_unit(callers(), arn, requested), arn or ""


def _body() -> Any:
    raw = app.current_event.body
    if raw is None or raw == "":
        return {}
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequestError("body", "not valid JSON") from None


def _kind(kinds: str) -> Kind:
    if kinds not in KIND_PATHS:
        raise CatalogError("path", "no such resource")
    return KIND_PATHS[kinds]


def _json(status: int, payload: Any) -> Response[str]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(payload))


def _version_number(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 999_999_999:
        raise BadRequestError("path.version", "a version number from 1 up")
    return int(text)


def _counted(metric: str, call: Callable[[], dict[str, Any]], status: int = 200) -> Response[str]:
    result = call()
    metrics.add_metric(name=metric, unit=MetricUnit.Count, value=1)
    return _json(status, result)


@app.post("/<kinds>")
def create(kinds: str) -> Response[str]:
    kind = _kind(kinds)
    bu, arn = _caller()
    return _counted("Created", lambda: catalog().create(kind, bu, arn, _body()), 201)


@app.get("/<kinds>")
def list_resources(kinds: str) -> Response[str]:
    kind = _kind(kinds)
    bu, _ = _caller()
    return _json(200, catalog().list_resources(kind, bu, app.current_event.query_string_parameters or {}))


@app.get("/<kinds>/<name>")
def describe(kinds: str, name: str) -> Response[str]:
    kind = _kind(kinds)
    bu, _ = _caller()
    return _json(200, catalog().describe(kind, bu, name))


@app.post("/<kinds>/<name>/versions")
def add_version(kinds: str, name: str) -> Response[str]:
    kind = _kind(kinds)
    bu, arn = _caller()
    return _counted("VersionAdded", lambda: catalog().add_version(kind, bu, arn, name, _body()), 201)


@app.get("/<kinds>/<name>/versions/<version>")
def get_version(kinds: str, name: str, version: str) -> Response[str]:
    kind = _kind(kinds)
    bu, _ = _caller()
    return _json(200, catalog().get_version(kind, bu, name, _version_number(version)))


@app.get("/<kinds>/<name>/aliases/<alias>")
def get_by_alias(kinds: str, name: str, alias: str) -> Response[str]:
    kind = _kind(kinds)
    bu, _ = _caller()
    return _json(200, catalog().get_by_alias(kind, bu, name, alias))


@app.put("/<kinds>/<name>/aliases/<alias>")
def move_alias(kinds: str, name: str, alias: str) -> Response[str]:
    kind = _kind(kinds)
    bu, arn = _caller()
    return _counted("AliasMoved", lambda: catalog().move_alias(kind, bu, arn, name, alias, _body()))


@app.post("/<kinds>/<name>/archive")
def archive(kinds: str, name: str) -> Response[str]:
    kind = _kind(kinds)
    bu, arn = _caller()
    return _counted("Archived", lambda: catalog().archive(kind, bu, arn, name))


@app.post("/datasets/<name>/records")
def accept_records(name: str) -> Response[str]:
    """Append accepted records (review API): a new immutable dataset version in the lake."""
    bu, arn = _caller()
    return _counted("RecordsAccepted", lambda: catalog().accept_records(bu, arn, name, _body()), 201)


@app.post("/<kinds>/<name>/render")
def render(kinds: str, name: str) -> Response[str]:
    kind = _kind(kinds)
    bu, _ = _caller()
    renderers = {
        "prompt": catalog().render_prompt,
        "chain": catalog().render_chain,
        "dataset": catalog().render_dataset,
    }
    return _counted("Rendered", lambda: renderers[kind](bu, name, _body()))


@app.exception_handler(CatalogError)
def catalog_error(exc: CatalogError) -> Response[str]:
    status = 404 if type(exc) is CatalogError else exc.status
    if status >= 500:  # defensive: client errors only
        status = 400
    logger.info("request rejected", extra={"status": status, "field": exc.field, "reason": exc.message})
    return _json(status, {"message": str(exc), "field": exc.field})


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
