"""Who may call the shared prompt catalog API, and how a business unit stack gets the right to.

The catalog runs in the tooling account and serves every business unit. Two sides decide access:

- the catalog side: the API's resource policy admits the business units' accounts, and the function maps
  each caller to one business unit with `CALLER_BUSINESS_UNITS` (`caller_business_units` below);
- the caller side: a role in a business unit account needs `execute-api:Invoke` in its own policy
  (`grant_prompt_catalog_invoke`), because cross-account IAM authorization needs both sides.

Aliases named after a stage (`dev`, `preprod`, `prod`) are bound to that stage: the function lets only the
stage's prompt release role (`prompt_release_role`, named `<env>-prompt-release`, in that stage's
account) move them (`alias_movers` builds its ALIAS_MOVERS map), so a dev role cannot move `prod`. The prod
release role trusts exactly one principal: the prod pipeline's release step for that business unit
(`prompt_release_caller_role_name`, in the tooling account; stacks/blocks/prompt_release_step.py).

API Gateway reports an assumed role as `arn:aws:sts::<account>:assumed-role/<role name>/<session>`, so the
map holds STS prefixes. In multi-account mode every role of a business unit's accounts acts for that unit.
In sandbox mode all units share one account and are told apart by role name: CloudFormation names a role
`<stack name>-<logical id>-<random>`, and business unit stack names start with `<prefix>-<bu>-<stage>-`, so
`.../assumed-role/<prefix>-<bu>-` matches exactly that unit's roles. CloudFormation shortens the stack
part of a generated role name to 25 characters when the whole name would pass IAM's 64, so the prefix must
fit in 25 characters; `caller_business_units` refuses configs where prefixes could overlap or be cut.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.blocks import durations
from stacks.blocks.grants import allow
from stacks.blocks.nag import acknowledge
from stacks.settings import STAGES, EnvironmentSpec, PlatformConfig, Stage

# Every region the config accepts is a commercial region (stacks/settings/regions.py).
PARTITION = "aws"
# The API's stage name. The API id is random and unknown to other accounts at synth time, so callers'
# policies name the tooling account, the region and this distinctive stage instead of the id.
API_STAGE = "prompt-catalog"
KINDS = ("prompts", "chains", "datasets")
# Names of the shared stacks' roles in a sandbox account start with `<prefix>-<one of these>-`.
SHARED_STACK_NAMES = ("tooling", "data-lake", "prompt-catalog")
# CloudFormation keeps at least this much of the stack name in a generated IAM role name.
GENERATED_ROLE_STACK_PART = 25


class CatalogAccess(StrEnum):
    READ = "read"  # get, list, render: what applications and evaluation jobs need
    READ_WRITE = "read_write"  # also create, add versions, move aliases, archive: prompt engineers, pipelines


def assumed_role_prefix(account: str, role_name_prefix: str = "") -> str:
    return f"arn:{PARTITION}:sts::{account}:assumed-role/{role_name_prefix}"


def caller_business_units(config: PlatformConfig) -> dict[str, list[str]]:
    """CALLER_BUSINESS_UNITS for the catalog function: business unit -> caller ARN prefixes."""
    if not config.is_sandbox:
        return {
            bu.name: sorted({assumed_role_prefix(account) for account in config.accounts_of(bu).values()})
            for bu in config.business_units
        }
    _check_sandbox_role_prefixes(config)
    prefix = config.organization.prefix
    return {
        bu.name: [assumed_role_prefix(config.tooling_account, f"{prefix}-{bu.name}-")]
        for bu in config.business_units
    }


def _check_sandbox_role_prefixes(config: PlatformConfig) -> None:
    prefix = config.organization.prefix
    names = [bu.name for bu in config.business_units]
    for index, name in enumerate(names):
        field = f"business_units[{index}].name"
        role_prefix = f"{prefix}-{name}-"
        if len(role_prefix) > GENERATED_ROLE_STACK_PART:
            raise ValueError(
                f"{field}: in sandbox mode '{role_prefix}' must fit in {GENERATED_ROLE_STACK_PART} characters "
                "(CloudFormation cuts longer stack names out of generated role names, and the prompt catalog "
                "tells business units apart by that prefix); use a shorter business unit name or prefix"
            )
        clashes = [other for other in (*names, *SHARED_STACK_NAMES) if other.startswith(f"{name}-")]
        clashes += [shared for shared in SHARED_STACK_NAMES if shared == name]
        if clashes:
            raise ValueError(
                f"{field}: in sandbox mode '{name}' would also match the roles of {', '.join(sorted(clashes))} "
                f"(role names starting with '{role_prefix}'); rename one of them"
            )


def api_client_accounts(config: PlatformConfig) -> list[str]:
    """The accounts the API's resource policy admits: every business unit account (one in sandbox mode)."""
    return sorted({account for bu in config.business_units for account in config.accounts_of(bu).values()})


def prompt_catalog_invoke_arns(
    config: PlatformConfig, access: CatalogAccess = CatalogAccess.READ
) -> list[str]:
    """execute-api ARNs for a caller policy: any API id, but only the tooling account and the catalog stage."""
    base = f"arn:{PARTITION}:execute-api:{config.home_region}:{config.tooling_account}:*/{API_STAGE}"
    if access is CatalogAccess.READ_WRITE:
        return [f"{base}/*"]
    # Render is a POST but only reads; every other POST and PUT writes.
    return [f"{base}/GET/*", *(f"{base}/POST/{kind}/*/render" for kind in KINDS)]


def grant_prompt_catalog_invoke(
    grantee: iam.IGrantable, config: PlatformConfig, access: CatalogAccess = CatalogAccess.READ
) -> iam.Grant:
    """Let `grantee` (a role in a business unit account) call the prompt catalog API."""
    return iam.Grant.add_to_principal(
        grantee=grantee,
        actions=["execute-api:Invoke"],
        resource_arns=prompt_catalog_invoke_arns(config, access),
    )


def catalog_stack_name(config: PlatformConfig) -> str:
    """The prompt catalog stack (tooling account, home region); the prod release step reads its ApiUrl."""
    return f"{config.organization.prefix}-prompt-catalog"


def prompt_release_role_name(environment: EnvironmentSpec) -> str:
    """The one role of a business unit stage that moves the stage's alias in the catalog."""
    return f"{environment.name}-prompt-release"


def prompt_release_caller_role_name(environment: EnvironmentSpec) -> str:
    """The prod pipeline's release-step role (tooling account), the one principal the prod release role
    trusts. Shared pipeline, so not `<prefix>-<bu>-...` (that prefix marks the unit's own roles); never longer
    than the preprod gate caller's name, whose length the config loader checks."""
    bu, stage = environment.business_unit.name, environment.stage.value
    return f"{environment.org_prefix}-pipeline-{bu}-{stage}-release-caller"


def prompt_release_caller_arn(config: PlatformConfig, environment: EnvironmentSpec) -> str:
    return (
        f"arn:{PARTITION}:iam::{config.tooling_account}:role/{prompt_release_caller_role_name(environment)}"
    )


def prompt_release_role_arn(environment: EnvironmentSpec) -> str:
    return f"arn:{PARTITION}:iam::{environment.account}:role/{prompt_release_role_name(environment)}"


def alias_movers(config: PlatformConfig) -> dict[str, Any]:
    """ALIAS_MOVERS for the catalog function: the release role's name pattern and, per business unit and
    stage, the account it lives in (`prompt_catalog.access.AliasMovers`)."""
    return {
        "role": f"{config.organization.prefix}-{{business_unit}}-{{stage}}-prompt-release",
        "partition": PARTITION,
        "accounts": {
            bu.name: {stage.value: config.environment(bu, stage).account for stage in STAGES}
            for bu in config.business_units
        },
    }


def prompt_release_arns(config: PlatformConfig, environment: EnvironmentSpec) -> list[str]:
    """execute-api ARNs of the release role: read everything, move only its own stage's alias."""
    base = f"arn:{PARTITION}:execute-api:{config.home_region}:{config.tooling_account}:*/{API_STAGE}"
    return [f"{base}/GET/*", *(f"{base}/PUT/{kind}/*/aliases/{environment.stage.value}" for kind in KINDS)]


def prompt_release_role(scope: Construct, config: PlatformConfig, environment: EnvironmentSpec) -> iam.Role:
    """The stage's deployment identity for prompt aliases, in the stage's own account.

    Prod: only the prod pipeline's release step may assume it, by principal ARN condition (not as the
    principal itself, so recreating that role does not silently break the trust). Dev and preprod: only
    principals of this stage's account (in multi-account mode the account is the stage boundary; in
    sandbox mode, where every stage shares one account, the caller must also carry this stage's
    BusinessUnit and Stage tags, which every role of a business unit stage gets).
    """
    principal: iam.IPrincipal = iam.AccountPrincipal(environment.account)
    if environment.stage is Stage.PROD:
        principal = iam.AccountPrincipal(config.tooling_account).with_conditions(
            {"ArnEquals": {"aws:PrincipalArn": prompt_release_caller_arn(config, environment)}}
        )
    elif config.is_sandbox:
        principal = iam.AccountPrincipal(environment.account).with_conditions(
            {
                "StringEquals": {
                    "aws:PrincipalTag/BusinessUnit": environment.business_unit.name,
                    "aws:PrincipalTag/Stage": environment.stage.value,
                }
            }
        )
    role = iam.Role(
        scope,
        "PromptReleaseRole",
        role_name=prompt_release_role_name(environment),
        description=f"Moves the '{environment.stage.value}' alias of {environment.business_unit.name}'s prompts "
        "in the prompt catalog (the only identity the catalog lets do so)",
        assumed_by=principal,
        max_session_duration=durations.hours(1),
    )
    allow(role, actions=["execute-api:Invoke"], resources=prompt_release_arns(config, environment))
    for arn in prompt_release_arns(config, environment):
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::{arn}]",
            "The catalog API id lives in the tooling account and is unknown here at synth time; the ARN pins "
            "that account, region and the catalog stage, and PUT to this stage's alias routes only",
        )
    return role
