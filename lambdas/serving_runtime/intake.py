"""Model intake: copy a vetted base model from a private bucket into the buckets that serve or tune it.

The platform team vets a base model once and stores it in a private bucket with a `manifest.json` that
names every file and its SHA-256. `take_in` streams each file from there, hashes the bytes it writes to
the first destination, and copies that verified object on to the other destinations (the serving models
bucket's `serving.base_model_prefix`, the fine-tuning bucket's `fine_tuning.base_model_prefix`). The manifest
is written last: a prefix with a manifest is complete. A checksum mismatch, a file the manifest does not
name, or pickled weights stop the intake and remove what this run wrote; nothing is fetched from a hub.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

MANIFEST = "manifest.json"
# Pickle-based weight formats can run code when loaded; vetted models come as safetensors.
REFUSED_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
_URL = re.compile(r"^s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])/((?:[^/]+/)*)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class IntakeError(ValueError):
    """The intake was refused or failed; the message names the file or field."""


@dataclass(frozen=True)
class Location:
    bucket: str
    prefix: str  # "" or ends with "/"

    @classmethod
    def parse(cls, url: str, field: str) -> Location:
        match = _URL.match(url)
        if match is None:
            raise IntakeError(f"{field}: {url!r} is not s3://bucket/prefix/ (ending with a slash)")
        return cls(match.group(1), match.group(2))

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass
class IntakeResult:
    model: str
    files: dict[str, str]
    destinations: list[str]
    skipped: list[str] = field(default_factory=list)  # destinations that already held this manifest


def parse_manifest(raw: bytes) -> tuple[str, dict[str, str]]:
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise IntakeError(f"{MANIFEST}: not JSON ({exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict) or not manifest["files"]:
        raise IntakeError(f"{MANIFEST}.files: must map each file name to its SHA-256")
    model = manifest.get("model")
    if not isinstance(model, str) or not model:
        raise IntakeError(f"{MANIFEST}.model: name the model (e.g. its family and version)")
    files: dict[str, str] = {}
    for name, digest in manifest["files"].items():
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise IntakeError(f"{MANIFEST}.files[{name!r}]: not a SHA-256 hex digest")
        if name.startswith("/") or ".." in name.split("/") or name == MANIFEST:
            raise IntakeError(f"{MANIFEST}.files[{name!r}]: not a file name inside the model's prefix")
        if name.endswith(REFUSED_SUFFIXES):
            raise IntakeError(
                f"{MANIFEST}.files[{name!r}]: pickled weights are refused; convert to safetensors"
            )
        files[name] = digest
    if "config.json" not in files or not any(n.endswith(".safetensors") for n in files):
        raise IntakeError(f"{MANIFEST}.files: needs config.json and the weights as .safetensors")
    return model, files


def _keys(s3: Any, location: Location) -> Iterator[str]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=location.prefix):
        for item in page.get("Contents", []):
            yield item["Key"]


def _read(s3: Any, location: Location, name: str) -> bytes | None:
    try:
        return bytes(s3.get_object(Bucket=location.bucket, Key=location.key(name))["Body"].read())
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise


class _HashingReader:
    """A file-like view of a streaming body that hashes what passes through it."""

    def __init__(self, body: Any) -> None:
        self.body = body
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        chunk: bytes = self.body.read(size) if size and size > 0 else self.body.read()
        self.sha256.update(chunk)
        return chunk


def take_in(
    s3: Any, source: Location, destinations: list[Location], *, replace: bool = False
) -> IntakeResult:
    if not destinations:
        raise IntakeError("to: name at least one destination")
    raw = _read(s3, source, MANIFEST)
    if raw is None:
        raise IntakeError(f"source: no {MANIFEST} at {source}; the vetting step writes it")
    model, files = parse_manifest(raw)
    unlisted = sorted(k.removeprefix(source.prefix) for k in _keys(s3, source))
    unlisted = [n for n in unlisted if n != MANIFEST and n not in files]
    if unlisted:
        raise IntakeError(
            f"source: {', '.join(unlisted[:5])} not in {MANIFEST}: only vetted files are taken in"
        )
    pending: list[Location] = []
    skipped: list[str] = []
    for destination in destinations:
        present = _read(s3, destination, MANIFEST)
        if present == raw:
            skipped.append(str(destination))
        elif present is not None and not replace:
            raise IntakeError(
                f"to: {destination} holds another model's {MANIFEST}; pass --replace to overwrite it"
            )
        else:
            pending.append(destination)
    written: list[tuple[str, str]] = []
    try:
        if pending:
            first, others = pending[0], pending[1:]
            for name, expected in sorted(files.items()):
                try:
                    body = s3.get_object(Bucket=source.bucket, Key=source.key(name))["Body"]
                except ClientError as exc:
                    raise IntakeError(f"source: {name} listed in {MANIFEST} cannot be read ({exc})") from None
                reader = _HashingReader(body)
                s3.upload_fileobj(reader, first.bucket, first.key(name))
                written.append((first.bucket, first.key(name)))
                if reader.sha256.hexdigest() != expected:
                    raise IntakeError(
                        f"source: {name} has SHA-256 {reader.sha256.hexdigest()}, {MANIFEST} says {expected}"
                    )
                for other in others:
                    s3.copy({"Bucket": first.bucket, "Key": first.key(name)}, other.bucket, other.key(name))
                    written.append((other.bucket, other.key(name)))
            for destination in pending:  # last: a prefix with the manifest is complete
                s3.put_object(Bucket=destination.bucket, Key=destination.key(MANIFEST), Body=raw)
    except Exception:
        for bucket, key in written:
            s3.delete_object(Bucket=bucket, Key=key)
        raise
    return IntakeResult(model, files, [str(d) for d in pending], skipped)
