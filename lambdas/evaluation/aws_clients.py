"""boto3 clients made on first use, so that importing a module (and every test) needs no AWS set-up."""

from __future__ import annotations

from typing import Any


class LazyClient:
    """`sqs = LazyClient("sqs")` on a class: `self.sqs` is the client its constructor stored in `self._sqs`
    (tests pass a moto or Stubber client), or a boto3 client made, and kept there, on first use."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.slot = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = f"_{name}"

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        client = getattr(instance, self.slot)
        if client is None:
            import boto3

            client = boto3.client(self.service)
            setattr(instance, self.slot, client)
        return client
