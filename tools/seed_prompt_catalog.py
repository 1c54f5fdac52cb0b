"""Load a seed file (prompts, chains and their aliases) into a deployed prompt catalog.

    python -m tools.seed_prompt_catalog --api-url https://<id>.execute-api.<region>.amazonaws.com/prompt-catalog/

Runs with the caller's AWS credentials (SigV4, through `common.prompt_client`): the catalog files the
prompts under the business unit it maps those credentials to, so run it as a role of that unit (see
docs/prompt-catalog.md, "Deployment and access"). Re-running is safe: existing names are reported and
left as they are; aliases are set to the versions the file names.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "lambdas"))  # the Lambda asset root: `common.*` lives there

from common.prompt_client import PromptClient, PromptFetchError  # noqa: E402

DEFAULT_SEED = REPO_ROOT / "lambdas" / "prompt_catalog" / "examples" / "uk_pm_birthplace.json"
# Prompts first: chains pin prompt versions and aliases, which must exist when the chain is saved.
SECTIONS = ("prompts", "chains")
API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com$")


class SeedError(RuntimeError):
    pass


class CatalogApi(Protocol):
    def send(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]: ...


def seed_catalog(api: CatalogApi, seed: dict[str, Any]) -> Iterator[str]:
    """Create each prompt and chain of `seed` (skipping names that exist) and set its aliases."""
    for section in SECTIONS:
        for entry in seed.get(section, []):
            body = {k: v for k, v in entry.items() if k != "aliases"}
            name = body["name"]
            status, answer = api.send("POST", f"/{section}", body)
            if status == 201:
                yield f"created {section}/{name}"
            elif status == 409:
                yield f"exists  {section}/{name} (left as it is)"
            else:
                raise SeedError(f"{section}/{name}: create answered {status}: {answer[:300]!r}")
            for alias, version in entry.get("aliases", {}).items():
                path = f"/{section}/{urllib.parse.quote(name, safe='')}/aliases/{urllib.parse.quote(alias, safe='')}"
                status, answer = api.send("PUT", path, {"version": version})
                if status != 200:
                    raise SeedError(f"{section}/{name}: alias {alias} answered {status}: {answer[:300]!r}")
                yield f"alias   {section}/{name}:{alias} -> {version}"


def region_of(api_url: str) -> str:
    match = API_HOST.match(urllib.parse.urlsplit(api_url).hostname or "")
    if match is None:
        raise SeedError(f"--api-url: {api_url!r} is not an execute-api URL; pass --region as well")
    return match.group(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--api-url", required=True, help="the stack output ApiUrl")
    parser.add_argument("--region", help="the API's region (default: read from the URL)")
    parser.add_argument("--business-unit", help="x-business-unit, for callers mapped to several units")
    parser.add_argument(
        "--file", type=Path, default=DEFAULT_SEED, help="seed file (default: the UK PM example)"
    )
    args = parser.parse_args(argv)
    try:
        client = PromptClient(
            args.api_url, region=args.region or region_of(args.api_url), business_unit=args.business_unit
        )
        for line in seed_catalog(client, json.loads(args.file.read_text())):
            print(line)
    except (SeedError, PromptFetchError) as error:
        print(f"seed failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
