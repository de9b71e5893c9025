-- 0026: each reading's sampling period (interval_ms, which agents send since this version; 0 from
-- older agents), and each cluster-second's total power in cluster_power_1s as a plain sum of every
-- reading times the share of the second it stands for (interval_ms / 1000, at most 1; 0 read as 1).
-- 0024 kept an exact GPU-set state instead, and a second's total cost a merge of that set: a day of
-- a 256-GPU cluster merged 86,400 sets of 256, O(GPUs) per second read; a sum merges in O(1). Rows
-- made before 0026 get their total from the columns 0024 kept (mean reading × GPUs, the old answer).
-- power_gpus stays, an empty state in every row from here on (a byte), so that 0024's statements
-- still run again on this table, as every migration's must; its default stays for the same reason.
-- docs/power.md says when the sum is exact.

ALTER TABLE {db}.gpu_samples
    ADD COLUMN IF NOT EXISTS interval_ms UInt32 CODEC(T64, ZSTD(1)) AFTER seq
;
DROP VIEW IF EXISTS {db}.cluster_power_1s_mv
;
ALTER TABLE {db}.cluster_power_1s
    ADD COLUMN IF NOT EXISTS power_w_total SimpleAggregateFunction(sum, Float64) DEFAULT if(power_w_n = 0, 0, power_w_sum / power_w_n * finalizeAggregation(power_gpus))
;
ALTER TABLE {db}.cluster_power_1s
    MATERIALIZE COLUMN power_w_total
SETTINGS mutations_sync = 2
;
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.cluster_power_1s_mv TO {db}.cluster_power_1s AS
SELECT
    toDateTime(toStartOfSecond(time), 'UTC') AS t,
    cluster,
    count() AS samples,
    toFloat64(ifNull(sum(power_w), 0)) AS power_w_sum,
    count(power_w) AS power_w_n,
    toFloat64(ifNull(sum(power_w * if(interval_ms = 0, 1, least(interval_ms, 1000) / 1000)), 0)) AS power_w_total
FROM {db}.gpu_samples
GROUP BY t, cluster
;
