"""Issue 16 item 2 and the catalog parts of item 13: stage aliases move only by their stage's release role,
who moved them is recorded (session and principal ARN), concurrent moves lose no transition in the alias
log, and a prompt's owner is the caller."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from prompt_catalog.access import AliasMovers, principal_arn
from prompt_catalog.errors import ForbiddenError
from prompt_catalog.repository import ResourceKey

from tests.lambdas.prompt_catalog.conftest import ACCOUNT, ALIAS_MOVERS, ALICE, BOB, RELEASE, prompt_body
from tests.lambdas.prompt_catalog.test_concurrency import OneCallAtATime

BU_B_PROD = f"arn:aws:sts::{ACCOUNT}:assumed-role/bu-b-prod-prompt-release/deploy"


def test_a_dev_role_cannot_move_prod_but_the_prod_release_role_can(call):
    assert call("POST", "/prompts", prompt_body())[0] == 201
    status, err = call("PUT", "/prompts/greet/aliases/prod", {"version": 1})  # alice, a dev-side engineer
    assert (status, err["field"]) == (403, "path.alias")
    assert "bu-a-prod-prompt-release" in err["message"]
    assert call("GET", "/prompts/greet/aliases/prod")[0] == 404  # nothing moved
    status, moved = call("PUT", "/prompts/greet/aliases/prod", {"version": 1}, caller=RELEASE["prod"])
    assert status == 200
    assert moved["moved_by_principal"] == f"arn:aws:iam::{ACCOUNT}:role/bu-a-prod-prompt-release"


@pytest.mark.parametrize("stage", ["dev", "preprod", "prod"])
def test_each_release_role_moves_only_its_own_stage(call, stage):
    assert call("POST", "/prompts", prompt_body())[0] == 201
    for other in ("dev", "preprod", "prod"):
        status, _ = call("PUT", f"/prompts/greet/aliases/{other}", {"version": 1}, caller=RELEASE[stage])
        assert status == (200 if other == stage else 403)


def test_another_business_units_release_role_cannot_move_this_units_alias(call):
    assert call("POST", "/prompts", prompt_body())[0] == 201
    # bu-b's prod role acts for bu-b: it does not even see bu-a's prompt.
    assert call("PUT", "/prompts/greet/aliases/prod", {"version": 1}, caller=BU_B_PROD)[0] == 404
    # and a stage alias of bu-a is not movable by a prefix configured for bu-b
    with pytest.raises(ForbiddenError):
        AliasMovers.model_validate(ALIAS_MOVERS).check("bu-a", "prod", BU_B_PROD)


def test_dev_can_add_versions_but_they_reach_prod_only_by_the_prod_move(call):
    assert call("POST", "/prompts", prompt_body())[0] == 201
    call("PUT", "/prompts/greet/aliases/prod", {"version": 1}, caller=RELEASE["prod"])
    body = {"template": "Changed {{ who }}", "variables": [{"name": "who"}]}
    assert call("POST", "/prompts/greet/versions", body)[1]["version"] == 2  # alice may add versions
    assert call("PUT", "/prompts/greet/aliases/dev", {"version": 2}, caller=RELEASE["dev"])[0] == 200
    render = call("POST", "/prompts/greet/render", {"alias": "prod", "variables": {"who": "x"}})[1]
    assert render["version"] == 1 and render["text"] == "Hello x!"


def test_a_chain_on_a_stage_alias_may_follow_only_that_alias_or_pinned_versions(call):
    assert call("POST", "/prompts", prompt_body())[0] == 201
    call("PUT", "/prompts/greet/aliases/dev", {"version": 1}, caller=RELEASE["dev"])
    call("PUT", "/prompts/greet/aliases/prod", {"version": 1}, caller=RELEASE["prod"])
    follows_dev = {
        "name": "c1",
        "variables": [{"name": "q"}],
        "steps": [{"id": "a", "prompt": "greet:dev", "inputs": {"who": "request.q"}}],
    }
    assert call("POST", "/chains", follows_dev)[0] == 201
    # On prod, a step that follows `:dev` would let dev's alias moves change what prod runs.
    status, err = call("PUT", "/chains/c1/aliases/prod", {"version": 1}, caller=RELEASE["prod"])
    assert (status, err["field"]) == (409, "steps[0].prompt")
    assert call("PUT", "/chains/c1/aliases/dev", {"version": 1}, caller=RELEASE["dev"])[0] == 200
    follows_prod = {
        "steps": [{"id": "a", "prompt": "greet:prod", "inputs": {"who": "request.q"}}],
        "variables": [{"name": "q"}],
    }
    assert call("POST", "/chains/c1/versions", follows_prod)[0] == 201
    assert call("PUT", "/chains/c1/aliases/prod", {"version": 2}, caller=RELEASE["prod"])[0] == 200


def test_aliases_not_named_after_a_stage_are_free_within_the_unit(handler, call, monkeypatch):
    monkeypatch.setenv("PROMPT_CATALOG_SETTINGS", '{"allowed_aliases": []}')
    handler.catalog.cache_clear()
    assert call("POST", "/prompts", prompt_body())[0] == 201
    assert call("PUT", "/prompts/greet/aliases/canary", {"version": 1})[0] == 200
    assert call("PUT", "/prompts/greet/aliases/prod", {"version": 1})[0] == 403


def test_without_a_configured_mover_a_stage_alias_cannot_move():
    with pytest.raises(ForbiddenError, match="none configured"):
        AliasMovers().check("bu-a", "prod", RELEASE["prod"])


def test_principal_arn_names_the_role_behind_a_session():
    assert principal_arn(RELEASE["prod"]) == f"arn:aws:iam::{ACCOUNT}:role/bu-a-prod-prompt-release"
    assert principal_arn("arn:aws:iam::111122223333:user/ops") == "arn:aws:iam::111122223333:user/ops"


def test_owner_is_the_caller_and_cannot_be_sent(call):
    status, err = call("POST", "/prompts", prompt_body(owner="someone-else"))
    assert (status, err["field"]) == (400, "body.owner")
    assert call("GET", "/prompts/greet")[0] == 404
    assert call("POST", "/prompts", prompt_body(), caller=BOB)[1]["owner"] == BOB


def test_concurrent_alias_moves_log_every_transition(catalog):
    """Each move's log entry names the version it replaced; together they form one unbroken chain."""
    catalog.repo._ddb = OneCallAtATime(catalog.repo._ddb)
    catalog.create("prompt", "bu-a", ALICE, prompt_body())
    for n in range(2, 9):
        catalog.add_version(
            "prompt",
            "bu-a",
            ALICE,
            "greet",
            {"template": f"v{n} {{{{ who }}}}", "variables": [{"name": "who"}]},
        )
    ticks = iter(range(10_000))
    catalog._now = lambda: f"2026-01-01T00:00:00.{next(ticks):06d}+00:00"

    def move(version: int) -> dict:
        return catalog.move_alias("prompt", "bu-a", RELEASE["prod"], "greet", "prod", {"version": version})

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(move, range(1, 9)))

    log = catalog.repo.alias_history(ResourceKey("prompt", "bu-a", "greet"))
    assert len(log) == 8
    previous = [entry["previous_version"] for entry in log]
    assert previous.count(None) == 1  # exactly one move found the alias absent
    # Following previous_version from the final version visits every move exactly once.
    by_version = {entry["version"]: entry for entry in log}
    final = catalog.repo.get_alias(ResourceKey("prompt", "bu-a", "greet"), "prod")["version"]
    seen, current = [], final
    while current is not None:
        seen.append(current)
        current = by_version[current]["previous_version"]
    assert sorted(seen) == list(range(1, 9))
    assert {r["moved_by_principal"] for r in results} == {principal_arn(RELEASE["prod"])}
