-- 0004: metrics the NVML agent reads beyond the first set (gpumetric/registry.go ids 23-31):
-- video encoder/decoder utilisation, NVLink traffic and error counters, remapped memory rows.
-- Gauges are Nullable(Float32), counters Nullable(UInt64); NULL means the GPU does not support
-- the metric (no NVLink on PCIe boards, no row remapping before Ampere).
-- Numbered 0004 although 0005 and 0006 exist: migrate applies every version not yet recorded, so
-- a database that already has 0005/0006 gets this one on its next run. Rollup columns for these
-- metrics are not added here (rollup.SQL pins 0005 to the first 22 metrics).

ALTER TABLE {db}.gpu_samples
    ADD COLUMN IF NOT EXISTS enc_util Nullable(Float32) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS dec_util Nullable(Float32) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS nvlink_tx_kib Nullable(UInt64) CODEC(Delta, ZSTD(1)),
    ADD COLUMN IF NOT EXISTS nvlink_rx_kib Nullable(UInt64) CODEC(Delta, ZSTD(1)),
    ADD COLUMN IF NOT EXISTS remapped_rows_cor Nullable(UInt64) CODEC(Delta, ZSTD(1)),
    ADD COLUMN IF NOT EXISTS remapped_rows_unc Nullable(UInt64) CODEC(Delta, ZSTD(1)),
    ADD COLUMN IF NOT EXISTS nvlink_crc_flit_errors Nullable(UInt64) CODEC(Delta, ZSTD(1)),
    ADD COLUMN IF NOT EXISTS nvlink_replay_errors Nullable(UInt64) CODEC(Delta, ZSTD(1)),
    ADD COLUMN IF NOT EXISTS nvlink_recovery_errors Nullable(UInt64) CODEC(Delta, ZSTD(1))
;
