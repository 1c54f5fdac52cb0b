import json
import threading

import boto3
import pytest
from botocore.stub import Stubber
from guardrail.engine import GuardrailEngine, InvalidRequestError
from guardrail.layers.base import Layer
from guardrail.layers.pii import PiiLayer
from guardrail.layers.toxicity import ToxicityLayer
from guardrail.model import ContentItem, Finding, LayerResult, Span
from guardrail.settings import BedrockGuardrail, DirectionSettings, GuardrailSettings, LayerSwitches
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.lake_records import FilterDecisionRecord

from .conftest import ListSink, make_request


class FakeLayer:
    """Returns fixed findings, or raises."""

    def __init__(self, name, findings=(), error=None):
        self.name, self._findings, self._error = name, list(findings), error

    def check(self, request, settings):
        if self._error is not None:
            raise self._error
        return LayerResult(list(self._findings))


class HangingLayer:
    name = "slow"

    def __init__(self):
        self.release = threading.Event()

    def check(self, request, settings):
        self.release.wait(5)
        return LayerResult([])


def _engine(layers, policy="fail_closed", timeout=2.0, sink=None):
    direction = DirectionSettings(
        failure_policy=policy, layer_timeout_s=timeout, layers=LayerSwitches(bedrock=True)
    )
    guardrail = BedrockGuardrail(guardrail_id="abc123", version="1")
    settings = GuardrailSettings(input=direction, output=direction, bedrock_guardrail=guardrail)
    return GuardrailEngine(settings, layers={layer.name: layer for layer in layers}, sink=sink, metrics=False)


def _redact(item, start, end, kind="EMAIL", layer="pii"):
    return Finding(layer, kind, "redact", 0.9, Span(item, start, end), is_pii=True)


def test_block_wins_over_redact_and_allow():
    layers = [
        FakeLayer("pii", [_redact(0, 0, 3)]),
        FakeLayer("toxicity", [Finding("toxicity", "INSULT", "block", 0.9)]),
    ]
    verdict = _engine(layers).check(make_request("abc def"))
    assert verdict.action == "block"
    assert verdict.text == "[EMAIL] def"


def test_redact_verdict_replaces_spans_only_in_their_item():
    verdict = _engine([FakeLayer("pii", [_redact(1, 0, 3)])]).check(make_request("abc", "abc"))
    assert (verdict.action, verdict.texts) == ("redact", ["abc", "[EMAIL]"])


def test_nothing_found_allows_and_keeps_text():
    verdict = _engine([FakeLayer("pii")]).check(make_request("hello 😀"))
    assert (verdict.action, verdict.text, verdict.errors, verdict.failure_policy_applied) == (
        "allow",
        "hello 😀",
        {},
        None,
    )
    assert set(verdict.latency_ms) == {"pii"}


def test_layer_error_fails_closed_by_default():
    verdict = _engine([FakeLayer("pii"), FakeLayer("toxicity", error=RuntimeError("throttled"))]).check(
        make_request("hi")
    )
    assert verdict.action == "block"
    assert verdict.failure_policy_applied == "fail_closed"
    assert verdict.errors == {"toxicity": "RuntimeError: throttled"}


def test_layer_error_fails_open_when_configured():
    layers = [FakeLayer("pii", [_redact(0, 0, 2)]), FakeLayer("toxicity", error=RuntimeError("throttled"))]
    verdict = _engine(layers, policy="fail_open").check(make_request("hi there"))
    assert (verdict.action, verdict.failure_policy_applied) == ("redact", "fail_open")
    assert verdict.text == "[EMAIL] there"


def test_fail_open_never_turns_a_block_into_allow():
    layers = [
        FakeLayer("local_rules", [Finding("local_rules", "deny_term", "block")]),
        FakeLayer("pii", error=OSError("x")),
    ]
    verdict = _engine(layers, policy="fail_open").check(make_request("hi"))
    assert (verdict.action, verdict.failure_policy_applied) == ("block", "fail_open")


def test_timeout_applies_the_failure_policy():
    slow = HangingLayer()
    try:
        verdict = _engine([slow, FakeLayer("pii")], timeout=0.05).check(make_request("hi"))
    finally:
        slow.release.set()
    assert verdict.action == "block"
    assert verdict.errors == {"slow": "timed out after 0.05 s"}
    assert verdict.latency_ms["slow"] == 50.0


def test_disabled_layers_do_not_run(comprehend):
    client, _ = comprehend  # nothing queued: a call would raise and block the verdict
    settings = GuardrailSettings(
        input=DirectionSettings(layers=LayerSwitches(toxicity=False, pii=False, bedrock=False))
    )
    engine = GuardrailEngine(settings, comprehend=client, metrics=False)
    verdict = engine.check(make_request("hello"))
    assert (verdict.action, set(verdict.latency_ms)) == ("allow", {"local_rules"})


def test_stubbed_services_end_to_end(comprehend):
    toxicity_client, toxicity_stub = comprehend
    # A second client: the two layers run concurrently and a Stubber's queue is ordered.
    pii_client = boto3.client("comprehend", region_name="us-east-1")
    text = "Hi, I am Zoë, zoë@example.org"
    toxicity_stub.add_response(
        "detect_toxic_content",
        {"ResultList": [{"Labels": [{"Name": "INSULT", "Score": 0.1}], "Toxicity": 0.1}]},
    )
    with Stubber(pii_client) as pii_stub:
        pii_stub.add_response(
            "detect_pii_entities",
            {
                "Entities": [
                    {"Type": "NAME", "Score": 0.9, "BeginOffset": 9, "EndOffset": 12},
                    {"Type": "EMAIL", "Score": 0.9, "BeginOffset": 14, "EndOffset": 29},
                ]
            },
            {"Text": text, "LanguageCode": "en"},
        )
        sink = ListSink()
        layers: dict[str, Layer] = {"toxicity": ToxicityLayer(toxicity_client), "pii": PiiLayer(pii_client)}
        engine = GuardrailEngine(GuardrailSettings(), layers=layers, sink=sink, metrics=False)
        verdict = engine.check(make_request(text))
    assert (verdict.action, verdict.text) == ("redact", "Hi, I am [NAME], [EMAIL]")
    [record] = sink.records
    assert isinstance(record, FilterDecisionRecord)
    assert record.text_redacted == "Hi, I am [NAME], [EMAIL]"
    assert record.action == "redact" and record.direction == "input"


def test_record_redacts_blocked_pii_too_and_skips_trusted_items():
    sink = ListSink()
    block_ssn = Finding("pii", "SSN", "block", 0.9, Span(1, 4, 15), is_pii=True)
    _engine([FakeLayer("pii", [block_ssn])], sink=sink).check(
        make_request("system", "ssn 123-45-6789", trusted=(0,))
    )
    [record] = sink.records
    assert record.action == "block"
    assert record.text_redacted == "ssn [SSN]"


def test_record_keeps_no_text_when_no_pii_detector_succeeded():
    sink = ListSink()
    _engine([FakeLayer("pii", error=RuntimeError("down"))], policy="fail_open", sink=sink).check(
        make_request("a@b.co")
    )
    assert sink.records[0].text_redacted == ""


def test_sink_failure_does_not_change_the_verdict():
    class BrokenSink:
        def append(self, record):
            raise OSError("s3 down")

    verdict = _engine([FakeLayer("pii")], sink=BrokenSink()).check(make_request("hi"))
    assert verdict.action == "allow"


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ((), "content"),
        ((ContentItem("  "),), "content[0].text"),
        ((ContentItem("a\ud800b"),), "content[0].text"),
    ],
)
def test_invalid_requests_raise_naming_the_field(items, message):
    request = make_request("x")
    request = type(request)(**{**request.__dict__, "items": items})
    with pytest.raises(InvalidRequestError, match=message.replace("[", r"\[")):
        _engine([FakeLayer("pii")]).check(request)


def test_metrics_per_layer_with_dimensions(capsys):
    settings = GuardrailSettings()
    layers = {
        "pii": FakeLayer("pii"),
        "local_rules": FakeLayer("local_rules", [Finding("local_rules", "deny_term", "block")]),
    }
    GuardrailEngine(settings, layers=layers).check(make_request("hi"))
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    by_layer = {blob["layer"]: blob for blob in blobs if "layer" in blob}
    (per_request,) = [blob for blob in blobs if "layer" not in blob]
    assert set(by_layer) == {"pii", "local_rules"}
    assert by_layer["local_rules"]["blocks"] == [1.0] and by_layer["pii"]["blocks"] == [0.0]
    assert by_layer["local_rules"]["findings"] == [1.0] and by_layer["pii"]["findings"] == [0.0]
    assert per_request["requests"] == [1.0] and per_request["blocked"] == [1.0]
    assert per_request["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [
        ["direction", "business_unit", "service"]
    ]
    assert by_layer["pii"]["calls"] == [1.0] and by_layer["pii"]["errors"] == [0.0]
    assert by_layer["pii"]["business_unit"] == "retail" and by_layer["pii"]["direction"] == "input"
    assert by_layer["pii"]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [
        ["layer", "direction", "business_unit", "service"]
    ]


# --- invariants over random text and random service failures ---------------------------------

texts = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=200).filter(
    str.strip
)


@st.composite
def layer_outcomes(draw, text):
    layers = []
    for name in ("toxicity", "pii", "bedrock", "local_rules"):
        if draw(st.booleans()):
            layers.append(FakeLayer(name, error=RuntimeError("boom")))
            continue
        findings = []
        for _ in range(draw(st.integers(0, 3))):
            start = draw(st.integers(0, len(text)))
            end = draw(st.integers(start, len(text)))
            action = draw(st.sampled_from(["block", "redact", "flag"]))
            findings.append(Finding(name, "T", action, None, Span(0, start, end)))
        layers.append(FakeLayer(name, findings))
    return layers


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), text=texts, policy=st.sampled_from(["fail_closed", "fail_open"]))
def test_invariants_hold_for_random_text_and_failures(data, text, policy):
    layers = data.draw(layer_outcomes(text))
    verdict = _engine(layers, policy=policy).check(make_request(text))
    findings = [f for layer in layers if layer._error is None for f in layer._findings]
    # An error never turns a block into allow; fail-closed turns any error into a block.
    if any(f.action == "block" for f in findings):
        assert verdict.action == "block"
    if verdict.errors and policy == "fail_closed":
        assert verdict.action == "block"
    assert verdict.failure_policy_applied == (policy if verdict.errors else None)
    # No character of a non-empty redaction span survives.
    redacted = [f.span for f in findings if f.action == "redact" and f.span.end > f.span.start]
    if redacted:
        assert verdict.action in ("redact", "block")
        covered = set().union(*(range(s.start, s.end) for s in redacted))
        kept = "".join(c for i, c in enumerate(text) if i not in covered)
        placeholders = verdict.text.count("[T]")
        assert len(verdict.text) == len(kept) + 3 * placeholders
