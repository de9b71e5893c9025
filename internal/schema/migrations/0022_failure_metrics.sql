-- 0022: the failure data the agent did not collect (gpumetric/registry.go ids 37-50, #16): row-remap
-- pending and failure flags, retired pages by cause and pending, the clock-violation times per
-- policy in ns, the enforced and the board's highest power limit, NVLink data CRC errors. NULL where
-- the GPU does not answer (remap flags before Ampere, retired pages from Ampere on). retired_pages
-- keeps its meaning (retired pages, else remapped rows) for the queries written against it; these
-- columns keep each cause apart. Counters take Delta as every counter since 0001; flags and limits
-- change rarely, and plain ZSTD already stores a run of one value in next to nothing. Their rollup
-- columns come in 0023.

ALTER TABLE {db}.gpu_samples
    ADD COLUMN IF NOT EXISTS remap_pending Nullable(Float32) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS remap_failure Nullable(Float32) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS retired_pages_sbe Nullable(UInt64) CODEC(Delta, ZSTD(1)),
    ADD COLUMN IF NOT EXISTS retired_pages_dbe Nullable(UInt64) CODEC(Delta, ZSTD(1)),
    ADD COLUMN IF NOT EXISTS retired_pages_pending Nullable(Float32) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS viol_power_ns Nullable(UInt64) CODEC(Delta, ZSTD(1)),
    ADD COLUMN IF NOT EXISTS viol_thermal_ns Nullable(UInt64) CODEC(Delta, ZSTD(1)),
    ADD COLUMN IF NOT EXISTS viol_sync_boost_ns Nullable(UInt64) CODEC(Delta, ZSTD(1)),
    ADD COLUMN IF NOT EXISTS viol_board_limit_ns Nullable(UInt64) CODEC(Delta, ZSTD(1)),
    ADD COLUMN IF NOT EXISTS viol_low_util_ns Nullable(UInt64) CODEC(Delta, ZSTD(1)),
    ADD COLUMN IF NOT EXISTS viol_reliability_ns Nullable(UInt64) CODEC(Delta, ZSTD(1)),
    ADD COLUMN IF NOT EXISTS power_limit_w Nullable(Float32) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS power_max_w Nullable(Float32) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS nvlink_crc_data_errors Nullable(UInt64) CODEC(Delta, ZSTD(1))
;
