"""Which business unit a caller acts for, from the IAM identity API Gateway verified.

The stack passes CALLER_BUSINESS_UNITS, a JSON object `{business_unit: [ARN prefix, ...]}`. API
Gateway's IAM authorization puts the caller's ARN in `requestContext.identity.userArn`, for a role an
assumed-role ARN `arn:aws:sts::<account>:assumed-role/<role>/<session>`. Prefixes such as
`arn:aws:sts::111122223333:assumed-role/` (a whole BU account) or
`arn:aws:sts::111122223333:assumed-role/bu-a-` (a role-name prefix in a shared sandbox account) work
for multi-account and single-account deployments alike.
"""

from __future__ import annotations

import os
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, RootModel

from common.lake_records import BusinessUnitName

from .errors import BadRequestError, ForbiddenError

CALLERS_ENV = "CALLER_BUSINESS_UNITS"
BUSINESS_UNIT_HEADER = "x-business-unit"

ArnPrefix = Annotated[str, Field(pattern=r"^arn:aws[a-z\-]*:(sts|iam)::[0-9]{12}:.*$")]


class CallerMap(RootModel[dict[BusinessUnitName, Annotated[list[ArnPrefix], Field(min_length=1)]]]):
    @classmethod
    def from_env(cls) -> CallerMap:
        return cls.model_validate_json(os.environ.get(CALLERS_ENV, "{}"))

    def business_units_for(self, caller_arn: str) -> list[str]:
        return sorted(
            bu for bu, prefixes in self.root.items() if any(caller_arn.startswith(p) for p in prefixes)
        )


def resolve_business_unit(callers: CallerMap, caller_arn: str | None, requested: str | None) -> str:
    """The caller's business unit; a caller mapped to several picks one with the x-business-unit header."""
    if not caller_arn:
        raise ForbiddenError("requestContext.identity.userArn", "no IAM identity on the request")
    candidates = callers.business_units_for(caller_arn)
    if not candidates:
        raise ForbiddenError("requestContext.identity.userArn", "caller is not mapped to any business unit")
    if requested is not None:
        if requested not in candidates:
            raise ForbiddenError(BUSINESS_UNIT_HEADER, "caller may not act for this business unit")
        return requested
    if len(candidates) > 1:
        raise BadRequestError(
            BUSINESS_UNIT_HEADER, f"caller maps to several business units; pick one of {candidates}"
        )
    return candidates[0]


# Aliases named after a stage are bound to that stage: only the stage's release identity moves them.
STAGE_ALIASES = ("dev", "preprod", "prod")
ALIAS_MOVERS_ENV = "ALIAS_MOVERS"


AccountId = Annotated[str, Field(pattern=r"^[0-9]{12}$")]


class AliasMovers(BaseModel):
    """ALIAS_MOVERS: the release role's name pattern and, per business unit and stage, its account.

    `{"role": "acme-{business_unit}-{stage}-prompt-release", "accounts": {"retail": {"prod": "<id>"}}}`
    admits `arn:aws:sts::<id>:assumed-role/acme-retail-prod-prompt-release/<session>` to move retail's
    `prod` alias. A pattern and account ids keep the variable small (Lambda allows 4 KB in all) as
    business units are added. A stage alias without an account has no mover (fail closed).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Annotated[str, Field(pattern=r"^[A-Za-z0-9+=,.@_{}\-]{1,128}$")] = (
        "{business_unit}-{stage}-prompt-release"
    )
    partition: Annotated[str, Field(pattern=r"^aws[a-z\-]*$")] = "aws"
    accounts: dict[BusinessUnitName, dict[str, AccountId]] = Field(default_factory=dict)

    @classmethod
    def from_env(cls) -> AliasMovers:
        return cls.model_validate_json(os.environ.get(ALIAS_MOVERS_ENV, "{}"))

    def movers(self, business_unit: str, alias: str) -> list[str]:
        account = self.accounts.get(business_unit, {}).get(alias)
        if account is None:
            return []
        role = self.role.format(business_unit=business_unit, stage=alias)
        return [f"arn:{self.partition}:sts::{account}:assumed-role/{role}/"]

    def check(self, business_unit: str, alias: str, caller_arn: str) -> None:
        if alias not in STAGE_ALIASES:
            return
        movers = self.movers(business_unit, alias)
        if not any(caller_arn.startswith(prefix) for prefix in movers):
            raise ForbiddenError(
                "path.alias",
                f"the {alias!r} alias is bound to the {alias} stage: only that stage's prompt release role "
                f"moves it ({', '.join(movers) or 'none configured'})",
            )


def principal_arn(caller_arn: str) -> str:
    """The IAM principal behind a caller ARN: an assumed-role session names its role."""
    parts = caller_arn.split(":", 5)
    if len(parts) == 6 and parts[2] == "sts" and parts[5].startswith("assumed-role/"):
        role = parts[5].split("/")[1]
        return f"{parts[0]}:{parts[1]}:iam::{parts[4]}:role/{role}"
    return caller_arn
