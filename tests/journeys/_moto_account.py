"""moto as one account of the platform, for the journey hops whose handlers run in that account."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
from moto import mock_aws


@contextmanager
def in_account(monkeypatch: pytest.MonkeyPatch, *, region: str, account: str) -> Iterator[None]:
    """Every boto3 client made inside talks to moto as `account` (MOTO_ACCOUNT_ID), with fake credentials
    and the Powertools settings the handlers read."""
    for name, value in {
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "MOTO_ACCOUNT_ID": account,
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_METRICS_NAMESPACE": "journey",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield


def lambda_context(*, region: str, account: str) -> SimpleNamespace:
    """The Lambda context the handlers' Powertools decorators read, as a function of `account`."""
    return SimpleNamespace(
        function_name="journey",
        memory_limit_in_mb=512,
        invoked_function_arn=f"arn:aws:lambda:{region}:{account}:function:journey",
        aws_request_id="req-1",
    )
