"""Shared fixtures: configs and one synthesized cloud assembly per config per test session.

Synth costs seconds; it happens once per session (per xdist worker), never once per test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
# A deprecated CDK API raises instead of printing a warning, in every synth of the suite and in the tools it
# runs (tests/test_no_deprecations.py). Set before aws_cdk starts the jsii kernel, which reads it.
os.environ["JSII_DEPRECATED"] = "fail"

from aws_cdk import cx_api

from stacks.app_factory import synth_errors, synthesize_platform
from stacks.blocks.nag import failed_validations
from stacks.composition import Platform
from stacks.settings import PlatformConfig, load_config

REPO_ROOT = Path(__file__).resolve().parents[1]

# Timing is measured in bench/, not asserted: no per-example deadline, so a loaded 2-core CI machine
# cannot turn a slow example into a failure.
hypothesis_settings.register_profile("platform", deadline=None, print_blob=True)
hypothesis_settings.load_profile("platform")


@dataclass
class SynthesizedPlatform:
    config: PlatformConfig
    platform: Platform
    assembly: cx_api.CloudAssembly
    outdir: Path

    def stacks(self) -> list[cx_api.CloudFormationStackArtifact]:
        return list(self.assembly.stacks_recursively)

    def template(self, stack_name: str) -> dict[str, Any]:
        for stack in self.stacks():
            if stack.stack_name == stack_name:
                template: dict[str, Any] = stack.template
                return template
        raise KeyError(f"no stack {stack_name}; have {[s.stack_name for s in self.stacks()]}")

    def templates(self) -> Iterator[tuple[cx_api.CloudFormationStackArtifact, dict[str, Any]]]:
        for stack in self.stacks():
            yield stack, stack.template


def synthesize(config: PlatformConfig, outdir: Path) -> SynthesizedPlatform:
    app, platform = synthesize_platform(config, outdir=str(outdir))
    assembly = app.synth()  # raises when cdk-nag reports an unacknowledged error at the top level
    violations = failed_validations(outdir)
    if violations:
        raise AssertionError("cdk-nag findings:\n" + "\n".join(violations))
    # What app.py fails a synth on (error annotations, log groups without retention) fails the fixture too.
    errors = synth_errors(outdir)
    if errors:
        raise AssertionError("synth reported errors:\n" + "\n".join(errors))
    return SynthesizedPlatform(config=config, platform=platform, assembly=assembly, outdir=outdir)


@pytest.fixture(scope="session")
def default_config() -> PlatformConfig:
    return load_config()


@pytest.fixture(scope="session")
def sandbox_config() -> PlatformConfig:
    return load_config("config/sandbox.yaml")


@pytest.fixture(scope="session")
def default_platform(
    default_config: PlatformConfig, tmp_path_factory: pytest.TempPathFactory
) -> SynthesizedPlatform:
    return synthesize(default_config, tmp_path_factory.mktemp("default-cdk-out"))


@pytest.fixture(scope="session")
def sandbox_platform(
    sandbox_config: PlatformConfig, tmp_path_factory: pytest.TempPathFactory
) -> SynthesizedPlatform:
    return synthesize(sandbox_config, tmp_path_factory.mktemp("sandbox-cdk-out"))
