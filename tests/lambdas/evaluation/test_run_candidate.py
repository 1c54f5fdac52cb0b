"""The per-run candidate (a model package version served in preprod) and the gate recorder."""

import json

import boto3
import pytest
from botocore.stub import Stubber
from evaluation import service
from evaluation.candidate import RunCandidate
from evaluation.gate_record import gate_outcome, record_gate
from evaluation.store import S3ResultStore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from common.preprod_gate import GateRecord, refusal

from .conftest import BUCKET
from .fakes import ScriptedModel, make_settings

ARN = "arn:aws:sagemaker:eu-west-1:111111111111:model-package/exco-retail-product-qa/3"
SHA = "a" * 64
CANDIDATE = {
    "model_package_arn": ARN,
    "version": 3,
    "artifact_sha256": SHA,
    "endpoint_name": "exco-retail-preprod-serving",
    "inference_component": "exco-retail-preprod-serving-abc123-v3",
}
RECORDS = [
    {"id": "r1", "input": "return window?", "reference_output": "30 days"},
    {"id": "r2", "input": "warranty?", "reference_output": "two years"},
]


def runtime(s3, **fields):
    return service.Runtime(
        settings=make_settings(
            candidates=[{"name": "configured", "provider": "bedrock", "model_id": "m"}], **fields
        ),
        business_unit="retail",
        store=S3ResultStore(BUCKET, "retail/evaluation_runs", s3_client=s3),
        sink_factory=lambda: type(
            "Sink", (), {"append": lambda self, r: None, "flush": lambda self: ["k"]}
        )(),
        sleep=lambda _: None,
    )


def put_dataset(s3):
    s3.put_object(Bucket=BUCKET, Key="retail/in.jsonl", Body="".join(json.dumps(r) + "\n" for r in RECORDS))
    return {"bucket": BUCKET, "key": "retail/in.jsonl"}


def test_a_run_with_a_candidate_scores_and_gates_that_candidate_only(s3, monkeypatch):
    rt = runtime(s3, gate={"min_metrics": {"token_f1": 0.5}})
    built = []

    def build(candidate, **clients):
        built.append(candidate)
        return ScriptedModel(candidate.name, ["30 days", "two years"])

    monkeypatch.setattr(service, "build_model", build)
    prepared = service.prepare(
        {"run_id": "bu-gate-1", "use_case": "product-qa", "dataset": put_dataset(s3), "candidate": CANDIDATE},
        rt,
    )
    items = [
        json.loads(line)
        for line in s3.get_object(Bucket=BUCKET, Key=prepared["dataset"]["key"])["Body"].iter_lines()
    ]
    service.score_batch({"Items": items, "BatchInput": {"run_id": "bu-gate-1", "use_case": "product-qa"}}, rt)
    assert [c.name for c in built] == ["exco-retail-product-qa-v3"]  # not the configured candidate
    assert built[0].inference_component == CANDIDATE["inference_component"]
    assert built[0].endpoint_name == CANDIDATE["endpoint_name"]
    summary = service.summarize_run({"run_id": "bu-gate-1", "use_case": "product-qa"}, rt)
    assert summary["review_open"] is False
    gate = service.gate_run({"run_id": "bu-gate-1", "use_case": "product-qa"}, rt)
    assert gate["passed"] is True and gate["model"] == "exco-retail-product-qa-v3"
    assert gate["candidate"]["model_package_arn"] == ARN


def test_the_candidate_fails_the_gate_on_wrong_answers_and_counts_missing_batches(s3, monkeypatch):
    rt = runtime(s3, gate={"min_metrics": {"token_f1": 0.5}})
    monkeypatch.setattr(service, "build_model", lambda c, **_: ScriptedModel(c.name, ["no idea"]))
    service.prepare(
        {"run_id": "bu-gate-2", "use_case": "u", "dataset": put_dataset(s3), "candidate": CANDIDATE}, rt
    )
    service.score_batch({"Items": RECORDS[:1], "BatchInput": {"run_id": "bu-gate-2", "use_case": "u"}}, rt)
    service.summarize_run({"run_id": "bu-gate-2", "use_case": "u"}, rt)  # r2's batch failed in the map
    gate = service.gate_run({"run_id": "bu-gate-2", "use_case": "u"}, rt)
    assert gate["passed"] is False and gate["model"] == "exco-retail-product-qa-v3"
    assert "token_f1" in gate["reason"] and "error" in gate["reason"]


def test_a_candidate_with_precomputed_outputs_is_refused_naming_the_field(s3):
    rt = runtime(s3)
    event = {"run_id": "r", "use_case": "u", "dataset": put_dataset(s3), "candidate": CANDIDATE,
             "outputs": {"bucket": BUCKET, "key": "retail/out.jsonl"}}  # fmt: skip
    with pytest.raises(service.InvalidEventError, match=r"^candidate: "):
        service.prepare(event, rt)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"model_package_arn": "arn:aws:sagemaker:eu-west-1:1:model-package/g/3"}, "model_package_arn"),
        ({"version": 4}, "version"),
        ({"version": "3"}, "version"),
        ({"artifact_sha256": "A" * 64}, "artifact_sha256"),
        ({"endpoint_name": "bad name"}, "endpoint_name"),
        ({"target_model": "x.tar.gz"}, "inference_component"),  # both routes
        ({"inference_component": None}, "inference_component"),  # no route
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_candidates_name_the_field(change, field):
    with pytest.raises(service.InvalidEventError, match=f"candidate.*{field}"):
        service.parse_event(
            service.PrepareEvent, {"run_id": "r", "use_case": "u", "candidate": {**CANDIDATE, **change}}
        )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        json_values,
        st.fixed_dictionaries({k: json_values for k in CANDIDATE}),
        st.dictionaries(
            st.sampled_from([*CANDIDATE, "target_model", "payload_format"]), json_values, min_size=1
        ),
    )
)
def test_any_malformed_candidate_is_refused_before_anything_is_written(s3, candidate):
    if candidate is None:
        return  # no candidate: a consumer run
    try:
        RunCandidate.model_validate(candidate)
    except ValueError:
        pass
    else:
        return  # hypothesis made a valid one: not this test's subject
    rt = runtime(s3)
    with pytest.raises(service.InvalidEventError) as raised:
        service.prepare(
            {"run_id": "r", "use_case": "u", "dataset": put_dataset(s3), "candidate": candidate}, rt
        )
    assert str(raised.value).startswith("candidate")
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="retail/evaluation_runs/").get("KeyCount", 0) == 0


# ---- gate recorder --------------------------------------------------------------------------------------


def test_gate_outcome_passes_only_a_succeeded_run_that_says_passed():
    assert gate_outcome({"status": "SUCCEEDED", "output": json.dumps({"passed": True, "reason": "ok"})}) == (
        "passed",
        "ok",
    )
    assert (
        gate_outcome({"status": "SUCCEEDED", "output": json.dumps({"passed": False, "reason": "low"})})[0]
        == "failed"
    )
    assert gate_outcome({"status": "SUCCEEDED", "output": "not json"})[0] == "failed"
    failed = gate_outcome(
        {"status": "FAILED", "error": "EvaluationGateFailed", "cause": json.dumps({"reason": "f1 low"})}
    )
    assert failed == ("failed", "gate failed: f1 low")
    assert gate_outcome({"status": "TIMED_OUT"}) == ("failed", "evaluation run ended TIMED_OUT")
    rejected = gate_outcome({"status": "FAILED", "error": "DatasetRejectedError", "cause": "no dataset"})
    assert rejected == ("failed", "evaluation run ended FAILED (DatasetRejectedError: no dataset)")


def ended(name="bu-gate-exco-retail-product-qa-v3"):
    arn = f"arn:aws:states:eu-west-1:333333333332:execution:exco-retail-preprod-evaluation:{name}"
    return {
        "detail-type": "Step Functions Execution Status Change",
        "detail": {"executionArn": arn, "status": "SUCCEEDED"},
    }


def described_execution(run_input, output):
    return {
        "executionArn": ended()["detail"]["executionArn"],
        "stateMachineArn": "arn:aws:states:eu-west-1:333333333332:stateMachine:exco-retail-preprod-evaluation",
        "name": "bu-gate-exco-retail-product-qa-v3",
        "status": "SUCCEEDED",
        "startDate": "2026-01-01T00:00:00Z",
        "input": json.dumps(run_input),
        "output": json.dumps(output),
    }


@pytest.fixture
def registry():
    with mock_aws():
        sagemaker = boto3.client("sagemaker", region_name="eu-west-1")
        kms = boto3.client("kms", region_name="eu-west-1")
        sagemaker.create_model_package_group(ModelPackageGroupName="exco-retail-product-qa")
        for _ in range(3):
            arn = sagemaker.create_model_package(
                ModelPackageGroupName="exco-retail-product-qa",
                ModelApprovalStatus="PendingManualApproval",
                CustomerMetadataProperties={"ArtifactSha256": SHA},
                InferenceSpecification={"Containers": [{"Image": "i:1", "ModelDataUrl": "s3://b/k"}],
                                        "SupportedContentTypes": ["a"], "SupportedResponseMIMETypes": ["a"]},
            )["ModelPackageArn"]  # fmt: skip
        key = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["Arn"]
        yield sagemaker, kms, key, arn


GROUPS = frozenset({"arn:aws:sagemaker:eu-west-1:123456789012:model-package/exco-retail-product-qa/"})


def run_recorder(sagemaker, kms, key, arn, run_input, output, groups=GROUPS):
    sfn = boto3.client("stepfunctions", region_name="eu-west-1")
    with Stubber(sfn) as stub:
        stub.add_response(
            "describe_execution",
            described_execution(run_input, output),
            {"executionArn": ended()["detail"]["executionArn"]},
        )
        return record_gate(ended(), sfn=sfn, sagemaker=sagemaker, kms=kms, key_id=key, groups=groups)


def test_a_passed_run_is_recorded_signed_and_verifies_for_that_version_only(registry):
    sagemaker, kms, key, arn = registry
    candidate = {**CANDIDATE, "model_package_arn": arn}
    recorded = run_recorder(
        sagemaker, kms, key, arn, {"gate": True, "candidate": candidate}, {"passed": True, "reason": "ok"}
    )
    assert recorded.action == "recorded" and recorded.result == "passed"
    metadata = sagemaker.describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"]
    assert metadata["ArtifactSha256"] == SHA and metadata["PreprodGate"] == "passed"
    group = "exco-retail-product-qa"
    assert refusal(kms, key, arn=arn, group=group, artifact_sha256=SHA, metadata=metadata) is None
    other = arn[:-1] + "2"
    assert "not written by" in refusal(
        kms, key, arn=other, group=group, artifact_sha256=SHA, metadata=metadata
    )
    assert "checksum" in refusal(kms, key, arn=arn, group=group, artifact_sha256="b" * 64, metadata=metadata)
    tampered = {**metadata, "PreprodGateRun": "another-run"}
    assert "not written by" in refusal(kms, key, arn=arn, group=group, artifact_sha256=SHA, metadata=tampered)
    assert "not base64" in refusal(
        kms, key, arn=arn, group=group, artifact_sha256=SHA, metadata={**metadata, "PreprodGateMac": "%%"}
    )
    assert "no preprod gate record" in refusal(
        kms, key, arn=arn, group=group, artifact_sha256=SHA, metadata={}
    )


def test_a_failed_run_rejects_the_version_saying_why(registry):
    sagemaker, kms, key, arn = registry
    candidate = {**CANDIDATE, "model_package_arn": arn}
    recorded = run_recorder(
        sagemaker, kms, key, arn, {"candidate": candidate}, {"passed": False, "reason": "token_f1 0.1 < 0.5"}
    )
    assert recorded.result == "failed"
    described = sagemaker.describe_model_package(ModelPackageName=arn)
    assert described["ModelApprovalStatus"] == "Rejected"
    assert described["ApprovalDescription"] == "preprod gate: gate not passed: token_f1 0.1 < 0.5"
    reason = refusal(kms, key, arn=arn, group="exco-retail-product-qa", artifact_sha256=SHA,
                     metadata=described["CustomerMetadataProperties"])  # fmt: skip
    assert "did not pass" in reason


def test_a_run_that_evaluated_another_checksum_fails(registry):
    sagemaker, kms, key, arn = registry
    candidate = {**CANDIDATE, "model_package_arn": arn, "artifact_sha256": "c" * 64}
    recorded = run_recorder(sagemaker, kms, key, arn, {"candidate": candidate}, {"passed": True})
    assert recorded.result == "failed" and "checksum" in recorded.reason


def test_consumer_runs_and_other_groups_are_left_alone(registry):
    sagemaker, kms, key, arn = registry
    assert run_recorder(sagemaker, kms, key, arn, {"gate": True}, {"passed": True}).action == "ignored"
    candidate = {**CANDIDATE, "model_package_arn": arn}
    other = frozenset({"arn:aws:sagemaker:eu-west-1:123456789012:model-package/exco-finance-x/"})
    assert (
        run_recorder(sagemaker, kms, key, arn, {"candidate": candidate}, {"passed": True}, other).action
        == "ignored"
    )
    assert (
        "PreprodGate"
        not in sagemaker.describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"]
    )


def test_a_malformed_status_event_names_the_field():
    with pytest.raises(ValueError, match=r"^detail\.executionArn"):
        record_gate({"detail": {"executionArn": "x", "status": "SUCCEEDED"}}, sfn=None, sagemaker=None, kms=None,
                    key_id="k", groups=GROUPS)  # fmt: skip


def test_the_mac_covers_every_field():
    base = GateRecord(ARN, "g", SHA, "passed", "run")
    variants = [
        GateRecord(ARN[:-1] + "4", "g", SHA, "passed", "run"),
        GateRecord(ARN, "h", SHA, "passed", "run"),
        GateRecord(ARN, "g", "b" * 64, "passed", "run"),
        GateRecord(ARN, "g", SHA, "failed", "run"),
        GateRecord(ARN, "g", SHA, "passed", "run2"),
    ]
    assert len({base.message(), *(v.message() for v in variants)}) == 6
