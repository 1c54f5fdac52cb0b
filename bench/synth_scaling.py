"""Synth time and peak memory against the number of business units.

Generates configs with 1, 5, 10 and 20 business units (from the default config's first BU), synthesizes each in
a fresh process exactly as `cdk synth` runs the app (python app.py, cdk-nag attached), and reports the median
wall time over the repeats, the peak resident memory of the whole process tree (Python + the jsii Node process),
the stack count and the largest stack's resource count. The marginal cost per business unit is the least-squares
slope of median time against business units; the 1-BU run is the baseline the ratios refer to.

    .venv/bin/python bench/synth_scaling.py [--sizes 1 5 10 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.platform_synth_bench import interpreter_flags  # noqa: E402
from tools.synth_report import iter_stacks  # noqa: E402


def generated_config(business_units: int) -> dict[str, Any]:
    base = yaml.safe_load((REPO_ROOT / "config" / "platform.yaml").read_text())
    template = base["business_units"][0]
    units = []
    for index in range(business_units):
        unit = copy.deepcopy(template)
        unit["name"] = f"bu{index:02d}"
        unit["cost_center"] = f"CC-{index:04d}"
        unit["accounts"] = {
            stage: f"{600000000000 + index * 10 + offset:012d}"
            for offset, stage in enumerate(("dev", "preprod", "prod"), start=1)
        }
        units.append(unit)
    base["business_units"] = units
    return base


def _tree_rss_bytes(root_pid: int) -> int:
    """Resident memory of a process and all its descendants, read from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
            children.setdefault(int(fields[1]), []).append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def synth_once(config_path: Path, outdir: Path) -> tuple[float, int]:
    env = {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    command = [
        sys.executable,
        *interpreter_flags(),  # cdk.json's (`python -O`)
        "-c",
        "import sys; sys.argv=['app.py']; import runpy; runpy.run_path('app.py', run_name='__main__')",
    ]
    # The CDK CLI passes context and the output folder to the app through these variables.
    env["CDK_CONTEXT_JSON"] = json.dumps({"config": str(config_path)})
    env["CDK_OUTDIR"] = str(outdir)
    peak = 0
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss_bytes(process.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = process.communicate()
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"synth failed for {config_path}:\n{stderr.decode()[-3000:]}")
    return elapsed, peak


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 5, 10, 20])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    # Inside the repository: the pipelines synthesize from the repo and refuse a config outside it.
    scratch_root = REPO_ROOT / "bench" / "results"
    scratch_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch_root) as scratch:
        for size in args.sizes:
            config_path = Path(scratch) / f"bu{size}.yaml"
            config_path.write_text(yaml.safe_dump(generated_config(size)))
            times, peaks = [], []
            for repeat in range(args.repeats):
                outdir = Path(scratch) / f"out-{size}-{repeat}"
                elapsed, peak = synth_once(config_path, outdir)
                times.append(elapsed)
                peaks.append(peak)
            stacks = list(iter_stacks(outdir))
            largest = max(stacks, key=lambda s: s.resources)
            rows.append(
                {
                    "business_units": size,
                    "stacks": len(stacks),
                    "resources": sum(s.resources for s in stacks),
                    "median_s": statistics.median(times),
                    "peak_mib": max(peaks) / 2**20,
                    "largest_stack": largest.name,
                    "largest_resources": largest.resources,
                }
            )
            print(f"  {size} BU: {[round(t, 2) for t in times]} s", file=sys.stderr)
    baseline = rows[0]["median_s"]
    xs = [r["business_units"] for r in rows]
    ys = [r["median_s"] for r in rows]
    slope = statistics.linear_regression(xs, ys).slope if len(rows) > 1 else float("nan")
    print(
        "| business units | stacks | resources | synth median (s) | vs 1 BU | peak memory (MiB) | largest stack (resources) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['business_units']} | {r['stacks']} | {r['resources']} | {r['median_s']:.1f} | "
            f"{r['median_s'] / baseline:.2f}x | {r['peak_mib']:.0f} | {r['largest_stack']} ({r['largest_resources']}) |"
        )
    print(f"\nmarginal synth cost per business unit (least-squares slope): {slope:.2f} s")
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, repeats={args.repeats}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
