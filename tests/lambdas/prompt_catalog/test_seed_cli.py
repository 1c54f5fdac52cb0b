"""tools/seed_prompt_catalog.py (issue 16 item 2): the seed creates versions and moves non-prod aliases
with the caller's identity; `prod` moves only through the prod release role's session, otherwise the tool
reports the release path. Requests are signed, and the catalog sees whoever signed them (SignedApi)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prompt_catalog.repository import ResourceKey

from common.prompt_client import PromptClient
from tests.lambdas.prompt_catalog.conftest import ACCOUNT, SignedApi, prompt_body, role_session
from tools import seed_prompt_catalog
from tools.seed_prompt_catalog import DEFAULT_SEED, SeedError, main, region_of, seed_catalog

API = "https://abc123.execute-api.us-east-1.amazonaws.com/prompt-catalog"
ENGINEER = f"arn:aws:iam::{ACCOUNT}:role/bu-a-prompt-engineer"
DEV_RELEASE = f"arn:aws:iam::{ACCOUNT}:role/bu-a-dev-prompt-release"
PROD_RELEASE = f"arn:aws:iam::{ACCOUNT}:role/bu-a-prod-prompt-release"


def client_as(handler: Any, role_arn: str, session: str) -> tuple[PromptClient, SignedApi]:
    transport = SignedApi(handler)
    client = PromptClient(
        API, region="us-east-1", transport=transport, credentials=role_session(role_arn, session)
    )
    return client, transport


def test_without_the_release_role_prod_aliases_are_reported_not_moved(handler: Any, call) -> None:
    engineer, transport = client_as(handler, ENGINEER, "alice")
    seed = json.loads(DEFAULT_SEED.read_text())
    lines = list(seed_catalog(engineer, seed))
    assert lines[0] == "created prompts/who-is-head-of-government"
    assert lines[1].startswith(
        "prod    prompts/who-is-head-of-government:prod -> 1 not moved: prod moves only"
    )
    assert "config/prompt_releases.json" in lines[1] and "--release-role-arn" in lines[1]
    # The chain follows `:prod` aliases that do not exist yet: it waits instead of failing.
    assert any(line.startswith("waits   chains/pm-birthplace-distance: follows") for line in lines)
    assert call("GET", "/prompts/birthplace-of-person/aliases/prod")[0] == 404
    assert call("GET", "/chains/pm-birthplace-distance")[0] == 404
    assert set(transport.callers) == {f"arn:aws:sts::{ACCOUNT}:assumed-role/bu-a-prompt-engineer/alice"}


def test_with_the_release_role_prod_moves_through_its_session(handler: Any, call, catalog) -> None:
    engineer, _ = client_as(handler, ENGINEER, "alice")
    release, release_transport = client_as(handler, PROD_RELEASE, "seed-alice")
    seed = json.loads(DEFAULT_SEED.read_text())
    lines = list(seed_catalog(engineer, seed, release=release))
    assert "moved     prompts/birthplace-of-person:prod (new) -> 1" in lines
    assert "created chains/pm-birthplace-distance" in lines
    alias = catalog.repo.get_alias(ResourceKey("prompt", "bu-a", "birthplace-of-person"), "prod")
    assert alias["version"] == 1
    assert alias["moved_by"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/bu-a-prod-prompt-release/seed-alice"
    assert set(release_transport.callers) == {alias["moved_by"]}
    status, render = call(
        "POST", "/chains/pm-birthplace-distance/render", {"variables": seed["example_request"]}
    )
    assert status == 200, render
    # Running it again changes nothing and says so.
    again = list(seed_catalog(engineer, seed, release=release))
    assert again[0] == "exists  prompts/who-is-head-of-government (left as it is)"
    assert "unchanged prompts/who-is-head-of-government:prod = 1" in again
    assert call("GET", "/prompts/who-is-head-of-government")[1]["latest_version"] == 1


def test_non_prod_aliases_move_with_the_callers_identity(handler: Any, call) -> None:
    seed = {"prompts": [{**prompt_body(), "aliases": {"dev": 1}}]}
    dev_release, _ = client_as(handler, DEV_RELEASE, "bob")
    assert list(seed_catalog(dev_release, seed)) == [
        "created prompts/greet",
        "moved     prompts/greet:dev (new) -> 1",
    ]
    # An engineer's identity is not the dev release role: the catalog's 403 ends the seed in one line.
    other = {"prompts": [{**prompt_body("other"), "aliases": {"dev": 1}}]}
    engineer, _ = client_as(handler, ENGINEER, "alice")
    with pytest.raises(
        SeedError, match=r"^prompts/other:dev: moving it to 1 answered 403: .*dev-prompt-release"
    ):
        list(seed_catalog(engineer, other))
    assert call("GET", "/prompts/other/aliases/dev")[0] == 404


def test_a_rejected_entry_stops_the_seed_with_the_catalogs_message(handler: Any) -> None:
    engineer, _ = client_as(handler, ENGINEER, "alice")
    with pytest.raises(SeedError, match=r"prompts/bad: create answered 400: .*template"):
        list(seed_catalog(engineer, {"prompts": [{"name": "bad", "template": "{{ x }}", "variables": []}]}))


def test_region_comes_from_the_api_url() -> None:
    assert region_of(API) == "us-east-1"
    with pytest.raises(SeedError, match="--api-url"):
        region_of("https://catalog.example.com/")


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["--api-url", API, *args])
    return code, capsys.readouterr().err


def test_the_cli_refuses_a_release_role_that_is_not_a_prod_release_role(aws_env, capsys) -> None:
    code, err = run_main(capsys, "--release-role-arn", DEV_RELEASE)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("seed failed: --release-role-arn: ")


def test_the_cli_reports_a_release_role_it_cannot_assume_in_one_line(aws_env, capsys, monkeypatch) -> None:
    def denied(*_: Any, **__: Any) -> Any:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not trusted"}}, "AssumeRole")

    monkeypatch.setattr(seed_prompt_catalog, "assume_release_role", denied)
    code, err = run_main(capsys, "--release-role-arn", PROD_RELEASE)
    assert code == 2
    assert err.count("\n") == 1 and "cannot assume" in err and "AccessDenied" in err


def test_the_cli_refuses_an_unreadable_seed_file(aws_env, capsys, tmp_path: Path) -> None:
    bad = tmp_path / "seed.json"
    bad.write_text("{not json")
    code, err = run_main(capsys, "--file", str(bad))
    assert (code, err.count("\n")) == (2, 1) and err.startswith("seed failed: --file: ")


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arn=st.text(max_size=120).filter(lambda a: not a.startswith("-")))
def test_any_malformed_release_role_arn_is_exit_2_naming_the_option(aws_env, capsys, arn: str) -> None:
    code, err = run_main(capsys, "--release-role-arn", arn)
    if arn.endswith("-prod-prompt-release") and arn.startswith("arn:aws"):
        return  # a well-formed ARN: tested above
    assert code == 2
    assert err.startswith("seed failed: --release-role-arn: ") and err.count("\n") == 1
