"""The platform's synth against a plain CDK app of the same size, warm `make synth`, and CI synths per push.

In one run, alternating so machine load hits both sides alike (medians over --repeats):
- app: `app.py` on the default config in a fresh process, exactly as `cdk synth` runs it (cdk-nag attached);
- plain: a plain CDK app with the same stages, stacks and resources, each resource a raw `CfnResource` with the
  same type and properties as the platform's template, and cdk-nag attached the same way. Its ratio says what
  the platform's own code (L2 constructs, blocks, settings, aspects) costs beyond the resources themselves;
- make synth, warm: `make -s synth` after one unmeasured run (venv, CLI, Lambda layers and the cfn-lint cache in
  place), i.e. what a developer waits for after changing code that leaves most templates as they were;
- CI synths per push: from the synthesized pipelines, the Synth actions each branch's push starts.

    .venv/bin/python bench/platform_synth_bench.py [--repeats 3] [--skip-make]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

PLAIN_APP = """
import json, sys
from pathlib import Path
from aws_cdk import App, CfnResource, Stack, Stage, Validations
from cdk_nag import AwsSolutionsChecks
spec = json.loads(Path(sys.argv[1]).read_text())
app = App()
for stage_id, stacks in spec.items():
    scope = app if stage_id == "" else Stage(app, stage_id)
    for stack in stacks:
        target = Stack(scope, stack["id"], stack_name=stack["name"], env={"account": stack["account"], "region": stack["region"]})
        for logical_id, resource in stack["resources"].items():
            CfnResource(target, logical_id, type=resource["Type"], properties=resource.get("Properties"))
Validations.of(app).add_plugins(AwsSolutionsChecks(app))
app.synth()
"""


def node_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    node_bin = REPO_ROOT / "node_modules" / ".bin"
    return {**os.environ, "PATH": f"{node_bin}{os.pathsep}{os.environ.get('PATH', '')}", **(extra or {})}


def timed(command: list[str], env: dict[str, str], *, allow_failure: bool = False) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0 and not allow_failure:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return elapsed


def app_synth(outdir: Path) -> float:
    env = node_env(
        {"CDK_CONTEXT_JSON": json.dumps({"config": "config/platform.yaml"}), "CDK_OUTDIR": str(outdir)}
    )
    return timed([sys.executable, "app.py"], env)


def plain_spec(assembly: Path) -> dict[str, list[dict[str, Any]]]:
    """Stage id -> stacks (id, name, env, resources) of the platform's assembly, for the plain app."""
    spec: dict[str, list[dict[str, Any]]] = {}

    def walk(directory: Path, stage_id: str) -> None:
        manifest = json.loads((directory / "manifest.json").read_text())
        for artifact_id, artifact in manifest["artifacts"].items():
            properties = artifact.get("properties", {})
            if artifact["type"] == "cdk:cloud-assembly":
                walk(directory / properties["directoryName"], artifact_id.removeprefix("assembly-"))
            elif artifact["type"] == "aws:cloudformation:stack":
                account, _, region = artifact["environment"].removeprefix("aws://").partition("/")
                template = json.loads((directory / properties["templateFile"]).read_text())
                resources = {
                    k: v
                    for k, v in template.get("Resources", {}).items()
                    if v["Type"] != "AWS::CDK::Metadata"
                }
                spec.setdefault(stage_id, []).append(
                    {
                        "id": artifact.get("displayName", artifact_id).split("/")[-1],
                        "name": properties.get("stackName", artifact_id),
                        "account": account,
                        "region": region,
                        "resources": resources,
                    }
                )

    walk(assembly, "")
    return spec


def plain_synth(spec_file: Path, script: Path, outdir: Path) -> float:
    # the plain app has no acknowledgements: cdk-nag reports findings, which costs the same work; don't fail
    return timed(
        [sys.executable, str(script), str(spec_file)],
        node_env({"CDK_OUTDIR": str(outdir)}),
        allow_failure=True,
    )


def synths_per_push(assembly: Path) -> dict[str, int]:
    """Branch -> Synth actions its push starts, read from the synthesized pipelines."""
    per_branch: dict[str, int] = {}
    for template_file in assembly.glob("*-pipeline.template.json"):
        template = json.loads(template_file.read_text())
        for resource in template["Resources"].values():
            if resource["Type"] != "AWS::CodePipeline::Pipeline":
                continue
            stages = resource["Properties"]["Stages"]
            branch = stages[0]["Actions"][0]["Configuration"]["BranchName"]
            synths = sum(1 for s in stages for a in s["Actions"] if a["Name"] == "Synth")
            per_branch[branch] = per_branch.get(branch, 0) + synths
    return per_branch


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-make", action="store_true", help="leave out the warm make synth timing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        first = root / "first"
        app_synth(first)  # unmeasured: warms the OS caches and gives the plain app its shape
        spec_file = root / "spec.json"
        spec = plain_spec(first)
        spec_file.write_text(json.dumps(spec))
        script = root / "plain_app.py"
        script.write_text(PLAIN_APP)
        stacks = sum(len(s) for s in spec.values())
        resources = sum(len(s["resources"]) for stage in spec.values() for s in stage)
        app_times, plain_times, make_times = [], [], []
        if not args.skip_make:
            timed(["make", "-s", "synth"], node_env())  # unmeasured: fills the cfn-lint cache
        for index in range(args.repeats):
            app_times.append(app_synth(root / f"app{index}"))
            plain_times.append(plain_synth(spec_file, script, root / f"plain{index}"))
            if not args.skip_make:
                make_times.append(timed(["make", "-s", "synth"], node_env()))
        per_push = synths_per_push(first)
    app_median, plain_median = statistics.median(app_times), statistics.median(plain_times)
    print(
        f"default config: {stacks} stacks, {resources} resources; {args.repeats} repeats, {os.cpu_count()} CPUs"
    )
    print(
        f"app synth (app.py, cdk-nag)            median {app_median:6.1f} s  runs {[round(t, 1) for t in app_times]}"
    )
    print(
        f"plain CDK app, same resources, cdk-nag median {plain_median:6.1f} s  runs {[round(t, 1) for t in plain_times]}"
    )
    print(f"ratio app / plain: {app_median / plain_median:.2f}x (median of each)")
    ratios = [a / p for a, p in zip(app_times, plain_times, strict=True)]
    print(f"ratio per pair: {[round(r, 2) for r in ratios]} (median {statistics.median(ratios):.2f}x)")
    if make_times:
        print(
            f"make synth, warm (cfn-lint cache filled) median {statistics.median(make_times):6.1f} s  runs {[round(t, 1) for t in make_times]}"
        )
    print(f"CI synths per push, by branch: {dict(sorted(per_push.items()))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
