"""Load a seed file (prompts, chains and their aliases) into a deployed prompt catalog.

    python -m tools.seed_prompt_catalog --api-url https://<id>.execute-api.<region>.amazonaws.com/prompt-catalog/

Runs with the caller's AWS credentials (SigV4, through `common.prompt_client`): the catalog files the
prompts under the business unit it maps those credentials to, so run it as a role of that unit (see
docs/prompt-catalog.md, "Deployment and access"). It creates versions and moves every alias except `prod`
with those credentials (the catalog decides: a stage alias moves only by that stage's release role).
`prod` moves only through the prod release role: without `--release-role-arn` each `prod` alias is
reported with the release path (the release manifest, moved by the prod pipeline's PromptRelease step),
and a chain whose steps follow a `prod` alias that does not exist yet waits for the next run; with
`--release-role-arn` the tool assumes that role and moves `prod` through it (only identities the role
trusts can: the prod pipeline's release-step role). Re-running is safe: existing names are reported and
left as they are; aliases already on the named version are left alone.

Exit codes: 0 done, 1 the catalog or AWS could not be reached, 2 bad input or a refused request (one line).
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "lambdas"))  # the Lambda asset root: `common.*` lives there

from common.prompt_client import PromptClient, PromptFetchError  # noqa: E402
from tools.release_prompts import (  # noqa: E402
    DEFAULT_MANIFEST,
    PROD_ALIAS,
    AliasMove,
    CatalogApi,
    ReleaseError,
    assume_release_role,
    check_release_role_arn,
    move_aliases,
)

DEFAULT_SEED = REPO_ROOT / "lambdas" / "prompt_catalog" / "examples" / "uk_pm_birthplace.json"
# Prompts first: chains pin prompt versions and aliases, which must exist when the chain is saved.
SECTIONS = ("prompts", "chains")
API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com$")
STEP_ALIAS = re.compile(r"^(?P<name>[^@:]+):(?P<alias>[a-z][a-z0-9_\-]*)$")
RELEASE_PATH = (
    f"prod moves only through the prod release role: list the version in {DEFAULT_MANIFEST} and the prod "
    "pipeline's PromptRelease step moves it (docs/prompt-catalog.md), or pass --release-role-arn"
)


class SeedError(RuntimeError):
    pass


def missing_prod_steps(api: CatalogApi, entry: dict[str, Any]) -> list[str]:
    """The steps of a chain entry that follow a prompt's `prod` alias that does not exist yet."""
    missing = []
    for step in entry.get("steps", []):
        match = STEP_ALIAS.match(str(step.get("prompt", "")))
        if match and match["alias"] == PROD_ALIAS:
            status, _ = api.send("GET", AliasMove("prompts", match["name"], 1).path())
            if status == 404:
                missing.append(step["prompt"])
    return missing


def seed_catalog(
    api: CatalogApi, seed: dict[str, Any], *, release: CatalogApi | None = None
) -> Iterator[str]:
    """Create each prompt and chain of `seed` (skipping names that exist) and set its aliases: `prod`
    through `release` (the prod release role's session) or, without it, reported with the release path."""
    for section in SECTIONS:
        for entry in seed.get(section, []):
            body = {k: v for k, v in entry.items() if k != "aliases"}
            name = body["name"]
            waiting = missing_prod_steps(api, body) if section == "chains" and release is None else []
            if waiting:
                yield f"waits   {section}/{name}: follows {', '.join(waiting)}, not moved yet; run again after the release"
                continue
            status, answer = api.send("POST", f"/{section}", body)
            if status == 201:
                yield f"created {section}/{name}"
            elif status == 409:
                yield f"exists  {section}/{name} (left as it is)"
            else:
                raise SeedError(f"{section}/{name}: create answered {status}: {answer[:300]!r}")
            moves = [
                AliasMove(section, name, version, alias)
                for alias, version in entry.get("aliases", {}).items()
            ]
            try:
                yield from move_aliases(api, [m for m in moves if m.alias != PROD_ALIAS])
                prod = [m for m in moves if m.alias == PROD_ALIAS]
                if release is not None:
                    yield from move_aliases(release, prod)
                else:
                    yield from (
                        f"prod    {section}/{name}:prod -> {m.version} not moved: {RELEASE_PATH}"
                        for m in prod
                    )
            except ReleaseError as error:
                raise SeedError(str(error)) from None


def region_of(api_url: str) -> str:
    match = API_HOST.match(urllib.parse.urlsplit(api_url).hostname or "")
    if match is None:
        raise SeedError(f"--api-url: {api_url!r} is not an execute-api URL; pass --region as well")
    return match.group(1)


def release_client(args: argparse.Namespace, region: str) -> PromptClient | None:
    """A catalog client signing as a session of the prod release role, or None without --release-role-arn."""
    if args.release_role_arn is None:
        return None
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    role_arn = check_release_role_arn(args.release_role_arn, "--release-role-arn")
    try:
        credentials = assume_release_role(
            boto3.client("sts", region_name=region), role_arn, f"seed-{getpass.getuser()}"
        )
    except (BotoCoreError, ClientError) as error:
        raise SeedError(f"--release-role-arn: cannot assume {role_arn}: {error}") from None
    return PromptClient(
        args.api_url, region=region, business_unit=args.business_unit, credentials=credentials
    )


def read_seed(path: Path) -> dict[str, Any]:
    try:
        seed = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise SeedError(f"--file: cannot read {path} as JSON: {error}") from None
    if not isinstance(seed, dict):
        raise SeedError(f"--file: {path} must hold a JSON object with 'prompts' and 'chains'")
    return seed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--api-url", required=True, help="the stack output ApiUrl")
    parser.add_argument("--region", help="the API's region (default: read from the URL)")
    parser.add_argument("--business-unit", help="x-business-unit, for callers mapped to several units")
    parser.add_argument(
        "--file", type=Path, default=DEFAULT_SEED, help="seed file (default: the UK PM example)"
    )
    parser.add_argument(
        "--release-role-arn",
        help="move `prod` aliases through this prod release role (<prefix>-<bu>-prod-prompt-release)",
    )
    args = parser.parse_args(argv)
    try:
        seed = read_seed(args.file)
        region = args.region or region_of(args.api_url)
        client = PromptClient(args.api_url, region=region, business_unit=args.business_unit)
        for line in seed_catalog(client, seed, release=release_client(args, region)):
            print(line)
    except (SeedError, ReleaseError) as error:
        print(f"seed failed: {error}", file=sys.stderr)
        return 2
    except PromptFetchError as error:
        print(f"seed failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
