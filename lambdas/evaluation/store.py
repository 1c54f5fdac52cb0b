"""Where a run keeps its per-batch results between the map and the summary.

A batch is stored as one JSON-lines object whose key is derived from its record ids, so a retried
batch overwrites itself instead of adding a copy; rows that already succeeded are reused and only
failed ones are scored again. The summary also de-duplicates by (model, record id), so a retry
that batches differently cannot double-count.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

from evaluation.aws_clients import LazyClient
from evaluation.scoring import ScoredRecord


def batch_key(record_ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sorted(record_ids)).encode()).hexdigest()[:32]


def dumps(rows: Iterable[ScoredRecord]) -> str:
    return "".join(row.model_dump_json() + "\n" for row in rows)


def loads(text: str) -> list[ScoredRecord]:
    return [ScoredRecord.model_validate_json(line) for line in text.splitlines() if line.strip()]


class ResultStore(Protocol):
    def get_batch(self, run_id: str, key: str) -> list[ScoredRecord] | None: ...

    def put_batch(self, run_id: str, key: str, rows: Sequence[ScoredRecord]) -> None: ...

    def iter_results(self, run_id: str) -> Iterator[ScoredRecord]: ...


class MemoryResultStore:
    def __init__(self) -> None:
        self.batches: dict[tuple[str, str], str] = {}

    def get_batch(self, run_id: str, key: str) -> list[ScoredRecord] | None:
        text = self.batches.get((run_id, key))
        return None if text is None else loads(text)

    def put_batch(self, run_id: str, key: str, rows: Sequence[ScoredRecord]) -> None:
        self.batches[(run_id, key)] = dumps(rows)

    def iter_results(self, run_id: str) -> Iterator[ScoredRecord]:
        for (run, _key), text in sorted(self.batches.items()):
            if run == run_id:
                yield from loads(text)


class S3ResultStore:
    """`<prefix>/<run_id>/batches/<key>.jsonl` in the evaluation results bucket."""

    s3 = LazyClient("s3")

    def __init__(self, bucket: str, prefix: str, *, s3_client: Any = None) -> None:
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self._s3 = s3_client

    def run_prefix(self, run_id: str) -> str:
        return f"{self.prefix}/{run_id}/"

    def _key(self, run_id: str, key: str) -> str:
        return f"{self.run_prefix(run_id)}batches/{key}.jsonl"

    def get_batch(self, run_id: str, key: str) -> list[ScoredRecord] | None:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=self._key(run_id, key))["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None
        return loads(body.decode())

    def put_batch(self, run_id: str, key: str, rows: Sequence[ScoredRecord]) -> None:
        self.s3.put_object(
            Bucket=self.bucket,
            Key=self._key(run_id, key),
            Body=dumps(rows).encode(),
            ContentType="application/x-ndjson",
        )

    def iter_results(self, run_id: str) -> Iterator[ScoredRecord]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.run_prefix(run_id)}batches/"
        )
        for page in pages:
            for item in page.get("Contents", []):
                body = self.s3.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
                yield from loads(body.decode())

    def put_text(self, key: str, text: str, content_type: str) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=text.encode(), ContentType=content_type)

    def get_text(self, key: str) -> str | None:
        try:
            return str(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read().decode())
        except self.s3.exceptions.NoSuchKey:
            return None
