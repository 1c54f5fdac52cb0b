"""API Gateway (REST, Cognito authorizer) entry point: parse, call the service, shape the answer.

The tenant is the signed-in user: the `sub` claim API Gateway copied from the verified Cognito token
into the request context. Nothing in the body or headers can name another tenant.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from pydantic import BaseModel, ValidationError

from app_backend.models import (
    ApiError,
    BadRequestError,
    FineTuneBody,
    InvokeBody,
    NotEnabledError,
    RatingBody,
    TooManyRequestsError,
    UnauthorizedError,
    UploadBody,
    bad_request,
)
from app_backend.service import AppService
from common.cold_start import keep_out_of_collections
from common.lake_layout import LakeLayoutError, check_tenant_id

logger = Logger(service="app_backend")
tracer = Tracer(service="app_backend")
app = APIGatewayRestResolver()
_service: AppService | None = None
Body = TypeVar("Body", bound=BaseModel)


def service() -> AppService:
    global _service
    if _service is None:
        from app_backend.wiring import build_service

        _service = build_service()
        keep_out_of_collections()
    return _service


def use_service(instance: AppService | None) -> None:
    """Tests and the benchmark inject a service built from doubles."""
    global _service
    _service = instance


def _json(status: int, body: dict[str, Any]) -> Response[str]:
    return Response(status_code=status, content_type="application/json", body=json.dumps(body))


def _tenant() -> str:
    context = app.current_event.raw_event.get("requestContext") or {}
    authorizer = context.get("authorizer") if isinstance(context, dict) else None
    claims = authorizer.get("claims") if isinstance(authorizer, dict) else None
    sub = claims.get("sub") if isinstance(claims, dict) else None
    if not isinstance(sub, str):
        raise UnauthorizedError("authorization", "no verified user in the request")
    try:
        return check_tenant_id(sub)
    except LakeLayoutError:
        raise UnauthorizedError("authorization", "the user id cannot be used as a tenant id") from None


def _body(model: type[Body]) -> Body:
    raw = app.current_event.body
    if not raw:
        raise BadRequestError("body", "a JSON object is required")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequestError("body", "not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequestError("body", "must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise bad_request(exc) from None


@app.post("/invoke")
def invoke() -> Response[str]:
    tenant = _tenant()
    return _json(200, service().invoke(tenant, _body(InvokeBody)))


@app.post("/ratings")
def rate() -> Response[str]:
    tenant = _tenant()
    return _json(201, service().rate(tenant, _body(RatingBody)))


@app.post("/uploads")
def create_upload() -> Response[str]:
    tenant = _tenant()
    return _json(201, service().create_upload(tenant, _body(UploadBody)))


@app.get("/uploads")
def list_uploads() -> Response[str]:
    return _json(200, service().list_uploads(_tenant()))


@app.post("/fine-tunes")
def start_fine_tune() -> Response[str]:
    tenant = _tenant()
    return _json(202, service().start_fine_tune(tenant, _body(FineTuneBody)))


@app.get("/fine-tunes/<fine_tune_id>")
def get_fine_tune(fine_tune_id: str) -> Response[str]:
    tenant = _tenant()
    if not (len(fine_tune_id) == 32 and all(c in "0123456789abcdef" for c in fine_tune_id)):
        raise BadRequestError("fine_tune_id", "expected the 32-character id POST /fine-tunes returned")
    return _json(200, service().get_fine_tune(tenant, fine_tune_id))


@app.get("/models")
def list_models() -> Response[str]:
    return _json(200, service().list_models(_tenant()))


@app.exception_handler(ApiError)
def api_error(exc: ApiError) -> Response[str]:
    message = exc.message if isinstance(exc, NotEnabledError) else str(exc)
    logger.info("request refused", extra={"status": exc.status, "field": exc.field})
    answer = _json(exc.status, {"message": message, "field": exc.field})
    if isinstance(exc, TooManyRequestsError):
        answer.headers["Retry-After"] = str(exc.retry_after)
    return answer


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
