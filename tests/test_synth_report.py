"""The synth summary reads nested assemblies and prints one row per stack plus totals."""

from __future__ import annotations

from tests.conftest import SynthesizedPlatform
from tools.synth_report import format_table, iter_stacks


def test_summary_lists_every_stack_with_its_business_unit_and_stage(
    default_platform: SynthesizedPlatform,
) -> None:
    summaries = {s.name: s for s in iter_stacks(default_platform.outdir)}
    assert set(summaries) == {s.stack_name for s in default_platform.stacks()}
    retail_prod = summaries["exco-retail-prod-baseline"]
    assert (retail_prod.account, retail_prod.region, retail_prod.business_unit, retail_prod.stage) == (
        "333333333333",
        "eu-west-1",
        "retail",
        "prod",
    )
    expected_count = len(default_platform.template("exco-retail-prod-baseline")["Resources"])
    assert retail_prod.resources == expected_count


def test_table_ends_with_totals(default_platform: SynthesizedPlatform) -> None:
    summaries = list(iter_stacks(default_platform.outdir))
    table = format_table(summaries).splitlines()
    assert table[0].split() == ["stack", "account", "region", "business", "unit", "stage", "resources"]
    total = sum(s.resources for s in summaries)
    assert table[-1].split()[:3] == ["TOTAL", f"({len(summaries)}", "stacks)"]
    assert table[-1].split()[-1] == str(total)
    assert len(table) == len(summaries) + 4
