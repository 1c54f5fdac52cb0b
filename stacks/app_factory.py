"""Create the CDK App the same way for `cdk synth`, tests and benchmarks.

The CDK CLI passes cdk.json's context (feature flags) to the app; tests and benchmarks that build an App
in-process do not go through the CLI, so the flags are read from cdk.json here to keep all three identical.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aws_cdk import App

from stacks.blocks.log_retention import log_groups_without_retention
from stacks.blocks.nag import add_nag_checks
from stacks.composition import Platform, build_platform
from stacks.settings import PlatformConfig

CDK_JSON = Path(__file__).resolve().parents[1] / "cdk.json"
# The metadata type of `Annotations.of(scope).add_error` (cx_api.SynthesisMessageLevel.ERROR in the assembly).
ERROR_ENTRY = "aws:cdk:error"


def feature_flags() -> dict[str, Any]:
    context: dict[str, Any] = json.loads(CDK_JSON.read_text(encoding="utf-8"))["context"]
    return context


def create_app(*, outdir: str | None = None, context: dict[str, Any] | None = None) -> App:
    return App(outdir=outdir, context={**feature_flags(), **(context or {})})


def compose(app: App, config: PlatformConfig) -> Platform:
    """Build the whole platform into `app` with cdk-nag attached (as `cdk synth`, tests and benchmarks do)."""
    platform = build_platform(app, config)
    add_nag_checks(app)
    return platform


def stack_artifacts(outdir: str | Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(assembly directory, manifest entry) of every stack in the assembly, nested assemblies included."""
    manifest = json.loads((Path(outdir) / "manifest.json").read_text(encoding="utf-8"))
    for artifact in manifest.get("artifacts", {}).values():
        if artifact["type"] == "cdk:cloud-assembly":
            yield from stack_artifacts(Path(outdir) / artifact["properties"]["directoryName"])
        elif artifact["type"] == "aws:cloudformation:stack":
            yield Path(outdir), artifact


def _annotation_errors(directory: Path, artifact: dict[str, Any]) -> list[str]:
    entries = [(path, entry) for path, listed in artifact.get("metadata", {}).items() for entry in listed]
    if "additionalMetadataFile" in artifact:
        extra = json.loads((directory / artifact["additionalMetadataFile"]).read_text(encoding="utf-8"))
        entries += [(path, entry) for path, listed in extra.items() for entry in listed]
    return [f"{path}: {entry['data']}" for path, entry in entries if entry["type"] == ERROR_ENTRY]


def _retention_errors(directory: Path, artifact: dict[str, Any]) -> list[str]:
    template_file = artifact.get("properties", {}).get("templateFile")
    if template_file is None:
        return []
    text = (directory / template_file).read_text(encoding="utf-8")
    if "AWS::Logs::LogGroup" not in text:  # most templates have none: skip parsing them
        return []
    return log_groups_without_retention(artifact.get("displayName", template_file), json.loads(text))


def error_annotations(outdir: str | Path) -> list[str]:
    """Error annotations of every stack, nested Stages included, one line each.

    The CDK CLI fails a synth on errors of top-level stacks only; those inside a nested Stage pass silently,
    so app.py fails on this list itself. Read from the assembly's files: asking the jsii kernel for each
    stack's messages costs a round trip per stack that carries every acknowledgement and its stack trace.
    """
    return [error for found in stack_artifacts(outdir) for error in _annotation_errors(*found)]


def synth_errors(outdir: str | Path) -> list[str]:
    """What app.py fails a synth on: error annotations, and log groups without retention, of every stack
    (one walk over the assembly)."""
    errors: list[str] = []
    for directory, artifact in stack_artifacts(outdir):
        errors += _annotation_errors(directory, artifact) + _retention_errors(directory, artifact)
    return errors


def synthesize_platform(config: PlatformConfig, *, outdir: str | None = None) -> tuple[App, Platform]:
    """A new app holding the platform; the caller decides when to call `app.synth()`."""
    app = create_app(outdir=outdir)
    return app, compose(app, config)
