"""Shared CDK `Duration` objects, one per value.

Creating a Duration is a jsii round trip to Node, and the platform asks for the same few values (7 days, 5
minutes, ...) hundreds of times. A Duration is immutable, so one object per value serves every caller.
"""

from __future__ import annotations

from functools import cache

from aws_cdk import Duration


@cache
def _duration(unit: str, amount: float) -> Duration:
    made: Duration = getattr(Duration, unit)(amount)
    return made


def seconds(amount: float) -> Duration:
    return _duration("seconds", amount)


def minutes(amount: float) -> Duration:
    return _duration("minutes", amount)


def hours(amount: float) -> Duration:
    return _duration("hours", amount)


def days(amount: float) -> Duration:
    return _duration("days", amount)
