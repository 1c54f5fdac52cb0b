"""SHA-256 of model artifacts: the evaluation step records it, the deployer checks its copy against it."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import IO

CHUNK_BYTES = 8 * 1024 * 1024
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def stream_sha256(
    stream: IO[bytes], *, copy_to: IO[bytes] | None = None, chunk_bytes: int = CHUNK_BYTES
) -> str:
    """Digest of everything read from `stream`; each chunk also goes to `copy_to` when given."""
    digest = hashlib.sha256()
    while chunk := stream.read(chunk_bytes):
        digest.update(chunk)
        if copy_to is not None:
            copy_to.write(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    with path.open("rb") as stream:
        return stream_sha256(stream)
