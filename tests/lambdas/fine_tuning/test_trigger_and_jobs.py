"""The raw-upload trigger (Stubber: StartPipelineExecution) and the pure parts of the pipeline's jobs."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import ANY, Stubber
from fine_tuning_jobs.evaluate import report
from fine_tuning_jobs.preprocess import split
from fine_tuning_jobs.train import load_hyperparameters
from fine_tuning_trigger.core import (
    AtCapacityError,
    PipelineRef,
    RunLeases,
    Upload,
    release_ended_run,
    start_pipeline,
    tenant_of,
)
from hypothesis import given
from hypothesis import strategies as st
from moto import mock_aws

from common.fine_tuning_runs import (
    RESERVATION_SECONDS,
    SlotLostError,
    TenantUseCases,
    UnknownUseCaseError,
    start_for_tenant,
)
from tests.lambdas.fine_tuning._leases import OneRequestAtATime, create_leases_table, leases_for


@pytest.fixture
def sagemaker() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("sagemaker", region_name="eu-west-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


# The default use case here is not the first one: a start must name the right one.
USE_CASES = TenantUseCases(default="review-summarization", names=("product-qa", "review-summarization"))
PIPELINE = PipelineRef(
    "exco-retail-prod-fine-tuning",
    "retail",
    "prod",
    max_concurrent_runs=2,
    max_runtime_hours=12,
    use_cases=USE_CASES,
)
NOW = datetime(2025, 1, 1, tzinfo=UTC)
PIPELINE_ARN = "arn:aws:sagemaker:eu-west-1:333333333333:pipeline/exco-retail-prod-fine-tuning"
EXECUTION = f"{PIPELINE_ARN}/execution/abc"


@pytest.fixture
def leases() -> Iterator[RunLeases]:
    with mock_aws():
        yield leases_for(create_leases_table("eu-west-1"), PIPELINE)


def start_acme(
    sagemaker: Any, leases: RunLeases, use_case: str | None = None, token: str = "a" * 32, now: datetime = NOW
) -> str:
    """One start of tenant acme's uploads, as both starters make it."""
    return start_for_tenant(
        sagemaker,
        leases,
        tenant_id="acme",
        input_uri="s3://raw/retail/prod/tenant=acme/uploads/",
        model_name="personal",
        client_token=token,
        now=now,
        use_case=use_case,
    )


def expect_start(
    stubber: Stubber,
    tenant: str = "acme",
    arn: str = EXECUTION,
    use_case: str = "review-summarization",
    token: Any = ANY,
) -> None:
    """An upload trains the default use case; no start names a registry status (the pipeline derives it)."""
    stubber.add_response(
        "start_pipeline_execution",
        {"PipelineExecutionArn": arn},
        {
            "PipelineName": PIPELINE.name,
            "PipelineExecutionDisplayName": f"tenant-{tenant}",
            "PipelineParameters": [
                {"Name": "TenantId", "Value": tenant},
                {"Name": "ModelName", "Value": "personal"},
                {"Name": "InputDataUri", "Value": f"s3://raw/retail/prod/tenant={tenant}/uploads/"},
                {"Name": "UseCase", "Value": use_case},
            ],
            "ClientRequestToken": token,
        },
    )


def test_a_run_names_its_use_case_and_nothing_about_its_approval(sagemaker: Any, leases: RunLeases) -> None:
    client, stubber = sagemaker
    expect_start(stubber, use_case="product-qa")
    assert start_acme(client, leases, "product-qa") == EXECUTION
    assert [i["execution_arn"]["S"] for i in leases.held(now=NOW)] == [EXECUTION]


@pytest.mark.parametrize("use_case", ["support-bot", "Product-QA", ""])
def test_an_unknown_use_case_starts_nothing_and_takes_no_slot(
    sagemaker: Any, leases: RunLeases, use_case: str
) -> None:
    client, _ = sagemaker  # no response queued: a start would fail the test
    with pytest.raises(UnknownUseCaseError, match="product-qa, review-summarization"):
        start_acme(client, leases, use_case)
    assert leases.held(now=NOW) == []


def test_the_use_cases_travel_through_the_environment_unchanged_and_need_a_known_default() -> None:
    assert TenantUseCases.from_json(USE_CASES.to_json()) == USE_CASES
    assert json.loads(USE_CASES.to_json()) == {
        "default": "review-summarization",
        "use_cases": ["product-qa", "review-summarization"],
    }
    with pytest.raises(ValueError, match="default use case 'support-bot' is not one of product-qa"):
        TenantUseCases(default="support-bot", names=("product-qa",))


def upload_of(tenant: str, n: int = 1) -> Upload:
    return Upload("raw", f"retail/prod/tenant={tenant}/uploads/{n}/data.jsonl")


def test_a_tenant_upload_starts_the_pipeline_with_its_tenant_id_in_a_leased_slot(
    sagemaker: Any, leases: RunLeases
) -> None:
    client, stubber = sagemaker
    expect_start(stubber)
    assert start_pipeline(client, leases, upload_of("acme"), now=NOW) == EXECUTION
    (lease,) = leases.held(now=NOW)
    assert lease["execution_arn"]["S"] == EXECUTION
    # The lease lasts as long as a run can: three jobs of max_runtime_hours each, plus an hour.
    assert int(lease["expires_at"]["N"]) == int(NOW.timestamp()) + 37 * 3600


def test_the_cap_keeps_the_upload_waiting_and_starts_nothing(sagemaker: Any, leases: RunLeases) -> None:
    client, stubber = sagemaker
    expect_start(stubber, "ann", f"{EXECUTION}1")
    expect_start(stubber, "ben", f"{EXECUTION}2")
    start_pipeline(client, leases, upload_of("ann"), now=NOW)
    start_pipeline(client, leases, upload_of("ben"), now=NOW)
    with pytest.raises(
        AtCapacityError, match=r"2 fine-tuning runs in progress; fine_tuning\.max_concurrent_runs is 2"
    ):
        start_pipeline(client, leases, upload_of("cat"), now=NOW)


def test_a_redelivered_upload_keeps_its_one_slot(sagemaker: Any, leases: RunLeases) -> None:
    client, stubber = sagemaker
    token = f"{hashlib.sha256(b'raw/' + upload_of('acme').key.encode()).hexdigest()}-{int(NOW.timestamp())}"
    expect_start(stubber, token=token)
    # SageMaker answers the same client token with the same execution: the redelivery sends the same one.
    expect_start(stubber, token=token)
    start_pipeline(client, leases, upload_of("acme"), now=NOW)
    start_pipeline(client, leases, upload_of("acme"), now=NOW + timedelta(seconds=5))
    assert len(leases.held(now=NOW)) == 1


def test_an_upload_redelivered_after_its_run_ended_trains_once_more(
    sagemaker: Any, leases: RunLeases
) -> None:
    """Once the run's end freed the slot there is no lease to join: the redelivery reserves anew, and the
    reservation's time in the start token makes it a new execution (not the ended one, whose slot the end
    event already freed, which would hold the new lease for up to a run's longest time)."""
    client, stubber = sagemaker
    key_hash = hashlib.sha256(b"raw/" + upload_of("acme").key.encode()).hexdigest()
    later = NOW + timedelta(hours=2)
    expect_start(stubber, token=f"{key_hash}-{int(NOW.timestamp())}")
    start_pipeline(client, leases, upload_of("acme"), now=NOW)
    ended = {"pipeline_arn": PIPELINE_ARN, "execution_arn": EXECUTION, "now": later}
    assert release_ended_run(leases, status="Succeeded", **ended) == 1
    expect_start(stubber, arn=f"{EXECUTION}2", token=f"{key_hash}-{int(later.timestamp())}")
    assert start_pipeline(client, leases, upload_of("acme"), now=later) == f"{EXECUTION}2"
    assert [i["execution_arn"]["S"] for i in leases.held(now=later)] == [f"{EXECUTION}2"]
    stubber.assert_no_pending_responses()


# ---- a start slower than its reservation ------------------------------------------------------------------


class SlowStart:
    """The SageMaker client of a starter whose StartPipelineExecution takes longer than the reservation:
    while the call runs, the reservation expires and another starter takes the slot (the race, replayed in
    order). Requests go through a Stubber, which checks them against the service model."""

    def __init__(self, leases: RunLeases, stubber: Stubber, client: Any) -> None:
        self._racing = RunLeases(leases._dynamodb, leases.table_name, leases.pipeline)
        self._client = client
        self.stolen: list[str] = []
        self.expired = NOW + timedelta(seconds=RESERVATION_SECONDS + 1)
        stubber.add_response("start_pipeline_execution", {"PipelineExecutionArn": f"{EXECUTION}-slow"}, None)

    def start_pipeline_execution(self, **request: Any) -> dict[str, Any]:
        response: dict[str, Any] = self._client.start_pipeline_execution(**request)
        self.stolen.append(self._racing.reserve("another-starter", now=self.expired).token)
        return response

    def stop_pipeline_execution(self, **request: Any) -> dict[str, Any]:
        return self._client.stop_pipeline_execution(**request)  # type: ignore[no-any-return]


def expect_stop(stubber: Stubber, execution: str) -> None:
    stubber.add_response(
        "stop_pipeline_execution",
        {"PipelineExecutionArn": execution},
        {"PipelineExecutionArn": execution, "ClientRequestToken": ANY},
    )


@pytest.fixture
def slow(sagemaker: Any, leases: RunLeases) -> tuple[SlowStart, RunLeases, Stubber]:
    """A slow start against a cap of one slot: (its client, the slot's leases, the SageMaker stubber)."""
    client, stubber = sagemaker
    capped = RunLeases(
        leases._dynamodb, leases.table_name, dataclasses.replace(PIPELINE, max_concurrent_runs=1)
    )
    return SlowStart(capped, stubber, client), capped, stubber


def test_a_start_that_outlived_its_reservation_stops_its_execution_and_reports_a_retryable_failure(
    slow: tuple[SlowStart, RunLeases, Stubber],
) -> None:
    client, capped, stubber = slow
    expect_stop(stubber, f"{EXECUTION}-slow")
    with pytest.raises(SlotLostError, match=r"longer than its 600 s reservation.*the execution was stopped"):
        start_acme(client, capped)
    assert client.stolen == ["another-starter"]
    # The execution that would run without a slot was stopped (the stub checked it); the cap of one holds.
    assert [i["token"]["S"] for i in capped.held(now=client.expired)] == ["another-starter"]
    assert isinstance(SlotLostError("x"), AtCapacityError)  # every starter treats it like a full cap


def test_the_trigger_keeps_an_upload_whose_start_lost_its_slot_for_a_retry(
    slow: tuple[SlowStart, RunLeases, Stubber], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fine_tuning_trigger import handler

    client, capped, stubber = slow
    expect_stop(stubber, f"{EXECUTION}-slow")
    monkeypatch.setattr(handler, "datetime", _FixedClock)
    key = "retail/prod/tenant=acme/uploads/1/data.jsonl"
    failures = handler.handle_records([{"messageId": "m0", "body": s3_event(key)}], capped, client)
    assert failures == [{"itemIdentifier": "m0"}]  # SQS offers it again after the visibility timeout


class _FixedClock(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> _FixedClock:  # type: ignore[override]
        return cls.fromtimestamp(NOW.timestamp(), tz)


def test_a_lost_slot_whose_stop_fails_is_an_error_never_a_silent_run(
    slow: tuple[SlowStart, RunLeases, Stubber],
) -> None:
    client, capped, stubber = slow
    stubber.add_client_error("stop_pipeline_execution", "ThrottlingException", "slow down", 400)
    with pytest.raises(ClientError, match="ThrottlingException"):
        start_acme(client, capped)


def test_a_retry_after_a_lost_slot_starts_a_new_execution_not_the_stopped_one(leases: RunLeases) -> None:
    """StartPipelineExecution is idempotent per client token: a retry must not send the stopped start's."""
    tokens: list[str] = []

    class Recording:
        def start_pipeline_execution(self, **request: Any) -> dict[str, str]:
            tokens.append(request["ClientRequestToken"])
            return {"PipelineExecutionArn": f"{EXECUTION}-{len(tokens)}"}

    first = leases.reserve("upload-1", now=NOW)
    leases.cancel(first)  # as after a lost slot: the reservation is gone
    start_acme(Recording(), leases, token="upload-1", now=NOW + timedelta(minutes=15))
    assert tokens == [f"upload-1-{int((NOW + timedelta(minutes=15)).timestamp())}"]
    assert tokens[0] != first.start_token


def test_a_failed_start_gives_its_slot_back_at_once(sagemaker: Any, leases: RunLeases) -> None:
    client, stubber = sagemaker
    stubber.add_client_error("start_pipeline_execution", "ResourceLimitExceeded", "too many executions", 400)
    with pytest.raises(ClientError, match="ResourceLimitExceeded"):
        start_pipeline(client, leases, upload_of("ann"), now=NOW)
    assert leases.held(now=NOW) == []
    expect_start(stubber, "ben", f"{EXECUTION}2")
    expect_start(stubber, "cat", f"{EXECUTION}3")
    start_pipeline(client, leases, upload_of("ben"), now=NOW)
    start_pipeline(client, leases, upload_of("cat"), now=NOW)  # both slots were free: nothing leaked


def test_a_starter_that_crashed_before_starting_frees_its_slot_when_the_reservation_expires(
    leases: RunLeases,
) -> None:
    leases.reserve("crashed-1", now=NOW)
    leases.reserve("crashed-2", now=NOW)
    with pytest.raises(AtCapacityError):
        leases.reserve("next", now=NOW)
    later = NOW + timedelta(seconds=RESERVATION_SECONDS)
    assert leases.reserve("next", now=later).slot == 0


@pytest.mark.parametrize("status", ["Succeeded", "Failed", "Stopped"])
def test_the_end_of_a_run_frees_its_slot_and_only_its_own(
    sagemaker: Any, leases: RunLeases, status: str
) -> None:
    client, stubber = sagemaker
    expect_start(stubber, "ann", f"{EXECUTION}1")
    expect_start(stubber, "ben", f"{EXECUTION}2")
    start_pipeline(client, leases, upload_of("ann"), now=NOW)
    start_pipeline(client, leases, upload_of("ben"), now=NOW)
    ended = {"pipeline_arn": PIPELINE_ARN, "execution_arn": f"{EXECUTION}1", "now": NOW}
    assert release_ended_run(leases, status="Executing", **ended) == 0  # still running: keeps its slot
    other = f"{PIPELINE_ARN}-other"
    assert release_ended_run(leases, status=status, **{**ended, "pipeline_arn": other}) == 0
    assert release_ended_run(leases, status=status, **ended) == 1
    assert release_ended_run(leases, status=status, **ended) == 0  # a repeated event frees nothing more
    assert [i["execution_arn"]["S"] for i in leases.held(now=NOW)] == [f"{EXECUTION}2"]
    expect_start(stubber, "cat", f"{EXECUTION}3")
    assert start_pipeline(client, leases, upload_of("cat"), now=NOW) == f"{EXECUTION}3"


class CountingSageMaker:
    """StartPipelineExecution that takes a moment (as the real call does), so starters overlap."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self._lock = threading.Lock()

    def start_pipeline_execution(self, **request: Any) -> dict[str, str]:
        time.sleep(0.01)
        with self._lock:
            self.started.append(request["ClientRequestToken"])
            return {"PipelineExecutionArn": f"{EXECUTION}{len(self.started)}"}


@pytest.mark.parametrize("cap", [1, 2, 3])
def test_uploads_and_api_requests_racing_never_exceed_the_cap(cap: int) -> None:
    """The old check (count running executions, then start) let an upload and a POST both pass at the
    last free slot; with conditional leases exactly `cap` of the racing starters win."""
    from app_backend.fine_tunes import SageMakerPipeline

    pipeline = dataclasses.replace(PIPELINE, max_concurrent_runs=cap)
    with mock_aws():
        client = OneRequestAtATime(create_leases_table("eu-west-1"))
        leases = leases_for(client, pipeline)
        sagemaker = CountingSageMaker()
        api = SageMakerPipeline(
            leases, sagemaker, raw_bucket="raw", uploads_prefix=lambda t: f"retail/prod/tenant={t}/uploads/"
        )
        starters = 8
        barrier = threading.Barrier(starters)
        outcomes: list[str] = []

        def start(i: int) -> None:
            barrier.wait()
            try:
                if i % 2:  # half come from uploads, half from POST /fine-tunes (which reads the clock)
                    start_pipeline(sagemaker, leases, upload_of(f"t{i}"), now=datetime.now(UTC))
                else:
                    api.start(f"t{i}", f"{i:032x}", "personal", "product-qa")
                outcomes.append("started")
            except AtCapacityError:
                outcomes.append("waits")

        threads = [threading.Thread(target=start, args=(i,)) for i in range(starters)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["started"] * cap + ["waits"] * (starters - cap)
        assert len(sagemaker.started) == cap
        assert len(leases.held(now=datetime.now(UTC))) == cap


@pytest.mark.parametrize(
    "key",
    [
        "finance/prod/tenant=acme/uploads/1/data.jsonl",
        "retail/dev/tenant=acme/uploads/1/data.jsonl",  # another stage's tenant
        "retail/preprod/tenant=acme/uploads/1/data.jsonl",
        "retail/prod/data.jsonl",
        "retail/prod/tenant=acme/uploads/1/notes.txt",
        "retail/prod/tenant=../uploads/x.jsonl",
        "retail/tenant=acme/uploads/1/data.jsonl",  # no stage segment
    ],
)
def test_other_keys_start_nothing(sagemaker: Any, leases: RunLeases, key: str) -> None:
    client, _ = sagemaker
    assert start_pipeline(client, leases, Upload("raw", key), now=NOW) is None
    assert leases.held(now=NOW) == []


@given(st.text(max_size=80))
def test_tenant_of_never_returns_a_path_segment_with_a_slash(key: str) -> None:
    tenant = tenant_of(key, "retail", "prod")
    assert tenant is None or ("/" not in tenant and key.startswith(f"retail/prod/tenant={tenant}/"))


def sqs_event(*bodies: str) -> dict[str, Any]:
    return {"Records": [{"messageId": f"m{i}", "body": body} for i, body in enumerate(bodies)]}


def s3_event(key: str) -> str:
    return json.dumps(
        {
            "version": "0",
            "id": "17793124-05d4-b198-2fde-7ededc63b103",
            "detail-type": "Object Created",
            "source": "aws.s3",
            "account": "222222222222",
            "time": "2025-01-01T00:00:00Z",
            "region": "eu-west-1",
            "resources": ["arn:aws:s3:::raw"],
            "detail": {
                "version": "0",
                "bucket": {"name": "raw"},
                "object": {
                    "key": key,
                    "size": 5,
                    "etag": "b1946ac92492d2347c6235b4d2611184",
                    "sequencer": "00",
                },
                "request-id": "N4N7GDK58NMKJ12R",
                "requester": "123456789012",
                "source-ip-address": "1.2.3.4",
                "reason": "PutObject",
            },
        }
    )


class LambdaContext:
    function_name = "trigger"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:333333333333:function:trigger"
    aws_request_id = "req-1"


def handler_environment(handler: Any, leases: RunLeases, monkeypatch: pytest.MonkeyPatch) -> None:
    """The functions' environment as the stack sets it (stacks/fine_tuning_stack.py, _cap_environment)."""
    for name, value in {
        "PIPELINE_NAME": PIPELINE.name,
        "BUSINESS_UNIT": "retail",
        "STAGE": "prod",
        "MAX_CONCURRENT_RUNS": "2",
        "MAX_RUNTIME_HOURS": "12",
        "RUN_LEASES_TABLE": leases.table_name,
        "TENANT_USE_CASES": USE_CASES.to_json(),
        "POWERTOOLS_TRACE_DISABLED": "1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(handler, "dynamodb_client", lambda: boto3.client("dynamodb", region_name="eu-west-1"))


@pytest.mark.parametrize("body", ["not json", json.dumps({"detail-type": "Object Created"})])
def test_handler_reports_bad_and_waiting_messages_for_a_retry_never_dropping_them(
    sagemaker: Any, leases: RunLeases, monkeypatch: pytest.MonkeyPatch, body: str
) -> None:
    from fine_tuning_trigger import handler

    client, _ = sagemaker  # nothing may start: the body is bad and both slots are taken
    handler_environment(handler, leases, monkeypatch)
    monkeypatch.setattr(handler, "sagemaker_client", lambda: client)
    now = datetime.now(UTC)
    for token in ("running-1", "running-2"):
        leases.bind(leases.reserve(token, now=now), f"{EXECUTION}-{token}", now=now)
    event = sqs_event(body, s3_event("retail/prod/tenant=acme/uploads/1/data.jsonl"))
    result = handler.lambda_handler(event, LambdaContext())
    assert result == {"batchItemFailures": [{"itemIdentifier": "m0"}, {"itemIdentifier": "m1"}]}


def status_change(execution: str, status: str) -> dict[str, Any]:
    """What SageMaker puts on the default bus when a pipeline execution changes status."""
    return {
        "version": "0",
        "id": "5b9a2a34-1b8b-4e5a-9a2c-0d3f1c0e9b11",
        "detail-type": "SageMaker Model Building Pipeline Execution Status Change",
        "source": "aws.sagemaker",
        "account": "333333333333",
        "time": "2025-01-01T01:00:00Z",
        "region": "eu-west-1",
        "resources": [PIPELINE_ARN, execution],
        "detail": {
            "pipelineExecutionDisplayName": "tenant-acme",
            "currentPipelineExecutionStatus": status,
            "previousPipelineExecutionStatus": "Executing",
            "executionStartTime": "2025-01-01T00:00:00Z",
            "executionEndTime": "2025-01-01T01:00:00Z",
            "pipelineArn": PIPELINE_ARN,
            "pipelineExecutionArn": execution,
        },
    }


def test_release_handler_frees_the_slot_of_a_failed_run(
    leases: RunLeases, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fine_tuning_trigger import handler

    handler_environment(handler, leases, monkeypatch)
    now = datetime.now(UTC)
    leases.bind(leases.reserve("upload", now=now), EXECUTION, now=now)
    assert handler.release_handler(status_change(EXECUTION, "Failed"), LambdaContext()) == {"freed": 1}
    assert leases.held(now=now) == []


def test_split_is_deterministic_and_covers_every_record() -> None:
    lines = [json.dumps({"prompt": f"q{i}", "reference": f"a{i}"}) for i in range(400)]
    first, second = split(lines, 0.1), split(lines, 0.1)
    assert first == second
    assert sum(len(v) for v in first.values()) == 400
    assert 20 <= len(first["heldout"]) <= 60 and 20 <= len(first["validation"]) <= 60


def test_split_names_the_bad_line() -> None:
    with pytest.raises(ValueError, match="line 2: needs string fields"):
        split(['{"prompt": "q", "reference": "a"}', '{"prompt": "q"}'], 0.1)


def test_report_averages_the_evaluation_engines_metrics() -> None:
    result = report([("the cat sat", "the cat sat"), ("a dog", "the cat sat")], ["exact_match", "token_f1"])
    assert result["metrics"]["exact_match"]["value"] == 0.5
    assert result["metrics"]["token_f1"]["value"] == 0.5  # "dog" shares no token with "cat sat"


def test_hyperparameters_default_when_absent(tmp_path: Any) -> None:
    path = tmp_path / "hp.json"
    path.write_text(json.dumps({"lora_rank": "8"}))
    assert load_hyperparameters(path)["lora_rank"] == 8.0
    assert load_hyperparameters(tmp_path / "missing.json")["epochs"] == 3.0


@given(
    st.one_of(
        st.text(max_size=200), st.dictionaries(st.text(max_size=10), st.text(max_size=10)).map(json.dumps)
    )
)
def test_any_message_body_is_either_started_or_kept_for_a_retry_never_a_crash(body: str) -> None:
    from fine_tuning_trigger import handler

    client = boto3.client("sagemaker", region_name="eu-west-1")
    with Stubber(client):  # a start would need a stubbed response: none of these bodies is an upload event
        leases = RunLeases(boto3.client("dynamodb", region_name="eu-west-1"), "unused", PIPELINE)
        with Stubber(leases._dynamodb):  # nor would a lease: no request is stubbed
            result = handler.handle_records([{"messageId": "m0", "body": body}], leases, client)
    assert result == [{"itemIdentifier": "m0"}]
