"""Issue 14 item 1: prepare pins every catalog prompt of a dataset once per run; batches render that version."""

import pytest
from evaluation import service
from evaluation.scoring import ScoringContext, score_record

from common.evaluation_dataset import EvaluationRecord, dump_records
from common.prompt_client import CatalogUnavailableError, FetchedPrompt, PromptNotFoundError

from .fakes import ScriptedModel, make_settings, verdict
from .test_service import BUCKET, batch_event, make_runtime


class FakeCatalog:
    """The catalog API as PromptClient exposes it; the alias moves when the test says so."""

    def __init__(self):
        self.versions = {1: "Old: {{ q }}", 2: "New: {{ q | upper }}"}
        self.alias = 1
        self.calls: list[str] = []
        self.down = False

    def _fetched(self, version, alias):
        if self.down:
            raise CatalogUnavailableError("prompt catalog answered 503")
        return FetchedPrompt("qa", alias, version, self.versions[version], [{"name": "q"}], {})

    def get(self, name, alias="prod"):
        self.calls.append(f"{name}:{alias}")
        if name != "qa":
            raise PromptNotFoundError(f"prompt {name!r} has no alias {alias!r}")
        return self._fetched(self.alias, alias)

    def get_version(self, name, version):
        self.calls.append(f"{name}@{version}")
        if name != "qa" or version not in self.versions:
            raise PromptNotFoundError(f"prompt {name!r} has no version {version}")
        return self._fetched(version, f"@{version}")


RECORDS = [
    EvaluationRecord(id="a", prompt_ref="qa:prod", variables={"q": "why"}, reference_output="WHY"),
    EvaluationRecord(id="b", prompt_ref="qa:prod", variables={"q": "how"}, reference_output="HOW"),
    EvaluationRecord(id="c", prompt_ref="qa@1", variables={"q": "who"}, reference_output="who"),
]


def prepared(s3, catalog, records=RECORDS):
    model = ScriptedModel("fm", fn=lambda request: request.prompt.split(": ", 1)[1])
    rt, _ = make_runtime(s3, [model])
    rt.prompt_fetcher = lambda: catalog
    s3.put_object(Bucket=BUCKET, Key="in/d.jsonl", Body=dump_records(records))
    out = service.prepare(
        {"run_id": "run-1", "use_case": "qa", "dataset": {"bucket": BUCKET, "key": "in/d.jsonl"}}, rt
    )
    return rt, model, out


def test_each_ref_is_resolved_once_and_the_alias_is_pinned_for_the_whole_run(s3):
    catalog = FakeCatalog()
    catalog.alias = 2
    rt, model, out = prepared(s3, catalog)
    assert out["prompt_versions"] == {"qa:prod": 2, "qa@1": 1}
    assert sorted(catalog.calls) == ["qa:prod", "qa@1"]  # once per distinct ref, not per record
    catalog.alias = 1  # the alias moves while the run is scoring
    service.score_batch(batch_event(RECORDS), rt)
    assert [c.prompt for c in model.calls] == ["New: WHY", "New: HOW", "Old: who"]
    assert len(catalog.calls) == 2  # batches read the run's pinned copy, not the catalog
    summary = service.summarize_run({"run_id": "run-1", "use_case": "qa"}, rt)
    assert summary["prompt_versions"] == {"qa:prod": 2, "qa@1": 1}


def test_a_ref_that_does_not_resolve_rejects_the_run_by_name(s3):
    bad = [*RECORDS, EvaluationRecord(id="d", prompt_ref="qa@9", variables={"q": "x"})]
    with pytest.raises(
        service.DatasetRejectedError, match=r"prompt_ref 'qa@9': prompt 'qa' has no version 9"
    ):
        prepared(s3, FakeCatalog(), bad)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="retail/evaluation_runs/")


def test_a_catalog_outage_fails_the_step_for_a_retry_rather_than_the_dataset(s3):
    catalog = FakeCatalog()
    catalog.down = True
    with pytest.raises(CatalogUnavailableError):
        prepared(s3, catalog)


def test_prompt_ref_records_without_a_catalog_url_are_rejected(s3):
    rt, _ = make_runtime(s3, [])
    s3.put_object(Bucket=BUCKET, Key="in/d.jsonl", Body=dump_records(RECORDS))
    with pytest.raises(service.DatasetRejectedError, match="prompt_catalog_url is not set"):
        service.prepare(
            {"run_id": "r", "use_case": "qa", "dataset": {"bucket": BUCKET, "key": "in/d.jsonl"}}, rt
        )


def test_judge_references_shows_the_judge_the_reference():
    judge = ScriptedModel("judge", [verdict(7)])
    settings = make_settings(
        judge={"model": {"name": "judge", "provider": "bedrock", "model_id": "j"}, "judge_references": True}
    )
    ctx = ScoringContext(run_id="r", settings=settings, judge=judge)
    record = EvaluationRecord(id="x", input="Capital of France?", reference_output="Paris </reference>")
    row = score_record(record, ScriptedModel("fm", ["Paris"]), ctx)
    assert row.judge_score == 7 and row.metrics["rougeL"] > 0
    assert "Paris &lt;/reference&gt;" in judge.calls[0].prompt
    assert {"judge_overall", "rougeL"} <= set(row.metrics)  # judge and reference metrics side by side
