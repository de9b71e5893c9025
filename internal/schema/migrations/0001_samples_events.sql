-- 0001: raw GPU samples and GPU events.
-- {db} is replaced by the target database (an identifier checked by gpufleet). Statements are
-- separated by a line holding only ';'. Metric columns follow gpumetric/registry.go: gauges are
-- Nullable(Float32), counters Nullable(UInt64); NULL means the GPU does not support the metric.

CREATE TABLE IF NOT EXISTS {db}.gpu_samples
(
    time DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    cluster LowCardinality(String),
    node LowCardinality(String),
    gpu UInt8,
    uuid LowCardinality(String),
    model LowCardinality(String),
    job_id LowCardinality(String),
    driver_version LowCardinality(String),
    agent_id LowCardinality(String),
    seq UInt64 CODEC(Delta, ZSTD(1)),
    gpu_util Nullable(Float32) CODEC(ZSTD(1)),
    mem_util Nullable(Float32) CODEC(ZSTD(1)),
    fb_used_mib Nullable(Float32) CODEC(ZSTD(1)),
    fb_free_mib Nullable(Float32) CODEC(ZSTD(1)),
    fb_total_mib Nullable(Float32) CODEC(ZSTD(1)),
    power_w Nullable(Float32) CODEC(ZSTD(1)),
    energy_mj Nullable(UInt64) CODEC(Delta, ZSTD(1)),
    temp_gpu_c Nullable(Float32) CODEC(ZSTD(1)),
    temp_mem_c Nullable(Float32) CODEC(ZSTD(1)),
    clock_sm_mhz Nullable(Float32) CODEC(ZSTD(1)),
    clock_mem_mhz Nullable(Float32) CODEC(ZSTD(1)),
    throttle_reasons Nullable(UInt64) CODEC(Delta, ZSTD(1)),
    pcie_tx_kibs Nullable(Float32) CODEC(ZSTD(1)),
    pcie_rx_kibs Nullable(Float32) CODEC(ZSTD(1)),
    pcie_replays Nullable(UInt64) CODEC(Delta, ZSTD(1)),
    ecc_sbe_volatile Nullable(UInt64) CODEC(Delta, ZSTD(1)),
    ecc_dbe_volatile Nullable(UInt64) CODEC(Delta, ZSTD(1)),
    ecc_sbe_aggregate Nullable(UInt64) CODEC(Delta, ZSTD(1)),
    ecc_dbe_aggregate Nullable(UInt64) CODEC(Delta, ZSTD(1)),
    retired_pages Nullable(UInt64) CODEC(Delta, ZSTD(1)),
    fan_pct Nullable(Float32) CODEC(ZSTD(1)),
    pstate Nullable(Float32) CODEC(ZSTD(1)),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3) CODEC(DoubleDelta, ZSTD(1))
)
ENGINE = MergeTree
PARTITION BY toDate(time)
ORDER BY (cluster, node, gpu, time)
TTL toDateTime(time) + INTERVAL 30 DAY
-- Keeps the last block hashes so that a replayed insert with the same dedup token is dropped.
SETTINGS non_replicated_deduplication_window = 10000
;
CREATE TABLE IF NOT EXISTS {db}.gpu_events
(
    time DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    cluster LowCardinality(String),
    node LowCardinality(String),
    gpu UInt8,
    uuid LowCardinality(String),
    kind LowCardinality(String),
    code UInt64,
    pid UInt32,
    message String CODEC(ZSTD(1)),
    agent_id LowCardinality(String),
    seq UInt64
)
ENGINE = MergeTree
PARTITION BY toDate(time)
ORDER BY (cluster, node, time)
TTL toDateTime(time) + INTERVAL 180 DAY
SETTINGS non_replicated_deduplication_window = 10000
;
