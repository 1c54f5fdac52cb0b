"""tools/release_prompts.py, the prod pipeline's PromptRelease step (issue 16 item 2), against the real
catalog handler in moto: it reads the catalog URL from the stack output (Stubber), assumes the prod release
role (moto STS) and moves the manifest's versions; the catalog sees the release role's session."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prompt_catalog.repository import ResourceKey

from tests.lambdas.prompt_catalog.conftest import ACCOUNT, SignedApi, prompt_body
from tools.release_prompts import DEFAULT_MANIFEST, load_manifest, main

API = "https://abc123.execute-api.us-east-1.amazonaws.com/prompt-catalog/"
GREET = ResourceKey("prompt", "bu-a", "greet")
PROD_RELEASE = f"arn:aws:iam::{ACCOUNT}:role/bu-a-prod-prompt-release"
REPO_ROOT = Path(__file__).resolve().parents[3]


class Session:
    """boto3 session stand-in: STS from moto, CloudFormation stubbed with the catalog stack's output."""

    def __init__(self, stack: str = "exco-prompt-catalog") -> None:
        self.cloudformation = boto3.client("cloudformation", region_name="us-east-1")
        self.stub = Stubber(self.cloudformation)
        self.stack = stack

    def expect_stack(self) -> None:
        outputs = [{"OutputKey": "ApiUrl", "OutputValue": API}]
        self.stub.add_response(
            "describe_stacks",
            {
                "Stacks": [
                    {
                        "StackName": self.stack,
                        "CreationTime": "2026-01-01T00:00:00Z",
                        "StackStatus": "UPDATE_COMPLETE",
                        "Outputs": outputs,
                    }
                ]
            },
            {"StackName": self.stack},
        )
        self.stub.activate()

    def client(self, name: str, region_name: str) -> Any:
        return (
            self.cloudformation if name == "cloudformation" else boto3.client(name, region_name=region_name)
        )


def release_env(manifest: Path, **extra: str) -> dict[str, str]:
    return {
        "BUSINESS_UNIT": "bu-a",
        "RELEASE_ROLE_ARN": PROD_RELEASE,
        "CATALOG_STACK": "exco-prompt-catalog",
        "AWS_REGION": "us-east-1",
        "RELEASE_MANIFEST": str(manifest),
        "CODEBUILD_RESOLVED_SOURCE_VERSION": "0123456789abcdef",
        **extra,
    }


def tool_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """What the tool printed (the in-process handler's JSON logs and metrics share stdout)."""
    return [line for line in capsys.readouterr().out.splitlines() if not line.startswith("{")]


def write_manifest(tmp_path: Path, body: Any) -> Path:
    path = tmp_path / "prompt_releases.json"
    path.write_text(json.dumps(body))
    return path


def test_the_step_moves_prod_to_the_manifest_versions_as_the_release_session(
    handler, call, catalog, tmp_path, capsys
):
    assert call("POST", "/prompts", prompt_body())[0] == 201
    assert (
        call(
            "POST", "/prompts/greet/versions", {"template": "Hi {{ who }}!", "variables": [{"name": "who"}]}
        )[0]
        == 201
    )
    manifest = write_manifest(tmp_path, {"business_units": {"bu-a": {"prompts": {"greet": 2}}}})
    session, transport = Session(), SignedApi(handler)
    session.expect_stack()
    assert main(release_env(manifest), boto3_session=session, transport=transport) == 0
    assert tool_lines(capsys) == ["moved     prompts/greet:prod (new) -> 2"]
    session_arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/bu-a-prod-prompt-release/pipeline-0123456789ab"
    alias = catalog.repo.get_alias(GREET, "prod")
    assert (alias["version"], alias["moved_by"]) == (2, session_arn)
    (logged,) = catalog.repo.alias_history(GREET)  # the alias log names the pipeline's session
    assert (logged["version"], logged["moved_by"]) == (2, session_arn)
    assert set(transport.callers) == {session_arn}
    session.stub.assert_no_pending_responses()
    # A second run with the same manifest moves nothing.
    session.expect_stack()
    assert main(release_env(manifest), boto3_session=session, transport=transport) == 0
    assert tool_lines(capsys) == ["unchanged prompts/greet:prod = 2"]
    assert len(catalog.repo.alias_history(GREET)) == 1


def test_a_unit_the_manifest_does_not_list_calls_nothing(aws_env, tmp_path, capsys):
    manifest = write_manifest(tmp_path, {"business_units": {"bu-b": {"prompts": {"greet": 1}}}})
    session = Session()
    session.stub.activate()  # no responses queued: any AWS call would fail the test
    assert main(release_env(manifest), boto3_session=session) == 0
    assert "nothing to release" in capsys.readouterr().out


def test_a_version_the_catalog_does_not_have_fails_the_step_naming_the_alias(handler, call, tmp_path, capsys):
    assert call("POST", "/prompts", prompt_body())[0] == 201
    manifest = write_manifest(tmp_path, {"business_units": {"bu-a": {"prompts": {"greet": 9}}}})
    session = Session()
    session.expect_stack()
    assert main(release_env(manifest), boto3_session=session, transport=SignedApi(handler)) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("release failed: prompts/greet:prod: moving it to 9 answered 404")
        and err.count("\n") == 1
    )
    assert call("GET", "/prompts/greet/aliases/prod")[0] == 404


def test_a_release_role_of_another_stage_is_refused_before_any_call(aws_env, tmp_path, capsys):
    manifest = write_manifest(tmp_path, {"business_units": {"bu-a": {"prompts": {"greet": 1}}}})
    dev_role = PROD_RELEASE.replace("-prod-", "-dev-")
    assert main(release_env(manifest, RELEASE_ROLE_ARN=dev_role), boto3_session=Session()) == 2
    assert capsys.readouterr().err.startswith("release failed: RELEASE_ROLE_ARN: ")


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.just({"business_units": {"bu-a": {"prompts": {"greet": 0}}}}),
        st.just({"business_units": {"bu-a": {"templates": {}}}}),
        st.just({"units": {}}),
        st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), min_size=1),
        st.builds(
            lambda v: {"business_units": {"bu-a": {"prompts": {"greet": v}}}},
            st.text(max_size=4) | st.floats(),
        ),
    )
)
def test_a_bad_manifest_is_exit_2_naming_the_field(aws_env, tmp_path, capsys, body):
    manifest = write_manifest(tmp_path, body)
    assert main(release_env(manifest), boto3_session=Session()) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"release failed: {manifest}: ") and err.count("\n") == 1


def test_the_repositorys_manifest_parses():
    load_manifest(REPO_ROOT / DEFAULT_MANIFEST)
