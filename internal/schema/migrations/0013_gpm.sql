-- 0013: GPM metrics (gpumetric/registry.go ids 33-36, Hopper and later): SM activity and
-- occupancy, tensor-core activity, DRAM bandwidth, each a percent over the sample interval. NULL on
-- GPUs without GPM. Read from gpu_samples; not in the rollups (rollup.Covered stays 31).

ALTER TABLE {db}.gpu_samples
    ADD COLUMN IF NOT EXISTS sm_active Nullable(Float32) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS sm_occupancy Nullable(Float32) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS tensor_active Nullable(Float32) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS dram_active Nullable(Float32) CODEC(ZSTD(1))
;
