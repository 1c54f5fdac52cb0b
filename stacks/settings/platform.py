"""The platform's one typed configuration model.

`config/platform.yaml` (or the file named by `-c config=...`) is parsed into `PlatformConfig` before any
construct is created, so every mistake fails before synth with a message that names the field and says
what is allowed. Stacks receive these objects (or the `EnvironmentSpec`s derived from them), never raw
dicts or context strings.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from stacks.settings.application import ApplicationSettings
from stacks.settings.data_lake import DataLakeSettings
from stacks.settings.evaluation import EvaluationSettings
from stacks.settings.fine_tuning import FineTuningSettings
from stacks.settings.guardrails import GuardrailSettings
from stacks.settings.model_usage import ModelUsageSettings
from stacks.settings.monitoring import MonitoringSettings
from stacks.settings.prompt_catalog import PromptCatalogStackSettings
from stacks.settings.regions import KNOWN_REGIONS
from stacks.settings.serving import ServingSettings, check_adapter_serving
from stacks.settings.suggest import did_you_mean
from stacks.settings.tooling import ToolingSettings


class Stage(StrEnum):
    DEV = "dev"
    PREPROD = "preprod"
    PROD = "prod"


STAGES: tuple[Stage, ...] = (Stage.DEV, Stage.PREPROD, Stage.PROD)


def _quoted_account_id(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(
            "write account ids as quoted strings in YAML (an unquoted number loses leading zeros)"
        )
    return value


def _account_id(value: str) -> str:
    if not (len(value) == 12 and value.isascii() and value.isdigit()):
        raise ValueError(f"{value!r} is not an AWS account id: write exactly 12 digits, quoted in YAML")
    return value


def _region(value: str) -> str:
    if value not in KNOWN_REGIONS:
        raise ValueError(
            f"unknown region {value!r}{did_you_mean(value, KNOWN_REGIONS)}; write an AWS region code such as eu-west-1 "
            "(the accepted ones: stacks/settings/regions.py)"
        )
    return value


def _cidr(value: str) -> str:
    try:
        network = ipaddress.IPv4Network(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IPv4 CIDR block such as 10.10.0.0/16 ({exc})") from None
    if not network.is_private or not 16 <= network.prefixlen <= 22:
        raise ValueError(
            f"{value!r} must be a private range between /16 and /22 (room for two AZs of subnets)"
        )
    return value


AccountId = Annotated[str, BeforeValidator(_quoted_account_id), AfterValidator(_account_id)]
Region = Annotated[str, AfterValidator(_region)]
Cidr = Annotated[str, AfterValidator(_cidr)]
# Short lowercase names: they are part of stack, bucket and role names (S3 allows 63 characters in all).
ShortName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,14}[a-z0-9]$")]
UseCaseName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")]
CostCenter = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:/=+\-@ ]+$")]

# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557)


def _retention(value: int) -> int:
    if value not in LOG_RETENTION_DAYS:
        raise ValueError(f"{value} is not a CloudWatch Logs retention; allowed: {LOG_RETENTION_DAYS}")
    return value


class StrictModel(BaseModel):
    """Unknown keys are errors (typos must not pass silently); parsed config is immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Organization(StrictModel):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    prefix: Annotated[str, Field(pattern=r"^[a-z][a-z0-9]{1,9}$")] = Field(
        description="2-10 lowercase letters/digits; starts every stack and resource name"
    )
    cost_center: CostCenter = Field(description="CostCenter tag of the shared (tooling, data lake) stacks")


class DeploymentMode(StrEnum):
    MULTI_ACCOUNT = "multi_account"
    SANDBOX = "sandbox"


class SandboxNetwork(StrictModel):
    """Sandbox mode: the one VPC every environment of a region shares (a fresh account may hold 5 VPCs)."""

    vpc_cidr: Cidr = "10.0.0.0/16"
    max_azs: Annotated[int, Field(ge=1, le=3)] = 2


class Deployment(StrictModel):
    mode: DeploymentMode = DeploymentMode.MULTI_ACCOUNT
    sandbox_account: AccountId | None = Field(
        default=None, description="the one account every environment uses when mode is sandbox"
    )
    sandbox_network: SandboxNetwork | None = Field(
        default=None,
        description="sandbox mode: CIDR and AZs of the VPC all environments share (default 10.0.0.0/16, 2 AZs)",
    )

    @model_validator(mode="after")
    def _sandbox_needs_account(self) -> Deployment:
        if self.mode is DeploymentMode.SANDBOX and self.sandbox_account is None:
            raise ValueError("sandbox_account: required when mode is 'sandbox'")
        if self.mode is DeploymentMode.MULTI_ACCOUNT and self.sandbox_account is not None:
            raise ValueError("sandbox_account: only allowed when mode is 'sandbox'")
        if self.mode is DeploymentMode.MULTI_ACCOUNT and self.sandbox_network is not None:
            raise ValueError(
                "sandbox_network: only allowed when mode is 'sandbox' (each environment's VPC comes from "
                "stages.<stage>.vpc_cidr)"
            )
        return self


class SharedAccounts(StrictModel):
    tooling: AccountId
    data_lake: AccountId


class StageAccounts(StrictModel):
    dev: AccountId
    preprod: AccountId
    prod: AccountId

    def of(self, stage: Stage) -> str:
        return str(getattr(self, stage.value))


class SourceProvider(StrEnum):
    GITHUB = "github"
    GITLAB = "gitlab"
    BITBUCKET = "bitbucket"
    CODECOMMIT = "codecommit"


class Branches(StrictModel):
    """Which branch deploys which stage (dev -> dev, test -> preprod, main -> prod by default)."""

    dev: str = "dev"
    preprod: str = "test"
    prod: str = "main"

    def of(self, stage: Stage) -> str:
        return str(getattr(self, stage.value))


class Source(StrictModel):
    provider: SourceProvider
    repository: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)?$")] = Field(
        description="owner/name for GitHub, GitLab, Bitbucket; the repository name for CodeCommit"
    )
    connection_arn: (
        Annotated[
            str,
            Field(
                pattern=r"^arn:aws[a-z-]*:(codeconnections|codestar-connections):[a-z0-9-]+:\d{12}:connection/[0-9a-f-]{36}$"
            ),
        ]
        | None
    ) = None
    branches: Branches = Branches()

    @model_validator(mode="after")
    def _connection_for_hosted_providers(self) -> Source:
        hosted = self.provider is not SourceProvider.CODECOMMIT
        if hosted and self.connection_arn is None:
            raise ValueError(
                f"connection_arn: required for provider '{self.provider.value}' (a CodeConnections ARN)"
            )
        if not hosted and self.connection_arn is not None:
            raise ValueError("connection_arn: not used with provider 'codecommit'; remove it")
        if hosted and "/" not in self.repository:
            raise ValueError(f"repository: write owner/name for provider '{self.provider.value}'")
        return self


class StageSettings(StrictModel):
    interface_endpoints: bool = Field(
        description="create the VPC interface endpoints (about 7 USD per endpoint per AZ per month)"
    )
    vpc_cidr: Cidr
    max_azs: Annotated[int, Field(ge=1, le=3)] = 2
    log_retention_days: Annotated[int, AfterValidator(_retention)]


# Dev is cheap and disposable; preprod mirrors prod so the evaluation gate sees the real network path.
_STAGE_DEFAULTS: dict[Stage, dict[str, Any]] = {
    Stage.DEV: {"interface_endpoints": False, "vpc_cidr": "10.10.0.0/16", "log_retention_days": 30},
    Stage.PREPROD: {"interface_endpoints": True, "vpc_cidr": "10.20.0.0/16", "log_retention_days": 90},
    Stage.PROD: {"interface_endpoints": True, "vpc_cidr": "10.30.0.0/16", "log_retention_days": 365},
}


class StagesSettings(StrictModel):
    dev: StageSettings
    preprod: StageSettings
    prod: StageSettings

    @model_validator(mode="before")
    @classmethod
    def _merge_stage_defaults(cls, data: Any) -> Any:
        # A partial override such as `dev: {interface_endpoints: true}` keeps dev's other defaults.
        if data is None:
            data = {}
        if not isinstance(data, dict):
            return data
        merged = dict(data)
        for stage, defaults in _STAGE_DEFAULTS.items():
            given = data.get(stage.value, {})
            merged[stage.value] = {**defaults, **given} if isinstance(given, dict) else given
        return merged

    def of(self, stage: Stage) -> StageSettings:
        settings: StageSettings = getattr(self, stage.value)
        return settings


class LambdaSettings(StrictModel):
    powertools_layer_version: Annotated[int, Field(ge=1)] = Field(
        default=27,
        description="version of the public layer AWSLambdaPowertoolsPythonV3-python314-x86_64 in your region",
    )


class BusinessUnit(StrictModel):
    name: ShortName
    cost_center: CostCenter
    region: Region | None = Field(default=None, description="defaults to home_region")
    accounts: StageAccounts | None = Field(default=None, description="required in multi_account mode")
    use_cases: Annotated[list[UseCaseName], Field(min_length=1)]
    guardrails: GuardrailSettings = Field(
        default=GuardrailSettings(), description="input/output filters of this business unit's models"
    )
    evaluation: EvaluationSettings = Field(
        default_factory=EvaluationSettings, description="evaluation engine: candidates, weights, gate"
    )
    serving: ServingSettings = ServingSettings()
    fine_tuning: FineTuningSettings = FineTuningSettings()
    application: ApplicationSettings = ApplicationSettings()
    monitoring: MonitoringSettings = Field(
        default=MonitoringSettings(), description="dashboards, alarm thresholds, notifications, budgets"
    )
    model_usage: ModelUsageSettings = Field(
        default=ModelUsageSettings(),
        description="inference profiles, usage records, invocation logging, online evaluation (docs/cost.md)",
    )

    @model_validator(mode="after")
    def _unique_use_cases(self) -> BusinessUnit:
        duplicates = sorted({u for u in self.use_cases if self.use_cases.count(u) > 1})
        if duplicates:
            raise ValueError(f"use_cases: listed more than once: {', '.join(duplicates)}")
        return self

    @model_validator(mode="after")
    def _online_evaluation_has_a_judge(self) -> BusinessUnit:
        if self.model_usage.online_evaluation.sample_rate > 0 and self.evaluation.judge.model is None:
            raise ValueError(
                "model_usage.online_evaluation.sample_rate: online evaluation uses the offline judge; "
                "set evaluation.judge.model or set sample_rate to 0"
            )
        return self

    @model_validator(mode="after")
    def _adapters_need_inference_components(self) -> BusinessUnit:
        check_adapter_serving(self.serving, fine_tunes=bool(self.fine_tuning.stages))
        return self


@dataclass(frozen=True)
class EnvironmentSpec:
    """One business unit in one stage: where it deploys and what it is called."""

    business_unit: BusinessUnit
    stage: Stage
    account: str
    region: str
    settings: StageSettings
    org_prefix: str

    @property
    def name(self) -> str:
        """Prefix of every stack and resource name of this environment, e.g. `acme-retail-dev`."""
        return f"{self.org_prefix}-{self.business_unit.name}-{self.stage.value}"


class PlatformConfig(StrictModel):
    organization: Organization
    home_region: Region
    deployment: Deployment = Deployment()
    accounts: SharedAccounts | None = Field(default=None, description="required in multi_account mode")
    source: Source
    stages: StagesSettings = Field(default_factory=lambda: StagesSettings.model_validate({}))
    lambda_: LambdaSettings = Field(default=LambdaSettings(), alias="lambda")
    data_lake: DataLakeSettings = DataLakeSettings()
    tooling: ToolingSettings = ToolingSettings()
    prompt_catalog: PromptCatalogStackSettings = Field(
        default=PromptCatalogStackSettings(),
        description="the shared prompt catalog service (tooling account)",
    )
    business_units: Annotated[list[BusinessUnit], Field(min_length=1)]

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _check_accounts_and_names(self) -> PlatformConfig:
        names = [bu.name for bu in self.business_units]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(
                f"business_units: duplicate name(s) {', '.join(duplicates)}; each name must be unique"
            )
        if self.deployment.mode is DeploymentMode.SANDBOX:
            self._check_sandbox()
        else:
            self._check_multi_account()
        return self

    def _check_sandbox(self) -> None:
        if self.accounts is not None:
            raise ValueError(
                "accounts: remove this section in sandbox mode (deployment.sandbox_account is used)"
            )
        for index, bu in enumerate(self.business_units):
            if bu.accounts is not None:
                raise ValueError(
                    f"business_units[{index}].accounts: remove it in sandbox mode "
                    "(deployment.sandbox_account is used)"
                )

    def _check_multi_account(self) -> None:
        if self.accounts is None:
            raise ValueError("accounts: required in multi_account mode (tooling and data_lake account ids)")
        owners: dict[str, str] = {}

        def claim(account: str, role: str) -> None:
            if account in owners:
                raise ValueError(
                    f"{role}: account {account} is already used by {owners[account]}; in multi_account mode "
                    "every role and environment needs its own account (or use deployment.mode: sandbox)"
                )
            owners[account] = role

        claim(self.accounts.tooling, "accounts.tooling")
        claim(self.accounts.data_lake, "accounts.data_lake")
        for index, bu in enumerate(self.business_units):
            if bu.accounts is None:
                raise ValueError(f"business_units[{index}].accounts: required in multi_account mode")
            for stage in STAGES:
                claim(bu.accounts.of(stage), f"business_units[{index}].accounts.{stage.value}")

    # ---- derived views used by the app ------------------------------------------------------------

    @property
    def is_sandbox(self) -> bool:
        return self.deployment.mode is DeploymentMode.SANDBOX

    @property
    def sandbox_network(self) -> SandboxNetwork | None:
        """The VPC the sandbox environments share; None in multi_account mode (a VPC per environment)."""
        if not self.is_sandbox:
            return None
        return self.deployment.sandbox_network or SandboxNetwork()

    @property
    def tooling_account(self) -> str:
        return self._shared_account("tooling")

    @property
    def data_lake_account(self) -> str:
        return self._shared_account("data_lake")

    def _shared_account(self, role: Literal["tooling", "data_lake"]) -> str:
        if self.deployment.sandbox_account is not None:
            return self.deployment.sandbox_account
        assert self.accounts is not None  # guaranteed by validation
        return str(getattr(self.accounts, role))

    def business_unit(self, name: str) -> BusinessUnit:
        for bu in self.business_units:
            if bu.name == name:
                return bu
        raise KeyError(
            f"no business unit named {name!r}; known: {', '.join(b.name for b in self.business_units)}"
        )

    def environment(self, bu: BusinessUnit, stage: Stage) -> EnvironmentSpec:
        if self.deployment.sandbox_account is not None:
            account = self.deployment.sandbox_account
        else:
            assert bu.accounts is not None  # guaranteed by validation
            account = bu.accounts.of(stage)
        settings = self.stages.of(stage)
        shared = self.sandbox_network
        if shared is not None:
            # The environment lives in the shared sandbox VPC: its address range and AZs are that VPC's.
            settings = settings.model_copy(update={"vpc_cidr": shared.vpc_cidr, "max_azs": shared.max_azs})
        return EnvironmentSpec(
            business_unit=bu,
            stage=stage,
            account=account,
            region=bu.region or self.home_region,
            settings=settings,
            org_prefix=self.organization.prefix,
        )

    def environments(self) -> Iterator[EnvironmentSpec]:
        for bu in self.business_units:
            for stage in STAGES:
                yield self.environment(bu, stage)

    def accounts_of(self, bu: BusinessUnit) -> dict[Stage, str]:
        return {stage: self.environment(bu, stage).account for stage in STAGES}
