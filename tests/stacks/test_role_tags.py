"""CDK's raw provider roles get the stage's tags; typed L1 roles (tagged by `Tags.of`) and other raw resources
are left alone. `tag_untaggable_roles` walks the tree once instead of running a Python aspect per construct."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import App, CfnResource, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.blocks.role_tags import tag_untaggable_roles

TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}


def test_only_raw_role_resources_get_the_tags(tmp_path: Path) -> None:
    app = App(outdir=str(tmp_path))
    stack = Stack(app, "Roles")
    CfnResource(stack, "RawRole", type="AWS::IAM::Role", properties={"AssumeRolePolicyDocument": TRUST})
    CfnResource(stack, "RawQueue", type="AWS::SQS::Queue")
    iam.CfnRole(stack, "TypedRole", assume_role_policy_document=TRUST)
    tag_untaggable_roles(stack, {"Stage": "dev", "BusinessUnit": "retail"})
    resources = app.synth().get_stack_by_name("Roles").template["Resources"]
    assert resources["RawRole"]["Properties"]["Tags"] == [
        {"Key": "BusinessUnit", "Value": "retail"},
        {"Key": "Stage", "Value": "dev"},
    ]
    assert "Properties" not in resources["RawQueue"]
    assert "Tags" not in resources["TypedRole"]["Properties"]


def test_a_nested_raw_role_is_found_and_a_later_one_is_not(tmp_path: Path) -> None:
    # the walk reaches every depth, and sees what exists when it is called: the stages call it last
    app = App(outdir=str(tmp_path))
    stack = Stack(app, "Nested")
    provider = Construct(Construct(stack, "Provider"), "Inner")
    CfnResource(provider, "Early", type="AWS::IAM::Role", properties={"AssumeRolePolicyDocument": TRUST})
    tag_untaggable_roles(app, {"Stage": "prod"})
    CfnResource(stack, "Late", type="AWS::IAM::Role", properties={"AssumeRolePolicyDocument": TRUST})
    resources = app.synth().get_stack_by_name("Nested").template["Resources"]
    (early,) = [r for logical_id, r in resources.items() if logical_id.startswith("ProviderInnerEarly")]
    assert early["Properties"]["Tags"] == [{"Key": "Stage", "Value": "prod"}]
    assert "Tags" not in resources["Late"]["Properties"]
