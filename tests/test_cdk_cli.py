"""The toolchain is quiet and current: pinned Node LTS, every recommended feature flag configured, no notices or
telemetry from plain `npx cdk`, and the pipeline selection the docs print selects exactly the pipelines."""

from __future__ import annotations

import json
import subprocess

from tests.cdk_cli import NODE_BIN, REPO_ROOT, cdk, cli_env, listed_stacks
from tests.conftest import SynthesizedPlatform

# Node.js LTS lines jsii supports (jsii prints an end-of-life banner on anything older).
JSII_SUPPORTED_NODE_MAJORS = {22, 24}


def test_package_json_pins_a_node_lts_that_jsii_supports_and_make_runs_it() -> None:
    package = json.loads((REPO_ROOT / "package.json").read_text())
    assert int(package["devDependencies"]["node"].split(".")[0]) in JSII_SUPPORTED_NODE_MAJORS
    version = subprocess.run(
        [str(NODE_BIN / "node"), "--version"], capture_output=True, text=True, check=True, env=cli_env()
    ).stdout
    assert version.strip() == f"v{package['devDependencies']['node']}"
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "export PATH := $(CURDIR)/node_modules/.bin:$(PATH)" in makefile
    assert "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION" not in makefile


def test_the_cli_reports_no_unconfigured_feature_flag(default_platform: SynthesizedPlatform) -> None:
    result = cdk("flags", "--unstable=flags", "--app", str(default_platform.outdir))
    assert result.returncode == 0, result.stderr
    report = result.stdout + result.stderr  # the CLI writes its report to stderr
    assert "Unconfigured feature flags" in report  # the report ran ...
    assert [line for line in report.splitlines() if "<unset>" in line] == []  # ... and lists no flag


def test_plain_npx_cdk_prints_no_notice_telemetry_or_flag_warning(
    default_platform: SynthesizedPlatform,
) -> None:
    result = cdk("list", "--app", str(default_platform.outdir))
    assert result.returncode == 0
    noise = ("NOTICES", "telemetry", "feature flags are not configured", "end-of-life", "Supply a stack id")
    assert not [n for n in noise if n.lower() in (result.stdout + result.stderr).lower()], result.stderr
    settings = json.loads((REPO_ROOT / "cdk.json").read_text())
    assert settings["notices"] is False and settings["versionReporting"] is False
    assert settings["context"]["cli-telemetry"] is False


def test_the_documented_pipeline_selection_selects_exactly_the_pipelines(
    default_platform: SynthesizedPlatform,
) -> None:
    pipelines = {s.stack_name for s in default_platform.stacks() if s.stack_name.endswith("-pipeline")}
    assert set(listed_stacks(default_platform.outdir, "exco-*-pipeline")) == pipelines
    assert len(pipelines) == 3  # one per branch: dev, test, main (the shared stage is main's first wave)
