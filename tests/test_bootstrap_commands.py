"""`make bootstrap-commands`: tooling first, every other account trusts it, scoped execution policy."""

from __future__ import annotations

import json
import re

from stacks.settings import PlatformConfig
from tests.conftest import REPO_ROOT
from tools.bootstrap_commands import POLICY_DOCUMENT, bootstrap_commands

BOOTSTRAP = re.compile(r"^npx cdk bootstrap aws://(\d{12})/([a-z0-9-]+) (.*)$")


def bootstraps(config: PlatformConfig) -> list[tuple[str, str, str]]:
    return [m.groups() for line in bootstrap_commands(config) if (m := BOOTSTRAP.match(line))]  # type: ignore[misc]


def test_default_config_bootstraps_tooling_first_then_every_account_trusting_it(
    default_config: PlatformConfig,
) -> None:
    commands = bootstraps(default_config)
    assert [(a, r) for a, r, _ in commands] == [
        ("111111111111", "eu-west-1"),
        ("222222222222", "eu-west-1"),
        *((f"33333333333{i}", "eu-west-1") for i in (1, 2, 3)),
        *((f"44444444444{i}", "eu-west-1") for i in (1, 2, 3)),
    ]
    tooling_flags = commands[0][2]
    assert "--trust" not in tooling_flags
    for account, _, flags in commands:
        assert (
            f"--cloudformation-execution-policies arn:aws:iam::{account}:policy/exco-cdk-execution" in flags
        )
        assert "AdministratorAccess" not in flags
    assert all(flags.endswith("--trust 111111111111") for _, _, flags in commands[1:])


def test_each_account_creates_the_scoped_policy_once_before_bootstrapping(
    default_config: PlatformConfig,
) -> None:
    lines = bootstrap_commands(default_config)
    creates = [line for line in lines if line.startswith("aws iam create-policy")]
    assert len(creates) == 8
    assert all(f"file://{POLICY_DOCUMENT}" in line and "exco-cdk-execution" in line for line in creates)
    assert lines.index(creates[0]) < next(i for i, line in enumerate(lines) if line.startswith("npx cdk"))


def test_sandbox_config_needs_one_bootstrap_without_trust(sandbox_config: PlatformConfig) -> None:
    assert bootstraps(sandbox_config) == [
        (
            "555555555555",
            "us-east-1",
            "--cloudformation-execution-policies arn:aws:iam::555555555555:policy/exsb-cdk-execution",
        )
    ]


def test_execution_policy_denies_identities_and_grants_no_administrator() -> None:
    document = json.loads((REPO_ROOT / POLICY_DOCUMENT).read_text())
    allowed = {a for s in document["Statement"] if s["Effect"] == "Allow" for a in s["Action"]}
    denied = {a for s in document["Statement"] if s["Effect"] == "Deny" for a in s["Action"]}
    assert "*" not in allowed and "iam:*" not in allowed
    assert {"iam:CreateUser", "iam:CreateAccessKey", "organizations:*"} <= denied
