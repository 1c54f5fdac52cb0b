"""Every command README.md and docs/ print works as printed (tests/doc_commands.py finds them).

Accepted forms and what each gets (a form not listed here fails the test with this list):
- `make TARGET [VAR=value ...]`: the target exists and its recipe expands (`make -n`); the cheap, offline ones
  (RUN_MAKE_TARGETS) run for real and must exit 0. `make` alone: the Makefile has a default target.
- `npx cdk deploy|diff|destroy|list|synth PATTERN ... [-c config=FILE]`: the stack selection is what the CLI
  selects from the synthesized assembly of that config (`cdk list PATTERN` selects at least one stack);
  `-c config=FILE` must load. `npx cdk bootstrap aws://ACCOUNT/REGION ...`: the exact line `make
  bootstrap-commands` prints for the default or sandbox config. A bare `cdk VERB` (or `npx cdk`) is a mention
  of a verb the CLI has (CDK_VERBS), checked against that list.
- `python|.venv/bin/python -m MODULE ARGS` and `... bench/FILE.py ARGS` (also after `cd DIR &&`): the module
  or file exists (modules under the repo root or lambdas/), `--help` exits 0, and every `--option` printed
  appears in that help (bench/gpu/ scripts run on the GPU machine with their own requirements: the file must
  exist). Tools that need no AWS account and no deployment (RUN_TOOLS) run for real, exit 0.
- `aws SERVICE OPERATION [--param ...]`: needs an account, so not run; the operation and every `--param` exist
  in botocore's model of the service.
- `npm ci`, `pip install ...`: package installs (network), not run. `.ci/run`: exists and is executable.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import botocore.session
import pytest

from tests.cdk_cli import cli_env, listed_stacks
from tests.conftest import SynthesizedPlatform
from tests.doc_commands import REPO_ROOT, DocCommand, all_commands
from tools.bootstrap_commands import bootstrap_commands

ALL_COMMANDS = all_commands()
# one check per distinct command (the first place that prints it names the test)
COMMANDS = list({c.normalized: c for c in reversed(ALL_COMMANDS)}.values())[::-1]
RUN_MAKE_TARGETS = {"bootstrap-commands", "cost", "check-config"}
RUN_TOOLS = {"tools.check_config", "tools.serving_cost", "tools.bootstrap_commands"}
CDK_VERBS = {"deploy", "diff", "destroy", "list", "ls", "synth", "bootstrap", "flags"}
ACCEPTED_FORMS = __doc__


def run(args: list[str], cwd: Path = REPO_ROOT, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=cli_env(), capture_output=True, text=True, check=False, timeout=timeout
    )


def test_the_docs_print_commands_to_check() -> None:
    """The extractor finds the README's two commands, so an empty extraction cannot pass silently."""
    texts = {c.text for c in ALL_COMMANDS}
    assert {"make synth", "make test", "npx cdk deploy '<prefix>-*-pipeline'"} <= texts
    assert len(COMMANDS) > 20


def check_make(command: DocCommand, words: list[str]) -> None:
    targets = [w for w in words[1:] if "=" not in w]
    variables = [w for w in words[1:] if "=" in w]
    assert all(re.fullmatch(r"[A-Z_]+=\S*", v) for v in variables), f"{command.source}: {command.text}"
    result = run(["make", "-n", *targets, *variables])
    assert result.returncode == 0, f"{command.source}: `{command.text}`: {result.stderr.strip()}"
    if targets and set(targets) <= RUN_MAKE_TARGETS:
        result = run(["make", "-s", *targets, *variables])
        assert result.returncode == 0, (
            f"{command.source}: `{command.text}` exits {result.returncode}: {result.stderr}"
        )


def check_cdk(command: DocCommand, words: list[str], platforms: dict[str, SynthesizedPlatform]) -> None:
    if words in (["npx", "cdk"], ["cdk"]):
        return  # the CLI named in prose
    verb = words[2] if words[:2] == ["npx", "cdk"] else words[1]
    assert verb in CDK_VERBS, f"{command.source}: unknown cdk verb {verb!r}"
    args = words[3:] if words[0] == "npx" else words[2:]
    if not args:
        return  # a mention of the verb in prose
    if verb == "bootstrap":
        printed = {
            line
            for config in platforms.values()
            for line in bootstrap_commands(config.config)
            if line.startswith("npx cdk bootstrap")
        }
        assert command.normalized in printed, f"{command.source}: not what make bootstrap-commands prints"
        return
    config = "config/platform.yaml"
    patterns: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg in ("-c", "--context"):
            key, _, value = args[index + 1].partition("=")
            if key == "config":
                config = value
            index += 2
            continue
        if not arg.startswith("-"):
            patterns.append(arg)
        index += 1
    assert config in platforms, f"{command.source}: no synthesized assembly for {config}"
    if verb == "synth" and not patterns:
        return
    selected = listed_stacks(platforms[config].outdir, *patterns)
    assert selected, f"{command.source}: `{command.text}` selects no stack"


def check_python(command: DocCommand, words: list[str], cwd: Path) -> None:
    if words[1] == "-m":
        module, rest = words[2], words[3:]
        roots = [cwd, REPO_ROOT / "lambdas"]
        found = [root for root in roots if (root / Path(*module.split("."))).with_suffix(".py").is_file()
                 or (root / Path(*module.split(".")) / "__main__.py").is_file()]  # fmt: skip
        assert found, f"{command.source}: no module {module}"
        target = ["-m", module]
        cwd = found[0]
    else:
        script, rest = words[1], words[2:]
        assert (cwd / script).is_file(), f"{command.source}: no file {script}"
        if script.startswith("bench/gpu/"):
            return  # runs on the GPU machine with its own requirements (bench/gpu); the file must exist
        target = [script]
    help_result = run([sys.executable, *target, "--help"], cwd=cwd)
    assert help_result.returncode == 0, f"{command.source}: `{' '.join(target)} --help` fails"
    for option in (w.split("=")[0] for w in rest if w.startswith("--")):
        assert option in help_result.stdout, f"{command.source}: {option} is not an option of {target[-1]}"
    if target[0] == "-m" and target[1] in RUN_TOOLS and not command.needs_deployment_values:
        result = run([sys.executable, *target, *rest], cwd=cwd)
        assert result.returncode == 0, (
            f"{command.source}: `{command.text}` exits {result.returncode}: {result.stderr}"
        )


def check_aws(command: DocCommand, words: list[str]) -> None:
    session = botocore.session.get_session()
    service, operation = words[1], words[2]
    model = session.get_service_model(service)
    by_cli_name = {re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower(): name for name in model.operation_names}
    assert operation in by_cli_name, f"{command.source}: aws {service} has no operation {operation}"
    members = model.operation_model(by_cli_name[operation]).input_shape.members
    parameters = {re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower() for name in members}
    for option in (w.removeprefix("--") for w in words[3:] if w.startswith("--")):
        assert option in parameters, f"{command.source}: --{option} is not a parameter of {operation}"


@pytest.fixture(scope="module")
def platforms(
    default_platform: SynthesizedPlatform, sandbox_platform: SynthesizedPlatform
) -> dict[str, SynthesizedPlatform]:
    return {"config/platform.yaml": default_platform, "config/sandbox.yaml": sandbox_platform}


@pytest.mark.parametrize("command", COMMANDS, ids=[f"{c.source} {c.text}"[:90] for c in COMMANDS])
def test_documented_command_works_as_printed(
    command: DocCommand, platforms: dict[str, SynthesizedPlatform]
) -> None:
    words = command.words()
    cwd = REPO_ROOT
    if words[0] == "cd" and "&&" in words:
        cwd = REPO_ROOT / words[1]
        assert cwd.is_dir(), f"{command.source}: no directory {words[1]}"
        words = words[words.index("&&") + 1 :]
    head = words[0]
    if head == "make":
        check_make(command, words)
    elif head == "cdk" or words[:2] == ["npx", "cdk"]:
        check_cdk(command, words, platforms)
    elif head in ("python", ".venv/bin/python"):
        check_python(command, words, cwd)
    elif head == "aws":
        check_aws(command, words)
    elif head in ("npm", "pip") and len(words) > 1 and words[1] in ("ci", "install"):
        pass  # package installs need the network; Makefile bootstraps run them
    elif head == ".ci/run":
        assert os.access(REPO_ROOT / ".ci" / "run", os.X_OK)
    else:
        pytest.fail(
            f"{command.source}: `{command.text}` is not a command form this test knows:\n{ACCEPTED_FORMS}"
        )
