"""Reading cdk-nag's verdict from a synthesized cloud assembly, without importing the CDK.

Kept apart from `stacks.blocks.nag` so that `tools/synth_report.py` (run by `make synth` after the synth)
does not import aws_cdk: that import starts a jsii Node process and loads aws-cdk-lib, about a second
spent on nothing but reading one JSON file (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import json
from pathlib import Path


def failed_validations(outdir: str | Path) -> list[str]:
    """Violations recorded in a cloud assembly's validation report, one line each.

    Under the CDK CLI, a violation inside a nested `cdk.Stage` is written to the report without failing
    the synth, so the gate reads the report instead of trusting the exit status.
    """
    report_path = Path(outdir) / "validation-report.json"
    if not report_path.is_file():
        return []
    report = json.loads(report_path.read_text(encoding="utf-8"))
    return [
        f"{violation['ruleName']} at {construct['constructPath']}: {violation['description']}"
        for plugin in report.get("pluginReports", [])
        if plugin.get("conclusion") != "success"
        for violation in plugin.get("violations", [])
        for construct in violation.get("violatingConstructs", [])
    ]
