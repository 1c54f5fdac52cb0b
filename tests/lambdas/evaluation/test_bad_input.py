"""Property tests: malformed events and dataset lines are rejected with a named field, writing nothing."""

import json

import boto3
import pytest
from evaluation import service
from evaluation.store import S3ResultStore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from common.evaluation_dataset import EvaluationRecord, dump_records

from .conftest import BUCKET
from .fakes import make_settings

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=10,
)
GOOD_RECORD = {"id": "r1", "input": "hi"}


@pytest.fixture(scope="module")
def runtime():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        rt = service.Runtime(
            settings=make_settings(),
            business_unit="retail",
            store=S3ResultStore(BUCKET, "retail/evaluation_runs", s3_client=s3),
            sink_factory=lambda: pytest.fail("nothing may be written"),
        )
        rt.models_for = lambda outputs: pytest.fail("no model may be called")  # type: ignore[method-assign]
        yield rt, s3


def object_count(s3):
    return s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0)


def bad_batch_events():
    good_input = {"run_id": "run-1", "use_case": "u"}
    return st.one_of(
        json_values,
        st.fixed_dictionaries({"Items": json_values, "BatchInput": st.just(good_input)}),
        st.fixed_dictionaries(
            {
                "Items": st.just([GOOD_RECORD]),
                "BatchInput": st.fixed_dictionaries(
                    {
                        "run_id": st.text(max_size=5).filter(lambda s: not s[:1].isalnum() or not s),
                        "use_case": st.just("u"),
                    }
                ),
            }
        ),
        st.fixed_dictionaries(
            {
                "Items": st.lists(
                    st.dictionaries(st.sampled_from(["id", "input", "labels", "x"]), json_values),
                    min_size=1,
                    max_size=3,
                ),
                "BatchInput": st.just(good_input),
            }
        ).filter(lambda e: not all(_valid_record(i) for i in e["Items"])),
    )


def _valid_record(item):
    try:
        EvaluationRecord.model_validate(item)
    except ValueError:
        return False
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event=bad_batch_events())
def test_bad_batch_events_are_rejected_naming_the_field(runtime, event):
    rt, s3 = runtime
    before = object_count(s3)
    with pytest.raises(service.InvalidEventError) as caught:
        service.score_batch(event, rt)
    message = str(caught.value)
    assert message and any(name in message for name in ("Items", "BatchInput", "event"))
    assert object_count(s3) == before


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event=json_values, step=st.sampled_from(["prepare", "summarize_run", "gate_run"]))
def test_other_steps_reject_arbitrary_events(runtime, event, step):
    rt, s3 = runtime
    before = object_count(s3)
    with pytest.raises(service.InvalidEventError):
        getattr(service, step)(event, rt)
    assert object_count(s3) == before


bad_lines = st.one_of(
    st.text(max_size=30).filter(
        lambda s: s.strip() and "\n" not in s and "\r" not in s and not _is_record(s)
    ),
    st.dictionaries(
        st.sampled_from(["id", "input", "prompt_ref", "labels", "extra"]), json_values, max_size=4
    )
    .map(json.dumps)
    .filter(lambda s: not _is_record(s)),
)


def _is_record(line):
    try:
        EvaluationRecord.model_validate_json(line)
    except ValueError:
        return False
    return True


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad=bad_lines, position=st.integers(min_value=0, max_value=2))
def test_bad_dataset_lines_are_reported_with_line_numbers(runtime, bad, position):
    rt, s3 = runtime
    good = dump_records(
        [EvaluationRecord(id="a", input="x"), EvaluationRecord(id="b", input="y")]
    ).splitlines()
    lines = [*good[:position], bad, *good[position:]]
    s3.put_object(Bucket=BUCKET, Key="in/data.jsonl", Body="\n".join(lines) + "\n")
    before = object_count(s3)
    event = {"run_id": "run-p", "use_case": "u", "dataset": {"bucket": BUCKET, "key": "in/data.jsonl"}}
    with pytest.raises(service.DatasetRejectedError, match=f"line {position + 1}:"):
        service.prepare(event, rt)
    assert object_count(s3) == before
