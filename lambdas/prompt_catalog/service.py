"""Catalog operations shared by prompts, chains and datasets, plus each kind's save-time checks and render.

Every check runs before the first write, so a rejected request leaves DynamoDB and S3 untouched.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from common.evaluation_dataset import (
    DatasetFormatError,
    EvaluationRecord,
    dataset_version_key,
    dump_records,
    read_records,
)

from .access import STAGE_ALIASES, AliasMovers, principal_arn
from .chains import ResolvedPrompt, check_chain, execution_order, final_step, render_ready_steps
from .errors import (
    BadRequestError,
    CatalogError,
    ConflictError,
    NotFoundError,
    TooLargeError,
    UnprocessableError,
    from_validation_error,
)
from .models import (
    AcceptRecords,
    ChainContent,
    CreateChain,
    CreateDataset,
    CreatePrompt,
    DatasetContent,
    Kind,
    MoveAlias,
    PromptContent,
    RenderChain,
    RenderDataset,
    RenderPrompt,
    ResourceMeta,
    Selector,
)
from .rendering import check_template, check_values, render
from .repository import CatalogRepository, ObjectStore, ResourceKey
from .settings import PromptCatalogSettings

M = TypeVar("M", bound=BaseModel)

_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
_REF = re.compile(
    r"^(?P<name>[a-z0-9][a-z0-9_\-]{0,63})(@(?P<version>[1-9][0-9]{0,8})|:(?P<alias>[a-z][a-z0-9_\-]{0,31}))$"
)
# A dataset object older than this without a catalog entry is left over from an interrupted write.
ORPHANED_DATASET_SECONDS = 15 * 60
_CREATE_MODELS: dict[Kind, type[ResourceMeta]] = {
    "prompt": CreatePrompt,
    "chain": CreateChain,
    "dataset": CreateDataset,
}
_CONTENT_MODELS: dict[Kind, type[BaseModel]] = {
    "prompt": PromptContent,
    "chain": ChainContent,
    "dataset": DatasetContent,
}


def parse(model: type[M], data: Any, prefix: str = "body") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc, prefix) from None


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def resource_key(kind: Kind, business_unit: str, name: str) -> ResourceKey:
    if not _NAME.match(name):
        raise BadRequestError("path.name", "lowercase letters, digits, '-' and '_', at most 64 characters")
    return ResourceKey(kind, business_unit, name)


class Catalog:
    def __init__(
        self,
        repo: CatalogRepository,
        datasets: ObjectStore,
        settings: PromptCatalogSettings,
        *,
        alias_movers: AliasMovers | None = None,
        clock: Callable[[], str] = utc_now,
    ) -> None:
        self.alias_movers = alias_movers or AliasMovers()
        self.repo = repo
        self.datasets = datasets
        self.settings = settings
        self._now = clock

    # --- generic operations ------------------------------------------------------------------------
    def create(self, kind: Kind, bu: str, caller: str, body: Any) -> dict[str, Any]:
        request = parse(_CREATE_MODELS[kind], body)
        key = ResourceKey(kind, bu, request.name)
        if self.repo.get_meta(key) is not None:
            raise ConflictError("body.name", f"a {kind} named {request.name!r} already exists")
        meta_fields = set(ResourceMeta.model_fields)
        content_model = _CONTENT_MODELS[kind]
        content = content_model.model_validate(request.model_dump(exclude=meta_fields))
        stored = self._prepare_content(key, content, version=1)
        now = self._now()
        meta = {
            **request.model_dump(include=meta_fields),
            "owner": caller,
            "kind": kind,
            "business_unit": bu,
            "created_at": now,
            "created_by": caller,
        }
        self.repo.create(key, meta, stored, caller, now)
        return self.describe(kind, bu, request.name)

    def add_version(self, kind: Kind, bu: str, caller: str, name: str, body: Any) -> dict[str, Any]:
        key = resource_key(kind, bu, name)
        content = parse(_CONTENT_MODELS[kind], body)
        if self.repo.require_meta(key)["archived"]:
            raise ConflictError(key.field, "archived; it takes no new versions")
        if kind != "dataset":
            stored = self._prepare_content(key, content)
            version = self.repo.add_version(key, stored, caller, self._now())
            return self.get_version(kind, bu, name, version)
        # A dataset version is written to the lake under its number first, so the number is fixed here.
        number = self.repo.require_meta(key)["latest_version"] + 1
        stored = self._prepare_content(key, content, version=number)
        version = self.repo.add_version(key, stored, caller, self._now(), exact=number)
        return self.get_version(kind, bu, name, version)

    def accept_records(self, bu: str, caller: str, name: str, body: Any) -> dict[str, Any]:
        """A new dataset version: the latest version's records plus the accepted ones (review API).
        Records who accepted what; an id already in the dataset is a 409 naming the record."""
        request = parse(AcceptRecords, body)
        key = resource_key("dataset", bu, name)
        meta = self.repo.require_meta(key)
        if meta["archived"]:
            raise ConflictError(key.field, "archived; it takes no new versions")
        latest = self.get_version("dataset", bu, name, meta["latest_version"])
        existing = self.dataset_records(latest["content"])
        known = {r.id for r in existing}
        for index, raw in enumerate(request.records):
            if isinstance(raw, dict) and raw.get("id") in known:
                raise ConflictError(
                    f"body.records[{index}].id",
                    f"{raw['id']!r} is already in {key.field} version {latest['version']}",
                )
        accepted = [json.loads(r.model_dump_json(exclude_defaults=True)) for r in existing]
        comment = request.comment or f"accepted {len(request.records)} record(s) from {request.source}"
        content = DatasetContent(records=[*accepted, *request.records], comment=comment)
        number = latest["version"] + 1
        stored = self._prepare_content(key, content, version=number)
        stored["accepted"] = {
            "by": request.accepted_by,
            "through": caller,
            "source": request.source,
            "record_ids": [str(r.get("id")) for r in request.records],
            "base_version": latest["version"],
        }
        version = self.repo.add_version(key, stored, caller, self._now(), exact=number)
        return self.get_version("dataset", bu, name, version)

    def describe(self, kind: Kind, bu: str, name: str) -> dict[str, Any]:
        key = resource_key(kind, bu, name)
        meta = self.repo.require_meta(key)
        return {**meta, "aliases": self.repo.aliases(key)}

    def get_version(self, kind: Kind, bu: str, name: str, version: int) -> dict[str, Any]:
        key = resource_key(kind, bu, name)
        found = self.repo.get_version(key, version)
        if found is None:
            self.repo.require_meta(key)
            raise NotFoundError("path.version", f"{key.field} has no version {version}")
        return {"name": name, "kind": kind, **found}

    def get_by_alias(self, kind: Kind, bu: str, name: str, alias: str) -> dict[str, Any]:
        key = resource_key(kind, bu, name)
        pointer = self.repo.get_alias(key, alias)
        if pointer is None:
            self.repo.require_meta(key)
            raise NotFoundError("path.alias", f"{key.field} has no alias {alias!r}")
        return {**self.get_version(kind, bu, name, pointer["version"]), "alias": {"name": alias, **pointer}}

    def list_resources(self, kind: Kind, bu: str, query: Mapping[str, str]) -> dict[str, Any]:
        unknown = set(query) - {"tag", "include_archived", "limit", "next_token"}
        for name in sorted(unknown):
            raise BadRequestError(
                f"query.{name}", "unknown parameter (tag, include_archived, limit, next_token)"
            )
        limit_text = query.get("limit", "50")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 100:
            raise BadRequestError("query.limit", "a whole number from 1 to 100")
        archived_text = query.get("include_archived", "false")
        if archived_text not in ("true", "false"):
            raise BadRequestError("query.include_archived", "true or false")
        items, token = self.repo.list_resources(
            bu,
            kind,
            tag=query.get("tag"),
            include_archived=archived_text == "true",
            limit=int(limit_text),
            token=query.get("next_token"),
        )
        return {"items": items, "next_token": token}

    def move_alias(
        self, kind: Kind, bu: str, caller: str, name: str, alias: str, body: Any
    ) -> dict[str, Any]:
        key = resource_key(kind, bu, name)
        if not re.match(r"^[a-z][a-z0-9_\-]{0,31}$", alias) or not self.settings.alias_allowed(alias):
            allowed = ", ".join(self.settings.allowed_aliases) or "lowercase names"
            raise BadRequestError("path.alias", f"not an allowed alias name (allowed: {allowed})")
        request = parse(MoveAlias, body)
        self.alias_movers.check(bu, alias, caller)
        if kind == "chain":
            self._check_chain_alias(key, alias, request.version)
        return self.repo.move_alias(
            key, alias, request.version, caller, self._now(), principal=principal_arn(caller)
        )

    def _check_chain_alias(self, key: ResourceKey, alias: str, version: int) -> None:
        """A chain on a stage alias may follow only pinned versions or the same stage's alias, so nothing
        but that stage's own alias moves changes what the stage runs (a `:dev` step would let dev roles
        change prod)."""
        if alias not in STAGE_ALIASES:
            return
        found = self.repo.get_version(key, version)
        if found is None:
            self.repo.require_meta(key)
            raise NotFoundError("body.version", f"{key.field} has no version {version}")
        chain = ChainContent.model_validate(found["content"])
        for i, step in enumerate(chain.steps):
            match = _REF.match(step.prompt)
            if match and match["alias"] is not None and match["alias"] != alias:
                raise ConflictError(
                    f"steps[{i}].prompt",
                    f"{step.prompt} follows another alias; a chain on {alias!r} may use 'name@version' or "
                    f"'name:{alias}' only",
                )

    def archive(self, kind: Kind, bu: str, caller: str, name: str) -> dict[str, Any]:
        key = resource_key(kind, bu, name)
        self.repo.archive(key, caller, self._now())
        return self.describe(kind, bu, name)

    def select(self, kind: Kind, bu: str, name: str, selector: Selector) -> dict[str, Any]:
        if selector.alias is not None:
            return self.get_by_alias(kind, bu, name, selector.alias)
        if selector.version is not None:
            return self.get_version(kind, bu, name, selector.version)
        meta = self.repo.require_meta(resource_key(kind, bu, name))
        return self.get_version(kind, bu, name, meta["latest_version"])

    # --- renders -----------------------------------------------------------------------------------
    def render_prompt(self, bu: str, name: str, body: Any) -> dict[str, Any]:
        request = parse(RenderPrompt, body)
        found = self.select("prompt", bu, name, request)
        content = PromptContent.model_validate(found["content"])
        text = render(
            content.template,
            content.variables,
            request.variables,
            limits=self.settings.render_limits(),
            name=f"prompt {name}@{found['version']}",
        )
        return {
            "name": name,
            "version": found["version"],
            "text": text,
            "model_parameters": content.model_parameters.model_dump(),
        }

    def render_chain(self, bu: str, name: str, body: Any) -> dict[str, Any]:
        request = parse(RenderChain, body)
        found = self.select("chain", bu, name, request)
        chain = ChainContent.model_validate(found["content"])
        prompts = self._chain_prompts(bu, chain, UnprocessableError)
        rendered, waiting = render_ready_steps(
            chain, prompts, request.variables, request.step_outputs, limits=self.settings.render_limits()
        )
        return {
            "name": name,
            "version": found["version"],
            "order": execution_order(chain),
            "output_step": final_step(chain),
            "steps": [
                {
                    "id": step.step_id,
                    "prompt": step.prompt_ref,
                    "prompt_version": step.version,
                    "text": step.text,
                    "model_parameters": step.model_parameters.model_dump(),
                }
                for step in rendered
            ],
            "waiting": waiting,
        }

    def render_dataset(self, bu: str, name: str, body: Any) -> dict[str, Any]:
        request = parse(RenderDataset, body)
        found = self.select("dataset", bu, name, request)
        records = self.dataset_records(found["content"])
        resolved: dict[str, ResolvedPrompt] = {}
        out = []
        for record in records:
            entry: dict[str, Any] = record.model_dump(exclude={"variables", "input"}, exclude_none=True)
            if record.prompt_ref is None:
                entry["input"] = record.input
            else:
                field = f"records[{record.id}].prompt_ref"
                if record.prompt_ref not in resolved:
                    resolved[record.prompt_ref] = self.resolve_prompt(
                        bu, record.prompt_ref, field, UnprocessableError
                    )
                prompt = resolved[record.prompt_ref]
                try:
                    entry["input"] = render(
                        prompt.content.template,
                        prompt.content.variables,
                        record.variables,
                        limits=self.settings.render_limits(),
                        name=f"prompt {prompt.name}@{prompt.version}",
                    )
                except CatalogError as exc:
                    raise UnprocessableError(f"records[{record.id}].{exc.field}", exc.message) from None
                entry["prompt_version"] = prompt.version
            out.append(entry)
        return {"name": name, "version": found["version"], "records": out}

    def dataset_records(self, stored: Mapping[str, Any]) -> list[EvaluationRecord]:
        text = self.datasets.get(stored["records_key"]).decode()
        return list(read_records(text.splitlines(), strict=True))

    def resolve_prompt(
        self, bu: str, ref: str, field: str, error: type[CatalogError] = BadRequestError
    ) -> ResolvedPrompt:
        match = _REF.match(ref)
        if match is None:
            raise error(field, "expected 'name@version' or 'name:alias'")
        selector = Selector(version=int(match["version"]) if match["version"] else None, alias=match["alias"])
        try:
            found = self.select("prompt", bu, match["name"], selector)
        except NotFoundError as exc:
            raise error(field, f"{ref} does not resolve ({exc.message})") from None
        content = PromptContent.model_validate(found["content"])
        return ResolvedPrompt(ref, match["name"], found["version"], content)

    # --- save-time checks, per kind ----------------------------------------------------------------
    def _prepare_content(self, key: ResourceKey, content: BaseModel, *, version: int = 0) -> dict[str, Any]:
        """Validate a new version's content and return the document to store (datasets go to S3 here)."""
        if isinstance(content, PromptContent):
            s = self.settings
            try:
                check_template(
                    content.template,
                    content.variables,
                    max_bytes=s.max_template_bytes,
                    max_variables=s.max_variables,
                    limits=s.render_limits(),
                    name=f"prompt {key.name}",
                )
            except CatalogError as exc:
                raise type(exc)(f"body.{exc.field}", exc.message) from None
            return content.model_dump()
        if isinstance(content, ChainContent):
            self._check_chain(key.business_unit, content)
            return content.model_dump()
        if isinstance(content, DatasetContent):
            return self._store_dataset(key, content, version)
        raise TypeError(f"unexpected content {type(content).__name__}")

    def _check_chain(self, bu: str, chain: ChainContent) -> None:
        cache: dict[str, ResolvedPrompt] = {}

        def resolve(ref: str, field: str) -> ResolvedPrompt:
            if ref not in cache:
                cache[ref] = self.resolve_prompt(bu, ref, field)
            return cache[ref]

        try:
            check_chain(chain, resolve, max_steps=self.settings.max_chain_steps)
        except CatalogError as exc:
            raise type(exc)(f"body.{exc.field}", exc.message) from None

    def _chain_prompts(
        self, bu: str, chain: ChainContent, error: type[CatalogError]
    ) -> dict[str, ResolvedPrompt]:
        prompts: dict[str, ResolvedPrompt] = {}
        for i, step in enumerate(chain.steps):
            if step.prompt not in prompts:
                prompts[step.prompt] = self.resolve_prompt(bu, step.prompt, f"steps[{i}].prompt", error)
        return prompts

    def _store_dataset(self, key: ResourceKey, content: DatasetContent, version: int) -> dict[str, Any]:
        limit = self.settings.max_dataset_bytes
        if content.jsonl is not None:
            if len(content.jsonl.encode()) > limit:
                raise TooLargeError("body.jsonl", f"larger than {limit} bytes")
            lines, field = content.jsonl.splitlines(), "body.jsonl"
        else:
            lines, field = [json.dumps(r) for r in content.records or []], "body.records"
        try:
            records = list(read_records(lines, strict=True))
        except DatasetFormatError as exc:
            where = f"line {exc.error.line_number}" if content.jsonl is not None else ""
            target = field if where else f"{field}[{exc.error.line_number - 1}]"
            raise BadRequestError(target, f"{where + ': ' if where else ''}{exc.error.message}") from None
        if not records:
            raise BadRequestError(field, "a dataset needs at least one record")
        if len(records) > self.settings.max_dataset_records:
            raise TooLargeError(field, f"more than {self.settings.max_dataset_records} records")
        self._check_record_prompts(key.business_unit, records)
        text = dump_records(records).encode()
        if len(text) > limit:
            raise TooLargeError(field, f"larger than {limit} bytes")
        digest = hashlib.sha256(text).hexdigest()
        records_key = dataset_version_key(key.business_unit, key.name, version)
        self._publish_dataset(key, version, records_key, text, digest)
        return {
            "records_key": records_key,
            "bucket": self.datasets.bucket,
            "sha256": digest,
            "record_count": len(records),
            "labeled_count": sum(r.is_labeled for r in records),
            "categories": dict(Counter(r.category for r in records)),
            "comment": content.comment,
        }

    def _publish_dataset(
        self, key: ResourceKey, version: int, records_key: str, text: bytes, digest: str
    ) -> None:
        """Write version `version` to the lake's evaluation_datasets zone, never over another version.

        The conditional write is the lock on the version number: of two concurrent requests only one
        writes `<version>/dataset.jsonl`, the other gets a 409. The same content again (a retried
        request) is accepted. An object left by an interrupted write (no catalog entry after
        ORPHANED_DATASET_SECONDS) is replaced, conditioned on it being unchanged."""
        if self.datasets.put_new(records_key, text, "application/x-ndjson"):
            return
        existing = self.datasets.get(records_key)
        if hashlib.sha256(existing).hexdigest() == digest:
            return
        age = datetime.now(UTC) - self.datasets.last_modified(records_key)
        if self.repo.get_version(key, version) is None and age.total_seconds() > ORPHANED_DATASET_SECONDS:
            self.datasets.put(records_key, text, "application/x-ndjson")
            return
        raise ConflictError(key.field, f"version {version} is being written by a concurrent request; retry")

    def _check_record_prompts(self, bu: str, records: list[EvaluationRecord]) -> None:
        """A record's prompt_ref must resolve now and its variables must fit that prompt."""
        cache: dict[str, ResolvedPrompt] = {}
        for record in records:
            if record.prompt_ref is None:
                continue
            field = f"body.records[{record.id}]"
            if record.prompt_ref not in cache:
                cache[record.prompt_ref] = self.resolve_prompt(bu, record.prompt_ref, f"{field}.prompt_ref")
            try:
                check_values(cache[record.prompt_ref].content.variables, record.variables)
            except CatalogError as exc:
                raise BadRequestError(f"{field}.{exc.field}", exc.message) from None
