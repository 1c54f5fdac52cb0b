"""What every command-line tool here shares: load the config or exit 2 with one line per problem.

Exit codes of the tools: 0 done, 1 the work itself failed (a check found something, an AWS call failed),
2 the input was wrong (arguments, config) - the same convention as argparse's usage errors.
"""

from __future__ import annotations

import sys

from stacks.settings import ConfigError, PlatformConfig, load_config

USAGE_ERROR = 2


def fail(message: str, *, status: int = USAGE_ERROR) -> SystemExit:
    """Print `message` (one line per problem, no traceback) and return the SystemExit to raise."""
    print(message, file=sys.stderr)
    return SystemExit(status)


def load_config_or_exit(path: str | None) -> PlatformConfig:
    try:
        return load_config(path)
    except ConfigError as error:
        raise fail(str(error)) from None
