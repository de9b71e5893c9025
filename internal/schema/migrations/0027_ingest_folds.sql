-- 0027: what ingest needs to fold gpu_1m itself. A live fleet's insert block holds a few readings
-- per GPU, and gpu_1m_mv writes a row of some 300 aggregates per GPU per block: those rows are most
-- of what the rollups cost (docs/rollups.md). Ingest can instead fold a partition's rows over a
-- minute or more of blocks into one partial row per GPU-minute and insert that.
--
-- folded: the rollups a row's writer folded it into itself, a bit per level (1: gpu_1m), which
-- their views leave out (0028). Every other writer leaves it 0 and the views fold its rows as before.
--
-- ingest_folds: the Kafka range of each fold, recorded before its rows are inserted (as
-- ingest_intents records a batch's): offsets are committed only past a fold, so after a crash the
-- next owner of the partition replays from the fold's first offset, folds exactly that range
-- again, and inserts it under the same deduplication token.

ALTER TABLE {db}.gpu_samples
    ADD COLUMN IF NOT EXISTS folded UInt8 DEFAULT 0 CODEC(ZSTD(1)) AFTER interval_ms
;
CREATE TABLE IF NOT EXISTS {db}.ingest_folds
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
