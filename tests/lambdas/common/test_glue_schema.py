import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel

from common import lake_queries
from common.glue_schema import TABLES, GlueColumn, SchemaError, check_query, hive_type
from common.lake_layout import Zone

LAMBDAS_ROOT = Path(__file__).resolve().parents[3] / "lambdas"
PARTITION_KEYS = (GlueColumn("stage", "string"), GlueColumn("dt", "string"))
COMMON = [("business_unit", "string"), ("model_id", "string"), ("event_time", "timestamp")]


def columns(table):
    return [(c.name, c.type) for c in TABLES[table].columns]


def test_evaluation_results_columns():
    assert TABLES["evaluation_results"].zone is Zone.EVALUATION_RESULTS
    assert TABLES["evaluation_results"].partition_keys == PARTITION_KEYS
    assert columns("evaluation_results") == [
        *COMMON,
        ("run_id", "string"),
        ("record_id", "string"),
        ("use_case", "string"),
        ("category", "string"),
        ("metrics", "map<string,double>"),
        ("judge_score", "double"),
        ("judge_justification", "string"),
        ("human_score", "double"),
        ("latency_ms", "double"),
        ("input_tokens", "bigint"),
        ("output_tokens", "bigint"),
        ("cost_usd", "double"),
        ("error", "string"),
    ]


def test_ratings_columns():
    assert TABLES["ratings"].zone is Zone.FEEDBACK
    assert TABLES["ratings"].partition_keys == PARTITION_KEYS
    assert columns("ratings") == [
        *COMMON,
        ("rating_id", "string"),
        ("request_id", "string"),
        ("tenant_id", "string"),
        ("use_case", "string"),
        ("rating_type", "string"),
        ("value", "bigint"),
        ("comment", "string"),
        ("prompt_ref", "string"),
    ]


def test_filter_decisions_columns():
    assert TABLES["filter_decisions"].zone is Zone.FILTER_DECISIONS
    assert TABLES["filter_decisions"].partition_keys == PARTITION_KEYS
    assert columns("filter_decisions") == [
        *COMMON,
        ("decision_id", "string"),
        ("request_id", "string"),
        ("tenant_id", "string"),
        ("direction", "string"),
        ("action", "string"),
        ("failure_policy_applied", "string"),
        ("findings", "array<struct<layer:string,type:string,score:double>>"),
        ("layer_latency_ms", "map<string,double>"),
        ("text_redacted", "string"),
    ]


def test_model_is_a_folder_not_a_glue_column():
    # An injected `model` projection would refuse every query that groups by model.
    for table in TABLES.values():
        assert "model" not in table.column_names()
        assert "model_id" in table.column_names()
    with pytest.raises(SchemaError, match="model"):
        check_query("SELECT model, count(*) FROM ratings GROUP BY model")


def test_partition_keys_are_never_body_columns():
    for table in TABLES.values():
        assert not {"stage", "dt", "model"} & {c.name for c in table.columns}


def test_hive_types_of_other_annotations():
    class Inner(BaseModel):
        flag: bool
        at: datetime

    assert hive_type(list[str]) == "array<string>"
    assert hive_type(Literal[1, 2]) == "bigint"
    assert hive_type(Inner | None) == "struct<flag:boolean,at:timestamp>"
    with pytest.raises(SchemaError):
        hive_type(int | str)
    with pytest.raises(SchemaError):
        hive_type(bytes)


@pytest.mark.parametrize(
    "query",
    [
        lake_queries.MEAN_JUDGE_SCORE_BY_MODEL_PER_DAY,
        lake_queries.BLOCK_RATE_BY_DIRECTION,
        lake_queries.LOW_RATING_SHARE,
    ],
)
def test_monitoring_queries_use_only_declared_columns(query):
    check_query(query)


def test_a_database_qualified_table_is_matched_by_its_name():
    check_query('SELECT count(*) FROM "finance_lake"."ratings" WHERE stage = ? AND dt = ? AND tenant_id = ?')


def test_a_join_across_tables_resolves_each_side():
    check_query(
        "SELECT r.value, e.judge_score FROM ratings r JOIN evaluation_results e ON r.request_id = e.record_id"
    )


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("SELECT avg(judge_scor) FROM evaluation_results", "judge_scor"),
        ("SELECT direction FROM filter_decisions WHERE verdict = 'block'", "verdict"),
        ("SELECT value FROM ratings GROUP BY dt, day", "day"),
        ("SELECT judge_score FROM ratings", "judge_score"),
        ("SELECT value FROM user_ratings", "user_ratings"),
        (
            "SELECT r.value, e.judge_scor FROM ratings r"
            " JOIN evaluation_results e ON r.request_id = e.record_id",
            "judge_scor",
        ),
        ("SELECT FROM WHERE", "parse"),
    ],
)
def test_a_query_referencing_what_the_tables_lack_fails(query, message):
    with pytest.raises(SchemaError, match=message):
        check_query(query)


def test_importing_the_schema_does_not_need_sqlglot():
    # The stack (synth) and Lambdas import this module; sqlglot is only in requirements-dev.txt.
    code = "import sys, common.glue_schema; sys.exit('sqlglot' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=LAMBDAS_ROOT, check=False)
    assert result.returncode == 0
