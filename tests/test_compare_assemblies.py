"""bench/compare_assemblies.py --repackaged-assets: passes a folder asset packed as a zip, and nothing else."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

from bench.compare_assemblies import main, repackaging_problems

OLD = "a" * 64
NEW = "b" * 64


def assembly(root: Path, *, zipped: bool, files: dict[str, bytes], extra_property: str = "") -> Path:
    """A one-stack assembly whose template references one layer asset, as a folder or as a zip file."""
    root.mkdir()
    asset_hash = NEW if zipped else OLD
    if zipped:
        with zipfile.ZipFile(root / f"asset.{asset_hash}.zip", "w") as archive:
            for name, data in files.items():
                info = zipfile.ZipInfo(name)
                info.external_attr = 0o100644 << 16
                archive.writestr(info, data)
    else:
        for name, data in files.items():
            (root / f"asset.{asset_hash}" / name).parent.mkdir(parents=True, exist_ok=True)
            (root / f"asset.{asset_hash}" / name).write_bytes(data)
            (root / f"asset.{asset_hash}" / name).chmod(0o644)
    template = json.dumps(
        {"Resources": {"Layer": {"Properties": {"S3Key": f"{asset_hash}.zip", "Other": extra_property}}}}
    ).encode()
    (root / "Stack.template.json").write_bytes(template)
    template_hash = hashlib.sha256(template).hexdigest()
    source = (
        {"path": f"asset.{asset_hash}.zip", "packaging": "file"}
        if zipped
        else {"path": f"asset.{asset_hash}", "packaging": "zip"}
    )
    manifest = {
        "files": {
            asset_hash: {
                "displayName": "Fn/Dependencies/Code",
                "source": source,
                "destinations": {
                    f"111111111111-eu-west-1-{asset_hash[:8]}": {"objectKey": f"{asset_hash}.zip"}
                },
            },
            template_hash: {
                "displayName": "Stack Template",
                "source": {"path": "Stack.template.json", "packaging": "file"},
                "destinations": {
                    f"111111111111-eu-west-1-{template_hash[:8]}": {"objectKey": f"{template_hash}.json"}
                },
            },
        }
    }
    (root / "Stack.assets.json").write_text(json.dumps(manifest, indent=2))
    (root / "manifest.json").write_text(json.dumps({"template": f"s3://bucket/{template_hash}.json"}))
    return root


LAYER = {"python/pkg/__init__.py": b"VALUE = 1\n", "python/pkg/data.bin": b"\x00\x01"}


def test_a_folder_asset_packed_as_a_zip_with_the_same_files_passes(tmp_path: Path) -> None:
    before = assembly(tmp_path / "before", zipped=False, files=LAYER)
    after = assembly(tmp_path / "after", zipped=True, files=LAYER)
    assert repackaging_problems(before, after) == []
    assert main([str(before), str(after), "--repackaged-assets"]) == 0
    assert main([str(before), str(after)]) == 1  # without the option, the hashes are differences


def test_a_zip_whose_files_differ_fails(tmp_path: Path) -> None:
    before = assembly(tmp_path / "before", zipped=False, files=LAYER)
    after = assembly(
        tmp_path / "after", zipped=True, files={**LAYER, "python/pkg/__init__.py": b"VALUE = 2\n"}
    )
    assert f"asset.{NEW}.zip does not hold the files of asset.{OLD}" in repackaging_problems(before, after)


def test_a_template_change_beyond_hashes_fails(tmp_path: Path) -> None:
    before = assembly(tmp_path / "before", zipped=False, files=LAYER)
    after = assembly(tmp_path / "after", zipped=True, files=LAYER, extra_property="changed")
    assert "differs beyond hashes: Stack.template.json" in repackaging_problems(before, after)


def test_one_old_hash_becoming_two_new_ones_fails(tmp_path: Path) -> None:
    before = assembly(tmp_path / "before", zipped=False, files=LAYER)
    after = assembly(tmp_path / "after", zipped=True, files=LAYER)
    (before / "Other.txt").write_text(f"{OLD} {OLD}")
    (after / "Other.txt").write_text(f"{NEW} {'c' * 64}")
    assert f"{OLD} became 2 hashes" in repackaging_problems(before, after)


def test_a_changed_hash_of_anything_else_fails(tmp_path: Path) -> None:
    before = assembly(tmp_path / "before", zipped=False, files=LAYER)
    after = assembly(tmp_path / "after", zipped=True, files=LAYER)
    (before / "Other.txt").write_text("d" * 64)
    (after / "Other.txt").write_text("e" * 64)
    assert repackaging_problems(before, after) == [
        f"hash {'d' * 64} -> {'e' * 64} is neither a repackaged asset nor a changed template"
    ]


def test_a_new_file_fails(tmp_path: Path) -> None:
    before = assembly(tmp_path / "before", zipped=False, files=LAYER)
    after = assembly(tmp_path / "after", zipped=True, files=LAYER)
    (after / "extra.json").write_text("{}")
    assert repackaging_problems(before, after) == [f"only in {after}: extra.json"]
