-- 0024: each cluster's total power draw per second (docs/power.md). Training steps synchronise,
-- so a cluster's draw swings by megawatts within seconds, which per-minute means smooth away.
-- Per (cluster, second): the samples (every gpu_samples row, as each rollup counts them), the sum
-- and count of the power readings, and the GPUs that read power (an exact distinct-count state of
-- their UUIDs; a MIG instance's row carries no power and is not counted). The query layer answers
-- mean reading × GPUs, which is the sum over GPUs of each GPU's mean in the second whenever every
-- GPU read power the same number of times in it (internal/schema/power.go says what it is
-- otherwise). Its own deduplication window, as every view target since 0017, so that an insert
-- replayed with its token is counted once here too. Granules of 64 rows (a row is a cluster's
-- second), not 8,192: a read takes whole granules, and at 8,192 a day of one cluster read 98,304
-- rows for its 86,400 seconds (TestFleetPowerDayRowsRead).

CREATE TABLE IF NOT EXISTS {db}.cluster_power_1s
(
    t DateTime('UTC'),
    cluster LowCardinality(String),
    samples SimpleAggregateFunction(sum, UInt64),
    power_w_sum SimpleAggregateFunction(sum, Float64),
    power_w_n SimpleAggregateFunction(sum, UInt64),
    power_gpus AggregateFunction(uniqExact, UInt64) CODEC(ZSTD(1))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMMDD(t)
ORDER BY (cluster, t)
TTL t + INTERVAL 30 DAY
SETTINGS index_granularity = 64, non_replicated_deduplication_window = 10000
;
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.cluster_power_1s_mv TO {db}.cluster_power_1s AS
SELECT
    toDateTime(toStartOfSecond(time), 'UTC') AS t,
    cluster,
    count() AS samples,
    toFloat64(ifNull(sum(power_w), 0)) AS power_w_sum,
    count(power_w) AS power_w_n,
    uniqExactStateIf(cityHash64(uuid), power_w IS NOT NULL) AS power_gpus
FROM {db}.gpu_samples
GROUP BY t, cluster
;
