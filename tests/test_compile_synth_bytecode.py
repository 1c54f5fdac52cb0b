"""`make bootstrap` compiles optimized bytecode for the installed modules the synth loads, because cdk.json
runs the app as `python -O app.py` (tools/compile_synth_bytecode.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import py_compile
import shlex
import subprocess
import sys
import types
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.stacks.test_pipelines import load_bench
from tools.compile_synth_bytecode import compile_optimized, installed_sources, is_current


def module(name: str, file: Path | None) -> types.ModuleType:
    made = types.ModuleType(name)
    if file is not None:
        made.__file__ = str(file)
    return made


def opt_pyc(source: Path) -> Path:
    return Path(importlib.util.cache_from_source(str(source), optimization=1))


def test_installed_modules_are_compiled_and_the_repositorys_own_are_not(tmp_path: Path) -> None:
    repo, outside = tmp_path / "repo", tmp_path / "elsewhere" / "lib.py"
    venv_module = repo / ".venv" / "lib" / "site-packages" / "pkg" / "__init__.py"
    own = repo / "stacks" / "stack.py"
    modules = [
        module("pkg", venv_module),
        module("lib", outside),
        module("stacks.stack", own),
        module("builtin", None),
        module("extension", tmp_path / "ext.cpython-311-x86_64-linux-gnu.so"),
    ]
    assert installed_sources(modules, repo_root=repo, environment=repo / ".venv") == sorted(
        [venv_module, outside]
    )


def test_compiles_optimized_bytecode_once_and_again_when_the_source_changes(tmp_path: Path) -> None:
    source = tmp_path / "pkg" / "mod.py"
    source.parent.mkdir()
    source.write_text("def f(x):\n    assert x\n    return x\n")
    assert compile_optimized([source]) == (1, [])
    target = opt_pyc(source)
    assert target.name.endswith(".opt-1.pyc") and is_current(target, source)
    assert compile_optimized([source]) == (0, [])  # up to date: nothing written
    source.write_text("def f(x):\n    return x + 1\n")
    os.utime(source, (source.stat().st_atime, source.stat().st_mtime + 5))
    assert not is_current(target, source)
    assert compile_optimized([source]) == (1, [])
    # the written file is what `python -O` loads: it imports without compiling (bytecode writing off)
    result = subprocess.run(
        [sys.executable, "-O", "-B", "-c", "import mod; print(mod.f(1), mod.__cached__)"],
        cwd=source.parent,
        env={**os.environ, "PYTHONPATH": str(source.parent)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.split() == ["2", str(target)]


def test_bytecode_of_another_interpreter_or_kind_is_not_current(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text("x = 1\n")
    compile_optimized([source])
    target = opt_pyc(source)
    data = bytearray(target.read_bytes())
    data[0] ^= 0xFF  # another Python's magic number
    target.write_bytes(bytes(data))
    assert not is_current(target, source)
    target.write_bytes(b"short")
    assert not is_current(target, source)


def test_a_read_only_install_is_reported_not_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writable, read_only = tmp_path / "a.py", tmp_path / "ro" / "b.py"
    read_only.parent.mkdir()
    for source in (writable, read_only):
        source.write_text("x = 1\n")
    real_compile = py_compile.compile

    def compile_unless_read_only(file: str, **kwargs: object) -> object:
        if Path(file).parent.name == "ro":  # what a root-owned system install raises for a user
            raise PermissionError(13, "Permission denied", kwargs["cfile"])
        return real_compile(file, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(py_compile, "compile", compile_unless_read_only)
    assert compile_optimized([read_only, writable]) == (1, [read_only])
    assert is_current(opt_pyc(writable), writable) and not opt_pyc(read_only).exists()


def test_the_app_runs_optimized_and_the_bench_runs_both_apps_with_its_flags() -> None:
    command = shlex.split(json.loads((REPO_ROOT / "cdk.json").read_text())["app"])
    assert command[1:] == ["-O", "app.py"]
    assert load_bench().interpreter_flags() == ["-O"]


def test_the_bench_refuses_an_app_command_it_cannot_reproduce(tmp_path: Path) -> None:
    (tmp_path / "cdk.json").write_text(json.dumps({"app": "node app.js"}))
    with pytest.raises(SystemExit, match="app must be"):
        load_bench().interpreter_flags(tmp_path)


def test_the_construct_profile_restarts_under_cdk_jsons_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location(
        "construct_profile", REPO_ROOT / "bench" / "construct_profile.py"
    )
    assert spec is not None and spec.loader is not None
    profile = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = profile  # its dataclasses look their module up
    spec.loader.exec_module(profile)
    started: list[list[str]] = []
    monkeypatch.setattr(os, "execv", lambda path, args: started.append(args))
    monkeypatch.setattr(sys, "flags", types.SimpleNamespace(optimize=0, verbose=0))
    profile._run_as_cdk_synth_does(["--top", "3"])
    assert started == [
        [sys.executable, "-O", str(REPO_ROOT / "bench" / "construct_profile.py"), "--top", "3"]
    ]
    monkeypatch.setattr(sys, "flags", types.SimpleNamespace(optimize=1, verbose=0))
    profile._run_as_cdk_synth_does(["--top", "3"])
    assert len(started) == 1  # already optimized: runs on
