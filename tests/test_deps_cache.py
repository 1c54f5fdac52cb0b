"""tools/deps_cache.py: a dependency folder is published whole or not at all, and built once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.deps_cache import build_once

MARKER = ".complete"


def test_a_build_publishes_what_fill_wrote_with_the_marker_and_leaves_no_staging(tmp_path: Path) -> None:
    target = tmp_path / "cache" / "abc123"
    built = build_once(
        target, cache=tmp_path / "cache", marker=MARKER, fill=lambda d: (d / "wheel.whl").write_text("w")
    )
    assert built == target
    assert sorted(p.name for p in target.iterdir()) == [MARKER, "wheel.whl"]
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["abc123"]


def test_a_complete_folder_is_reused_without_building(tmp_path: Path) -> None:
    target = tmp_path / "abc123"
    target.mkdir()
    (target / MARKER).touch()

    def fill(_: Path) -> None:
        pytest.fail("a complete folder must not be built again")

    assert build_once(target, cache=tmp_path, marker=MARKER, fill=fill) == target


def test_a_folder_without_the_marker_is_replaced(tmp_path: Path) -> None:
    target = tmp_path / "abc123"
    target.mkdir()
    (target / "half-written.whl").write_text("cut short")
    build_once(target, cache=tmp_path, marker=MARKER, fill=lambda d: (d / "wheel.whl").write_text("w"))
    assert sorted(p.name for p in target.iterdir()) == [MARKER, "wheel.whl"]


def test_a_failed_build_leaves_no_target_and_no_staging(tmp_path: Path) -> None:
    def fill(staging: Path) -> None:
        (staging / "partial.whl").write_text("p")
        raise RuntimeError("pip failed")

    with pytest.raises(RuntimeError, match="pip failed"):
        build_once(tmp_path / "abc123", cache=tmp_path, marker=MARKER, fill=fill)
    assert list(tmp_path.iterdir()) == []
