"""One folder of built dependencies per requirements hash, published only once complete."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def build_once(target: Path, *, cache: Path, marker: str, fill: Callable[[Path], None]) -> Path:
    """`target` as it is when it holds `marker`; else `fill` writes a staging folder in `cache` that then
    replaces `target`. A build that fails or is cut short leaves no `target` a later synth would trust."""
    if (target / marker).is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as staging:
        fill(Path(staging))
        (Path(staging) / marker).touch()
        if target.exists():
            shutil.rmtree(target)
        Path(staging).rename(target)
        Path(staging).mkdir()  # TemporaryDirectory cleans up the (now empty) path it created
    return target
