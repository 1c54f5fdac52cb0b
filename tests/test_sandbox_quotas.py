"""Sandbox mode puts every environment into one account and region: count what a fresh account's default
quotas bound (tools/sandbox_quotas.py) for config/sandbox.yaml."""

from __future__ import annotations

import json
from pathlib import Path

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
    assert found["VPCs per Region"] == [1]  # one shared by the 6 environments (2 business units x 3 stages)
    assert found["Gateway VPC endpoints per Region"] == [2]  # S3 and DynamoDB, of that one VPC
    assert found["Lambda reserved concurrency per Region"] == [4]  # one serving deployer per preprod/prod
    # every interface endpoint sits in the shared VPC, once per service
    (endpoints,) = found["Interface VPC endpoints per VPC"]
    assert 8 <= endpoints <= DEFAULT_QUOTAS["Interface VPC endpoints per VPC"]


@pytest.mark.parametrize(
    "quota",
    [
        "VPCs per Region",
        "Gateway VPC endpoints per Region",
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


def test_the_command_exits_0_on_the_sandbox(
    sandbox_platform: SynthesizedPlatform, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(sandbox_platform.outdir)]) == 0
    out = capsys.readouterr().out
    assert "ok   555555555555/us-east-1 VPCs per Region: 1 of 5" in out
    assert "OVER" not in out


def one_vpc_per_environment(root: Path, environments: int) -> Path:
    """An assembly shaped like the sandbox before the shared VPC: one VPC per environment, one account."""
    artifacts = {}
    for index in range(environments):
        name = f"env{index}-baseline"
        template = {
            "Resources": {"Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.0.0.0/16"}}}
        }
        (root / f"{name}.template.json").write_text(json.dumps(template))
        artifacts[name] = {
            "type": "aws:cloudformation:stack",
            "environment": "aws://555555555555/us-east-1",
            "properties": {"templateFile": f"{name}.template.json", "stackName": name},
        }
    (root / "manifest.json").write_text(json.dumps({"artifacts": artifacts}))
    return root


def test_the_command_exits_1_on_a_quota_it_exceeds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(one_vpc_per_environment(tmp_path, 6))]) == 1
    assert "OVER 555555555555/us-east-1 VPCs per Region: 6 of 5" in capsys.readouterr().out
    assert main([str(one_vpc_per_environment(tmp_path, 5))]) == 0
