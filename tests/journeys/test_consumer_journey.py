"""Consumer journey (issue 14): a prompt engineer saves a jinja2 prompt and a dataset in the catalog -> the
evaluation engine's functions run in the order of the synthesized state machine -> the leaderboard picks a
model -> an end user's rating becomes a candidate -> a tester accepts it through the review API -> the next
run includes it and names the new dataset version.

Each hop is checked where it crosses a boundary: the synthesized templates (environment, state machine,
IAM statements via tests/stacks/policy_eval.py) and the real handlers in moto. Negative journeys: another
business unit's caller, a stage role writing the shared zone, a tester of another business unit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.credentials import Credentials
from moto import mock_aws

from common.evaluation_dataset import dataset_version_key, read_records
from tests.conftest import SynthesizedPlatform
from tests.journeys._consumer import (
    InProcessCatalog,
    LambdaContext,
    function_env,
    role_statements,
    run_main_path,
)
from tests.stacks.policy_eval import Request, decide, decide_identity, resolve, secure_context

CATALOG_STACK = "exco-prompt-catalog"
EVALUATION_STACK = "exco-retail-preprod-evaluation"  # the gate runs here
REVIEW_STACK = "exco-retail-prod-evaluation"  # testers review prod's rated requests in prod
APPLICATION_STACK = "exco-retail-prod-application"
LAKE_STACK = "exco-data-lake"
REGION = "eu-west-1"
TOOLING = "111111111111"
PREPROD, PROD = "333333333332", "333333333333"
FINANCE_DEV = "444444444441"
CATALOG_URL = f"https://abc123.execute-api.{REGION}.amazonaws.com/prompt-catalog"
API_ARN = f"arn:aws:execute-api:{REGION}:{TOOLING}:abc123/prompt-catalog"
USE_CASE = "product-qa"
ENGINEER = "arn:aws:sts::333333333331:assumed-role/prompt-engineer/alice"
# Only a stage's release role moves that stage's alias (the catalog's synthesized ALIAS_MOVERS).
PROD_RELEASE = f"arn:aws:sts::{PROD}:assumed-role/exco-retail-prod-prompt-release/pipeline"
TESTER = f"arn:aws:sts::{PROD}:assumed-role/evaluation-tester/tara"
PREPARE_SESSION = (
    f"arn:aws:sts::{PREPROD}:assumed-role/exco-retail-preprod-evaluation-PrepareFunctionRole/run"
)
REVIEW_SESSION = f"arn:aws:sts::{PROD}:assumed-role/exco-retail-prod-evaluation-ReviewApiRole/review"
APP_SESSION = f"arn:aws:sts::{PROD}:assumed-role/exco-retail-prod-application-BackendRole/app"
RUNS_BUCKET = "retail-preprod-evaluation-runs"  # the stack's RunArtifacts bucket (generated name)

PROMPT = {
    "name": "support-answer",
    "template": "Answer {% if tone == 'brief' %}in one sentence{% else %}fully{% endif %}: {{ question | trim }}",
    "variables": [{"name": "tone"}, {"name": "question"}],
}
RECORDS = [
    {"id": "q1", "prompt_ref": "support-answer@1", "variables": {"tone": "brief", "question": " Return window? "},
     "reference_output": "30 days from delivery"},
    {"id": "q2", "prompt_ref": "support-answer@1", "variables": {"tone": "full", "question": "Warranty?"},
     "reference_output": "two years on every device"},
    {"id": "q3", "prompt_ref": "support-answer@1", "variables": {"tone": "brief", "question": "Ship to Norway?"},
     "reference_output": "yes within five days"},
]  # fmt: skip


@pytest.fixture(scope="module")
def templates(default_platform: SynthesizedPlatform) -> dict[str, dict[str, Any]]:
    names = (CATALOG_STACK, EVALUATION_STACK, REVIEW_STACK, APPLICATION_STACK, LAKE_STACK)
    return {name: default_platform.template(name) for name in names}


class Journey:
    def __init__(self, templates: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
        # Powertools reads these when the handler module is first imported.
        monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
        monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "journey")
        from prompt_catalog import handler as catalog_handler

        self.templates = templates
        self.monkeypatch = monkeypatch
        catalog_env = function_env(templates[CATALOG_STACK], "Api")
        self.dataset_bucket = catalog_env["DATASET_BUCKET"]
        for name in ("TABLE_NAME", "BODY_BUCKET"):
            monkeypatch.setenv(name, f"catalog-{name.lower()}")
        monkeypatch.setenv("DATASET_BUCKET", self.dataset_bucket)
        # The real caller map of the synthesized catalog: business unit from the caller's account.
        monkeypatch.setenv("CALLER_BUSINESS_UNITS", catalog_env["CALLER_BUSINESS_UNITS"])
        monkeypatch.setenv("PROMPT_CATALOG_SETTINGS", catalog_env["PROMPT_CATALOG_SETTINGS"])
        # ... and its alias movers: each stage's `<prefix>-<bu>-<stage>-prompt-release` role in that account.
        monkeypatch.setenv("ALIAS_MOVERS", catalog_env["ALIAS_MOVERS"])
        catalog_handler.catalog.cache_clear()
        catalog_handler.callers.cache_clear()
        self.catalog = InProcessCatalog(catalog_handler, "prompt-catalog")
        monkeypatch.setattr("common.prompt_client.urllib_transport", lambda *a, **k: self.catalog)
        self.s3 = boto3.client("s3", region_name=REGION)
        self._create_resources()

    def _create_resources(self) -> None:
        """The catalog's table (keys as repository.py uses them) and every bucket of the journey."""
        boto3.client("dynamodb", region_name=REGION).create_table(
            TableName="catalog-table_name",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "gsi1pk", "gsi1sk")
            ],
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "gsi1",
                    "KeySchema": [
                        {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                        {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
        )
        app_env = function_env(self.templates[APPLICATION_STACK], "Backend")
        self.feedback_bucket = app_env["FEEDBACK_BUCKET"]
        for bucket in (self.dataset_bucket, self.feedback_bucket, RUNS_BUCKET, "catalog-body_bucket"):
            self.s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})

    def as_caller(self, arn: str) -> InProcessCatalog:
        self.catalog.caller = arn
        return self.catalog

    def catalog_call(self, caller: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        from common.prompt_client import PromptClient

        self.as_caller(caller)
        client = PromptClient(CATALOG_URL, region=REGION, credentials=Credentials("AKID", "secret", "token"))
        status, raw = client.send(method, path, body)
        return status, json.loads(raw or b"null")

    def promotion_role(self) -> tuple[str, str]:
        """(logical id, ARN) of the catalog's dataset promotion role, as the lake names it."""
        template = self.templates[CATALOG_STACK]
        [(logical_id, role)] = [
            (k, r)
            for k, r in template["Resources"].items()
            if r["Type"] == "AWS::IAM::Role" and r["Properties"].get("RoleName") == "exco-dataset-promotion"
        ]
        arn = f"arn:aws:iam::{TOOLING}:role/{role['Properties']['RoleName']}"
        trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        [api_role] = [
            k
            for k, r in template["Resources"].items()
            if k.startswith("ApiRole") and r["Type"] == "AWS::IAM::Role"
        ]
        assert [t["Principal"]["AWS"] for t in trust] == [
            {"Fn::GetAtt": [api_role, "Arn"]}
        ]  # the catalog only
        env = function_env(template, "Api")
        assert env["DATASET_WRITER_ROLE_ARN"] == {"Fn::GetAtt": [logical_id, "Arn"]}
        return logical_id, arn

    def role_allows(self, stack: str, role_id: str, action: str, resource: str) -> str:
        template = self.templates[stack]
        statements = [
            s
            for policy in template["Resources"].values()
            if policy["Type"] == "AWS::IAM::Policy" and {"Ref": role_id} in policy["Properties"]["Roles"]
            for s in resolve(policy["Properties"]["PolicyDocument"]["Statement"], template)
        ]
        return decide_identity(statements, Request(account="", action=action, resource=resource))

    def lake_admits(self, account: str, action: str, object_arn: str, principal: str | None = None) -> str:
        """The lake bucket's own policy for a business unit stage role (tags BusinessUnit=retail and the
        account's Stage) of `account`, or for the role `principal` (by ARN)."""
        template = self.templates[LAKE_STACK]
        bucket = object_arn.removeprefix("arn:aws:s3:::").split("/", 1)[0]
        for resource in template["Resources"].values():
            if resource["Type"] == "AWS::S3::BucketPolicy":
                statements = resolve(resource["Properties"]["PolicyDocument"]["Statement"], template)
                if resolve(resource["Properties"]["Bucket"], template) in (bucket, f"<{bucket}>") or any(
                    f"arn:aws:s3:::{bucket}" in json.dumps(s.get("Resource")) for s in statements
                ):
                    stage = {PREPROD: "preprod", PROD: "prod"}.get(account, "")
                    tags = (
                        {"aws:PrincipalTag/BusinessUnit": "retail", "aws:PrincipalTag/Stage": stage}
                        if principal is None
                        else {}
                    )
                    context = secure_context(**tags, **({"aws:PrincipalArn": principal} if principal else {}))
                    return decide(statements, Request(account, action, object_arn, context))
        raise KeyError(bucket)

    def allowed(self, stack: str, function_prefix: str, action: str, resource: str, **context: str) -> str:
        template = self.templates[stack]
        statements = resolve(role_statements(template, function_prefix), template)
        return decide_identity(
            statements, Request(account="", action=action, resource=resource, context=context)
        )


@pytest.fixture
def journey(templates: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> Iterator[Journey]:
    for name, value in {"AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield Journey(templates, monkeypatch)


def evaluation_runtime(journey: Journey) -> Any:
    """The engine as evaluation.handler.runtime() builds it, from the stack's environment, moto clients."""
    from evaluation import service
    from evaluation.settings import EvaluationSettings
    from evaluation.store import S3ResultStore

    from common.prompt_client import PromptClient

    template = journey.templates[EVALUATION_STACK]
    env = function_env(template, "PrepareFunction")
    assert env["DEFAULT_DATASET_BUCKET"] == journey.dataset_bucket  # the engine reads the catalog's one home
    deployed = EvaluationSettings.model_validate_json(env["EVALUATION_SETTINGS"])
    # The config's evaluation section, plus what a team sets for this journey: the catalog URL and a
    # text-quality floor (precomputed outputs have no judge).
    settings = deployed.model_copy(
        update={
            "prompt_catalog_url": CATALOG_URL,
            "gate": deployed.gate.model_copy(update={"min_metrics": {"rougeL": 0.6}}),
        }
    )
    written: list[Any] = []

    class Sink:
        def append(self, record: Any) -> None:
            written.append(record)

        def flush(self) -> list[str]:
            return ["lake-key"]

    def fetcher() -> PromptClient:
        journey.as_caller(PREPARE_SESSION)
        return PromptClient(CATALOG_URL, region=REGION, business_unit=env["BUSINESS_UNIT"])

    runtime = service.Runtime(
        settings=settings,
        business_unit=env["BUSINESS_UNIT"],
        store=S3ResultStore(RUNS_BUCKET, f"{env['BUSINESS_UNIT']}/evaluation_runs", s3_client=journey.s3),
        sink_factory=Sink,
        default_dataset_bucket=env["DEFAULT_DATASET_BUCKET"],
        prompt_fetcher=fetcher,
        now=lambda: datetime(2026, 11, 26, tzinfo=UTC),
    )
    return runtime


def run_state_machine(
    journey: Journey, execution: dict[str, Any], outputs: dict[str, dict[str, str]]
) -> dict[str, Any]:
    """Execute the synthesized definition's main path with the real step functions (service module)."""
    key = f"retail/evaluation_runs/outputs/{execution['run_id']}.jsonl"
    lines = "".join(
        json.dumps({"id": i, "model": m, "output": o}) + "\n"
        for m, by_id in outputs.items()
        for i, o in by_id.items()
    )
    journey.s3.put_object(Bucket=RUNS_BUCKET, Key=key, Body=lines.encode())
    execution_input = {**execution, "outputs": {"bucket": RUNS_BUCKET, "key": key}}
    state, order = run_main_path(
        journey.templates[EVALUATION_STACK],
        execution_input,
        evaluation_runtime(journey),
        journey.s3,
        RUNS_BUCKET,
    )
    assert order == [
        "ApplyDefaults", "MergeInput", "Prepare", "ScoreRecords", "Summarize", "GateRequested",
        "AwaitingHumanReview", "Gate", "GateDecision", "GatePassed",
    ]  # fmt: skip
    return state


GOOD = {"q1": "30 days from delivery", "q2": "two years on every device", "q3": "yes within five days"}
BAD = {"q1": "no idea", "q2": "ask the shop", "q3": "maybe"}


def test_consumer_journey(journey: Journey) -> None:
    from app_backend.catalog import ApiCatalog, signed_get_json
    from app_backend.service import AppService
    from app_backend.settings import ApplicationSettings, EndUserCatalog
    from app_backend.store import AppStore
    from app_backend.wiring import S3Candidates
    from evaluation import handler as evaluation_handler
    from evaluation import review_api

    from common.prompt_client import PromptClient
    from tests.lambdas.app_backend.conftest import ListSink, RecordingFilter, RecordingModel, create_table

    # 1. The prompt engineer saves a jinja2 prompt and a dataset referring to it in the catalog.
    status, _ = journey.catalog_call(ENGINEER, "POST", "/prompts", PROMPT)
    assert status == 201, _
    # The engineer cannot move prod; the prod stage's release role does.
    status, refused = journey.catalog_call(
        ENGINEER, "PUT", "/prompts/support-answer/aliases/prod", {"version": 1}
    )
    assert status == 403, refused
    status, moved = journey.catalog_call(
        PROD_RELEASE, "PUT", "/prompts/support-answer/aliases/prod", {"version": 1}
    )
    assert status == 200, moved
    status, dataset = journey.catalog_call(
        ENGINEER, "POST", "/datasets", {"name": USE_CASE, "records": RECORDS}
    )
    assert status == 201, dataset
    v1_key = dataset_version_key("retail", USE_CASE, 1)
    v1 = journey.s3.get_object(Bucket=journey.dataset_bucket, Key=v1_key)["Body"].read().decode()
    assert [r.id for r in read_records(v1.splitlines())] == ["q1", "q2", "q3"]
    object_arn = f"arn:aws:s3:::{journey.dataset_bucket}/{v1_key}"
    # The catalog (tooling) writes the shared zone as the dataset promotion role, the one identity the
    # lake admits there; the preprod engine reads it and may not write it.
    promotion_id, promotion_arn = journey.promotion_role()
    # (the function's statement names the role by GetAtt, which the evaluator writes `<LogicalId.Arn>`)
    assert journey.allowed(CATALOG_STACK, "Api", "sts:AssumeRole", f"<{promotion_id}.Arn>") == "allow"
    assert journey.role_allows(CATALOG_STACK, promotion_id, "s3:PutObject", object_arn) == "allow"
    assert journey.lake_admits(TOOLING, "s3:PutObject", object_arn, principal=promotion_arn) == "allow"
    assert journey.lake_admits(TOOLING, "s3:PutObject", object_arn) != "allow"  # any other tooling role
    assert journey.allowed(EVALUATION_STACK, "PrepareFunction", "s3:GetObject", object_arn) == "allow"
    assert (
        journey.lake_admits(PREPROD, "s3:GetObject", object_arn) == "allow"
    )  # the lake side admits the reader
    assert journey.allowed(EVALUATION_STACK, "PrepareFunction", "s3:PutObject", object_arn) != "allow"
    assert journey.allowed(
        EVALUATION_STACK, "PrepareFunction", "s3:ListBucket", f"arn:aws:s3:::{journey.dataset_bucket}",
        **{"s3:prefix": f"retail/shared/datasets/{USE_CASE}/"},
    ) == "allow"  # fmt: skip

    # 2. The engine runs in the definition's order; prepare pins the prompt through the catalog API.
    first = run_state_machine(
        journey, {"run_id": "gate-1", "use_case": USE_CASE, "gate": True}, {"fm-good": GOOD, "fm-bad": BAD}
    )
    assert first["prepared"]["dataset_version"] == {"name": USE_CASE, "version": 1}
    assert first["prepared"]["prompt_versions"] == {"support-answer@1": 1}
    assert (PREPARE_SESSION, "GET", "/prompts/support-answer/versions/1") in journey.catalog.calls
    route = f"{API_ARN}/GET/prompts/support-answer/versions/1"
    assert journey.allowed(EVALUATION_STACK, "PrepareFunction", "execute-api:Invoke", route) == "allow"

    # 3. The leaderboard picks the model; the gate names the exact dataset version it judged.
    assert [m["model"] for m in first["summary"]["leaderboard"]] == ["fm-good", "fm-bad"]
    assert first["gate"]["passed"] is True and first["gate"]["model"] == "fm-good"
    assert first["gate"]["dataset"] == {"name": USE_CASE, "version": 1}

    # 4. An end user's well-rated answer becomes an evaluation candidate in the feedback zone.
    app_env = function_env(journey.templates[APPLICATION_STACK], "Backend")
    journey.as_caller(APP_SESSION)
    signed = Credentials("AKID", "secret", "token")
    catalog = ApiCatalog(
        PromptClient(
            CATALOG_URL, region=REGION, business_unit="retail", transport=journey.catalog, credentials=signed
        ),
        signed_get_json(CATALOG_URL, region=REGION, transport=journey.catalog, business_unit="retail"),
    )
    # The synthesized settings, offering the engineer's prompt to end users as a real config would
    # (`application.end_user_catalog`; /invoke refuses anything else).
    synthesized = ApplicationSettings.model_validate_json(app_env["APP_SETTINGS"])
    offered = EndUserCatalog(prompts=[PROMPT["name"]])
    app = AppService(
        settings=synthesized.model_copy(update={"end_user_catalog": offered}),
        business_unit=app_env["BUSINESS_UNIT"],
        stage=app_env["LAKE_STAGE"],
        use_case=app_env["USE_CASE"],
        guard=RecordingFilter(),
        catalog=catalog,
        store=AppStore(create_table(boto3.resource("dynamodb", region_name=REGION))),
        default_model=RecordingModel(reply="Within 30 days of delivery."),
        tenant_model=lambda item: RecordingModel(),
        ratings=ListSink(),
        candidates=S3Candidates(journey.feedback_bucket, journey.s3),
        uploads=None,
        fine_tunes=None,
    )
    from app_backend import handler as app_handler

    from tests.lambdas.app_backend.conftest import api_event

    app_handler.use_service(app)
    try:
        invoke = {"prompt": "support-answer", "variables": {"tone": "brief", "question": "Return window?"}}
        answer = app_handler.app.resolve(
            api_event("POST", "/invoke", invoke, sub="tenant-a"), LambdaContext()
        )
        assert answer["statusCode"] == 200, answer["body"]
        request_id = json.loads(answer["body"])["request_id"]
        rated = app_handler.app.resolve(
            api_event("POST", "/ratings", {"request_id": request_id, "stars": 5}, sub="tenant-a"),
            LambdaContext(),
        )
        assert rated["statusCode"] == 201, rated["body"]
        rating_id = json.loads(rated["body"])["rating_id"]
        # Another tenant cannot rate tenant-a's request into a candidate.
        foreign = app_handler.app.resolve(
            api_event("POST", "/ratings", {"request_id": request_id, "stars": 1}, sub="tenant-b"),
            LambdaContext(),
        )
        assert 400 <= foreign["statusCode"] < 500, foreign["body"]
    finally:
        app_handler.use_service(None)
    review_env = function_env(journey.templates[REVIEW_STACK], "ReviewApiFunction")
    [candidate_key] = [
        o["Key"] for o in journey.s3.list_objects_v2(Bucket=journey.feedback_bucket).get("Contents", [])
        if "evaluation_candidates" in o["Key"]
    ]  # fmt: skip
    # The review API looks exactly where the app backend wrote, and may read it.
    assert review_env["CANDIDATES_BUCKET"] == journey.feedback_bucket
    assert candidate_key == f"{review_env['CANDIDATES_PREFIX']}{USE_CASE}/{rating_id}.jsonl"
    candidate_arn = f"arn:aws:s3:::{journey.feedback_bucket}/{candidate_key}"
    assert journey.allowed(REVIEW_STACK, "ReviewApiFunction", "s3:GetObject", candidate_arn) == "allow"
    assert journey.lake_admits(PROD, "s3:GetObject", candidate_arn) == "allow"

    # 5. A tester lists the candidate and accepts it: the catalog writes version 2 and records who accepted.
    # The review API function's environment as synthesized; tokens (bucket, queue) become this journey's.
    journey_values = {
        "RESULTS_BUCKET": RUNS_BUCKET,
        "REVIEW_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/333333333332/reviews",
        "EVALUATION_SETTINGS": evaluation_runtime(journey).settings.model_dump_json(),  # + the catalog URL
    }
    for name, value in review_env.items():
        journey.monkeypatch.setenv(name, journey_values.get(name, value if isinstance(value, str) else ""))
    review_api.review_service.cache_clear()
    review_api.curation.cache_clear()
    journey.as_caller(REVIEW_SESSION)

    def review_call(
        method: str, path: str, body: Any = None, query: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        event = {
            "resource": path, "path": path, "httpMethod": method, "headers": {"Content-Type": "application/json"},
            "queryStringParameters": query, "pathParameters": None,
            "requestContext": {"resourcePath": path, "httpMethod": method, "identity": {"userArn": TESTER}},
            "body": None if body is None else json.dumps(body), "isBase64Encoded": False,
        }  # fmt: skip
        out = evaluation_handler.review_api(event, LambdaContext())
        return out["statusCode"], json.loads(out["body"]) if out["body"] else None

    status, listed = review_call("GET", "/candidates", query={"use_case": USE_CASE})
    assert status == 200 and [c["rating_id"] for c in listed["candidates"]] == [rating_id]
    status, accepted = review_call(
        "POST", f"/datasets/{USE_CASE}/accept", {"use_case": USE_CASE, "candidates": [rating_id]}
    )
    assert status == 201, accepted
    assert accepted["version"] == 2 and accepted["records_key"] == dataset_version_key("retail", USE_CASE, 2)
    assert (REVIEW_SESSION, "POST", f"/datasets/{USE_CASE}/records") in journey.catalog.calls
    accept_route = f"{API_ARN}/POST/datasets/{USE_CASE}/records"
    assert journey.allowed(REVIEW_STACK, "ReviewApiFunction", "execute-api:Invoke", accept_route) == "allow"
    status, version2 = journey.catalog_call(ENGINEER, "GET", f"/datasets/{USE_CASE}/versions/2")
    assert version2["content"]["accepted"]["by"] == f"arn:aws:iam::{PROD}:role/evaluation-tester"
    assert (
        review_call("GET", "/candidates", query={"use_case": USE_CASE})[1]["candidates"] == []
    )  # accepted once

    # 6. The next gate run includes the accepted record and names dataset version 2.
    new_id = f"rating-{rating_id}"
    second = run_state_machine(
        journey,
        {"run_id": "gate-2", "use_case": USE_CASE, "gate": True},
        {"fm-good": {**GOOD, new_id: "Within 30 days of delivery."}, "fm-bad": {**BAD, new_id: "no"}},
    )
    assert second["prepared"]["records"] == 4 and second["prepared"]["dataset_version"] == {
        "name": USE_CASE,
        "version": 2,
    }
    assert second["gate"]["dataset"] == {"name": USE_CASE, "version": 2}
    clean = (
        journey.s3.get_object(Bucket=RUNS_BUCKET, Key=second["prepared"]["dataset"]["key"])["Body"]
        .read()
        .decode()
    )
    assert new_id in {r.id for r in read_records(clean.splitlines())}
    summary = json.loads(
        journey.s3.get_object(Bucket=RUNS_BUCKET, Key=second["summary"]["summary"]["key"])["Body"].read()
    )
    assert summary["dataset"] == {"name": USE_CASE, "version": 2} and summary["models"][0]["count"] == 4


def test_negative_another_business_unit_cannot_read_or_accept_into_retail(journey: Journey) -> None:
    journey.catalog_call(ENGINEER, "POST", "/prompts", PROMPT)
    journey.catalog_call(ENGINEER, "POST", "/datasets", {"name": USE_CASE, "records": RECORDS})
    finance = f"arn:aws:sts::{FINANCE_DEV}:assumed-role/exco-finance-dev-evaluation-ReviewApiRole/review"
    status, _ = journey.catalog_call(finance, "GET", "/prompts/support-answer/versions/1")
    assert status == 404
    body = {"records": [{"id": "x1", "input": "hi"}], "accepted_by": "arn:aws:iam::444444444441:role/t"}
    status, _ = journey.catalog_call(finance, "POST", f"/datasets/{USE_CASE}/records", body)
    assert status == 404
    keys = [o["Key"] for o in journey.s3.list_objects_v2(Bucket=journey.dataset_bucket).get("Contents", [])]
    assert keys == [dataset_version_key("retail", USE_CASE, 1)]  # nothing written for finance's attempt
    other_unit = f"arn:aws:s3:::{journey.dataset_bucket}/finance/shared/datasets/{USE_CASE}/1/dataset.jsonl"
    assert journey.allowed(EVALUATION_STACK, "PrepareFunction", "s3:GetObject", other_unit) != "allow"


def test_negative_no_stage_role_writes_the_shared_zone_only_the_catalog_does(journey: Journey) -> None:
    shared = f"arn:aws:s3:::{journey.dataset_bucket}/retail/shared/datasets/{USE_CASE}/9/dataset.jsonl"
    for stack, prefix in (
        (EVALUATION_STACK, "PrepareFunction"),
        (EVALUATION_STACK, "ScoreBatchFunction"),
        (EVALUATION_STACK, "SummarizeFunction"),
        (EVALUATION_STACK, "ReviewApiFunction"),
        (REVIEW_STACK, "ReviewApiFunction"),
        (APPLICATION_STACK, "Backend"),
    ):
        assert journey.allowed(stack, prefix, "s3:PutObject", shared) != "allow", (stack, prefix)
    # The review API reaches the catalog's accept route only, not prompt or alias writes.
    for route in ("POST/prompts", "PUT/prompts/support-answer/aliases/prod", "POST/datasets"):
        arn = f"{API_ARN}/{route}"
        assert journey.allowed(EVALUATION_STACK, "ReviewApiFunction", "execute-api:Invoke", arn) != "allow", (
            route
        )


def test_negative_another_stage_cannot_read_prod_rating_candidates(journey: Journey) -> None:
    prod_candidate = (
        f"arn:aws:s3:::{journey.feedback_bucket}/retail/prod/evaluation_candidates/{USE_CASE}/r-1.jsonl"
    )
    # The prod review API reads them; preprod's may not, and the lake refuses a preprod principal too.
    assert journey.allowed(REVIEW_STACK, "ReviewApiFunction", "s3:GetObject", prod_candidate) == "allow"
    assert journey.allowed(EVALUATION_STACK, "ReviewApiFunction", "s3:GetObject", prod_candidate) != "allow"
    assert journey.lake_admits(PREPROD, "s3:GetObject", prod_candidate) != "allow"
    assert journey.lake_admits(PROD, "s3:GetObject", prod_candidate) == "allow"
