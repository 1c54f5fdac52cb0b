"""Who in a business unit may use a shared tooling resource, as resource-policy statements.

The rule everywhere in the tooling account: a business unit's dev account writes (registers models,
uploads artifacts), its preprod and prod accounts read (describe, download, pull, deploy), and no other
account appears. In sandbox mode all of them are one account: principals are de-duplicated, and each
statement also requires the caller's `BusinessUnit` principal tag (platform roles carry it), so one
business unit's statements never open anything to another's roles.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aws_cdk import aws_iam as iam

from stacks.settings import BusinessUnit, PlatformConfig, Stage

BUSINESS_UNIT_TAG = "BusinessUnit"


def sid_part(business_unit: str) -> str:
    """An alphanumeric Sid fragment; names are lowercase, so 'X' for '-' keeps distinct names distinct."""
    return business_unit[0].upper() + business_unit[1:].replace("-", "X")


@dataclass(frozen=True)
class BusinessUnitAccess:
    business_unit: str
    writers: tuple[str, ...]
    readers: tuple[str, ...]
    tag_condition: bool

    @classmethod
    def of(cls, config: PlatformConfig, business_unit: BusinessUnit) -> BusinessUnitAccess:
        accounts = config.accounts_of(business_unit)
        return cls(
            business_unit=business_unit.name,
            writers=(accounts[Stage.DEV],),
            readers=tuple(sorted({accounts[Stage.PREPROD], accounts[Stage.PROD]})),
            tag_condition=config.is_sandbox,
        )

    @property
    def accounts(self) -> tuple[str, ...]:
        return tuple(sorted({*self.writers, *self.readers}))

    @property
    def sid(self) -> str:
        return sid_part(self.business_unit)

    def statement(
        self,
        *,
        sid: str,
        accounts: Sequence[str],
        actions: Sequence[str],
        resources: Sequence[str] = (),
        conditions: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> iam.PolicyStatement:
        """A resource-policy statement for `accounts` (each once), tag-conditioned in sandbox mode."""
        merged: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (conditions or {}).items()}
        if self.tag_condition:
            merged.setdefault("StringEquals", {})[f"aws:PrincipalTag/{BUSINESS_UNIT_TAG}"] = (
                self.business_unit
            )
        return iam.PolicyStatement(
            sid=f"{self.sid}{sid}",
            principals=[iam.AccountPrincipal(account) for account in sorted(set(accounts))],
            actions=list(actions),
            resources=list(resources) or None,
            conditions=merged or None,
        )


def business_unit_accesses(config: PlatformConfig) -> list[BusinessUnitAccess]:
    return [BusinessUnitAccess.of(config, bu) for bu in config.business_units]
