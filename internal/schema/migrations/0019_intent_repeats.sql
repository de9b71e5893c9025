-- 0019: what each recorded batch left out as repeats (Kafka offsets, space-separated), so that a
-- replay of the range after a crash inserts the same block under the same token and the rollups'
-- views take exactly what they missed. Ranges recorded before keep repeats_known = 0: their replay
-- looks the repeats up as before.

ALTER TABLE {db}.ingest_intents
    ADD COLUMN IF NOT EXISTS repeats_known UInt8 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS repeats String DEFAULT '' CODEC(ZSTD(1))
;
