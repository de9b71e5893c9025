-- 0002: ingest's write-ahead record of how it cut each partition's batches.
-- Before inserting the rows of offsets [first_offset, last_offset] of a partition, ingest records the
-- range here; after a crash between insert and commit, the next owner of the partition cuts the same
-- range again, so the insert carries the same deduplication token and ClickHouse drops the copy.

CREATE TABLE IF NOT EXISTS {db}.ingest_intents
(
    group_id LowCardinality(String),
    topic LowCardinality(String),
    partition UInt32,
    first_offset Int64,
    last_offset Int64,
    created_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (group_id, topic, partition, first_offset)
TTL toDateTime(created_at) + INTERVAL 7 DAY
;
