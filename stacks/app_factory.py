"""Create the CDK App the same way for `cdk synth`, tests and benchmarks.

The CDK CLI passes cdk.json's context (feature flags) to the app; tests and benchmarks that build an App
in-process do not go through the CLI, so the flags are read from cdk.json here to keep all three identical.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk import App, Aspects

from stacks.blocks.log_retention import RequireLogRetention
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
    Aspects.of(app).add(RequireLogRetention())
    return platform


def synthesize_platform(config: PlatformConfig, *, outdir: str | None = None) -> tuple[App, Platform]:
    """A new app holding the platform; the caller decides when to call `app.synth()`."""
    app = create_app(outdir=outdir)
    return app, compose(app, config)
