-- 0003: per-agent sequence gaps ingest has seen: batches an agent numbered but that never reached
-- Kafka (or were lost before it). One row per gap; `missing` is how many batches the gap spans.

CREATE TABLE IF NOT EXISTS {db}.ingest_gaps
(
    detected_at DateTime64(3, 'UTC') DEFAULT now64(3),
    agent_id LowCardinality(String),
    topic LowCardinality(String),
    partition UInt32,
    offset Int64,
    expected_seq UInt64,
    seen_seq UInt64,
    missing UInt64
)
ENGINE = MergeTree
ORDER BY (agent_id, detected_at)
TTL toDateTime(detected_at) + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 10000
;
