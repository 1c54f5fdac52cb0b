"""Sandbox mode puts every environment into one account and region: count what a fresh account's default
quotas bound (tools/sandbox_quotas.py) for config/sandbox.yaml."""

from __future__ import annotations

import pytest

from tests.conftest import SynthesizedPlatform
from tools.sandbox_quotas import DEFAULT_QUOTAS, count_quotas, main


def counts(platform: SynthesizedPlatform) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for result in count_quotas(platform.outdir):
        found.setdefault(result.quota, []).append(result.used)
    return found


def test_the_sandbox_is_one_account_and_region_and_every_quota_is_counted(
    sandbox_platform: SynthesizedPlatform,
) -> None:
    results = count_quotas(sandbox_platform.outdir)
    assert {(r.account, r.region) for r in results} == {("555555555555", "us-east-1")}
    assert set(DEFAULT_QUOTAS) <= {r.quota for r in results}
    found = counts(sandbox_platform)
    assert found["VPCs per Region"] == [6]  # one per environment: 2 business units x 3 stages
    assert found["Lambda reserved concurrency per Region"] == [4]  # one serving deployer per preprod/prod


@pytest.mark.parametrize(
    "quota",
    [
        "Elastic IP addresses per Region",
        "Internet gateways per Region",
        "NAT gateways per Availability Zone",
        "Interface VPC endpoints per VPC",
        "Lambda reserved concurrency per Region",
    ],
)
def test_the_sandbox_fits_the_default_quota(sandbox_platform: SynthesizedPlatform, quota: str) -> None:
    over = [r for r in count_quotas(sandbox_platform.outdir) if r.quota == quota and r.over]
    assert over == []


@pytest.mark.xfail(
    strict=True,
    reason="not built yet: every sandbox environment still has its own VPC (6 against the default 5); "
    "one VPC shared by the sandbox environments is issue 15 item 4's remaining work",
)
def test_the_sandbox_fits_the_default_vpc_quota(sandbox_platform: SynthesizedPlatform) -> None:
    assert max(counts(sandbox_platform)["VPCs per Region"]) <= DEFAULT_QUOTAS["VPCs per Region"]


def test_the_command_exits_1_on_a_quota_it_exceeds(
    sandbox_platform: SynthesizedPlatform, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(sandbox_platform.outdir)]) == 1
    assert "OVER 555555555555/us-east-1 VPCs per Region: 6 of 5" in capsys.readouterr().out
