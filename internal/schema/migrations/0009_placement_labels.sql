-- 0009: the agent's static placement labels (--rack, --pool) on raw samples and events. Rows
-- written before keep ''. 0010 adds them to the rollups.

ALTER TABLE {db}.gpu_samples
    ADD COLUMN IF NOT EXISTS rack LowCardinality(String) AFTER node,
    ADD COLUMN IF NOT EXISTS pool LowCardinality(String) AFTER rack
;
ALTER TABLE {db}.gpu_events
    ADD COLUMN IF NOT EXISTS rack LowCardinality(String) AFTER node,
    ADD COLUMN IF NOT EXISTS pool LowCardinality(String) AFTER rack
;
