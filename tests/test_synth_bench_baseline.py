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
