"""Validate a platform config without synthesizing anything: one line per problem, exit 2 when invalid.

python -m tools.check_config [config/platform.yaml]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from tools.cli import load_config_or_exit


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default=None, help="config file (default: config/platform.yaml)")
    args = parser.parse_args(argv)
    config = load_config_or_exit(args.config)
    environments = sum(1 for _ in config.environments())
    print(
        f"config OK: {config.organization.name}, {len(config.business_units)} business units, "
        f"{environments} environments ({config.deployment.mode.value})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
