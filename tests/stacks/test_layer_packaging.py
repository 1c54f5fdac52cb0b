"""Third-party layers are staged as one prebuilt zip each, with the same files the folder held."""

from __future__ import annotations

import io
import json
import stat
import zipfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stacks.blocks.lambda_deps import COMPLETE_MARKER, LayerPackage, pack_layer, write_deterministic_zip
from tests.conftest import SynthesizedPlatform


def packed(folder: Path, exclude: frozenset[str] = frozenset({COMPLETE_MARKER})) -> tuple[bytes, str]:
    buffer = io.BytesIO()
    content_hash = write_deterministic_zip(folder, buffer, exclude=exclude)
    return buffer.getvalue(), content_hash


def unzipped(archive: bytes) -> dict[str, tuple[int, bytes]]:
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        return {
            info.filename: (stat.S_IMODE(info.external_attr >> 16), opened.read(info))
            for info in opened.infolist()
            if not info.is_dir()
        }


def files_of(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {
        p.relative_to(folder).as_posix(): (stat.S_IMODE(p.stat().st_mode), p.read_bytes())
        for p in folder.rglob("*")
        if p.is_file() and p.name != COMPLETE_MARKER
    }


def layer_folder(root: Path) -> Path:
    folder = root / "svc-0123456789abcdef"
    (folder / "python" / "pkg" / "bin").mkdir(parents=True)
    (folder / "python" / "pkg" / "__init__.py").write_text("VALUE = 1\n")
    (folder / "python" / "pkg" / "bin" / "tool").write_bytes(b"#!/bin/sh\n\x00binary")
    (folder / "python" / "pkg" / "bin" / "tool").chmod(0o755)
    (folder / "python" / "empty").mkdir()
    (folder / COMPLETE_MARKER).touch()
    return folder


def test_the_zip_holds_the_folders_files_with_their_permissions_and_not_the_marker(tmp_path: Path) -> None:
    folder = layer_folder(tmp_path)
    archive, _ = packed(folder)
    assert unzipped(archive) == files_of(folder)
    assert unzipped(archive)["python/pkg/bin/tool"][0] == 0o755
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        assert "python/empty/" in opened.namelist()  # empty folders survive
        assert COMPLETE_MARKER not in opened.namelist()


def test_packing_is_deterministic_and_the_hash_follows_content_not_timestamps(tmp_path: Path) -> None:
    folder = layer_folder(tmp_path)
    first, first_hash = packed(folder)
    (folder / "python" / "pkg" / "__init__.py").touch()  # a new mtime only
    second, second_hash = packed(folder)
    assert (first, first_hash) == (second, second_hash)
    (folder / "python" / "pkg" / "__init__.py").write_text("VALUE = 2\n")
    assert packed(folder)[1] != first_hash
    (folder / "python" / "pkg" / "__init__.py").write_text("VALUE = 1\n")
    (folder / "python" / "pkg" / "__init__.py").chmod(0o600)
    assert packed(folder)[1] != first_hash  # permissions are part of what deploys


def test_pack_layer_writes_the_zip_and_its_hash_once_and_reuses_them(tmp_path: Path) -> None:
    folder = layer_folder(tmp_path)
    package = pack_layer.__wrapped__(folder)
    assert package == LayerPackage(tmp_path / f"{folder.name}.zip", packed(folder)[1])
    assert package.zip_file.read_bytes() == packed(folder)[0]
    assert stat.S_IMODE(package.zip_file.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [folder.name, f"{folder.name}.zip", f"{folder.name}.zip.sha256"]
    )  # no temporary file left behind
    package.zip_file.write_bytes(b"kept")  # an existing zip is reused, not packed again
    assert pack_layer.__wrapped__(folder) == package
    assert package.zip_file.read_bytes() == b"kept"


def test_a_linked_folder_is_refused(tmp_path: Path) -> None:
    folder = layer_folder(tmp_path)
    (folder / "python" / "elsewhere").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="linked folders"):
        packed(folder)


names = st.text(alphabet="abcdefghij_.-", min_size=1, max_size=8).filter(lambda n: n not in {".", ".."})


@given(
    tree=st.dictionaries(
        st.lists(names, min_size=1, max_size=3).map(tuple),
        st.tuples(st.sampled_from([0o644, 0o755, 0o600]), st.binary(max_size=64)),
        max_size=8,
    )
)
def test_any_tree_round_trips_through_the_zip(tree: dict[tuple[str, ...], tuple[int, bytes]]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as work:
        folder = Path(work) / "layer"
        folder.mkdir()
        written: dict[str, tuple[int, bytes]] = {}
        for parts, (mode, data) in tree.items():
            path = folder.joinpath(*parts)
            # a path that is another path's folder (or inside a file) cannot exist in a real tree
            if any(folder.joinpath(*parts[:i]).is_file() for i in range(1, len(parts))) or path.is_dir():
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            path.chmod(mode)
            written["/".join(parts)] = (mode, data)
        archive, _ = packed(folder, exclude=frozenset())
        assert unzipped(archive) == written


def test_every_third_party_layer_of_the_platform_is_one_zip_file_asset(
    default_platform: SynthesizedPlatform,
) -> None:
    layers = 0
    for stack in default_platform.stacks():
        manifest = Path(stack.assembly.directory) / f"{stack.id}.assets.json"
        files = json.loads(manifest.read_text())["files"]
        for entry in files.values():
            if entry["displayName"].endswith("/Dependencies/Code"):
                layers += 1
                assert entry["source"]["packaging"] == "file"
                staged = Path(stack.assembly.directory) / entry["source"]["path"]
                assert staged.suffix == ".zip" and staged.is_file()
                with zipfile.ZipFile(staged) as opened:
                    assert all(name.startswith("python/") for name in opened.namelist())
    assert layers > 0
