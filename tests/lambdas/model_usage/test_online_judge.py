"""The online judge: the offline judge on sampled production exchanges; scores to the lake, low ones to review."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from evaluation.judge import JUDGE_SYSTEM, judge_prompt
from evaluation.review import SqsReviewQueue
from evaluation.settings import JudgeSettings
from hypothesis import given
from hypothesis import strategies as st
from model_usage import core
from model_usage.core import OnlineJudge, online_run_id, sqs_records

from common.lake_layout import Zone
from common.lake_writer import LakeWriter
from common.model_gateway import BedrockConverseModel

from .conftest import BU, RESULTS_BUCKET, WHEN, ScriptedJudge, lake_rows, sample, sqs_event, verdict

PROFILE = "arn:aws:bedrock:eu-west-1:444444444443:application-inference-profile/abc123"


def online_judge(judge: Any, review: Any = None, low: float = 5.0) -> OnlineJudge:
    return OnlineJudge(
        business_unit=BU,
        judge=judge,
        settings=JudgeSettings(max_parse_attempts=2),
        low_score_below=low,
        sink=LakeWriter(RESULTS_BUCKET, zone=Zone.EVALUATION_RESULTS),
        review_queue=review,
        sleep=lambda _: None,
    )


def review_queue() -> tuple[SqsReviewQueue, str]:
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="review")["QueueUrl"]
    return SqsReviewQueue(url, sqs_client=sqs), url


def received(url: str) -> list[dict[str, Any]]:
    answer = boto3.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    return [json.loads(m["Body"]) for m in answer.get("Messages", [])]


def test_a_sample_is_judged_with_the_offline_rubric_and_lands_in_evaluation_results(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    judge = ScriptedJudge([verdict(8)])
    emitted: list[tuple[str, str, float]] = []
    monkeypatch.setattr(core, "emit_online_judge_score", lambda *args: emitted.append(args))
    answer = online_judge(judge).handle(sqs_event(sample().model_dump_json())["Records"])
    assert answer == {"batchItemFailures": []}
    [request] = judge.requests
    assert request.system == JUDGE_SYSTEM
    assert "Summarize the report for [NAME]." in request.prompt and "Revenue grew 4 %." in request.prompt
    [(key, row)] = lake_rows(RESULTS_BUCKET)
    assert key.startswith("finance/prod/evaluation_results/dt=2026-11-26/model=amazon.nova-lite-v1_0/")
    assert row["run_id"] == online_run_id(WHEN) == "online-2026-11-26"
    assert (row["record_id"], row["judge_score"], row["use_case"]) == ("r1", 8.0, "report-summarization")
    assert row["category"] == "online" and row["judge_justification"] == "scored 8"
    assert emitted == [(BU, "amazon.nova-lite-v1:0", 8.0)]


def test_a_low_score_goes_to_the_human_review_queue_in_the_offline_message_format(aws: None) -> None:
    queue, url = review_queue()
    answer = online_judge(ScriptedJudge([verdict(3)]), queue).handle(
        sqs_event(sample().model_dump_json())["Records"]
    )
    assert answer == {"batchItemFailures": []}
    [message] = received(url)
    assert (message["run_id"], message["record_id"], message["judge_score"]) == (
        "online-2026-11-26",
        "r1",
        3.0,
    )
    assert message["record"] == {
        "id": "r1",
        "input": "Summarize the report for [NAME].",
        "category": "online",
    }
    assert message["output"] == "Revenue grew 4 %."


def test_a_good_score_is_not_sent_for_review(aws: None) -> None:
    queue, url = review_queue()
    online_judge(ScriptedJudge([verdict(7)]), queue).handle(sqs_event(sample().model_dump_json())["Records"])
    assert received(url) == []


def test_an_unparseable_verdict_is_kept_as_the_rows_error_not_retried(aws: None) -> None:
    answer = online_judge(ScriptedJudge(["no json", "still none"])).handle(
        sqs_event(sample().model_dump_json())["Records"]
    )
    assert answer == {"batchItemFailures": []}
    [(_, row)] = lake_rows(RESULTS_BUCKET)
    assert row["judge_score"] is None and row["error"].startswith("judge: ")


def test_a_throttled_judge_returns_the_sample_for_redelivery(aws: None) -> None:
    client = boto3.client("bedrock-runtime")
    stubber = Stubber(client)
    for _ in range(5):
        stubber.add_client_error("converse", "ThrottlingException", "slow down")
    judge = BedrockConverseModel("judge-haiku", PROFILE, client=client)
    with stubber:
        answer = online_judge(judge).handle(sqs_event(sample().model_dump_json())["Records"])
    assert answer == {"batchItemFailures": [{"itemIdentifier": "m0"}]}
    assert lake_rows(RESULTS_BUCKET) == []


def test_the_judge_is_called_through_its_inference_profile(aws: None) -> None:
    client = boto3.client("bedrock-runtime")
    stubber = Stubber(client)
    stubber.add_response(
        "converse",
        {
            "output": {"message": {"role": "assistant", "content": [{"text": verdict(9)}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 300, "outputTokens": 60, "totalTokens": 360},
            "metrics": {"latencyMs": 100},
        },
        {
            "modelId": PROFILE,
            "messages": [
                {
                    "role": "user",
                    "content": [{"text": judge_prompt(sample().question, sample().answer)}],
                }
            ],
            "system": [{"text": JUDGE_SYSTEM}],
            "inferenceConfig": {"maxTokens": 600, "temperature": 0.0},
        },
    )
    with stubber:
        answer = online_judge(BedrockConverseModel("judge-haiku", PROFILE, client=client)).handle(
            sqs_event(sample().model_dump_json())["Records"]
        )
    assert answer == {"batchItemFailures": []}
    assert lake_rows(RESULTS_BUCKET)[0][1]["judge_score"] == 9.0


def test_another_business_units_sample_is_refused_unjudged(aws: None) -> None:
    judge = ScriptedJudge([verdict(9)])
    answer = online_judge(judge).handle(
        sqs_event(sample(business_unit="retail").model_dump_json())["Records"]
    )
    assert answer == {"batchItemFailures": [{"itemIdentifier": "m0"}]}
    assert judge.requests == [] and lake_rows(RESULTS_BUCKET) == []


def test_a_review_queue_outage_returns_the_sample_and_the_redelivery_rewrites_the_same_row(aws: None) -> None:
    class Down:
        def submit(self, rows: Any, records: Any = None) -> int:
            raise RuntimeError("sqs down")

    event = sqs_event(sample().model_dump_json())["Records"]
    assert online_judge(ScriptedJudge([verdict(2)]), Down()).handle(event) == {
        "batchItemFailures": [{"itemIdentifier": "m0"}]
    }
    queue, url = review_queue()
    assert online_judge(ScriptedJudge([verdict(2)]), queue).handle(event) == {"batchItemFailures": []}
    assert len(lake_rows(RESULTS_BUCKET)) == 1 and len(received(url)) == 1


@given(
    st.one_of(
        st.none(), st.integers(), st.text(max_size=20), st.fixed_dictionaries({"Records": st.integers()})
    )
)
def test_an_event_that_is_not_an_sqs_batch_is_refused_by_name(event: Any) -> None:
    with pytest.raises(core.MessageError, match=r"^(event|Records)"):
        sqs_records(event)


def test_malformed_records_are_named() -> None:
    with pytest.raises(core.MessageError, match=r"^Records\[1\]"):
        sqs_records({"Records": [{"messageId": "a", "body": "{}"}, {"body": "{}"}]})
