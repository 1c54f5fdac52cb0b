"""Every tool and bench behaves like a command-line tool: --help, one-line errors, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stacks.settings import load_config
from tools import bootstrap_commands, serving_cost
from tools.serving_cost import cost_rows

REPO_ROOT = Path(__file__).resolve().parents[1]
# command-line tools: the modules under tools/ that run as a program (library modules such as cli.py have no
# `__main__` block)
TOOLS = sorted(
    p.stem for p in (REPO_ROOT / "tools").glob("*.py") if 'if __name__ == "__main__":' in p.read_text()
)
BENCHES = sorted(p.name for p in (REPO_ROOT / "bench").glob("*.py"))
ENV = {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize("tool", TOOLS)
def test_every_tool_answers_help(tool: str) -> None:
    result = run(["-m", f"tools.{tool}", "--help"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: ")


@pytest.mark.parametrize("bench", BENCHES)
def test_every_bench_answers_help_without_running(bench: str) -> None:
    result = run([f"bench/{bench}", "--help"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: ")


def broken_config(tmp_path: Path) -> Path:
    raw = yaml.safe_load((REPO_ROOT / "config" / "platform.yaml").read_text())
    raw["organization"]["prefix"] = "Exco"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    "args",
    [
        lambda p: ["-m", "tools.bootstrap_commands", str(p)],
        lambda p: ["-m", "tools.serving_cost", "--config", str(p)],
        lambda p: ["-m", "tools.check_config", str(p)],
        lambda p: ["bench/construct_profile.py", "--config", str(p)],
    ],
)
def test_a_bad_config_is_one_line_per_problem_and_exit_2(tmp_path: Path, args: object) -> None:
    result = run(args(broken_config(tmp_path)))  # type: ignore[operator]
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[1].startswith(
        "  - organization.prefix: 'Exco' is not allowed here: write 2-10"
    )


def test_evaluation_gate_names_missing_variables_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "tools/evaluation_gate.py"],
        cwd=REPO_ROOT,
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "evaluation_gate: set GATE_ROLE_ARN, STATE_MACHINE_ARN, USE_CASES, TIMEOUT_SECONDS, AWS_REGION "
        "(the pipeline's gate step sets them)\n"
    )


def test_bootstrap_commands_prints_for_the_default_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert bootstrap_commands.main([]) == 0
    assert "npx cdk bootstrap aws://111111111111/eu-west-1" in capsys.readouterr().out


# ---- make cost: capacity caps and the region's prices -------------------------------------------------


def test_cost_honours_max_capacity_and_says_what_the_cap_serves() -> None:
    config = load_config()
    rows = {
        (r.business_unit, r.stage, r.models): r
        for r in cost_rows(config, [10, 1000], price_region="us-east-1")
    }
    capped = rows[("finance", "prod", 1000)]  # multi-model endpoint: 50 models per instance, max_capacity 2
    assert (capped.needed, capped.instances, capped.served_at_cap) == (20, 2, 100)
    assert "capped at max_capacity 2: serves 100 models" in serving_cost.format_row(capped)
    small = rows[("finance", "prod", 10)]
    assert (small.needed, small.instances) == (1, 1) and not small.capped


def test_cost_refuses_a_region_without_prices_and_names_the_way_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as excinfo:
        serving_cost.main([])  # the default config runs in eu-west-1; the catalog prices us-east-1
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("no prices for eu-west-1 in config/gpu_catalog.yaml") and err.count("\n") == 1
    assert "COST_FLAGS=--price-region=us-east-1" in err


def test_cost_rows_name_the_region_whose_prices_they_use(capsys: pytest.CaptureFixture[str]) -> None:
    assert serving_cost.main(["--price-region", "us-east-1", "--models", "10"]) == 0
    rows = [
        line for line in capsys.readouterr().out.splitlines() if line.startswith(("retail |", "finance |"))
    ]
    assert rows and all(" | eu-west-1 | us-east-1 | " in line for line in rows)


@pytest.mark.parametrize("models", ["ten", "10,,100", "0"])
def test_cost_rejects_bad_model_counts_in_one_line(models: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        serving_cost.main(["--models", models])
    assert excinfo.value.code == 2
    assert capsys.readouterr().err.startswith("--models: ")
