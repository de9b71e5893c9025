-- 0007: the jobs dimension, fed from attribution: every job id the agents tagged samples with, when
-- it was first and last seen, and on how many GPUs and nodes. (The user who ran a job joins here
-- when the agent's attribution reports it.)

CREATE TABLE IF NOT EXISTS {db}.jobs
(
    cluster LowCardinality(String),
    job_id String,
    first_seen SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_seen SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    gpus AggregateFunction(uniq, String),
    nodes AggregateFunction(uniq, String),
    samples SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
ORDER BY (cluster, job_id)
;
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.jobs_mv TO {db}.jobs AS
SELECT
    cluster,
    toString(job_id) AS job_id,
    min(time) AS first_seen,
    max(time) AS last_seen,
    uniqState(toString(uuid)) AS gpus,
    uniqState(toString(node)) AS nodes,
    count() AS samples
FROM {db}.gpu_samples
WHERE job_id != ''
GROUP BY cluster, job_id
;
