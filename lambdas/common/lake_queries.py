"""Athena queries over the lake tables that monitoring and evaluation run.

Each is checked against the Glue columns in tests (`common.glue_schema.check_query`). Parameters
are Athena positional execution parameters (`?`), bound in order; the database is the business
unit's Glue database, set as the query's execution context.
"""

# Mean LLM-as-judge score per model and day. Parameters: first day, last day (YYYY-MM-DD).
MEAN_JUDGE_SCORE_BY_MODEL_PER_DAY = """
SELECT dt, model, avg(judge_score) AS mean_judge_score, count(*) AS scored_records
FROM evaluation_results
WHERE dt BETWEEN ? AND ? AND judge_score IS NOT NULL AND error IS NULL
GROUP BY dt, model
ORDER BY dt, model
"""

# Share of requests the filters blocked, per direction (input/output). Parameters: first, last day.
BLOCK_RATE_BY_DIRECTION = """
SELECT direction, count_if(action = 'block') / CAST(count(*) AS double) AS block_rate, count(*) AS decisions
FROM filter_decisions
WHERE dt BETWEEN ? AND ?
GROUP BY direction
"""

# Share of low ratings per use case and model: 1-2 stars or a thumbs down. Parameters: first, last day.
LOW_RATING_SHARE = """
SELECT use_case, model,
       avg(CASE WHEN (rating_type = 'stars' AND value <= 2) OR (rating_type = 'thumbs' AND value = 0)
                THEN 1.0 ELSE 0.0 END) AS low_rating_share,
       count(*) AS ratings
FROM ratings
WHERE dt BETWEEN ? AND ?
GROUP BY use_case, model
"""
