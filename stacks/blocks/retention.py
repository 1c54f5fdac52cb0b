"""The one place that decides what survives a stack deletion.

Dev is disposable: buckets empty themselves and everything is destroyed with the stack. Preprod, prod and
the shared stacks (tooling, data lake) keep their data when a stack is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import RemovalPolicy

from stacks.settings import Stage


@dataclass(frozen=True)
class DataRetention:
    removal_policy: RemovalPolicy
    auto_delete_objects: bool

    @property
    def retains(self) -> bool:
        return self.removal_policy is RemovalPolicy.RETAIN


DESTROY = DataRetention(removal_policy=RemovalPolicy.DESTROY, auto_delete_objects=True)
RETAIN = DataRetention(removal_policy=RemovalPolicy.RETAIN, auto_delete_objects=False)


def retention_for(stage: Stage | None) -> DataRetention:
    """`None` stands for the shared stacks, which hold every business unit's data: always retained."""
    return DESTROY if stage is Stage.DEV else RETAIN
