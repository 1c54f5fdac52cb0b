"""The review API's requests as API Gateway hands them to the function (IAM auth: the caller's ARN)."""

from __future__ import annotations

import json


def api_event(method: str, path: str, body: object = None, *, principal: str) -> dict:
    """What API Gateway hands the review function for an IAM-signed request of `principal`."""
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": {"Content-Type": "application/json"},
        "queryStringParameters": None,
        "pathParameters": None,
        "requestContext": {"resourcePath": path, "httpMethod": method, "identity": {"userArn": principal}},
        "body": body if body is None or isinstance(body, str) else json.dumps(body),
        "isBase64Encoded": False,
    }
