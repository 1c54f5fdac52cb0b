"""Optimized bytecode (`.opt-1.pyc`) for every installed module `cdk synth` loads, written once at bootstrap.

cdk.json runs the app as `python -O app.py`: optimized mode skips the runtime type checks that jsii's generated
bindings run on every call into the CDK (typeguard and `typing.get_type_hints`, guarded by `__debug__`), about
a CPU-second per synth (docs/PERFORMANCE.md). Python looks for `.opt-1.pyc` files in that mode, which pip does
not write; without them every synth would compile aws-cdk-lib's bindings again wherever bytecode is not
written back (PYTHONDONTWRITEBYTECODE, a read-only install) or compile them on the first synth (a fresh CI
build). This tool imports the app as a synth does and compiles exactly the installed modules that loaded, not
this repository's own (they change with every edit): about 650 files, where compiling all of aws-cdk-lib's
677 modules would take 20 s of CPU.

    python -m tools.compile_synth_bytecode      # `make bootstrap` runs it after installing the packages
"""

from __future__ import annotations

import argparse
import importlib.util
import py_compile
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
OPTIMIZATION = 1  # `python -O`


def installed_sources(
    modules: Iterable[object], repo_root: Path = REPO_ROOT, environment: Path = Path(sys.prefix)
) -> list[Path]:
    """The `.py` files of `modules` that are installed (the virtualenv, the standard library), not this
    repository's own code, even where the virtualenv lies inside the repository."""
    repo_root, environment = repo_root.resolve(), environment.resolve()
    sources: set[Path] = set()
    for module in modules:
        file = getattr(module, "__file__", None)
        if not file or not file.endswith(".py"):
            continue  # built-in, extension or namespace module: nothing to compile
        path = Path(file).resolve()
        if path.is_relative_to(environment) or not path.is_relative_to(repo_root):
            sources.add(path)
    return sorted(sources)


def is_current(bytecode: Path, source: Path) -> bool:
    """Whether `bytecode` is what Python would load for `source`: this interpreter's magic number, and the
    source's modification time and size in its header (the default, timestamp-checked kind of .pyc)."""
    try:
        header = bytecode.read_bytes()[:16]
    except FileNotFoundError:
        return False
    stat = source.stat()
    return (
        len(header) == 16
        and header[:4] == importlib.util.MAGIC_NUMBER
        and int.from_bytes(header[4:8], "little") == 0
        and int.from_bytes(header[8:12], "little") == int(stat.st_mtime) & 0xFFFFFFFF
        and int.from_bytes(header[12:16], "little") == stat.st_size & 0xFFFFFFFF
    )


def compile_optimized(sources: Iterable[Path]) -> tuple[int, list[Path]]:
    """Write each source's `.opt-1.pyc` where it is missing or stale: (files written, sources not writable)."""
    written, unwritable = 0, []
    for source in sources:
        target = Path(importlib.util.cache_from_source(str(source), optimization=OPTIMIZATION))
        if is_current(target, source):
            continue
        try:
            py_compile.compile(str(source), cfile=str(target), doraise=True, optimize=OPTIMIZATION)
        except PermissionError:
            unwritable.append(source)  # e.g. a system Python's standard library: compiled on each run instead
            continue
        written += 1
    return written, unwritable


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    sys.path.insert(0, str(REPO_ROOT))
    # what `app.py` imports, plus the assembly module that `app.synth()` loads on return
    import aws_cdk.cx_api  # noqa: F401

    import app  # noqa: F401

    sources = installed_sources(list(sys.modules.values()))
    written, unwritable = compile_optimized(sources)
    print(f"optimized bytecode: {written} written, {len(sources) - written - len(unwritable)} up to date")
    if unwritable:
        print(
            f"optimized bytecode: {len(unwritable)} modules not writable (compiled on every synth instead),"
            f" e.g. {unwritable[0]}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
