"""AWS clients, created on first use so importing the engine never touches AWS."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

# Short network timeouts: the engine's per-layer timeout is the real bound, these stop stray threads.
_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 2})


@cache
def comprehend() -> Any:
    return boto3.client("comprehend", config=_CONFIG)


@cache
def bedrock_runtime() -> Any:
    return boto3.client("bedrock-runtime", config=_CONFIG)
