"""Whole-config checks the loader runs after the typed models accepted every section.

The pydantic models check each field and section on its own; what needs the whole config is here: reserved
names, names that collide across business units and use cases, the length limits of the physical names that
prefix + names produce, and the GPU instance types and image registries of each business unit's region.
Every check yields problems as `field: what is wrong and what to do`, so `ConfigError` prints one line each
and nothing reaches a construct (where the same mistake would end in a traceback or inside jsii).

To add a check for a new config section: write a function `(PlatformConfig) -> Iterable[str]` and decorate it
with `@config_check`; `problems(config)` runs all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from common.lake_layout import Zone
from stacks.settings.platform import STAGES, PlatformConfig
from stacks.settings.serving import CATALOG_FILE, GpuCatalog, load_catalog
from stacks.settings.suggest import did_you_mean

ConfigCheck = Callable[[PlatformConfig], Iterable[str]]
CHECKS: list[ConfigCheck] = []


def config_check(check: ConfigCheck) -> ConfigCheck:
    """Register a whole-config check (run by the loader, in registration order)."""
    CHECKS.append(check)
    return check


def problems(config: PlatformConfig) -> list[str]:
    return [problem for check in CHECKS for problem in check(config)]


# ---- reserved names ---------------------------------------------------------------------------------

RESERVED_BUSINESS_UNIT_NAMES = {
    "shared": "it is the BusinessUnit tag of the tooling and data lake stacks, which the lake's prefix fence "
    "exempts",
    "tooling": "the tooling account's stack, bucket and log group names start with <prefix>-tooling-",
    **{
        stage.value: "it is a stage name: the pipeline <prefix>-<stage>-pipeline and lake keys <bu>/<stage>/ "
        "would read ambiguously"
        for stage in STAGES
    },
}


@config_check
def _reserved_names(config: PlatformConfig) -> Iterator[str]:
    for index, bu in enumerate(config.business_units):
        reason = RESERVED_BUSINESS_UNIT_NAMES.get(bu.name)
        if reason:
            yield f"business_units[{index}].name: {bu.name!r} is reserved ({reason}); choose another name"


# ---- names that collide across business units and use cases ---------------------------------------


@config_check
def _registry_group_collisions(config: PlatformConfig) -> Iterator[str]:
    """`<prefix>-<bu>-<use case>`: retail + eu-qa and retail-eu + qa would be the same model package group."""
    owners: dict[str, str] = {}
    prefix = config.organization.prefix
    for index, bu in enumerate(config.business_units):
        for uc_index, use_case in enumerate(bu.use_cases):
            group = f"{prefix}-{bu.name}-{use_case}"
            field = f"business_units[{index}].use_cases[{uc_index}]"
            if group in owners:
                yield (
                    f"{field}: model package group {group} is also the group of {owners[group]}; rename the "
                    "business unit or the use case so <prefix>-<business unit>-<use case> differs"
                )
            else:
                owners[group] = field


@config_check
def _environment_name_collisions(config: PlatformConfig) -> Iterator[str]:
    """Stack, role, bucket and function names are `<prefix>-<bu>-<stage>-<suffix>`: when one environment's
    name starts another's (`retail` + dev and `retail-dev` + prod: exco-retail-dev-prod-...), those suffixed
    names can collide, and name prefixes used for cleanup (`make destroy`) would match the other's."""
    environments = [(index, env.name) for index, bu in enumerate(config.business_units) for env in
                    (config.environment(bu, stage) for stage in STAGES)]  # fmt: skip
    reported: set[int] = set()
    for index, name in environments:
        for other_index, other in environments:
            if other_index != index and other.startswith(f"{name}-") and other_index not in reported:
                reported.add(other_index)
                yield (
                    f"business_units[{other_index}].name: environment {other} begins with environment {name} of "
                    f"business_units[{index}], so names derived from them can collide; choose a name that does "
                    "not start with another business unit's name followed by a stage"
                )


# ---- length limits of the physical names -------------------------------------------------------------


@dataclass(frozen=True)
class NameLimit:
    """One kind of physical name the platform derives from the config, and the service's limit for it."""

    kind: str
    limit: int
    names: Callable[[PlatformConfig], Iterable[tuple[str, str]]]  # -> (field to blame, name)


def _lake_buckets(config: PlatformConfig) -> Iterator[tuple[str, str]]:
    for zone in Zone:
        yield (
            "organization.prefix",
            f"{config.organization.prefix}-lake-{zone.value.replace('_', '-')}-{config.data_lake_account}-"
            f"{config.home_region}",
        )


def _artifact_bucket(config: PlatformConfig) -> Iterator[tuple[str, str]]:
    yield (
        "organization.prefix",
        f"{config.organization.prefix}-tooling-artifacts-{config.tooling_account}-{config.home_region}",
    )


def _per_environment(suffix: str) -> Callable[[PlatformConfig], Iterator[tuple[str, str]]]:
    def names(config: PlatformConfig) -> Iterator[tuple[str, str]]:
        for index, bu in enumerate(config.business_units):
            for stage in STAGES:
                yield f"business_units[{index}].name", f"{config.environment(bu, stage).name}{suffix}"

    return names


def _gate_callers(config: PlatformConfig) -> Iterator[tuple[str, str]]:
    for index, bu in enumerate(config.business_units):
        for stage in STAGES:
            # = stacks.blocks.evaluation_gate.gate_caller_role_name (tests compare the two)
            yield (
                f"business_units[{index}].name",
                f"{config.organization.prefix}-pipeline-{bu.name}-{stage.value}-gate-caller",
            )


def _registry_groups(config: PlatformConfig) -> Iterator[tuple[str, str]]:
    for index, bu in enumerate(config.business_units):
        for uc_index, use_case in enumerate(bu.use_cases):
            yield (
                f"business_units[{index}].use_cases[{uc_index}]",
                f"{config.organization.prefix}-{bu.name}-{use_case}",
            )


NAME_LIMITS = (
    NameLimit("S3 bucket name", 63, _lake_buckets),
    NameLimit("S3 bucket name", 63, _artifact_bucket),
    NameLimit("SageMaker model package group name", 63, _registry_groups),
    # the longest explicit IAM role names: the preprod pipeline's evaluation gate caller
    # (<prefix>-pipeline-<bu>-<stage>-gate-caller) and the evaluation gate role (<env>-evaluation-gate)
    NameLimit("IAM role name", 64, _gate_callers),
    NameLimit("IAM role name", 64, _per_environment("-evaluation-gate")),
    NameLimit("SageMaker endpoint / inference component name", 63, _per_environment("-serving-base")),
    NameLimit("Step Functions state machine name", 80, _per_environment("-evaluation")),
    NameLimit("CloudFormation stack name", 128, _per_environment("-registry-events")),
)


@config_check
def _name_lengths(config: PlatformConfig) -> Iterator[str]:
    for rule in NAME_LIMITS:
        for field, name in rule.names(config):
            if len(name) > rule.limit:
                yield (
                    f"{field}: makes the {rule.kind} {name} ({len(name)} characters; the limit is "
                    f"{rule.limit}); shorten organization.prefix or this name"
                )


# ---- GPU instance types and images of each business unit's region -----------------------------------


def _instance_problem(catalog: GpuCatalog, instance_type: str, region: str, field: str) -> str | None:
    offered = catalog.regions.get(region, [])
    if instance_type in offered and instance_type in catalog.instances:
        return None
    known_elsewhere = instance_type in catalog.instances
    where = f"not offered in {region}" if known_elsewhere else "not a GPU instance type in the catalog"
    return (
        f"{field}: {instance_type} is {where}{did_you_mean(instance_type, offered)}; offered in {region}: "
        f"{', '.join(offered)}"
    )


@config_check
def _gpu_sections(config: PlatformConfig) -> Iterator[str]:
    catalog = load_catalog()
    catalog_name = f"config/{CATALOG_FILE.name}"
    for index, bu in enumerate(config.business_units):
        region = bu.region or config.home_region
        serving, fine_tuning = bu.serving, bu.fine_tuning
        sections = [
            name for name, on in (("serving", serving.stages), ("fine_tuning", fine_tuning.stages)) if on
        ]
        if not sections:
            continue
        if region not in catalog.regions:
            for section in sections:
                stages = ", ".join(getattr(bu, section).stages)
                yield (
                    f"business_units[{index}].{section}: region {region} has no GPU instance list in "
                    f"{catalog_name}, and {section} runs in {stages} (by default when the section is not "
                    f"written); set `{section}: {{stages: []}}` to go without it, or add {region} to the catalog"
                )
            continue
        checks: list[tuple[str, str]] = []
        if "serving" in sections:
            checks.append((serving.instance_type, f"business_units[{index}].serving.instance_type"))
        if "fine_tuning" in sections:
            for name in ("training_instance_type", "evaluation_instance_type"):
                checks.append((getattr(fine_tuning, name), f"business_units[{index}].fine_tuning.{name}"))
        for instance_type, field in checks:
            problem = _instance_problem(catalog, instance_type, region, field)
            if problem:
                yield problem
        # images: the serving image is used by both sections (fine-tuning registers models for it)
        needs_registry = [
            f"business_units[{index}].{section}.image_uri"
            for section, settings in (("serving", serving), ("fine_tuning", fine_tuning))
            if (section in sections or section == "serving") and settings.image_uri is None
        ]
        if needs_registry and region not in catalog.dlc_registries:
            for field in needs_registry:
                yield (
                    f"{field}: no Deep Learning Containers registry is known for {region} in {catalog_name}; "
                    "set image_uri to an image in your own registry, or add the region's registry to the catalog"
                )


# ---- references inside a business unit --------------------------------------------------------------


@config_check
def _application_use_case(config: PlatformConfig) -> Iterator[str]:
    for index, bu in enumerate(config.business_units):
        use_case = bu.application.use_case
        if use_case is not None and use_case not in bu.use_cases:
            yield (
                f"business_units[{index}].application.use_case: {use_case!r} is not one of this business "
                f"unit's use_cases{did_you_mean(use_case, bu.use_cases)}; allowed: {', '.join(bu.use_cases)}"
            )
