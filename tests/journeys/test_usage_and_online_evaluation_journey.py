"""Journey: an end user's /invoke produces a usage row in the lake and, when sampled, a judge score row.

Hop by hop over the synthesized templates of finance prod (online evaluation on, profiles per use case) and
the real handlers (moto for SQS, S3 and DynamoDB; botocore Stubber for Bedrock Converse):

  /invoke (app backend, model through the stage's inference profile)
    -> usage queue ---------> usage writer -> lake model_usage (finance/...) -> cost per tenant query
    -> samples queue (sampled) -> online judge (judge profile) -> lake evaluation_results, judge metric
                                                                -> human review queue (low score)

Each hop checks that the next one is wired to exactly what the previous produced (queue, bucket, key, profile)
and that the IAM policy of the role that acts allows that exact action on that exact resource. Negative
journeys: another tenant's cost stays its own; another business unit's writer refuses the record and its role
cannot write the key; another stage's backend cannot reach this stage's queues.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from itertools import count
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from app_backend import handler as app_handler
from app_backend import service as app_service
from app_backend.service import AppService
from app_backend.settings import EndUserCatalog
from app_backend.store import AppStore
from app_backend.wiring import S3Candidates, default_model
from botocore.stub import ANY, Stubber
from evaluation.judge import JUDGE_SYSTEM
from evaluation.models import build_judge
from evaluation.review import SqsReviewQueue
from evaluation.settings import EvaluationSettings
from model_usage import handler as usage_handler
from model_usage.core import OnlineJudge
from moto import mock_aws
from sqlglot.executor import execute

from common import quality_metrics as qm
from common.lake_layout import Zone
from common.lake_queries import MONTHLY_COST_PER_TENANT
from common.lake_writer import LakeWriter
from common.model_pricing import ModelPrice
from common.model_usage import SqsMessages, sampled
from stacks.blocks.lake_access import lake_bucket_name
from stacks.settings import EnvironmentSpec, Stage
from tests.conftest import SynthesizedPlatform
from tests.journeys._usage import References
from tests.lambdas.app_backend.conftest import (
    FakeCatalog,
    LambdaContext,
    RecordingFilter,
    api_event,
    create_table,
)
from tests.stacks.policy_eval import Request, decide, resolve, secure_context

BU = "finance"


def env_of(platform: SynthesizedPlatform, bu: str, stage: Stage) -> EnvironmentSpec:
    return platform.config.environment(platform.config.business_unit(bu), stage)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, default_platform: SynthesizedPlatform) -> Iterator[None]:
    region = env_of(default_platform, BU, Stage.PROD).region
    for name, value in {
        "AWS_DEFAULT_REGION": region,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_METRICS_NAMESPACE": qm.NAMESPACE,
        "LAKE_STAGE": "prod",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield


def converse_answer(text: str, tokens_in: int, tokens_out: int) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {
            "inputTokens": tokens_in,
            "outputTokens": tokens_out,
            "totalTokens": tokens_in + tokens_out,
        },
        "metrics": {"latencyMs": 120},
    }


def request_id_where(rate: float, *, sampled_: bool) -> uuid.UUID:
    """A request id the sampler keeps (or skips) at `rate`: the coin flip is a hash of the id."""
    return next(u for n in count(1) if sampled((u := uuid.UUID(int=n)).hex, rate) == sampled_)


def lake_rows(bucket: str) -> list[tuple[str, dict[str, Any]]]:
    s3 = boto3.client("s3")
    rows = []
    for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode()
        rows += [(item["Key"], json.loads(line)) for line in body.splitlines() if line]
    return rows


def receive(url: str) -> list[dict[str, Any]]:
    answer = boto3.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    return [{"messageId": m["MessageId"], "body": m["Body"]} for m in answer.get("Messages", [])]


def lake_allows(refs: References, zone: Zone, key: str, bu: str, stage: Stage) -> str:
    """The data lake's bucket policy on a put from a role tagged with this business unit and stage."""
    config = refs.platform.config
    bucket = lake_bucket_name(config, zone)
    lake_stack = f"{config.organization.prefix}-data-lake"
    template = refs.templates[lake_stack]
    statements: list[dict[str, Any]] = []
    for policy in refs.resources(lake_stack, "AWS::S3::BucketPolicy").values():
        target = template["Resources"][policy["Properties"]["Bucket"]["Ref"]]
        if target["Properties"].get("BucketName") == bucket:
            statements += resolve(policy["Properties"]["PolicyDocument"]["Statement"], template)
    assert statements, bucket
    account = env_of(refs.platform, bu, stage).account
    context = secure_context(**{"aws:PrincipalTag/BusinessUnit": bu, "aws:PrincipalTag/Stage": stage.value})
    return decide(statements, Request(account, "s3:PutObject", f"arn:aws:s3:::{bucket}/{key}", context))


def test_an_invoke_produces_a_usage_row_and_when_sampled_a_judge_score_row(
    default_platform: SynthesizedPlatform,
    aws: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    refs = References(default_platform)
    env = env_of(default_platform, BU, Stage.PROD)
    app, usage, profiles, evaluation = (
        f"{env.name}-{s}" for s in ("application", "model-usage", "model-profiles", "evaluation")
    )
    bu = env.business_unit

    # ---- hop 1: the backend is wired to this stage's profile and queues, and may use them -------------
    backend_env = refs.function_env(app, "Backend")
    backend = refs.role_statements(app, "Backend")
    usage_queue_id, usage_queue = refs.one(usage, "AWS::SQS::Queue", "UsageQueue")
    samples_queue_id, _ = refs.one(usage, "AWS::SQS::Queue", "OnlineSamplesQueue")
    assert backend_env["USAGE_QUEUE_URL"] == f"{usage}/{usage_queue_id}"
    assert backend_env["ONLINE_EVALUATION_QUEUE_URL"] == f"{usage}/{samples_queue_id}"
    rate = float(backend_env["ONLINE_EVALUATION_SAMPLE_RATE"])
    assert rate == bu.model_usage.online_evaluation.sample_rate > 0
    for queue_id in (usage_queue_id, samples_queue_id):
        assert decide(backend, Request("any", "sqs:SendMessage", f"{usage}/{queue_id}.Arn")) == "allow"
    queue_key = refs.canonical(usage_queue["Properties"]["KmsMasterKeyId"], usage)
    assert decide(backend, Request("any", "kms:GenerateDataKey", queue_key)) == "allow"
    profile_ref = backend_env["DEFAULT_MODEL_PROFILE_ARN"]
    profile_id = profile_ref.removeprefix(f"{profiles}/").removesuffix(".InferenceProfileArn")
    tags = {
        t["Key"]: t["Value"] for t in refs.templates[profiles]["Resources"][profile_id]["Properties"]["Tags"]
    }
    assert tags == {
        "BusinessUnit": BU,
        "Stage": "prod",
        "CostCenter": bu.cost_center,
        "Model": bu.application.default_model.model_id,
        "UseCase": backend_env["USE_CASE"],
    }
    assert decide(backend, Request("any", "bedrock:InvokeModel", profile_ref)) == "allow"
    model_arn = f"arn:aws:bedrock:{env.region}::foundation-model/{bu.application.default_model.model_id}"
    through = {"bedrock:InferenceProfileArn": profile_ref}
    assert decide(backend, Request("any", "bedrock:InvokeModel", model_arn, through)) == "allow"
    assert decide(backend, Request("any", "bedrock:InvokeModel", model_arn)) == "implicit"  # not around it

    # ---- hop 2: the real backend answers two tenants, the model called through the profile ---------------
    sqs = boto3.client("sqs")
    usage_url = sqs.create_queue(QueueName="usage")["QueueUrl"]
    samples_url = sqs.create_queue(QueueName="samples")["QueueUrl"]
    review_url = sqs.create_queue(QueueName="review")["QueueUrl"]
    s3 = boto3.client("s3")
    for zone in (Zone.MODEL_METADATA, Zone.EVALUATION_RESULTS, Zone.FEEDBACK):
        s3.create_bucket(
            Bucket=lake_bucket_name(default_platform.config, zone),
            CreateBucketConfiguration={"LocationConstraint": env.region},
        )
    bedrock = boto3.client("bedrock-runtime")
    model = default_model(bu.application.default_model, profile_ref)
    model.client = bedrock  # type: ignore[attr-defined]
    # As a real config would: /invoke serves only what `application.end_user_catalog` offers end users.
    offered = bu.application.model_copy(update={"end_user_catalog": EndUserCatalog(prompts=["greet"])})
    service = AppService(
        settings=offered,
        business_unit=backend_env["BUSINESS_UNIT"],
        stage=backend_env["LAKE_STAGE"],
        use_case=backend_env["USE_CASE"],
        guard=RecordingFilter(),
        catalog=FakeCatalog(),
        store=AppStore(create_table(boto3.resource("dynamodb"))),
        default_model=model,
        tenant_model=lambda item: model,
        ratings=LakeWriter(backend_env["FEEDBACK_BUCKET"]),
        candidates=S3Candidates(backend_env["FEEDBACK_BUCKET"], s3),
        usage=SqsMessages(usage_url, sqs_client=sqs),
        samples=SqsMessages(samples_url, sqs_client=sqs),
        sample_rate=rate,
        model_price=ModelPrice.model_validate_json(backend_env["MODEL_PRICE"]),
        inference_profile=profile_ref,
    )
    ids = iter([request_id_where(rate, sampled_=True), request_id_where(rate, sampled_=False)])
    monkeypatch.setattr(app_service, "uuid", SimpleNamespace(uuid4=lambda: next(ids)))  # this module only
    app_handler.use_service(service)
    stubber = Stubber(bedrock)
    for tokens_in, tokens_out in ((1200, 300), (4000, 1000)):
        expected = {"modelId": profile_ref, "messages": ANY, "inferenceConfig": ANY}
        stubber.add_response("converse", converse_answer("Revenue grew.", tokens_in, tokens_out), expected)
    answers = {}
    try:
        with stubber:
            for tenant, name in (("tenant-a", "alice@example.com"), ("tenant-b", "Bo")):
                event = api_event(
                    "POST", "/invoke", {"prompt": "greet", "variables": {"name": name}}, sub=tenant
                )
                answer = app_handler.app.resolve(event, LambdaContext())  # type: ignore[arg-type]
                assert answer["statusCode"] == 200, answer
                answers[tenant] = json.loads(answer["body"])
    finally:
        app_handler.use_service(None)
    stubber.assert_no_pending_responses()

    # ---- hop 3: the usage queue feeds the usage writer, which writes only its business unit's prefix ----
    writer_id, _ = refs.one(usage, "AWS::Lambda::Function", "UsageWriter")
    (mapping,) = [
        m["Properties"]
        for m in refs.resources(usage, "AWS::Lambda::EventSourceMapping").values()
        if refs.canonical(m["Properties"]["FunctionName"], usage) == f"{usage}/{writer_id}"
    ]
    assert refs.canonical(mapping["EventSourceArn"], usage) == f"{usage}/{usage_queue_id}.Arn"
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    writer_env = refs.function_env(usage, "UsageWriter")
    for name, value in writer_env.items():
        monkeypatch.setenv(name, value)
    messages = receive(usage_url)
    assert len(messages) == 2
    assert usage_handler.usage_writer({"Records": messages}, LambdaContext()) == {"batchItemFailures": []}
    rows = lake_rows(writer_env["USAGE_BUCKET"])
    assert {row["request_id"] for _, row in rows} == {a["request_id"] for a in answers.values()}
    writer = refs.role_statements(usage, "UsageWriter")
    for key, _ in rows:
        arn = f"arn:aws:s3:::{writer_env['USAGE_BUCKET']}/{key}"
        assert decide(writer, Request("any", "s3:PutObject", arn)) == "allow", key
        assert lake_allows(refs, Zone.MODEL_METADATA, key, BU, Stage.PROD) == "allow", key

    # ---- hop 4: the documented query turns the rows into each tenant's monthly cost ----------------------
    # Partition values come from the key, as Athena's projection reads them: <bu>/<stage>/<table>/dt=.../
    table = [{**row, "stage": key.split("/")[1], "dt": key.split("/dt=")[1][:10]} for key, row in rows]
    sql = MONTHLY_COST_PER_TENANT
    for value in ("prod", "2000-01-01", "2999-12-31"):
        sql = sql.replace("?", f"'{value}'", 1)
    result = execute(sql, dialect="athena", tables={"model_usage": table})
    by_tenant = {
        r[result.columns.index("tenant_id")]: dict(zip(result.columns, r, strict=True)) for r in result.rows
    }
    price = service.model_price
    assert price is not None
    assert by_tenant["tenant-a"]["estimated_cost_usd"] == pytest.approx(price.cost_usd(1200, 300))
    assert by_tenant["tenant-b"]["estimated_cost_usd"] == pytest.approx(price.cost_usd(4000, 1000))
    assert by_tenant["tenant-a"]["requests"] == 1 and by_tenant["tenant-a"]["input_tokens"] == 1200

    # ---- hop 5: only the sampled exchange reaches the judge's queue, redacted ---------------------------
    judge_id, _ = refs.one(usage, "AWS::Lambda::Function", "OnlineJudge")
    (judge_mapping,) = [
        m["Properties"]
        for m in refs.resources(usage, "AWS::Lambda::EventSourceMapping").values()
        if refs.canonical(m["Properties"]["FunctionName"], usage) == f"{usage}/{judge_id}"
    ]
    assert refs.canonical(judge_mapping["EventSourceArn"], usage) == f"{usage}/{samples_queue_id}.Arn"
    samples = receive(samples_url)
    assert [json.loads(m["body"])["request_id"] for m in samples] == [answers["tenant-a"]["request_id"]]
    assert "alice@example.com" not in samples[0]["body"] and "[EMAIL]" in samples[0]["body"]

    # ---- hop 6: the online judge is the offline judge, through its profile, scoring into the lake -------
    judge_env = refs.function_env(usage, "OnlineJudge")
    settings = EvaluationSettings.model_validate_json(judge_env["EVALUATION_SETTINGS"])
    offline = EvaluationSettings.model_validate_json(
        refs.function_env(evaluation, "ScoreBatchFunction")["EVALUATION_SETTINGS"]
    )
    assert settings.judge == offline.judge  # the same judge model (same profile), samples and parse attempts
    assert settings.judge.model is not None
    judge_profile = settings.judge.model.model_id
    assert judge_profile is not None and judge_profile.startswith(f"{profiles}/")
    judge_role = refs.role_statements(usage, "OnlineJudge")
    assert decide(judge_role, Request("any", "bedrock:InvokeModel", judge_profile)) == "allow"
    judge_stubber = Stubber(bedrock)
    low = {"helpfulness": 3, "relevance": 3, "accuracy": 3, "level_of_detail": 2, "overall": 3}
    judge_stubber.add_response(
        "converse",
        converse_answer(json.dumps({**low, "justification": "Too short."}), 300, 40),
        {
            "modelId": judge_profile,
            "messages": ANY,
            "system": [{"text": JUDGE_SYSTEM}],
            "inferenceConfig": ANY,
        },
    )
    online = OnlineJudge(
        business_unit=judge_env["BUSINESS_UNIT"],
        judge=build_judge(settings, bedrock=bedrock),  # type: ignore[arg-type]
        settings=settings.judge,
        low_score_below=float(judge_env["LOW_SCORE_BELOW"]),
        sink=LakeWriter(judge_env["LAKE_RESULTS_BUCKET"], zone=Zone.EVALUATION_RESULTS),
        review_queue=SqsReviewQueue(review_url, sqs_client=sqs),
        sleep=lambda _: None,
    )
    capsys.readouterr()
    with judge_stubber:
        assert online.handle(samples) == {"batchItemFailures": []}
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    [(key, row)] = lake_rows(judge_env["LAKE_RESULTS_BUCKET"])
    assert (row["record_id"], row["judge_score"], row["run_id"][:7]) == (
        answers["tenant-a"]["request_id"],
        3.0,
        "online-",
    )
    arn = f"arn:aws:s3:::{judge_env['LAKE_RESULTS_BUCKET']}/{key}"
    assert decide(judge_role, Request("any", "s3:PutObject", arn)) == "allow"
    assert lake_allows(refs, Zone.EVALUATION_RESULTS, key, BU, Stage.PROD) == "allow"

    # ---- hop 7: the score feeds the online judge alarms; the low score reaches the reviewers ------------
    [metric] = [m for m in emitted if qm.JUDGE_SCORE_MEAN in m]
    dims = {"business_unit": metric["business_unit"], "model": metric["model"], "service": metric["service"]}
    assert (
        metric[qm.JUDGE_SCORE_MEAN] == [3.0]
        and metric["_aws"]["CloudWatchMetrics"][0]["Namespace"] == qm.NAMESPACE
    )
    monitoring = f"{env.name}-monitoring"
    _, drop = refs.one(monitoring, "AWS::CloudWatch::Alarm", "OnlineJudgeScoreDrop")
    (score_query,) = [q for q in drop["Properties"]["Metrics"] if "MetricStat" in q]
    stat = score_query["MetricStat"]["Metric"]
    assert stat["Namespace"] == qm.NAMESPACE and stat["MetricName"] == qm.JUDGE_SCORE_MEAN
    assert {d["Name"]: d["Value"] for d in stat["Dimensions"]} == dims
    assert drop["Properties"]["AlarmActions"]  # notifies the stage's topic
    review_queue_id, _ = refs.one(evaluation, "AWS::SQS::Queue", "ReviewQueue")
    assert judge_env["REVIEW_QUEUE_URL"] == f"{evaluation}/{review_queue_id}"
    assert (
        decide(judge_role, Request("any", "sqs:SendMessage", f"{evaluation}/{review_queue_id}.Arn"))
        == "allow"
    )
    assert (
        refs.function_env(evaluation, "ReviewApiFunction")["REVIEW_QUEUE_URL"]
        == judge_env["REVIEW_QUEUE_URL"]
    )
    [review] = [json.loads(m["body"]) for m in receive(review_url)]
    assert review["record_id"] == answers["tenant-a"]["request_id"] and review["judge_score"] == 3.0


def test_another_business_unit_and_another_stage_never_take_part(
    default_platform: SynthesizedPlatform, aws: None
) -> None:
    refs = References(default_platform)
    prod = env_of(default_platform, BU, Stage.PROD)
    retail = env_of(default_platform, "retail", Stage.PROD)
    dev = env_of(default_platform, BU, Stage.DEV)
    usage = f"{prod.name}-model-usage"
    key = "finance/prod/model_usage/dt=2026-11-26/model=amazon.nova-lite-v1_0/part-0.jsonl"

    # Another business unit: its writer refuses finance's record, its role cannot write finance's prefix,
    # and the lake refuses its tag on finance's prefix.
    retail_usage = f"{retail.name}-model-usage"
    retail_env = refs.function_env(retail_usage, "UsageWriter")
    assert retail_env["BUSINESS_UNIT"] == "retail"
    bucket = retail_env["USAGE_BUCKET"]
    retail_writer = refs.role_statements(retail_usage, "UsageWriter")
    assert decide(retail_writer, Request("any", "s3:PutObject", f"arn:aws:s3:::{bucket}/{key}")) == "implicit"
    assert lake_allows(refs, Zone.MODEL_METADATA, key, "retail", Stage.PROD) != "allow"
    # Another stage of the same business unit: the lake refuses finance dev's tag on finance prod's prefix.
    assert lake_allows(refs, Zone.MODEL_METADATA, key, BU, Stage.DEV) != "allow"
    from model_usage.core import write_usage

    from tests.lambdas.model_usage.conftest import usage_record

    class Sink:
        def __init__(self) -> None:
            self.appended: list[Any] = []

        def append(self, record: Any) -> None:
            self.appended.append(record)

        def flush(self) -> list[str]:
            return []

    sink = Sink()
    message = {"messageId": "m", "body": usage_record().model_dump_json()}
    refused = write_usage([message], business_unit="retail", sink=sink)
    assert refused == {"batchItemFailures": [{"itemIdentifier": "m"}]} and sink.appended == []

    # Another stage: finance dev's backend reaches its own queues only, and dev samples nothing here.
    dev_app = f"{dev.name}-application"
    dev_backend = refs.role_statements(dev_app, "Backend")
    prod_queues = [
        k
        for k in refs.resources(usage, "AWS::SQS::Queue")
        if not k.endswith("DeadLetters") and "DeadLetters" not in k
    ]
    for queue_id in prod_queues:
        assert decide(dev_backend, Request("any", "sqs:SendMessage", f"{usage}/{queue_id}.Arn")) == "implicit"
    dev_env = refs.function_env(dev_app, "Backend")
    assert dev_env["USAGE_QUEUE_URL"].startswith(f"{dev.name}-model-usage/")
    assert "ONLINE_EVALUATION_QUEUE_URL" not in dev_env
    prod_profile = refs.function_env(f"{prod.name}-application", "Backend")["DEFAULT_MODEL_PROFILE_ARN"]
    assert decide(dev_backend, Request("any", "bedrock:InvokeModel", prod_profile)) == "implicit"
