"""The platform's synth against a plain CDK app of the same size, warm `make synth`, and CI synths per push.

In one run, alternating so machine load hits both sides alike (medians over --repeats):
- app: `app.py` on the default config in a fresh process, exactly as `cdk synth` runs it (cdk-nag attached);
- plain: a plain CDK app with the same stages, stacks and resources, each resource a raw `CfnResource` with the
  same type and properties as the platform's template, cdk-nag attached the same way, and the same context as
  `cdk synth` gives the platform (cdk.json's: feature flags, metadata settings), so CDK's built-in template
  validation and synthesis run with the same settings. Its ratio says what the platform's own code (L2
  constructs, blocks, settings, aspects, assets) costs beyond the resources themselves;
- plain, typed L1: the same, but each stack is the platform's template read back with
  `cloudformation_include.CfnInclude`, so every resource is a typed L1 (`CfnQueue`, `CfnRole`, ...) with its
  properties, and the templates come out the same (DependsOn lists aside, which CfnInclude sorts). cdk-nag's
  rules match L1 classes: on the raw `CfnResource`s of the plain app above they check nothing, here they check
  every resource as in the platform (whose acknowledgements this app lacks: it reports the findings);
- make synth, warm: `make -s synth` after one unmeasured run (venv, CLI, Lambda layers and the cfn-lint cache in
  place), i.e. what a developer waits for after changing code that leaves most templates as they were;
- CI synths per push: from the synthesized pipelines, the Synth actions each branch's push starts.
- with --baseline-ref REF (repeatable): `app.py` of that git revision (e.g. main) as another side of the same
  rotation, its ratios, and whether it synthesizes the same assembly as this checkout
  (bench/compare_assemblies.py): a refactoring for speed must leave every template byte-identical, or differ
  only by folder assets packed as zip files with the same files inside (--repackaged-assets there).
- with --make-phases: each command of `make -n synth` timed on its own after each warm run (where the warm
  `make synth` spends its time).
- unless --skip-unvalidated: app, plain app and each baseline once more with CDK's built-in CloudFormation
  validator off (CDK_VALIDATION=false; cdk-nag still runs), in the same rotation. That validator costs about the
  same in every app (a WebAssembly rule engine built once per process, then one validation per template), so
  the ratio without it is the platform's own synth cost against the plain app's. The main ratio stays the one
  with the validator on, as `cdk synth` runs both apps.

Every app runs with the interpreter flags of its tree's cdk.json `app` command (e.g. `python -O`), the plain app
with this checkout's, so a change of flags counts on both sides.

Wall seconds are medians; CPU seconds are the user + system time of the whole process tree (Python and its
jsii Node process; getrusage of the waited-for children), which machine load inflates far less than wall
time. The load average is printed at the start and the end.

    .venv/bin/python bench/platform_synth_bench.py [--repeats 3] [--skip-make] [--baseline-ref main]...
        [--make-phases] [--skip-unvalidated]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from resource import RUSAGE_CHILDREN, getrusage
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.compare_assemblies import assembly_differences, repackaging_problems  # noqa: E402

# The plain app: the platform's stages and stacks, each stack's resources made by RESOURCES, cdk-nag attached.
_PLAIN_APP_SHAPE = """
import json, sys
from pathlib import Path
from aws_cdk import App, CfnResource, Stack, Stage, Validations
IMPORTS
from cdk_nag import AwsSolutionsChecks
spec = json.loads(Path(sys.argv[1]).read_text())
app = App(context=json.loads(Path(sys.argv[2]).read_text())["context"])
for stage_id, stacks in spec.items():
    scope = app if stage_id == "" else Stage(app, stage_id)
    for stack in stacks:
        target = Stack(scope, stack["id"], stack_name=stack["name"], env={"account": stack["account"], "region": stack["region"]})
RESOURCES
Validations.of(app).add_plugins(AwsSolutionsChecks(app))
app.synth()
"""


def _plain_app(imports: str, resources: str) -> str:
    return _PLAIN_APP_SHAPE.replace("IMPORTS\n", imports).replace("RESOURCES\n", resources)


# Each resource a raw CfnResource with the template's type and properties.
PLAIN_APP = _plain_app(
    "",
    """        for logical_id, resource in stack["resources"].items():
            CfnResource(target, logical_id, type=resource["Type"], properties=resource.get("Properties"))
""",
)
# The same app with typed L1 resources: each stack includes the platform's template, so cdk-nag's rules (which
# match L1 classes) check every resource as they do in the platform.
PLAIN_TYPED_APP = _plain_app(
    "from aws_cdk import cloudformation_include as cfn_include\n",
    """        cfn_include.CfnInclude(target, "Template", template_file=stack["template_file"])
""",
)


def node_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    node_bin = REPO_ROOT / "node_modules" / ".bin"
    return {**os.environ, "PATH": f"{node_bin}{os.pathsep}{os.environ.get('PATH', '')}", **(extra or {})}


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float  # user + system seconds of the command's whole process tree


@dataclass
class Series:
    label: str
    runs: list[Timing] = field(default_factory=list)

    @property
    def wall(self) -> float:
        return statistics.median(t.wall for t in self.runs)

    @property
    def cpu(self) -> float:
        return statistics.median(t.cpu for t in self.runs)

    def line(self) -> str:
        walls = [round(t.wall, 1) for t in self.runs]
        cpus = [round(t.cpu, 1) for t in self.runs]
        return f"{self.label:<62} wall median {self.wall:6.1f} s {walls}  cpu median {self.cpu:6.1f} s {cpus}"


def _children_cpu() -> float:
    usage = getrusage(RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(
    command: list[str], env: dict[str, str], *, cwd: Path = REPO_ROOT, allow_failure: bool = False
) -> Timing:
    cpu_before, started = _children_cpu(), time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed, cpu = time.perf_counter() - started, _children_cpu() - cpu_before
    if result.returncode != 0 and not allow_failure:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return Timing(elapsed, cpu)


def validation_env(builtin_validation: bool) -> dict[str, str]:
    """CDK's built-in CloudFormation validator on (as `cdk synth` runs) or off; cdk-nag runs either way."""
    return {} if builtin_validation else {"CDK_VALIDATION": "false"}


def interpreter_flags(source: Path = REPO_ROOT) -> list[str]:
    """The Python options of the `app` command in `source`'s cdk.json (`.venv/bin/python -O app.py` -> ["-O"])."""
    command = shlex.split(json.loads((source / "cdk.json").read_text())["app"])
    if len(command) < 2 or not Path(command[0]).name.startswith("python"):
        raise SystemExit(f"{source / 'cdk.json'}: app must be `<python> [options] app.py`, got {command}")
    return [word for word in command[1:-1] if word.startswith("-")]


def app_synth(outdir: Path, source: Path = REPO_ROOT, *, builtin_validation: bool = True) -> Timing:
    """`app.py` of `source` (this checkout, or a baseline revision's tree) as `cdk synth` runs it: with the
    interpreter flags of that tree's cdk.json."""
    env = node_env(
        {
            "CDK_CONTEXT_JSON": json.dumps({"config": "config/platform.yaml"}),
            "CDK_OUTDIR": str(outdir),
            **validation_env(builtin_validation),
        }
    )
    return timed([sys.executable, *interpreter_flags(source), "app.py"], env, cwd=source)


def export_revision(ref: str, target: Path) -> Path:
    """The tree of git revision `ref` in `target`, sharing this checkout's built Lambda layers and Node
    packages (ignored by git, so not in the export), as the synth of that revision would see them."""
    target.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref], cwd=REPO_ROOT, capture_output=True, check=False
    )
    if archive.returncode != 0:
        raise SystemExit(f"--baseline-ref: git archive {ref} failed: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    for shared in (".build", "node_modules"):
        (target / shared).symlink_to((REPO_ROOT / shared).resolve())
    return target


def make_synth_commands() -> list[str]:
    """The commands `make synth` runs, in order, as make prints them without running them (`make -n`)."""
    listed = subprocess.run(
        ["make", "-n", "synth"], cwd=REPO_ROOT, env=node_env(), capture_output=True, text=True, check=True
    )
    return [line for line in listed.stdout.splitlines() if line.strip() and not line.startswith("make")]


def plain_spec(assembly: Path, *, with_template: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Stage id -> stacks (id, name, env, resources; the whole template too if asked) of the platform's
    assembly, for the plain app."""
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
                        **({"template": template} if with_template else {}),
                    }
                )

    walk(assembly, "")
    return spec


def plain_typed_spec(assembly: Path, templates: Path) -> dict[str, list[dict[str, Any]]]:
    """`plain_spec` with each stack's whole template written to `templates` for CfnInclude, less what the
    synthesizer adds again (the CDK metadata resource, the bootstrap version parameter and rule)."""
    templates.mkdir(parents=True, exist_ok=True)
    spec = plain_spec(assembly, with_template=True)
    for stage_id, stacks in spec.items():
        for stack in stacks:
            template = dict(stack.pop("template"))
            template["Resources"] = stack.pop("resources")
            for section, generated in (
                ("Parameters", "BootstrapVersion"),
                ("Rules", "CheckBootstrapVersion"),
            ):
                kept = {k: v for k, v in template.get(section, {}).items() if k != generated}
                template.pop(section, None)
                if kept:
                    template[section] = kept
            target = templates / f"{stage_id or 'app'}-{stack['name']}.template.json"
            target.write_text(json.dumps(template), encoding="utf-8")
            stack["template_file"] = str(target)
    return spec


def plain_synth(spec_file: Path, script: Path, outdir: Path, *, builtin_validation: bool = True) -> Timing:
    """The plain app, with the interpreter flags and context `cdk synth` gives this checkout's app."""
    # the plain app has no acknowledgements: cdk-nag reports findings, which costs the same work; don't fail
    return timed(
        [sys.executable, *interpreter_flags(), str(script), str(spec_file), str(REPO_ROOT / "cdk.json")],
        node_env({"CDK_OUTDIR": str(outdir), **validation_env(builtin_validation)}),
        allow_failure=True,
    )


def assembly_comparison(before: Path, after: Path) -> tuple[str, list[str]]:
    """Identical, different only by folder assets packed as zip files (same files inside), or the differences."""
    if not assembly_differences(before, after):
        return "identical", []
    problems = repackaging_problems(before, after)
    if not problems:
        return "identical but for folder assets packed as zip files, with the same files inside", []
    return f"{len(problems)} differences beyond repackaged assets", problems


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


def ratio_line(label: str, side: Series, reference: Series) -> str:
    return f"{label}: wall {side.wall / reference.wall:.2f}x, cpu {side.cpu / reference.cpu:.2f}x"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-make", action="store_true", help="leave out the warm make synth timing")
    parser.add_argument(
        "--baseline-ref",
        metavar="REF",
        action="append",
        default=[],
        help="also synthesize app.py of this git revision in the same rotation and compare the assemblies"
        " (repeatable)",
    )
    parser.add_argument(
        "--make-phases",
        action="store_true",
        help="also time each command of `make -n synth` on its own (after each warm make synth)",
    )
    parser.add_argument(
        "--skip-unvalidated",
        action="store_true",
        help="leave out the runs with CDK's built-in CloudFormation validator off (CDK_VALIDATION=false)",
    )
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats: must be at least 1")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    # validator on (as `cdk synth` runs), then off unless skipped
    modes = [True] if args.skip_unvalidated else [True, False]
    suffix = {True: "", False: ", CDK_VALIDATION=false"}
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        baselines = {
            ref: export_revision(ref, root / f"baseline{number}")
            for number, ref in enumerate(args.baseline_ref)
        }
        first = root / "first"
        app_synth(first)  # unmeasured: warms the OS caches and gives the plain app its shape
        spec_file = root / "spec.json"
        spec = plain_spec(first)
        spec_file.write_text(json.dumps(spec))
        script = root / "plain_app.py"
        script.write_text(PLAIN_APP)
        typed_spec_file = root / "typed_spec.json"
        typed_spec_file.write_text(json.dumps(plain_typed_spec(first, root / "templates")))
        typed_script = root / "plain_typed_app.py"
        typed_script.write_text(PLAIN_TYPED_APP)
        stacks = sum(len(s) for s in spec.values())
        resources = sum(len(s["resources"]) for stage in spec.values() for s in stage)
        app = {m: Series(f"app synth (app.py, cdk-nag{suffix[m]})") for m in modes}
        plain = {m: Series(f"plain CDK app, same resources, cdk-nag{suffix[m]}") for m in modes}
        typed = {m: Series(f"plain CDK app, typed L1 (CfnInclude), cdk-nag{suffix[m]}") for m in modes}
        befores = {
            m: {ref: Series(f"app synth at {ref} (baseline{suffix[m]})") for ref in baselines} for m in modes
        }
        make = Series("make synth, warm (cfn-lint cache filled)")
        phase_commands = make_synth_commands() if args.make_phases else []
        phases = {command: Series(command[:60]) for command in phase_commands}
        if not args.skip_make:
            timed(["make", "-s", "synth"], node_env())  # unmeasured: fills the cfn-lint cache
        for index in range(args.repeats):
            for mode in modes:
                tag = f"{index}" if mode else f"{index}-unvalidated"
                for number, (ref, tree) in enumerate(baselines.items()):
                    befores[mode][ref].runs.append(
                        app_synth(root / f"before{number}-{tag}", tree, builtin_validation=mode)
                    )
                app[mode].runs.append(app_synth(root / f"app{tag}", builtin_validation=mode))
                plain[mode].runs.append(
                    plain_synth(spec_file, script, root / f"plain{tag}", builtin_validation=mode)
                )
                typed[mode].runs.append(
                    plain_synth(typed_spec_file, typed_script, root / f"typed{tag}", builtin_validation=mode)
                )
            if not args.skip_make:
                make.runs.append(timed(["make", "-s", "synth"], node_env()))
            for command, series in phases.items():
                series.runs.append(timed(["bash", "-c", command], node_env()))
        per_push = synths_per_push(first)
        comparisons = {
            ref: assembly_comparison(root / f"before{number}-0", root / "app0")
            for number, ref in enumerate(baselines)
        }
    print(
        f"default config: {stacks} stacks, {resources} resources; {args.repeats} repeats, {os.cpu_count()} CPUs;"
        f" interpreter flags {interpreter_flags() or 'none'}"
    )
    for mode in modes:
        for series in (*befores[mode].values(), app[mode], plain[mode], typed[mode]):
            print(series.line())
    for series in (make, *phases.values()):
        if series.runs:
            print(series.line())
    ratios = [a.wall / p.wall for a, p in zip(app[True].runs, plain[True].runs, strict=True)]
    print(
        f"ratio app / plain: wall {app[True].wall / plain[True].wall:.2f}x (medians; per pair"
        f" {[round(r, 2) for r in ratios]}), cpu {app[True].cpu / plain[True].cpu:.2f}x"
    )
    print(
        ratio_line("ratio app / plain with typed L1 (cdk-nag checks every resource)", app[True], typed[True])
    )
    if False in modes:
        print(ratio_line("ratio app / plain without CDK's validator", app[False], plain[False]))
        print(
            ratio_line("ratio app / plain with typed L1, without CDK's validator", app[False], typed[False])
        )
        for label, sides in (("app", app), ("plain", plain), ("plain with typed L1", typed)):
            print(
                f"CDK's validator in {label} (median with - median without): wall"
                f" {sides[True].wall - sides[False].wall:.1f} s, cpu {sides[True].cpu - sides[False].cpu:.1f} s"
            )
    for ref in baselines:
        for mode in modes:
            before = befores[mode][ref]
            print(
                f"{ratio_line(f'ratio {ref} / plain{suffix[mode]}', before, plain[mode])};"
                f" {ratio_line(f'app / {ref}', app[mode], before)}"
            )
            print(ratio_line(f"ratio {ref} / plain with typed L1{suffix[mode]}", before, typed[mode]))
        verdict, lines = comparisons[ref]
        print(f"assemblies of {ref} and this checkout: {verdict}")
        for line in lines[:50]:
            print(f"  {line}")
    if phases:
        print(f"make synth phases, sum of medians: {sum(s.wall for s in phases.values()):.1f} s wall")
    print(f"CI synths per push, by branch: {dict(sorted(per_push.items()))}")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
