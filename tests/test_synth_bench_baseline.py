"""The synth bench's plain CDK app is a fair baseline: it synthesizes with the context `cdk synth` gives the
platform (cdk.json's feature flags and settings), so CDK's own validation and synthesis run alike."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.stacks.test_pipelines import load_bench


def test_the_plain_app_synthesizes_with_cdk_jsons_context(tmp_path: Path) -> None:
    bench = load_bench()
    queue = {"Type": "AWS::SQS::Queue", "Properties": {"SqsManagedSseEnabled": True}}
    spec = {
        "": [
            {
                "id": "Queue",
                "name": "plain-queue",
                "account": "111111111111",
                "region": "eu-west-1",
                "resources": {"Queue": queue},
            }
        ]
    }
    spec_file, script, outdir = tmp_path / "spec.json", tmp_path / "plain_app.py", tmp_path / "out"
    spec_file.write_text(json.dumps(spec))
    script.write_text(bench.PLAIN_APP)
    bench.plain_synth(spec_file, script, outdir)
    manifest = json.loads((outdir / "manifest.json").read_text())
    (report,) = (a for a in manifest["artifacts"].values() if a["type"] == "cdk:feature-flag-report")
    flags = report["properties"]["flags"]
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    configured = {name: flags[name].get("userValue") for name in context if name in flags}
    assert len(configured) > 50  # cdk.json sets the recommended flags
    assert configured == {name: context[name] for name in configured}
    template = json.loads((outdir / "Queue.template.json").read_text())
    assert template["Resources"]["Queue"] == queue


def test_the_typed_plain_app_writes_the_same_template_and_cdk_nag_checks_it(tmp_path: Path) -> None:
    """cdk-nag's rules match L1 classes: the raw CfnResource of the plain app gets no finding, the typed L1
    that CfnInclude makes of the same template gets the ones the platform would have to acknowledge."""
    bench = load_bench()
    queue = {"Type": "AWS::SQS::Queue", "Properties": {"VisibilityTimeout": 30}}
    template = {
        "Resources": {"Queue": queue, "CDKMetadata": {"Type": "AWS::CDK::Metadata", "Properties": {}}},
        "Outputs": {"QueueArn": {"Value": {"Fn::GetAtt": ["Queue", "Arn"]}}},
        "Parameters": {"BootstrapVersion": {"Type": "AWS::SSM::Parameter::Value<String>", "Default": "/cdk"}},
        "Rules": {"CheckBootstrapVersion": {"Assertions": []}},
    }
    assembly = tmp_path / "assembly"
    assembly.mkdir()
    (assembly / "Queue.template.json").write_text(json.dumps(template))
    stack = {
        "type": "aws:cloudformation:stack",
        "environment": "aws://111111111111/eu-west-1",
        "properties": {"templateFile": "Queue.template.json", "stackName": "plain-queue"},
    }
    (assembly / "manifest.json").write_text(json.dumps({"artifacts": {"Queue": stack}}))
    findings = {}
    for name, spec, app in (
        ("raw", bench.plain_spec(assembly), bench.PLAIN_APP),
        ("typed", bench.plain_typed_spec(assembly, tmp_path / "templates"), bench.PLAIN_TYPED_APP),
    ):
        spec_file, script, outdir = tmp_path / f"{name}.json", tmp_path / f"{name}.py", tmp_path / name
        spec_file.write_text(json.dumps(spec))
        script.write_text(app)
        bench.plain_synth(spec_file, script, outdir, builtin_validation=False)
        written = json.loads((outdir / "Queue.template.json").read_text())
        assert written["Resources"]["Queue"] == queue
        report = json.loads((outdir / "validation-report.json").read_text())
        findings[name] = {v["ruleName"] for r in report["pluginReports"] for v in r["violations"]}
        if name == "typed":
            assert written["Outputs"] == template["Outputs"]
    assert findings["raw"] == set()
    assert {"AwsSolutions-SQS3", "AwsSolutions-SQS4"} <= findings["typed"]
