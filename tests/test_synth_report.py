"""The synth table: construct path beside the stack name, markers, a subtotal per business unit, the cdk-nag
line, and cfn-lint results reused for templates whose content did not change."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.cdk_cli import listed_stacks
from tests.conftest import SynthesizedPlatform
from tools.synth_report import format_table, iter_stacks, nag_line, run_cfn_lint_cached


def test_summary_lists_every_stack_with_its_path_business_unit_and_stage(
    default_platform: SynthesizedPlatform,
) -> None:
    summaries = {s.name: s for s in iter_stacks(default_platform.outdir)}
    assert set(summaries) == {s.stack_name for s in default_platform.stacks()}
    retail_prod = summaries["exco-retail-prod-baseline"]
    assert (retail_prod.path, retail_prod.account, retail_prod.region, retail_prod.business_unit) == (
        "retail-prod/Baseline",
        "333333333333",
        "eu-west-1",
        "retail",
    )
    assert retail_prod.stage == "prod"
    assert retail_prod.resources == len(default_platform.template("exco-retail-prod-baseline")["Resources"])
    assert summaries["exco-prod-pipeline"].business_unit == "shared"


def test_the_paths_are_what_the_cdk_cli_selects(default_platform: SynthesizedPlatform) -> None:
    paths = sorted(s.path for s in iter_stacks(default_platform.outdir))
    assert sorted(listed_stacks(default_platform.outdir)) == paths


def test_markers_flag_gpu_and_always_on_stacks(default_platform: SynthesizedPlatform) -> None:
    markers = {s.path: s.markers for s in iter_stacks(default_platform.outdir)}
    assert markers["retail-prod/Serving"] == ("GPU", "always-on")  # inference components, min_capacity 1
    assert markers["finance-prod/Serving"] == ("GPU", "always-on")  # multi-model endpoint, min_capacity 1
    assert markers["retail-dev/FineTuning"] == ("GPU",)  # training on demand, nothing running while idle
    assert markers["retail-prod/Baseline"] == ("always-on",)  # interface endpoints in prod
    assert markers["retail-dev/Baseline"] == ()  # dev has no interface endpoints by default
    assert markers["retail-prod/Application"] == ("always-on",)  # WAF web ACL


def test_table_has_a_subtotal_per_business_unit_and_the_total(default_platform: SynthesizedPlatform) -> None:
    summaries = list(iter_stacks(default_platform.outdir))
    table = format_table(summaries).splitlines()
    assert table[0].split()[:5] == ["construct", "path", "(cdk", "CLI)", "stack"]
    for bu in ("shared", "retail", "finance"):
        members = [s for s in summaries if s.business_unit == bu]
        (subtotal,) = [line for line in table if line.startswith(f"subtotal {bu} (")]
        assert f"({len(members)} stacks)" in subtotal
        assert str(sum(s.resources for s in members)) in subtotal.split()
    assert table[-1].split()[:3] == ["TOTAL", f"({len(summaries)}", "stacks)"]
    assert table[-1].split()[-1] == str(sum(s.resources for s in summaries))


def test_nag_line_needs_the_validation_report(default_platform: SynthesizedPlatform, tmp_path: Path) -> None:
    assert nag_line(default_platform.outdir) == (
        True,
        "cdk-nag: AwsSolutions checks passed, 0 unacknowledged findings",
    )
    (tmp_path / "manifest.json").write_text("{}")
    passed, line = nag_line(tmp_path)
    assert not passed and "did not run" in line


def test_cfn_lint_reuses_results_for_unchanged_templates_and_relints_changed_ones(
    default_platform: SynthesizedPlatform, tmp_path: Path
) -> None:
    sources = [s.template for s in iter_stacks(default_platform.outdir)][:2]
    templates = []
    for source in sources:
        copy = tmp_path / source.name
        shutil.copy(source, copy)
        templates.append(copy)
    cache = tmp_path / "cache"
    assert run_cfn_lint_cached(templates, workers=1, cache_dir=cache)[::2] == (0, 2)
    assert run_cfn_lint_cached(templates, workers=1, cache_dir=cache)[::2] == (0, 0)
    # an error is cached with its template, so an unchanged broken template still fails the warm run
    broken = json.loads(templates[0].read_text())
    broken["Resources"]["Broken"] = {"Type": "AWS::S3::Bucket", "Properties": {"NoSuchProperty": 1}}
    templates[0].write_text(json.dumps(broken))
    status, output, linted = run_cfn_lint_cached(templates, workers=1, cache_dir=cache)
    assert (status & 2, linted) == (2, 1) and "E3002" in output
    status, output, linted = run_cfn_lint_cached(templates, workers=1, cache_dir=cache)
    assert (status & 2, linted) == (2, 0) and f"{templates[0]}:" in output


def test_an_endpoint_that_scales_to_zero_is_not_always_on() -> None:
    from tools.synth_report import markers_of

    def template(minimum: int) -> dict[str, object]:
        variant = {
            "InstanceType": "ml.g5.2xlarge",
            "ManagedInstanceScaling": {
                "Status": "ENABLED",
                "MinInstanceCount": minimum,
                "MaxInstanceCount": 2,
            },
        }
        return {
            "Resources": {
                "C": {
                    "Type": "AWS::SageMaker::EndpointConfig",
                    "Properties": {"ProductionVariants": [variant]},
                }
            }
        }

    assert markers_of(template(0)) == ("GPU",)
    assert markers_of(template(1)) == ("GPU", "always-on")


def test_the_report_step_does_not_start_the_cdk() -> None:
    # `make synth` runs the report after every synth: importing aws_cdk there would start a jsii Node process
    # and load aws-cdk-lib only to read JSON files (about a second of each warm make synth).
    import subprocess
    import sys

    probe = (
        "import sys, tools.synth_report; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'aws_cdk', 'cdk_nag', 'constructs', 'jsii'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[1],
    )
    assert result.stdout.strip() == "[]"
