"""Move a business unit's `prod` aliases in the prompt catalog to the versions of the release manifest.

Run by the prod pipeline's `PromptRelease-<bu>` step (CodeBuild, tooling account) after the unit's prod
deployment. It reads the catalog's URL from the `ApiUrl` output of the catalog stack, assumes
`<prefix>-<bu>-prod-prompt-release` in the unit's prod account (the one identity the catalog lets move
`prod`, and that role trusts only this step's role) with a session named after the commit, and moves
each listed prompt and chain whose `prod` alias is not already on the listed version. The catalog's
alias log records every move with that session. Configured by environment variables (set by the
pipeline): BUSINESS_UNIT, RELEASE_ROLE_ARN, CATALOG_STACK, AWS_REGION, RELEASE_MANIFEST (default
config/prompt_releases.json) and CodeBuild's CODEBUILD_RESOLVED_SOURCE_VERSION.

    python -m tools.release_prompts

Exit codes: 0 released (or nothing listed), 1 the catalog or AWS failed, 2 bad input (manifest, variables,
or a move the catalog refuses), each with a one-line message.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "lambdas"))  # the Lambda asset root: `common.*` lives there

from common.prompt_client import PromptClient, PromptFetchError  # noqa: E402

DEFAULT_MANIFEST = Path("config/prompt_releases.json")
PROD_ALIAS = "prod"
# `<prefix>-<bu>-prod-prompt-release` (stacks/blocks/prompt_catalog_access.py, prompt_release_role_name).
RELEASE_ROLE_ARN = re.compile(
    r"^arn:aws[a-z\-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_\-]+-prod-prompt-release$"
)
SESSION_NAME = re.compile(r"[^A-Za-z0-9+=,.@_\-]")

Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,63}$")]
Version = Annotated[int, Field(ge=1, strict=True)]


class UnitRelease(BaseModel):
    """The versions a business unit's `prod` aliases point at, by prompt and chain name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompts: dict[Name, Version] = Field(default_factory=dict)
    chains: dict[Name, Version] = Field(default_factory=dict)


class ReleaseManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    business_units: dict[str, UnitRelease] = Field(default_factory=dict)


class ReleaseError(RuntimeError):
    """Bad input or a refused move: the message names the field or the alias."""


class CatalogApi(Protocol):
    def send(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]: ...


@dataclass(frozen=True)
class AliasMove:
    section: str  # "prompts" or "chains"
    name: str
    version: int
    alias: str = PROD_ALIAS

    def path(self) -> str:
        quoted = urllib.parse.quote(self.name, safe="")
        return f"/{self.section}/{quoted}/aliases/{urllib.parse.quote(self.alias, safe='')}"


def load_manifest(path: Path) -> ReleaseManifest:
    try:
        return ReleaseManifest.model_validate_json(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ReleaseError(f"{path}: cannot read the release manifest: {error.strerror}") from None
    except ValidationError as error:
        first = error.errors()[0]
        # Escaped: a key may hold any character, and the message stays one line.
        where = ".".join(str(p) for p in first["loc"]).encode("unicode_escape").decode() or "(top level)"
        raise ReleaseError(f"{path}: {where}: {first['msg']}") from None


def planned_moves(manifest: ReleaseManifest, business_unit: str) -> list[AliasMove]:
    release = manifest.business_units.get(business_unit, UnitRelease())
    # Prompts first: a chain's prod version may follow `name:prod` of the prompts moved here.
    return [
        *(AliasMove("prompts", name, version) for name, version in sorted(release.prompts.items())),
        *(AliasMove("chains", name, version) for name, version in sorted(release.chains.items())),
    ]


def move_aliases(api: CatalogApi, moves: list[AliasMove]) -> Iterator[str]:
    """Point each alias at its version; a move already in place is left alone (no log entry)."""
    for move in moves:
        label = f"{move.section}/{move.name}:{move.alias}"
        status, answer = api.send("GET", move.path())
        current = json.loads(answer).get("version") if status == 200 else None
        if status not in (200, 404):
            raise ReleaseError(f"{label}: reading the alias answered {status}: {answer[:300]!r}")
        if current == move.version:
            yield f"unchanged {label} = {move.version}"
            continue
        status, answer = api.send("PUT", move.path(), {"version": move.version})
        if status != 200:
            raise ReleaseError(f"{label}: moving it to {move.version} answered {status}: {answer[:300]!r}")
        yield f"moved     {label} {current if current is not None else '(new)'} -> {move.version}"


def catalog_url(cloudformation: Any, stack_name: str) -> str:
    """The catalog API's base URL, from its stack's `ApiUrl` output."""
    (stack,) = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    for output in stack.get("Outputs", []):
        if output["OutputKey"] == "ApiUrl":
            return str(output["OutputValue"])
    raise ReleaseError(f"CATALOG_STACK: stack {stack_name} has no ApiUrl output")


def check_release_role_arn(arn: str, field: str) -> str:
    if not RELEASE_ROLE_ARN.match(arn):
        raise ReleaseError(
            f"{field}: {arn!r} is not a prod prompt release role ARN (...:role/<prefix>-<bu>-prod-prompt-release)"
        )
    return arn


def assume_release_role(sts: Any, role_arn: str, session_name: str) -> Any:
    """botocore credentials of a session of the release role; the catalog's alias log records the session."""
    from botocore.credentials import Credentials

    session = SESSION_NAME.sub("-", session_name)[:64]
    answer = sts.assume_role(RoleArn=role_arn, RoleSessionName=session, DurationSeconds=900)["Credentials"]
    return Credentials(answer["AccessKeyId"], answer["SecretAccessKey"], answer["SessionToken"])


def required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ReleaseError(f"{name}: not set")
    return value


def run(env: Mapping[str, str], *, boto3_session: Any = None, transport: Any = None) -> Iterator[str]:
    business_unit = required(env, "BUSINESS_UNIT")
    role_arn = check_release_role_arn(required(env, "RELEASE_ROLE_ARN"), "RELEASE_ROLE_ARN")
    region = required(env, "AWS_REGION")
    stack = required(env, "CATALOG_STACK")
    manifest_path = Path(env.get("RELEASE_MANIFEST") or DEFAULT_MANIFEST)
    moves = planned_moves(load_manifest(manifest_path), business_unit)
    if not moves:
        yield f"nothing to release: {manifest_path} lists no prod versions for {business_unit}"
        return
    if boto3_session is None:
        import boto3

        boto3_session = boto3.Session(region_name=region)
    url = catalog_url(boto3_session.client("cloudformation", region_name=region), stack)
    commit = env.get("CODEBUILD_RESOLVED_SOURCE_VERSION", "manual")[:12]
    credentials = assume_release_role(
        boto3_session.client("sts", region_name=region), role_arn, f"pipeline-{commit}"
    )
    client = PromptClient(
        url, region=region, business_unit=business_unit, credentials=credentials, transport=transport
    )
    yield from move_aliases(client, moves)


def main(env: Mapping[str, str] | None = None, *, boto3_session: Any = None, transport: Any = None) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        for line in run(os.environ if env is None else env, boto3_session=boto3_session, transport=transport):
            print(line)
    except ReleaseError as error:
        print(f"release failed: {error}", file=sys.stderr)
        return 2
    except (PromptFetchError, BotoCoreError, ClientError) as error:
        print(f"release failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # --help answers with the docstring; the step is configured by environment variables only
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()
    raise SystemExit(main())
