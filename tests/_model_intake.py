"""A vetted base model in moto S3, laid out as the model intake (tools/model_intake.py) reads it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from moto import mock_aws

REGION = "eu-west-1"
FILES = {
    "config.json": b'{"model_type": "llama"}',
    "model.safetensors": b"\x08" * 4096,
    "tokenizer.json": b"{}",
}


@contextmanager
def moto_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An S3 client on moto, with fake credentials so that nothing reaches AWS."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield boto3.client("s3", region_name=REGION)


def create_bucket(s3: Any, bucket: str) -> None:
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})


def vet(s3: Any, bucket: str, contents: dict[str, bytes] = FILES, **manifest: Any) -> None:
    """`contents` under `llama/` with the manifest.json a vetting step writes (fields in `manifest` win)."""
    body = {
        "model": "llama-test-1b",
        "files": {n: hashlib.sha256(d).hexdigest() for n, d in contents.items()},
    }
    body.update(manifest)
    for name, data in contents.items():
        s3.put_object(Bucket=bucket, Key=f"llama/{name}", Body=data)
    s3.put_object(Bucket=bucket, Key="llama/manifest.json", Body=json.dumps(body).encode())
