"""Create the CDK App the same way for `cdk synth`, tests and benchmarks.

The CDK CLI passes cdk.json's context (feature flags) to the app; tests and benchmarks that build an App
in-process do not go through the CLI, so the flags are read from cdk.json here to keep all three identical.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk import App, cx_api

from stacks.blocks.log_retention import require_log_retention
from stacks.blocks.nag import add_nag_checks
from stacks.composition import Platform, build_platform
from stacks.settings import PlatformConfig

CDK_JSON = Path(__file__).resolve().parents[1] / "cdk.json"


def feature_flags() -> dict[str, Any]:
    context: dict[str, Any] = json.loads(CDK_JSON.read_text(encoding="utf-8"))["context"]
    return context


def create_app(*, outdir: str | None = None, context: dict[str, Any] | None = None) -> App:
    return App(outdir=outdir, context={**feature_flags(), **(context or {})})


def compose(app: App, config: PlatformConfig) -> Platform:
    """Build the whole platform into `app` with cdk-nag attached (as `cdk synth`, tests and benchmarks do)."""
    platform = build_platform(app, config)
    add_nag_checks(app)
    require_log_retention(app)
    return platform


def error_annotations(assembly: cx_api.CloudAssembly) -> list[str]:
    """Error annotations (e.g. the log-retention check) of every stack, nested Stages included, one line each.

    The CDK CLI fails a synth on errors of top-level stacks only; those inside a nested Stage pass silently,
    so app.py fails on this list itself.
    """
    return [
        f"{message.id}: {message.entry.data}"
        for stack in assembly.stacks_recursively
        for message in stack.messages
        if message.level == cx_api.SynthesisMessageLevel.ERROR
    ]


def synthesize_platform(config: PlatformConfig, *, outdir: str | None = None) -> tuple[App, Platform]:
    """A new app holding the platform; the caller decides when to call `app.synth()`."""
    app = create_app(outdir=outdir)
    return app, compose(app, config)
