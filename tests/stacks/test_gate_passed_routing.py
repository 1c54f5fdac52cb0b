"""Where "Preprod Gate Passed" may travel: preprod's recorder -> prod's deployer, in both account layouts."""

from __future__ import annotations

from typing import Any

from tests.conftest import SynthesizedPlatform
from tests.journeys._fine_tuning import resources, rules
from tests.stacks.policy_eval import resolve

DETAIL_TYPE = "Preprod Gate Passed"


def gate_rules(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in rules(template) if r.get("EventPattern", {}).get("detail-type") == [DETAIL_TYPE]]


def test_sandbox_prod_hears_the_recorder_on_the_one_bus_and_nothing_forwards(
    sandbox_platform: SynthesizedPlatform,
) -> None:
    account = sandbox_platform.config.deployment.sandbox_account
    evaluation = sandbox_platform.template("exsb-retail-preprod-evaluation")
    assert gate_rules(evaluation) == []  # EventBridge refuses a rule that targets its own bus
    (prod_rule,) = gate_rules(sandbox_platform.template("exsb-retail-prod-serving"))
    assert prod_rule["EventPattern"]["account"] == [account]
    assert prod_rule["EventPattern"]["source"] == ["exsb.preprod-gate"]


def test_only_the_business_units_prod_listens_and_only_its_preprod_may_send(
    default_platform: SynthesizedPlatform,
) -> None:
    (forward,) = gate_rules(default_platform.template("exco-retail-preprod-evaluation"))
    preprod = forward["EventPattern"]["account"]
    (prod_rule,) = gate_rules(default_platform.template("exco-retail-prod-serving"))
    assert prod_rule["EventPattern"]["account"] == preprod
    assert (
        gate_rules(default_platform.template("exco-retail-preprod-serving")) == []
    )  # preprod serves by registration
    events = default_platform.template("exco-retail-prod-registry-events")
    senders = [
        resolve(r["Properties"]["Statement"], events)
        for r in resources(events, "AWS::Events::EventBusPolicy").values()
        if r["Properties"]["Statement"]["Condition"]["StringEquals"]["events:detail-type"] == DETAIL_TYPE
    ]
    assert [s["Principal"]["AWS"] for s in senders] == [f"arn:aws:iam::{preprod[0]}:root"]
    preprod_events = default_platform.template("exco-retail-preprod-registry-events")
    assert all(  # preprod's bus admits the registry only
        r["Properties"]["Statement"]["Condition"]["StringEquals"]["events:source"] == "aws.sagemaker"
        for r in resources(preprod_events, "AWS::Events::EventBusPolicy").values()
    )
