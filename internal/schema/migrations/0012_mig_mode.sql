-- 0012: mig_mode (gpumetric/registry.go id 32): whether each GPU is partitioned into MIG instances,
-- from nvmlDeviceGetMigMode. Read from gpu_samples; not in the rollups (rollup.Covered stays 31).

ALTER TABLE {db}.gpu_samples
    ADD COLUMN IF NOT EXISTS mig_mode Nullable(Float32) CODEC(ZSTD(1))
;
