"""Where the platform's construct building goes: jsii round trips per call site, and CPU per stack.

Builds the default platform once in this process (as `cdk synth` runs `app.py`, cdk-nag attached), with
- every request Python sends to the jsii Node process counted (the kernel's `send`: object creations, method
  calls, property reads, and the answers to Node's callbacks), each attributed to the innermost line of this
  repository's code that caused it, and to the stack class being built at the time;
- each of our stack classes' construction timed: Python CPU (process time) and the jsii Node process's CPU
  (user + system ticks from /proc, Linux only), exclusive of stacks built inside it;
- the app's synthesis (`app.synth()`: validation, cdk-nag, writing the assembly) timed the same way;
- each request's wall time from Python's send to Node's answer, per jsii member and per call site: Node's work
  for that request plus the transfer, i.e. which calls the Node side spends its time on (CDK Pipelines'
  `addStage` synthesizes a whole Stage, an L2 constructor builds its resources, a getter costs a transfer).

Round-trip counts are exact and repeatable; CPU seconds move with machine load (the load average is printed).
It runs under the interpreter flags of cdk.json's `app` command (`python -O`), as `cdk synth` runs the app:
started without them, it starts itself again with them.

    .venv/bin/python bench/construct_profile.py [--config config/platform.yaml] [--top 25] [--json FILE]
"""

from __future__ import annotations

import argparse
import collections
import inspect
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

_OWN_CODE = (str(REPO_ROOT / "stacks") + os.sep, str(REPO_ROOT / "app.py"))
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
OUTSIDE_STACKS = "(outside our stacks' constructors)"


@dataclass
class Cost:
    round_trips: int = 0
    python_cpu: float = 0.0
    node_cpu: float = 0.0
    instances: int = 0


@dataclass
class Profile:
    round_trips: int = 0
    by_kind: collections.Counter[str] = field(default_factory=collections.Counter)
    # "Get account", "Invoke addToPrincipalPolicy", "Create aws-cdk-lib.aws_iam.PolicyStatement", ...
    by_member: collections.Counter[str] = field(default_factory=collections.Counter)
    by_member_and_site: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    by_call_site: collections.Counter[str] = field(default_factory=collections.Counter)
    # seconds from sending a request to its answer (Node's work + transfer), per member and per call site
    seconds_by_member: dict[str, float] = field(default_factory=lambda: collections.defaultdict(float))
    seconds_by_call_site: dict[str, float] = field(default_factory=lambda: collections.defaultdict(float))
    by_stack: dict[str, Cost] = field(default_factory=lambda: collections.defaultdict(Cost))
    phases: dict[str, Cost] = field(default_factory=dict)


def _tree_cpu(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants (/proc/PID/stat fields 14 and 15).

    The jsii runtime that Python starts is a small launcher; the kernel runs in a child Node process.
    """
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    seconds = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text(encoding="ascii").split():
            seconds += _tree_cpu(int(child))
    return seconds


def _call_site() -> str:
    """The innermost frame of this repository's stack code that led to the current jsii request."""
    frame = inspect.currentframe()
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.startswith(_OWN_CODE):
            relative = os.path.relpath(filename, REPO_ROOT)
            return f"{relative}:{frame.f_lineno} {frame.f_code.co_name}"
        frame = frame.f_back
    return "(outside stacks/: CDK, cdk-nag or jsii itself)"


class Recorder:
    def __init__(self) -> None:
        self.profile = Profile()
        self._stack_names: list[str] = [OUTSIDE_STACKS]
        self._node_pid: int | None = None

    def node_cpu(self) -> float:
        if self._node_pid is None:
            from jsii._kernel import Kernel

            self._node_pid = Kernel().provider._process._process.pid  # type: ignore[attr-defined]
        return _tree_cpu(self._node_pid)

    def install(self) -> None:
        from jsii._kernel.providers.process import _NodeProcess

        original_send = _NodeProcess.send
        profile = self.profile

        def counting_send(process: Any, request: Any, response_type: Any) -> Any:
            profile.round_trips += 1
            kind = type(request).__name__.removesuffix("Request")
            profile.by_kind[kind] += 1
            member = (
                getattr(request, "property", None)
                or getattr(request, "method", None)
                or getattr(request, "fqn", "")
            )
            profile.by_member[f"{kind} {member}"] += 1
            site = _call_site()
            profile.by_call_site[site] += 1
            profile.by_member_and_site[(f"{kind} {member}", site)] += 1
            profile.by_stack[self._stack_names[-1]].round_trips += 1
            started = time.perf_counter()
            try:
                return original_send(process, request, response_type)
            finally:
                elapsed = time.perf_counter() - started
                profile.seconds_by_member[f"{kind} {member}"] += elapsed
                profile.seconds_by_call_site[site] += elapsed

        _NodeProcess.send = counting_send  # type: ignore[method-assign,assignment]

    @contextmanager
    def timed(self, cost: Cost) -> Iterator[None]:
        python_start, node_start = time.process_time(), self.node_cpu()
        try:
            yield
        finally:
            cost.python_cpu += time.process_time() - python_start
            cost.node_cpu += self.node_cpu() - node_start

    def wrap_stack_class(self, cls: type) -> None:
        """Time `cls.__init__`, exclusive of stacks constructed inside it."""
        original_init: Callable[..., None] = cls.__dict__["__init__"]
        name = cls.__name__

        def timed_init(instance: Any, *args: Any, **kwargs: Any) -> None:
            if type(instance) is not cls:  # a subclass's super().__init__: its own wrapper times it
                original_init(instance, *args, **kwargs)
                return
            outer = self.profile.by_stack[self._stack_names[-1]]
            root = self.profile.by_stack[self._stack_names[0]]
            own = self.profile.by_stack[name]
            own.instances += 1
            python_start, node_start = time.process_time(), self.node_cpu()
            self._stack_names.append(name)
            try:
                original_init(instance, *args, **kwargs)
            finally:
                self._stack_names.pop()
                python, node = time.process_time() - python_start, self.node_cpu() - node_start
                own.python_cpu += python
                own.node_cpu += node
                if outer is not root:  # keep the outer stack's time exclusive
                    outer.python_cpu -= python
                    outer.node_cpu -= node

        cls.__init__ = timed_init  # type: ignore[misc]


def _stack_classes() -> list[type]:
    """Every Stack subclass defined in the modules of stacks/ (imported here so all of them are found)."""
    import importlib
    import pkgutil

    from aws_cdk import Stack

    import stacks

    for module in pkgutil.walk_packages(stacks.__path__, "stacks."):
        importlib.import_module(module.name)
    found: list[type] = []
    pending = list(Stack.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__.startswith("stacks.") and "__init__" in cls.__dict__:
            found.append(cls)
    return found


def run(config_path: str) -> Profile:
    recorder = Recorder()
    recorder.install()
    # imported after the kernel is patched: aws_cdk's import itself is a round trip
    from stacks.app_factory import compose, create_app
    from stacks.settings import load_config

    for cls in _stack_classes():
        recorder.wrap_stack_class(cls)
    profile = recorder.profile
    with tempfile.TemporaryDirectory() as outdir:
        config = load_config(config_path)
        app = create_app(outdir=outdir, context={"config": config_path})
        build = profile.phases["build the platform (compose)"] = Cost()
        with recorder.timed(build):
            trips_before = profile.round_trips
            compose(app, config)
            build.round_trips = profile.round_trips - trips_before
        synth = profile.phases["synthesize (app.synth: validation, cdk-nag, writing)"] = Cost()
        with recorder.timed(synth):
            trips_before = profile.round_trips
            app.synth()
            synth.round_trips = profile.round_trips - trips_before
    # what no stack constructor spent: stages, pipelines' add_stage, cdk-nag, the synthesis itself
    outside = profile.by_stack[OUTSIDE_STACKS]
    stacks_only = [cost for name, cost in profile.by_stack.items() if name != OUTSIDE_STACKS]
    outside.python_cpu = sum(c.python_cpu for c in profile.phases.values()) - sum(
        c.python_cpu for c in stacks_only
    )
    outside.node_cpu = sum(c.node_cpu for c in profile.phases.values()) - sum(c.node_cpu for c in stacks_only)
    return profile


def _largest(seconds: dict[str, float], top: int | None = None) -> list[tuple[str, float]]:
    return sorted(seconds.items(), key=lambda item: -item[1])[:top]


def _report(profile: Profile, top: int, members: list[str]) -> str:
    lines = [f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", ""]
    lines.append(f"{'phase':<56} {'round trips':>11} {'Python CPU':>10} {'Node CPU':>9}")
    for name, cost in profile.phases.items():
        lines.append(f"{name:<56} {cost.round_trips:>11} {cost.python_cpu:>9.2f}s {cost.node_cpu:>8.2f}s")
    kinds = ", ".join(f"{kind} {count}" for kind, count in profile.by_kind.most_common())
    lines += ["", f"round trips in all: {profile.round_trips} ({kinds})", ""]
    lines.append(
        f"{'stack class (exclusive)':<34} {'stacks':>6} {'round trips':>11} {'Python CPU':>10} {'Node CPU':>9}"
    )
    for name, cost in sorted(profile.by_stack.items(), key=lambda item: -item[1].round_trips):
        lines.append(
            f"{name:<34} {cost.instances:>6} {cost.round_trips:>11} {cost.python_cpu:>9.2f}s {cost.node_cpu:>8.2f}s"
        )
    lines += ["", f"top {top} members (round trips):"]
    lines += [f"{count:>7}  {member}" for member, count in profile.by_member.most_common(top)]
    lines += ["", f"top {top} call sites (round trips):"]
    lines += [f"{count:>7}  {site}" for site, count in profile.by_call_site.most_common(top)]
    waited = sum(profile.seconds_by_member.values())
    lines += ["", f"top {top} members by time waiting for Node (wall; {waited:.2f} s in all):"]
    lines += [
        f"{seconds:>7.3f}s {profile.by_member[member]:>6}x  {member}"
        for member, seconds in _largest(profile.seconds_by_member, top)
    ]
    lines += ["", f"top {top} call sites by time waiting for Node (wall):"]
    lines += [
        f"{seconds:>7.3f}s {profile.by_call_site[site]:>6}x  {site}"
        for site, seconds in _largest(profile.seconds_by_call_site, top)
    ]
    for member in members:
        sites = [
            (site, n) for (m, site), n in profile.by_member_and_site.most_common() if m.endswith(f" {member}")
        ]
        lines += ["", f"call sites of {member} ({sum(n for _, n in sites)} round trips):"]
        lines += [f"{count:>7}  {site}" for site, count in sites[:top]]
    return "\n".join(lines)


def _run_as_cdk_synth_does(argv: list[str] | None) -> None:
    """Start again under cdk.json's interpreter flags (e.g. -O: no jsii runtime type checks) if not under them."""
    from bench.platform_synth_bench import interpreter_flags

    flags = interpreter_flags()
    if "-O" in flags and not sys.flags.optimize:
        arguments = sys.argv[1:] if argv is None else argv
        os.execv(sys.executable, [sys.executable, *flags, str(Path(__file__).resolve()), *arguments])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config/platform.yaml", help="platform config to build")
    parser.add_argument("--top", type=int, default=25, help="how many call sites to list")
    parser.add_argument(
        "--member",
        action="append",
        default=[],
        help="also list the call sites of this jsii member (repeatable)",
    )
    parser.add_argument("--json", type=Path, help="also write the whole profile to this JSON file")
    args = parser.parse_args(argv)
    if args.top < 1:
        parser.error("--top: must be at least 1")
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    from stacks.settings import ConfigError, load_config

    try:
        load_config(args.config)  # refuse a bad config before starting the jsii Node process
    except ConfigError as error:
        print(f"--config: {error}", file=sys.stderr)
        return 2
    _run_as_cdk_synth_does(argv)
    profile = run(args.config)
    print(_report(profile, args.top, args.member))
    if args.json:
        payload = {
            "round_trips": profile.round_trips,
            "by_kind": dict(profile.by_kind),
            "by_member": dict(profile.by_member.most_common()),
            "phases": {name: asdict(cost) for name, cost in profile.phases.items()},
            "by_stack": {name: asdict(cost) for name, cost in profile.by_stack.items()},
            "by_call_site": dict(profile.by_call_site.most_common()),
            "seconds_by_member": dict(_largest(profile.seconds_by_member)),
            "seconds_by_call_site": dict(_largest(profile.seconds_by_call_site)),
        }
        args.json.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
