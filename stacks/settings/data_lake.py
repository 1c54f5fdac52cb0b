"""Data lake settings: lifecycle and retention per zone, Athena cost limit, and what every business unit
may do in each zone. Platform-level, not per BU.

Every zone has defaults, so a config that does not mention `data_lake` (or a zone) gets them:
objects move to Standard-IA after 90 days, are kept until someone sets an expiry, and old versions
go after 90 days. Business units write the zones their own services fill and read the ones that are
filled for them (see `ZoneAccess`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.lake_layout import Zone

# S3 refuses a Standard-IA transition earlier than 30 days after creation.
MIN_IA_TRANSITION_DAYS = 30
# Athena's smallest per-query bytes-scanned cutoff is 10 MB.
MIN_ATHENA_BYTES_SCANNED = 10 * 1024 * 1024

Days = Annotated[int, Field(ge=1, le=36_500)]


class ZoneLifecycle(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    transition_to_ia_days: Annotated[int, Field(ge=MIN_IA_TRANSITION_DAYS, le=36_500)] | None = 90
    expiry_days: Days | None = None
    object_lock_retention_days: Days | None = None
    # GOVERNANCE can be lifted by a privileged principal (dev teardown); COMPLIANCE cannot, by anyone.
    object_lock_mode: Literal["GOVERNANCE", "COMPLIANCE"] = "GOVERNANCE"

    @model_validator(mode="after")
    def _consistent(self) -> ZoneLifecycle:
        if self.expiry_days is None:
            return self
        if self.transition_to_ia_days is not None and self.expiry_days <= self.transition_to_ia_days:
            raise ValueError(
                f"expiry_days ({self.expiry_days}) must be greater than transition_to_ia_days "
                f"({self.transition_to_ia_days}), or set transition_to_ia_days to null"
            )
        if self.object_lock_retention_days is not None and self.expiry_days < self.object_lock_retention_days:
            raise ValueError(
                f"expiry_days ({self.expiry_days}) must be at least object_lock_retention_days "
                f"({self.object_lock_retention_days}): locked objects cannot expire earlier"
            )
        return self


class ZoneLifecycles(BaseModel):
    """One entry per zone (the names of `common.lake_layout.Zone`); unknown zone names are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    raw: ZoneLifecycle = ZoneLifecycle()
    curated: ZoneLifecycle = ZoneLifecycle()
    prompt_catalog: ZoneLifecycle = ZoneLifecycle()
    evaluation_datasets: ZoneLifecycle = ZoneLifecycle()
    evaluation_results: ZoneLifecycle = ZoneLifecycle()
    feedback: ZoneLifecycle = ZoneLifecycle()
    filter_decisions: ZoneLifecycle = ZoneLifecycle()
    model_metadata: ZoneLifecycle = ZoneLifecycle()

    def for_zone(self, zone: Zone) -> ZoneLifecycle:
        lifecycle: ZoneLifecycle = getattr(self, zone.value)
        return lifecycle


class LakeAccess(StrEnum):
    READ = "read"
    WRITE = "write"
    READ_WRITE = "read_write"

    @property
    def reads(self) -> bool:
        return self in (LakeAccess.READ, LakeAccess.READ_WRITE)

    @property
    def writes(self) -> bool:
        return self in (LakeAccess.WRITE, LakeAccess.READ_WRITE)


class ZoneAccess(BaseModel):
    """What each business unit's accounts may do under their own `<business_unit>/` prefix of a zone.

    `null` means no access. The defaults: a business unit writes (and reads back) what its own
    services produce, and only reads what is prepared for it elsewhere (prompt catalog exports from
    the tooling account, evaluation datasets curated in the lake account). Nothing ever deletes.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    raw: LakeAccess | None = LakeAccess.READ_WRITE  # tenant uploads in, preprocessing reads them
    curated: LakeAccess | None = LakeAccess.READ_WRITE  # preprocessing writes, training reads
    prompt_catalog: LakeAccess | None = LakeAccess.READ
    evaluation_datasets: LakeAccess | None = LakeAccess.READ
    evaluation_results: LakeAccess | None = LakeAccess.READ_WRITE
    feedback: LakeAccess | None = LakeAccess.READ_WRITE
    filter_decisions: LakeAccess | None = LakeAccess.READ_WRITE
    model_metadata: LakeAccess | None = LakeAccess.READ_WRITE

    def for_zone(self, zone: Zone) -> LakeAccess | None:
        access: LakeAccess | None = getattr(self, zone.value)
        return access


class DataLakeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    zones: ZoneLifecycles = ZoneLifecycles()
    business_unit_access: ZoneAccess = ZoneAccess()
    athena_bytes_scanned_cutoff_per_query: Annotated[int, Field(ge=MIN_ATHENA_BYTES_SCANNED)] = 10 * 1024**3
    noncurrent_version_expiry_days: Days = 90
