"""app.py's error gate reads error annotations from the assembly's files, nested assemblies included."""

from __future__ import annotations

import json
from pathlib import Path

from stacks.app_factory import error_annotations


def write_assembly(directory: Path, artifacts: dict[str, object], files: dict[str, object]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "manifest.json").write_text(json.dumps({"artifacts": artifacts}))
    for name, content in files.items():
        (directory / name).write_text(json.dumps(content))


def test_errors_come_from_inline_metadata_metadata_files_and_nested_assemblies(tmp_path: Path) -> None:
    error = {"type": "aws:cdk:error", "data": "no retention"}
    warning = {"type": "aws:cdk:warning", "data": "only a warning"}
    write_assembly(
        tmp_path,
        {
            "Top": {"type": "aws:cloudformation:stack", "metadata": {"/Top/Group": [error, warning]}},
            "assembly-inner": {
                "type": "cdk:cloud-assembly",
                "properties": {"directoryName": "assembly-inner"},
            },
            "Tree": {"type": "cdk:tree", "properties": {"file": "tree.json"}},
        },
        {},
    )
    write_assembly(
        tmp_path / "assembly-inner",
        {"Inner": {"type": "aws:cloudformation:stack", "additionalMetadataFile": "Inner.metadata.json"}},
        {"Inner.metadata.json": {"/inner/Inner/Group": [warning, error], "/inner/Inner/Other": [warning]}},
    )
    assert error_annotations(tmp_path) == ["/Top/Group: no retention", "/inner/Inner/Group: no retention"]


def test_an_assembly_without_errors_has_none(tmp_path: Path) -> None:
    write_assembly(
        tmp_path,
        {"Top": {"type": "aws:cloudformation:stack", "metadata": {"/Top/Group": [{"type": "aws:cdk:info"}]}}},
        {},
    )
    assert error_annotations(str(tmp_path)) == []
