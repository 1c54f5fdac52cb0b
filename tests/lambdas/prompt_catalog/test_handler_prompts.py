from __future__ import annotations

from tests.lambdas.prompt_catalog.conftest import ALICE, BOB, CAROL, RELEASE, prompt_body


def test_create_then_get_by_version_and_alias(call):
    status, created = call("POST", "/prompts", prompt_body(tags=["greeting"]))
    assert status == 201
    assert created["latest_version"] == 1
    assert created["business_unit"] == "bu-a"
    assert created["owner"] == ALICE
    assert created["created_by"] == ALICE

    status, version = call("GET", "/prompts/greet/versions/1")
    assert status == 200
    assert version["content"]["template"] == "Hello {{ who }}!"
    assert version["content"]["model_parameters"] == {
        "temperature": 0.5,
        "max_tokens": 1024,
        "stop_sequences": [],
    }

    status, moved = call("PUT", "/prompts/greet/aliases/prod", {"version": 1}, caller=RELEASE["prod"])
    assert status == 200
    assert (moved["version"], moved["moved_by"], moved["previous_version"]) == (1, RELEASE["prod"], None)

    status, by_alias = call("GET", "/prompts/greet/aliases/prod")
    assert status == 200
    assert by_alias["version"] == 1
    assert by_alias["alias"]["moved_by"] == RELEASE["prod"]


def test_versions_are_numbered_and_alias_moves_only_when_asked(call):
    call("POST", "/prompts", prompt_body())
    call("PUT", "/prompts/greet/aliases/prod", {"version": 1}, caller=RELEASE["prod"])
    status, v2 = call(
        "POST", "/prompts/greet/versions", {"template": "Hi {{ who }}", "variables": [{"name": "who"}]}
    )
    assert (status, v2["version"]) == (201, 2)
    assert call("GET", "/prompts/greet/aliases/prod")[1]["version"] == 1
    _, moved = call("PUT", "/prompts/greet/aliases/prod", {"version": 2}, caller=RELEASE["prod"])
    assert moved["previous_version"] == 1
    _, described = call("GET", "/prompts/greet")
    assert described["latest_version"] == 2
    assert described["aliases"]["prod"]["version"] == 2


def test_render_by_alias_and_errors_name_the_variable(call):
    call(
        "POST",
        "/prompts",
        {
            "name": "count",
            "template": "{{ who }} has {{ n }} items",
            "variables": [{"name": "who"}, {"name": "n", "type": "integer"}],
            "model_parameters": {"temperature": 0.1, "max_tokens": 50, "stop_sequences": ["\n\n"]},
        },
    )
    call("PUT", "/prompts/count/aliases/dev", {"version": 1}, caller=RELEASE["dev"])
    status, out = call("POST", "/prompts/count/render", {"alias": "dev", "variables": {"who": "Ann", "n": 3}})
    assert status == 200
    assert out["text"] == "Ann has 3 items"
    assert out["model_parameters"]["stop_sequences"] == ["\n\n"]

    status, err = call("POST", "/prompts/count/render", {"variables": {"who": "Ann"}})
    assert (status, err["field"]) == (422, "variables.n")
    status, err = call("POST", "/prompts/count/render", {"variables": {"who": "Ann", "n": "3"}})
    assert (status, err["field"]) == (422, "variables.n")
    assert "expected integer" in err["message"]
    status, err = call("POST", "/prompts/count/render", {"variables": {"who": "Ann", "n": True}})
    assert (status, err["field"]) == (422, "variables.n")
    status, err = call("POST", "/prompts/count/render", {"variables": {"who": "A", "n": 1, "extra": "x"}})
    assert (status, err["field"]) == (422, "variables.extra")


def test_save_rejects_template_and_declarations_that_differ(call):
    status, err = call("POST", "/prompts", prompt_body(template="Hello {{ who }} from {{ place }}"))
    assert (status, err["field"]) == (400, "body.variables.place")
    status, err = call("POST", "/prompts", prompt_body(template="Hello"))
    assert (status, err["field"]) == (400, "body.variables.who")
    status, err = call("POST", "/prompts", prompt_body(template="Hello {{ who"))
    assert (status, err["field"]) == (400, "body.template")
    status, err = call("POST", "/prompts", prompt_body(model_parameters={"temperature": 3}))
    assert (status, err["field"]) == (400, "body.model_parameters.temperature")
    assert call("GET", "/prompts")[1]["items"] == []


def test_sandbox_blocks_internals_at_save(call):
    # The trial render at save runs the template in the sandbox, so the escape never gets stored.
    status, err = call("POST", "/prompts", prompt_body(template="{{ who.__class__.__mro__ }}"))
    assert (status, err["field"]) == (400, "body.template")
    assert "sandbox" in err["message"] and "prompt greet" in err["message"]
    assert call("GET", "/prompts/greet")[0] == 404


def test_other_business_unit_gets_404_and_lists_nothing(call):
    call("POST", "/prompts", prompt_body())
    assert call("GET", "/prompts/greet", caller=BOB)[0] == 404
    assert call("POST", "/prompts/greet/render", {"variables": {"who": "x"}}, caller=BOB)[0] == 404
    bu_b_prod = BOB.replace("bu-b-prompt-engineer/bob", "bu-b-prod-prompt-release/deploy")
    assert call("PUT", "/prompts/greet/aliases/prod", {"version": 1}, caller=bu_b_prod)[0] == 404
    assert call("GET", "/prompts", caller=BOB)[1]["items"] == []
    # bob can use the same name in his own unit
    assert call("POST", "/prompts", prompt_body(), caller=BOB)[0] == 201


def test_unmapped_caller_is_forbidden_and_ambiguous_caller_must_pick(call):
    assert call("GET", "/prompts", caller="arn:aws:sts::999999999999:assumed-role/x/y")[0] == 403
    assert call("GET", "/prompts", caller=None)[0] == 403
    pipeline = "arn:aws:sts::111122223333:assumed-role/pipeline-role/run"
    assert call("GET", "/prompts", caller=pipeline)[0] == 200  # maps to "shared" only
    status, err = call("POST", "/prompts", prompt_body(), caller=CAROL)
    assert (status, err["field"]) == (400, "x-business-unit")
    status, _ = call("POST", "/prompts", prompt_body(), caller=CAROL, headers={"X-Business-Unit": "shared"})
    assert status == 201
    assert call("GET", "/prompts/greet", caller=CAROL, headers={"x-business-unit": "shared"})[0] == 200
    assert call("GET", "/prompts/greet")[0] == 404  # alice is bu-a only
    assert call("GET", "/prompts", caller=CAROL, headers={"x-business-unit": "bu-b"})[0] == 403


def test_archive_keeps_reads_blocks_writes_and_hides_from_list(call):
    call("POST", "/prompts", prompt_body())
    status, archived = call("POST", "/prompts/greet/archive")
    assert (status, archived["archived"], archived["archived_by"]) == (200, True, ALICE)
    assert call("POST", "/prompts/greet/archive")[0] == 409
    assert (
        call("POST", "/prompts/greet/versions", {"template": "{{ who }}", "variables": [{"name": "who"}]})[0]
        == 409
    )
    assert call("PUT", "/prompts/greet/aliases/prod", {"version": 1}, caller=RELEASE["prod"])[0] == 409
    assert call("GET", "/prompts/greet/versions/1")[0] == 200
    assert call("GET", "/prompts")[1]["items"] == []
    assert [p["name"] for p in call("GET", "/prompts", query={"include_archived": "true"})[1]["items"]] == [
        "greet"
    ]
    assert call("POST", "/prompts", prompt_body())[0] == 409  # names are never reused


def test_list_pages_and_filters_by_tag(call):
    for i in range(5):
        call("POST", "/prompts", prompt_body(name=f"p{i}", tags=["even"] if i % 2 == 0 else []))
    names, token = [], None
    while True:
        query = {"limit": "2", **({"next_token": token} if token else {})}
        status, page = call("GET", "/prompts", query=query)
        assert status == 200
        names += [p["name"] for p in page["items"]]
        token = page["next_token"]
        if not token:
            break
    assert names == ["p0", "p1", "p2", "p3", "p4"]
    tagged = call("GET", "/prompts", query={"tag": "even"})[1]["items"]
    assert [p["name"] for p in tagged] == ["p0", "p2", "p4"]
    assert call("GET", "/prompts", query={"next_token": "bm90LWEtdG9rZW4"})[1]["field"] == "next_token"
    assert call("GET", "/prompts", query={"limit": "0"})[1]["field"] == "query.limit"


def test_alias_names_follow_settings_and_versions_must_exist(call):
    call("POST", "/prompts", prompt_body())
    status, err = call("PUT", "/prompts/greet/aliases/prdo", {"version": 1})
    assert (status, err["field"]) == (400, "path.alias")
    status, err = call("PUT", "/prompts/greet/aliases/prod", {"version": 7}, caller=RELEASE["prod"])
    assert (status, err["field"]) == (404, "body.version")
    assert call("GET", "/prompts/greet/versions/2")[1]["field"] == "path.version"
    assert call("GET", "/prompts/greet/versions/abc")[0] == 400
    assert call("GET", "/prompts/greet/aliases/prod")[0] == 404


def test_large_template_body_goes_to_s3_and_reads_back(call):
    import boto3

    from tests.lambdas.prompt_catalog.conftest import BODY_BUCKET

    template = "{{ who }} " + "x" * 5000  # above the 2 KB inline limit the fixture sets
    assert call("POST", "/prompts", prompt_body(template=template))[0] == 201
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BODY_BUCKET).get("Contents", [])]
    assert len(keys) == 1 and keys[0].startswith("bu-a/prompts/greet/")
    assert call("GET", "/prompts/greet/versions/1")[1]["content"]["template"] == template


def test_bad_json_and_unknown_routes_are_4xx(call):
    status, err = call("POST", "/prompts", raw_body="{not json")
    assert (status, err["field"]) == (400, "body")
    assert call("GET", "/widgets")[0] == 404
    assert call("DELETE", "/prompts/greet")[0] in (404, 405)
