"""Print the exact `cdk bootstrap` commands for every account and region in a config.

The tooling account comes first (the pipelines live there); every other account trusts it (`--trust`)
so its pipelines can deploy there. Instead of AdministratorAccess, CloudFormation deploys with the
scoped managed policy `<prefix>-cdk-execution` built from `config/cdk-execution-policy.json`, created
in each account by the printed `aws iam create-policy` command.

    python -m tools.bootstrap_commands [config/platform.yaml]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

from stacks.settings import PlatformConfig
from tools.cli import load_config_or_exit

POLICY_DOCUMENT = "config/cdk-execution-policy.json"


@dataclass(frozen=True)
class Target:
    account: str
    region: str
    purpose: str


def execution_policy_name(config: PlatformConfig) -> str:
    return f"{config.organization.prefix}-cdk-execution"


def bootstrap_targets(config: PlatformConfig) -> list[Target]:
    """Tooling first (home region, then every other region a business unit uses), then the others."""
    purposes: dict[tuple[str, str], list[str]] = {}

    def add(account: str, region: str, purpose: str) -> None:
        purposes.setdefault((account, region), []).append(purpose)

    add(config.tooling_account, config.home_region, "tooling")
    # Cross-region pipeline actions need support stacks of the tooling account in those regions.
    for environment in config.environments():
        add(config.tooling_account, environment.region, "tooling")
    add(config.data_lake_account, config.home_region, "data lake")
    for environment in config.environments():
        add(environment.account, environment.region, environment.name)
    tooling_first = sorted(
        purposes,
        key=lambda key: (
            key[0] != config.tooling_account,
            key != (config.tooling_account, config.home_region),
        ),
    )
    return [
        Target(account, region, ", ".join(dict.fromkeys(purposes[(account, region)])))
        for account, region in tooling_first
    ]


def bootstrap_commands(config: PlatformConfig) -> list[str]:
    policy = execution_policy_name(config)
    tooling = config.tooling_account
    lines = [
        f"# cdk bootstrap for {config.organization.name} ({'sandbox' if config.is_sandbox else 'multi-account'}).",
        "# Run each block with credentials for the account it names (e.g. AWS_PROFILE=...).",
    ]
    policy_created: set[str] = set()
    for target in bootstrap_targets(config):
        lines.append(f"\n# {target.account} / {target.region}: {target.purpose}")
        if target.account not in policy_created:
            policy_created.add(target.account)
            lines.append(
                f"aws iam create-policy --policy-name {policy} --policy-document file://{POLICY_DOCUMENT}"
            )
        command = [
            "npx cdk bootstrap",
            f"aws://{target.account}/{target.region}",
            f"--cloudformation-execution-policies arn:aws:iam::{target.account}:policy/{policy}",
        ]
        if target.account != tooling:
            command.append(f"--trust {tooling}")
        lines.append(" ".join(command))
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default=None, help="config file (default: config/platform.yaml)")
    args = parser.parse_args(argv)
    print("\n".join(bootstrap_commands(load_config_or_exit(args.config))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
