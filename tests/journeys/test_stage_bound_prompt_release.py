"""Journey (issue 16 items 2 and 12): a prompt version travels dev -> prod only by the prod stage's own
alias move, and each stage's end users get exactly their stage's version.

Hops, over the synthesized default platform and the real handlers (moto):
1. a prompt engineer's role in the retail dev account creates a prompt and adds a version (catalog
   handler, identity from the request context as API Gateway's IAM authorizer fills it);
2. the dev stage's release role (its template: name, trust, PUT on its alias routes only) moves `dev`;
   the catalog's ALIAS_MOVERS (catalog template) admits it;
3. the prod stage's release role moves `prod`; the same call from dev's release role or the engineer
   is refused and moves nothing;
4. the prod backend (its template: LAKE_STAGE=prod, read-only catalog grant) serves the `prod` version to a
   tenant through the app backend's catalog client; the dev backend serves the `dev` version;
5. negatives: another business unit's backend cannot read retail's prompt; a body alias is refused.
The release path itself (prod pipeline step -> prod release role -> catalog) is the last test.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from app_backend import handler as app_handler
from app_backend.catalog import ApiCatalog, signed_get_json
from app_backend.settings import ApplicationSettings
from botocore.credentials import Credentials
from moto import mock_aws

from common.prompt_client import PromptClient
from stacks.blocks.prompt_release_step import RELEASE_MODULE
from tests.conftest import SynthesizedPlatform
from tests.lambdas.app_backend.conftest import ROOMY, build_backend
from tests.lambdas.prompt_catalog.conftest import (
    BODY_BUCKET,
    DATASET_BUCKET,
    TABLE,
    FakeContext,
    SignedApi,
    api_event,
)
from tests.lambdas.prompt_catalog.conftest import create_resources as create_catalog_resources
from tests.lambdas.prompt_catalog.test_release_tool import Session as ReleaseSession
from tests.stacks.policy_eval import Request, decide, resolve, wildcard_match
from tests.stacks.policy_helpers import resources_of_type
from tests.stacks.test_application_stack import backend_function, backend_statements
from tests.stacks.test_prompt_catalog_stack import DEFAULT_STACK, function_env
from tools.release_prompts import main as release_main

API_URL = "https://abc123.execute-api.eu-west-1.amazonaws.com/prompt-catalog"
PROMPT = {"name": "product-qa", "template": "Answer about {{ product }}.", "variables": [{"name": "product"}]}


def environment(platform: SynthesizedPlatform, bu: str, stage: str) -> Any:
    return next(
        e for e in platform.config.environments() if e.business_unit.name == bu and e.stage.value == stage
    )


def role_statements(template: dict[str, Any], logical_prefix: str) -> tuple[str, list[dict[str, Any]]]:
    (role_id,) = [
        k
        for k, r in template["Resources"].items()
        if r["Type"] == "AWS::IAM::Role" and k.startswith(logical_prefix)
    ]
    statements = [
        s
        for r in template["Resources"].values()
        if r["Type"] == "AWS::IAM::Policy" and {"Ref": role_id} in r["Properties"].get("Roles", [])
        for s in resolve(r["Properties"]["PolicyDocument"]["Statement"], template)
    ]
    return role_id, statements


def may_invoke(
    statements: list[dict[str, Any]], method: str, path: str, platform: SynthesizedPlatform
) -> bool:
    config = platform.config
    arn = f"arn:aws:execute-api:{config.home_region}:{config.tooling_account}:abc123/prompt-catalog/{method}{path}"
    return any(
        s["Effect"] == "Allow"
        and any(wildcard_match(a, "execute-api:Invoke") for a in _list(s["Action"]))
        and any(isinstance(r, str) and wildcard_match(r, arn) for r in _list(s["Resource"]))
        for s in statements
    )


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


class Catalog:
    """The catalog function behind API Gateway: every call carries the caller's verified ARN."""

    def __init__(self, handler: Any) -> None:
        self.handler = handler

    def call(self, caller: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        answer = self.handler.lambda_handler(api_event(method, path, body, caller=caller), FakeContext())
        return answer["statusCode"], json.loads(answer["body"]) if answer.get("body") else None

    def transport_as(self, caller: str) -> Any:
        def send(request: Any) -> tuple[int, bytes]:
            path = urllib.parse.urlsplit(request.url).path.removeprefix("/prompt-catalog")
            answer = self.handler.lambda_handler(
                api_event(request.method, path, caller=caller), FakeContext()
            )
            return answer["statusCode"], answer["body"].encode()

        return send


@pytest.fixture
def catalog(default_platform: SynthesizedPlatform, monkeypatch: pytest.MonkeyPatch) -> Iterator[Catalog]:
    synthesized = function_env(default_platform.template(DEFAULT_STACK))
    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_METRICS_NAMESPACE": "test",
        "POWERTOOLS_SERVICE_NAME": "prompt-catalog",
        "TABLE_NAME": TABLE,
        "BODY_BUCKET": BODY_BUCKET,
        "DATASET_BUCKET": DATASET_BUCKET,
        # The caller map, alias movers and settings exactly as synthesized.
        "CALLER_BUSINESS_UNITS": synthesized["CALLER_BUSINESS_UNITS"],
        "ALIAS_MOVERS": synthesized["ALIAS_MOVERS"],
        "PROMPT_CATALOG_SETTINGS": synthesized["PROMPT_CATALOG_SETTINGS"],
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        create_catalog_resources()
        from prompt_catalog import handler

        handler.catalog.cache_clear()
        handler.callers.cache_clear()
        yield Catalog(handler)
        handler.catalog.cache_clear()
        handler.callers.cache_clear()


def as_deployed(service: Any, platform: SynthesizedPlatform, catalog: Catalog, bu: str, stage: str) -> None:
    """Configure the app backend as one stage's template does, reading the catalog as that stage's role."""
    env = environment(platform, bu, stage)
    variables = backend_function(platform.template(f"{env.name}-application"))["Properties"]["Environment"][
        "Variables"
    ]
    session = (
        f"arn:aws:sts::{env.account}:assumed-role/{env.name}-application-BackendRole-AB12/{env.name}-backend"
    )
    transport = catalog.transport_as(session)
    credentials = Credentials("AKID", "secret", "token")
    service.stage = variables["LAKE_STAGE"]
    service.business_unit = variables["BUSINESS_UNIT"]
    service.catalog = ApiCatalog(
        PromptClient(
            API_URL, region="eu-west-1", business_unit=bu, transport=transport, credentials=credentials
        ),
        signed_get_json(API_URL, region="eu-west-1", transport=transport, business_unit=bu),
    )


def test_a_version_reaches_each_stage_only_by_that_stages_release_role(
    default_platform: SynthesizedPlatform, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "botocore.session.Session.get_credentials", lambda self: Credentials("AKID", "s", "t")
    )
    dev, prod = (environment(default_platform, "retail", s) for s in ("dev", "prod"))
    engineer = f"arn:aws:sts::{dev.account}:assumed-role/prompt-engineer/alice"
    release = {
        e.stage.value: f"arn:aws:sts::{e.account}:assumed-role/{e.name}-prompt-release/pipeline"
        for e in (dev, prod)
    }

    # Hop 1: the engineer creates v1 and adds v2 (dev roles may write versions).
    assert catalog.call(engineer, "POST", "/prompts", PROMPT)[0] == 201
    v2 = {"template": "Answer briefly about {{ product }}.", "variables": [{"name": "product"}]}
    assert catalog.call(engineer, "POST", "/prompts/product-qa/versions", v2)[1]["version"] == 2

    # Hop 2 and 3: the release roles as synthesized, each allowed PUT on its own alias route only.
    for env in (dev, prod):
        template = default_platform.template(f"{env.name}-application")
        role_id, statements = role_statements(template, "PromptReleaseRole")
        assert template["Resources"][role_id]["Properties"]["RoleName"] == f"{env.name}-prompt-release"
        for stage in ("dev", "prod"):
            assert may_invoke(
                statements, "PUT", f"/prompts/product-qa/aliases/{stage}", default_platform
            ) == (stage == env.stage.value)
    assert catalog.call(release["dev"], "PUT", "/prompts/product-qa/aliases/dev", {"version": 2})[0] == 200
    # dev's release role and the engineer cannot move prod (the catalog refuses, whatever IAM says).
    for caller in (release["dev"], engineer):
        status, err = catalog.call(caller, "PUT", "/prompts/product-qa/aliases/prod", {"version": 2})
        assert (status, err["field"]) == (403, "path.alias")
    assert catalog.call(engineer, "GET", "/prompts/product-qa/aliases/prod")[0] == 404
    status, moved = catalog.call(release["prod"], "PUT", "/prompts/product-qa/aliases/prod", {"version": 1})
    assert status == 200
    assert moved["moved_by_principal"] == f"arn:aws:iam::{prod.account}:role/{prod.name}-prompt-release"

    # Hop 4: each backend reads with its own role (read routes only) and serves its stage's version.
    prod_template = default_platform.template(f"{prod.name}-application")
    reads = backend_statements(prod_template)
    assert may_invoke(reads, "GET", "/prompts/product-qa/aliases/prod", default_platform)
    assert not may_invoke(reads, "PUT", "/prompts/product-qa/aliases/prod", default_platform)
    backend = build_backend(
        ApplicationSettings(end_user_catalog={"prompts": ["product-qa"]}, tenant_limits=ROOMY)
    )
    outputs = {}
    for stage in ("dev", "prod"):
        as_deployed(backend.service, default_platform, catalog, "retail", stage)
        app_handler.use_service(backend.service)
        try:
            status, body = backend.call(
                "POST", "/invoke", {"prompt": "product-qa", "variables": {"product": "tea"}}
            )
            assert status == 200, body
            outputs[stage] = backend.model.calls[-1].prompt
            # Hop 5 (negative): a tenant cannot pick another stage's alias.
            status, body = backend.call(
                "POST", "/invoke", {"prompt": "product-qa", "alias": "dev", "variables": {"product": "tea"}}
            )
            assert (status, body["field"]) == (400, "body.alias")
        finally:
            app_handler.use_service(None)
    assert outputs == {"prod": "Answer about tea.", "dev": "Answer briefly about tea."}


def test_another_business_units_backend_cannot_read_the_prompt(
    default_platform: SynthesizedPlatform, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "botocore.session.Session.get_credentials", lambda self: Credentials("AKID", "s", "t")
    )
    dev, prod = (environment(default_platform, "retail", s) for s in ("dev", "prod"))
    engineer = f"arn:aws:sts::{dev.account}:assumed-role/prompt-engineer/alice"
    assert catalog.call(engineer, "POST", "/prompts", PROMPT)[0] == 201
    release = f"arn:aws:sts::{prod.account}:assumed-role/{prod.name}-prompt-release/pipeline"
    assert catalog.call(release, "PUT", "/prompts/product-qa/aliases/prod", {"version": 1})[0] == 200
    finance_release = environment(default_platform, "finance", "prod")
    other = f"arn:aws:sts::{finance_release.account}:assumed-role/{finance_release.name}-prompt-release/p"
    assert catalog.call(other, "PUT", "/prompts/product-qa/aliases/prod", {"version": 1})[0] == 404
    backend = build_backend(
        ApplicationSettings(end_user_catalog={"prompts": ["product-qa"]}, tenant_limits=ROOMY)
    )
    as_deployed(backend.service, default_platform, catalog, "finance", "prod")
    app_handler.use_service(backend.service)
    try:
        status, body = backend.call(
            "POST", "/invoke", {"prompt": "product-qa", "variables": {"product": "tea"}}
        )
    finally:
        app_handler.use_service(None)
    assert (status, body["field"]) == (404, "prompt")
    assert backend.model.calls == []


def test_the_prod_pipelines_release_step_moves_prod_as_the_release_role(
    default_platform: SynthesizedPlatform,
    catalog: Catalog,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 16 item 2, the release path: prod pipeline step (its template) -> its role may assume the unit's
    prod release role, whose trust admits exactly that role -> the release role may PUT the prod alias ->
    tools.release_prompts, run with the step's environment as synthesized, assumes that role (moto STS)
    and signs as its session -> the catalog (ALIAS_MOVERS as synthesized) moves `prod` and logs the session.
    Negatives: the finance step's role is not admitted by retail's release role, and a version the
    catalog lacks fails the step and moves nothing."""
    config = default_platform.config
    prod = environment(default_platform, "retail", "prod")
    pipeline = default_platform.template("exco-prod-pipeline")
    # Hop 1: the step and its role, as synthesized.
    roles = resources_of_type(pipeline, "AWS::IAM::Role")
    (step,) = [
        p
        for p in resources_of_type(pipeline, "AWS::CodeBuild::Project").values()
        if RELEASE_MODULE in p["Properties"]["Source"]["BuildSpec"]
        and {"Name": "BUSINESS_UNIT", "Value": "retail", "Type": "PLAINTEXT"}
        in p["Properties"]["Environment"]["EnvironmentVariables"]
    ]
    role_id = step["Properties"]["ServiceRole"]["Fn::GetAtt"][0]
    step_role = f"arn:aws:iam::{config.tooling_account}:role/{roles[role_id]['Properties']['RoleName']}"
    step_env = {v["Name"]: v["Value"] for v in step["Properties"]["Environment"]["EnvironmentVariables"]}
    # Hop 2: the release role named there trusts exactly that role, and may PUT retail's prod alias.
    application = default_platform.template(f"{prod.name}-application")
    release_id, release_statements = role_statements(application, "PromptReleaseRole")
    release = application["Resources"][release_id]
    assert (
        step_env["RELEASE_ROLE_ARN"]
        == f"arn:aws:iam::{prod.account}:role/{release['Properties']['RoleName']}"
    )
    trust = resolve(release["Properties"]["AssumeRolePolicyDocument"]["Statement"], application)
    assumes = Request(config.tooling_account, "sts:AssumeRole", "", {"aws:PrincipalArn": step_role})
    assert decide(trust, assumes) == "allow"
    finance_step = step_role.replace("-retail-", "-finance-")
    assert (
        decide(
            trust, Request(config.tooling_account, "sts:AssumeRole", "", {"aws:PrincipalArn": finance_step})
        )
        == "implicit"
    )
    assert may_invoke(release_statements, "PUT", "/prompts/product-qa/aliases/prod", default_platform)
    # Hop 3: a prompt engineer in dev saves the prompt; the manifest lists version 1 for retail.
    dev = environment(default_platform, "retail", "dev")
    assert (
        catalog.call(
            f"arn:aws:sts::{dev.account}:assumed-role/prompt-engineer/alice", "POST", "/prompts", PROMPT
        )[0]
        == 201
    )
    manifest = tmp_path / "prompt_releases.json"
    manifest.write_text(json.dumps({"business_units": {"retail": {"prompts": {"product-qa": 1}}}}))
    run_env = {
        **step_env,
        "RELEASE_MANIFEST": str(manifest),
        "CODEBUILD_RESOLVED_SOURCE_VERSION": "feedc0ffee00",
    }
    # Hop 4: the tool, with the step's environment, moves prod as the release role's session.
    session, transport = ReleaseSession(step_env["CATALOG_STACK"]), SignedApi(catalog.handler)
    session.expect_stack()
    assert release_main(run_env, boto3_session=session, transport=transport) == 0
    expected = (
        f"arn:aws:sts::{prod.account}:assumed-role/{release['Properties']['RoleName']}/pipeline-feedc0ffee00"
    )
    assert set(transport.callers) == {expected}
    status, served = catalog.call(expected, "GET", "/prompts/product-qa/aliases/prod")
    assert (status, served["version"]) == (200, 1)
    # Negative: a version the catalog does not have fails the step (exit 2) and leaves prod where it was.
    manifest.write_text(json.dumps({"business_units": {"retail": {"prompts": {"product-qa": 7}}}}))
    session.expect_stack()
    assert release_main(run_env, boto3_session=session, transport=transport) == 2
    assert "product-qa:prod: moving it to 7 answered 404" in capsys.readouterr().err
    assert catalog.call(expected, "GET", "/prompts/product-qa/aliases/prod")[1]["version"] == 1
