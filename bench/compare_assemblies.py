"""Are two cloud assemblies (cdk.out folders) the same? For refactorings that must not change what deploys.

Compares every file of both folders byte for byte: templates, manifests, asset folders, the cdk-nag
validation report. One thing differs between any two synths of the same code and is left out: the jsii
kernel's temporary folder name inside the construct stack traces of `*.metadata.json`
(`/tmp/jsii-kernel-AbC123/...`). Prints one line per difference; exit code 0 when identical, 1 when not,
2 on bad arguments.

With --repackaged-assets, for a change that packs a folder asset as a prebuilt zip file instead: passes
when every difference is only that, i.e. the folder `asset.<old>` became the file `asset.<new>.zip` whose
unzipped files (paths, bytes, permission bits) are exactly the folder's, the asset manifests say `file`
instead of `zip` for it, and every other file is the same once each changed hash is replaced by its
counterpart: one old hash to one new hash throughout, where the only other hashes that may change are those
of templates that changed (a template's asset hash is the sha256 of its bytes) and the publishing
destinations named after them.

    .venv/bin/python bench/compare_assemblies.py BEFORE_CDK_OUT AFTER_CDK_OUT [--repackaged-assets]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import stat
import sys
import zipfile
from pathlib import Path

_KERNEL_DIR = re.compile(rb"jsii-kernel-[A-Za-z0-9]+")


def _normalized(path: Path) -> bytes:
    content = path.read_bytes()
    if path.name.endswith(".metadata.json"):
        return _KERNEL_DIR.sub(b"jsii-kernel-*", content)
    return content


def assembly_differences(before: Path, after: Path) -> list[str]:
    """One line per file that is missing on one side or whose content differs (relative paths, sorted)."""
    files_before = {p.relative_to(before) for p in before.rglob("*") if p.is_file()}
    files_after = {p.relative_to(after) for p in after.rglob("*") if p.is_file()}
    differences = [f"only in {before}: {p}" for p in sorted(files_before - files_after)]
    differences += [f"only in {after}: {p}" for p in sorted(files_after - files_before)]
    differences += [
        f"differs: {p}"
        for p in sorted(files_before & files_after)
        if _normalized(before / p) != _normalized(after / p)
    ]
    return differences


# An asset or template hash, or the 8-hex suffix CDK gives a publishing destination (`<account>-<region>-<id>`).
_HASHES = re.compile(rb"([0-9a-f]{64})|(?<=\d{12}-)([a-z]{2}(?:-[a-z]+)+-\d-[0-9a-f]{8})\b")
_ZIP_ASSET = re.compile(r"asset\.([0-9a-f]{64})\.zip")


def _skeleton(content: bytes) -> tuple[list[bytes], list[bytes]]:
    """The content with every hash cut out, and the hashes in order."""
    parts = _HASHES.split(content)
    text = parts[0::3]
    hashes = [a or b for a, b in zip(parts[1::3], parts[2::3], strict=True)]
    return text, hashes


def _as_folder_asset(manifest: bytes, repackaged: set[str]) -> bytes:
    """An asset manifest with each repackaged zip file written as the folder asset it replaced."""
    document = json.loads(manifest)
    for entry in document.get("files", {}).values():
        source = entry.get("source", {})
        found = _ZIP_ASSET.search(source.get("path", ""))
        if found and found.group(1) in repackaged and source.get("packaging") == "file":
            source["path"] = source["path"].removesuffix(".zip")
            source["packaging"] = "zip"
    return json.dumps(document, indent=2, ensure_ascii=False).encode()


def _folder_files(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {
        p.relative_to(folder).as_posix(): (stat.S_IMODE(p.stat().st_mode), p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _zip_files(archive: Path) -> dict[str, tuple[int, bytes]]:
    with zipfile.ZipFile(archive) as opened:
        return {
            info.filename: (stat.S_IMODE(info.external_attr >> 16), opened.read(info))
            for info in opened.infolist()
            if not info.is_dir()
        }


def repackaging_problems(before: Path, after: Path) -> list[str]:
    """Why the differences between `before` and `after` are not only folder assets packed as zip files
    (see the module docstring); empty when they are."""
    differences = assembly_differences(before, after)
    only_before = {
        Path(d.split(": ", 1)[1]).parts[0] for d in differences if d.startswith(f"only in {before}: ")
    }
    only_after = {
        Path(d.split(": ", 1)[1]).parts[0] for d in differences if d.startswith(f"only in {after}: ")
    }
    zips = {found.group(1) for found in map(_ZIP_ASSET.fullmatch, only_after) if found}
    problems = [f"only in {after}: {name}" for name in sorted(only_after) if not _ZIP_ASSET.fullmatch(name)]
    problems += [f"only in {before}: {name}" for name in sorted(only_before) if not (before / name).is_dir()]
    pairs: dict[bytes, set[bytes]] = {}
    for line in differences:
        if not line.startswith("differs: "):
            continue
        relative = line.removeprefix("differs: ")
        old, new = _normalized(before / relative), _normalized(after / relative)
        if relative.endswith(".assets.json"):
            old, new = _as_folder_asset(old, set()), _as_folder_asset(new, zips)
        old_text, old_hashes = _skeleton(old)
        new_text, new_hashes = _skeleton(new)
        if old_text != new_text or len(old_hashes) != len(new_hashes):
            problems.append(f"differs beyond hashes: {relative}")
            continue
        for a, b in zip(old_hashes, new_hashes, strict=True):
            if a != b:
                pairs.setdefault(a, set()).add(b)
    reverse: dict[bytes, set[bytes]] = {}
    for a, targets in pairs.items():
        for b in targets:
            reverse.setdefault(b, set()).add(a)
    problems += [f"{a.decode()} became {len(b)} hashes" for a, b in sorted(pairs.items()) if len(b) > 1]
    problems += [f"{len(a)} hashes became {b.decode()}" for b, a in sorted(reverse.items()) if len(a) > 1]
    templates = {
        hashlib.sha256(p.read_bytes()).hexdigest().encode(): p
        for side in (before, after)
        for p in side.rglob("*.template.json")
    }
    for a, targets in sorted(pairs.items()):
        b = next(iter(targets))
        if len(a) != 64 or (a in templates and b in templates):
            continue  # a publishing destination, or a template that changed because an asset hash in it did
        folder, archive = before / f"asset.{a.decode()}", after / f"asset.{b.decode()}.zip"
        if not (folder.is_dir() and archive.is_file()):
            problems.append(
                f"hash {a.decode()} -> {b.decode()} is neither a repackaged asset nor a changed template"
            )
        elif _folder_files(folder) != _zip_files(archive):
            problems.append(f"{archive.name} does not hold the files of {folder.name}")
        else:
            only_before.discard(folder.name)
            zips.discard(b.decode())
    problems += [f"only in {before}: {name} (not repackaged)" for name in sorted(only_before)]
    problems += [f"only in {after}: asset.{h}.zip (not a repackaged asset)" for h in sorted(zips)]
    return problems


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("before", type=Path, help="the first cloud assembly folder")
    parser.add_argument("after", type=Path, help="the second cloud assembly folder")
    parser.add_argument(
        "--repackaged-assets",
        action="store_true",
        help="pass if every difference is only folder assets packed as zip files (same files inside)",
    )
    args = parser.parse_args(argv)
    for name, folder in (("before", args.before), ("after", args.after)):
        if not (folder / "manifest.json").is_file():
            parser.error(f"{name}: {folder} is not a cloud assembly (no manifest.json)")
    if args.repackaged_assets:
        problems = repackaging_problems(args.before, args.after)
        for line in problems:
            print(line)
        print(
            f"{'only repackaged assets' if not problems else f'{len(problems)} problems'}: "
            f"{args.before} vs {args.after}"
        )
        return 1 if problems else 0
    differences = assembly_differences(args.before, args.after)
    for line in differences:
        print(line)
    files = sum(1 for p in args.after.rglob("*") if p.is_file())
    print(
        f"{'identical' if not differences else f'{len(differences)} differences'}: "
        f"{args.before} vs {args.after} ({files} files)"
    )
    return 1 if differences else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
