#!/usr/bin/env python3
"""CDK entry point: load the typed config, compose the platform, run cdk-nag on all of it."""

from __future__ import annotations

import sys

from stacks.app_factory import compose, create_app, synth_errors
from stacks.blocks.nag import failed_validations
from stacks.settings import ConfigError, load_config


def main() -> None:
    app = create_app()
    try:
        config = load_config(app.node.try_get_context("config"))
    except ConfigError as error:
        print(error, file=sys.stderr)
        raise SystemExit(2) from None
    compose(app, config)
    assembly = app.synth()
    errors = synth_errors(assembly.directory)
    if errors:
        print("synth errors:\n" + "\n".join(f"  - {e}" for e in errors), file=sys.stderr)
        raise SystemExit(1)
    violations = failed_validations(assembly.directory)
    if violations:
        print(
            "cdk-nag: unacknowledged findings:\n" + "\n".join(f"  - {v}" for v in violations), file=sys.stderr
        )
        raise SystemExit(1)


if __name__ == "__main__":
    main()
