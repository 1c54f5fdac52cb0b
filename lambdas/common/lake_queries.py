"""Athena queries over the lake tables that monitoring and evaluation run.

Each is checked in tests (`common.glue_schema.check_query`) against the Glue columns and against the
tables the data lake stack synthesizes. Parameters are Athena positional execution parameters (`?`),
bound in order; the database is the business unit's Glue database, set as the query's execution
context. Every query is per stage (the first parameter: dev, preprod or prod): one table spans the
business unit's stages, and a stage account's Lake Formation filter returns only its own stage's rows
anyway. Models are grouped by `model_id` (the tables partition by `stage` and `dt`, see glue_schema).
"""

# Mean LLM-as-judge score per model and day. Parameters: stage, first day, last day (YYYY-MM-DD).
MEAN_JUDGE_SCORE_BY_MODEL_PER_DAY = """
SELECT dt, model_id, avg(judge_score) AS mean_judge_score, count(*) AS scored_records
FROM evaluation_results
WHERE stage = ? AND dt BETWEEN ? AND ? AND judge_score IS NOT NULL AND error IS NULL
GROUP BY dt, model_id
ORDER BY dt, model_id
"""

# Share of requests the filters blocked, per direction (input/output). Parameters: stage, first, last day.
BLOCK_RATE_BY_DIRECTION = """
SELECT direction, count_if(action = 'block') / CAST(count(*) AS double) AS block_rate, count(*) AS decisions
FROM filter_decisions
WHERE stage = ? AND dt BETWEEN ? AND ?
GROUP BY direction
"""

# Share of low ratings per use case and model: 1-2 stars or a thumbs down. Parameters: stage, first, last day.
LOW_RATING_SHARE = """
SELECT use_case, model_id,
       avg(CASE WHEN (rating_type = 'stars' AND value <= 2) OR (rating_type = 'thumbs' AND value = 0)
                THEN 1.0 ELSE 0.0 END) AS low_rating_share,
       count(*) AS ratings
FROM ratings
WHERE stage = ? AND dt BETWEEN ? AND ?
GROUP BY use_case, model_id
"""
