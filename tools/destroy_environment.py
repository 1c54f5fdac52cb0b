"""Remove one business unit's environment of one stage completely: `make destroy STAGE=dev BU=retail`.

Checks first, in this order, each failing at once with exit code 2: the config, the business unit, the stage
(anything but dev is refused unless `--force-retained` is given; even then preprod/prod data survives, because
their buckets, keys, tables and logs have RETAIN policies) and the credentials (they must belong to the
environment's account). Then it synthesizes once, into its own temporary directory (the user's cdk.out is
left alone), plans from that assembly: the stacks of stage `<bu>-<stage>`, ordered so a stack goes before
every stack it depends on.

Executing deletes one stack at a time with the CDK CLI on that same assembly (`cdk destroy --app <assembly>
<bu>-<stage>/<Stack> --exclusively --force`: no second synth) and handles what usually blocks deletion:
- before the stack that owns the VPC goes, it waits until SageMaker endpoint and Lambda network interfaces
  of that VPC are released (AWS removes them minutes after the endpoint / function);
- dev buckets empty themselves (autoDeleteObjects; `dev_buckets_without_auto_delete` checks the plan);
- afterwards it deletes log groups Lambda created outside CloudFormation (`/aws/lambda/<stack name>-*`, the
  CDK-managed providers' functions).
Usage: python -m tools.destroy_environment --bu retail --stage dev [--assembly DIR] [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stacks.settings import PlatformConfig, Stage
from stacks.settings.suggest import did_you_mean
from tools.cli import USAGE_ERROR, load_config_or_exit

STACK_ARTIFACT = "aws:cloudformation:stack"
DESTROYABLE_WITHOUT_OVERRIDE = {"dev"}
CDK = ["npx", "--no-install", "cdk"]
CDK_FLAGS = ["--no-notices", "--no-version-reporting", "--ci"]


class RefusedError(Exception):
    """The plan would delete an environment that must stay (or there is nothing to delete)."""


@dataclass(frozen=True)
class StackRef:
    artifact_id: str
    path: str  # construct path for the CLI, e.g. retail-dev/Serving
    stack_name: str
    account: str
    region: str
    dependencies: tuple[str, ...]  # artifact ids of stacks this one needs
    template_file: Path


@dataclass(frozen=True)
class DestroyPlan:
    stage_path: str
    stacks: tuple[StackRef, ...]  # deletion order

    @property
    def stack_names(self) -> list[str]:
        return [s.stack_name for s in self.stacks]


def stage_stacks(assembly: Path, stage_path: str) -> list[StackRef]:
    """The stacks of the nested assembly `assembly-<stage_path>`."""
    directory = assembly / f"assembly-{stage_path}"
    manifest_file = directory / "manifest.json"
    if not manifest_file.is_file():
        known = sorted(p.name.removeprefix("assembly-") for p in assembly.glob("assembly-*"))
        raise RefusedError(f"no stage {stage_path!r} in {assembly}; synthesized stages: {', '.join(known)}")
    artifacts: dict[str, Any] = json.loads(manifest_file.read_text(encoding="utf-8"))["artifacts"]
    stacks = []
    for artifact_id, artifact in artifacts.items():
        if artifact["type"] != STACK_ARTIFACT:
            continue
        account, region = artifact["environment"].removeprefix("aws://").split("/")
        stacks.append(
            StackRef(
                artifact_id=artifact_id,
                path=artifact.get("displayName", artifact_id),
                stack_name=artifact["properties"].get("stackName", artifact_id),
                account=account,
                region=region,
                dependencies=tuple(
                    d
                    for d in artifact.get("dependencies", [])
                    if artifacts.get(d, {}).get("type") == STACK_ARTIFACT
                ),
                template_file=directory / artifact["properties"]["templateFile"],
            )
        )
    return stacks


def deletion_order(stacks: Sequence[StackRef]) -> list[StackRef]:
    """Dependents before their dependencies; ties by name so the plan is stable."""
    remaining = {s.artifact_id: s for s in stacks}
    ordered: list[StackRef] = []
    while remaining:
        needed = {d for s in remaining.values() for d in s.dependencies}
        free = sorted(
            (s for s in remaining.values() if s.artifact_id not in needed), key=lambda s: s.stack_name
        )
        if not free:
            raise RefusedError(f"dependency cycle among {sorted(remaining)}")
        for stack in free:
            ordered.append(stack)
            del remaining[stack.artifact_id]
    return ordered


def check_stage(stage: str, *, force_retained: bool) -> None:
    if stage not in DESTROYABLE_WITHOUT_OVERRIDE and not force_retained:
        raise RefusedError(
            f"refusing to destroy stage {stage!r}: only dev environments are disposable. Pass --force-retained "
            "(make: DESTROY_FLAGS=--force-retained) to delete the stacks anyway; their buckets, keys, tables "
            "and log groups are retained (prod data stays)"
        )


def plan_destroy(
    assembly: Path, *, business_unit: str, stage: str, force_retained: bool = False
) -> DestroyPlan:
    check_stage(stage, force_retained=force_retained)
    stage_path = f"{business_unit}-{stage}"
    stacks = stage_stacks(assembly, stage_path)
    if not stacks:
        raise RefusedError(f"stage {stage_path!r} has no stacks")
    return DestroyPlan(stage_path=stage_path, stacks=tuple(deletion_order(stacks)))


def resources_of(stack: StackRef, kind: str) -> dict[str, Any]:
    template = json.loads(stack.template_file.read_text(encoding="utf-8"))
    return {k: v for k, v in template.get("Resources", {}).items() if v["Type"] == kind}


def dev_buckets_without_auto_delete(plan: DestroyPlan) -> list[str]:
    """Buckets that CloudFormation could not delete because nothing empties them first (should be none)."""
    missing = []
    for stack in plan.stacks:
        emptied = {
            json.dumps(r["Properties"]["BucketName"], sort_keys=True)
            for r in resources_of(stack, "Custom::S3AutoDeleteObjects").values()
        }
        for logical_id in resources_of(stack, "AWS::S3::Bucket"):
            if json.dumps({"Ref": logical_id}, sort_keys=True) not in emptied:
                missing.append(f"{stack.stack_name}/{logical_id}")
    return missing


def vpc_owner(plan: DestroyPlan) -> StackRef | None:
    return next((s for s in plan.stacks if resources_of(s, "AWS::EC2::VPC")), None)


# ---- execution (AWS) ----------------------------------------------------------------------------------


def wait_for_network_interfaces(
    ec2: Any, stack_name: str, *, timeout_s: int = 1800, poll_s: int = 30
) -> None:
    """SageMaker and Lambda release their ENIs in the VPC some minutes after the endpoint/function is gone."""
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:aws:cloudformation:stack-name", "Values": [stack_name]}])[
        "Vpcs"
    ]
    deadline = time.monotonic() + timeout_s
    for vpc in vpcs:
        while True:
            enis = ec2.describe_network_interfaces(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])[
                "NetworkInterfaces"
            ]
            busy = [e["NetworkInterfaceId"] for e in enis if e.get("RequesterManaged") or e.get("Attachment")]
            for eni in enis:  # detached leftovers that nobody manages any more
                if (
                    eni["NetworkInterfaceId"] not in busy
                    and eni["Status"] == "available"
                    and not eni.get("RequesterManaged")
                ):
                    ec2.delete_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"])
            if not busy:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"network interfaces still in use in {vpc['VpcId']}: {busy}")
            print(
                f"waiting for {len(busy)} network interface(s) in {vpc['VpcId']} to be released", flush=True
            )
            time.sleep(poll_s)


def delete_orphan_log_groups(logs: Any, stack_name: str) -> list[str]:
    deleted = []
    paginator = logs.get_paginator("describe_log_groups")
    for page in paginator.paginate(logGroupNamePrefix=f"/aws/lambda/{stack_name}-"):
        for group in page["logGroups"]:
            logs.delete_log_group(logGroupName=group["logGroupName"])
            deleted.append(group["logGroupName"])
    return deleted


def execute(
    plan: DestroyPlan,
    *,
    assembly: Path,
    run: Callable[[list[str]], int] = lambda cmd: subprocess.call(cmd),  # noqa: S603 (fixed argv, no shell)
    session_factory: Callable[[str], Any] | None = None,
) -> None:
    if session_factory is None:
        import boto3

        def session_factory(region: str) -> Any:
            return boto3.session.Session(region_name=region)

    owner = vpc_owner(plan)
    for stack in plan.stacks:
        session = session_factory(stack.region)
        if owner is not None and stack.artifact_id == owner.artifact_id:
            wait_for_network_interfaces(session.client("ec2"), stack.stack_name)
        # --app <assembly directory>: the CLI reads the synthesized assembly instead of running the app again
        command = [
            *CDK,
            "destroy",
            "--app",
            str(assembly),
            stack.path,
            "--exclusively",
            "--force",
            *CDK_FLAGS,
        ]
        print("+", " ".join(command), flush=True)
        if run(command) != 0:
            raise SystemExit(
                f"cdk destroy failed for {stack.stack_name}; fix the cause and run make destroy again"
            )
        for group in delete_orphan_log_groups(session.client("logs"), stack.stack_name):
            print(f"deleted log group {group}", flush=True)


def caller_account(session_factory: Callable[[str], Any], region: str) -> str:
    """The account of the credentials in use; a one-line RefusedError when there are none that work."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return str(session_factory(region).client("sts").get_caller_identity()["Account"])
    except (BotoCoreError, ClientError) as error:
        raise RefusedError(f"no usable AWS credentials ({error}); set AWS_PROFILE or log in first") from None


def synthesize(config_path: str, outdir: Path, run: Callable[[list[str]], int]) -> None:
    command = [*CDK, "synth", "--quiet", *CDK_FLAGS, "-o", str(outdir), "-c", f"config={config_path}"]
    print("+", " ".join(command), flush=True)
    if run(command) != 0:
        raise SystemExit(1)


def check_request(config: PlatformConfig, *, business_unit: str, stage: str, force_retained: bool) -> str:
    """The account of the environment to destroy, after the checks that need no AWS call."""
    names = [bu.name for bu in config.business_units]
    if business_unit not in names:
        raise RefusedError(
            f"--bu: no business unit {business_unit!r} in the config{did_you_mean(business_unit, names)}; "
            f"known: {', '.join(names)}"
        )
    check_stage(stage, force_retained=force_retained)
    return config.environment(config.business_unit(business_unit), Stage(stage)).account


def main(
    argv: Sequence[str] | None = None,
    *,
    run: Callable[[list[str]], int] = lambda cmd: subprocess.call(cmd),  # noqa: S603 (fixed argv, no shell)
    session_factory: Callable[[str], Any] | None = None,
) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bu", required=True, help="business unit name")
    parser.add_argument("--stage", required=True, choices=["dev", "preprod", "prod"])
    parser.add_argument(
        "--assembly", type=Path, help="use this synthesized cloud assembly instead of synthesizing one"
    )
    parser.add_argument("--config", default="config/platform.yaml")
    parser.add_argument("--force-retained", action="store_true", help="allow preprod/prod (data is retained)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan only (no AWS call)")
    args = parser.parse_args(argv)
    config = load_config_or_exit(args.config)
    if session_factory is None:
        import boto3

        def session_factory(region: str) -> Any:
            return boto3.session.Session(region_name=region)

    workdir: Path | None = None
    try:
        account = check_request(
            config, business_unit=args.bu, stage=args.stage, force_retained=args.force_retained
        )
        if not args.dry_run:
            region = config.environment(config.business_unit(args.bu), Stage(args.stage)).region
            found = caller_account(session_factory, region)
            if found != account:
                raise RefusedError(
                    f"the credentials in use belong to account {found}, but {args.bu}-{args.stage} lives in "
                    f"{account}; use credentials for {account}"
                )
        assembly = args.assembly
        if assembly is None:
            workdir = Path(tempfile.mkdtemp(prefix=f"destroy-{args.bu}-{args.stage}-"))
            assembly = workdir / "cdk.out"
            synthesize(args.config, assembly, run)
        plan = plan_destroy(
            assembly, business_unit=args.bu, stage=args.stage, force_retained=args.force_retained
        )
        print(f"destroy {plan.stage_path}, in this order: {', '.join(plan.stack_names)}")
        unemptied = dev_buckets_without_auto_delete(plan) if args.stage == "dev" else []
        if unemptied:
            raise RefusedError(f"buckets without auto-delete (deletion would fail): {', '.join(unemptied)}")
        if not args.dry_run:
            execute(plan, assembly=assembly, run=run, session_factory=session_factory)
    except RefusedError as error:
        print(error, file=sys.stderr)
        return USAGE_ERROR
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
