-- 0016: MIG instances as rows of their own. An agent on a GPU with MIG enabled sends a row per
-- instance beside the GPU's: uuid is the instance's MIG-… UUID, model its MIG device name (with
-- the profile), gpu 128 + 8 × the parent's index + the instance's index, and parent_uuid the GPU
-- it partitions. Whole GPUs, and rows written before, have ''.

ALTER TABLE {db}.gpu_samples
    ADD COLUMN IF NOT EXISTS parent_uuid LowCardinality(String) AFTER uuid
;
