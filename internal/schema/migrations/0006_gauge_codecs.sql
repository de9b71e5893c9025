-- 0006: per-column codecs for the noisy gauges, chosen by measurement. Bytes on disk per value after
-- OPTIMIZE … FINAL on a simulated hour of a 1,024-GPU fleet at 1 s (BenchmarkBytesPerValue; the
-- table is ordered by GPU then time, so each column holds one GPU's series at a time):
--
--   column        ZSTD(1)  ZSTD(3)  Delta,ZSTD(1)  Gorilla,ZSTD(1)  FPC,ZSTD(1)
--   gpu_util       1.93     1.77     1.81           2.74             2.48
--   mem_util       1.78     1.64     1.68           2.64             2.46
--   fb_used_mib    2.87     2.81     2.58           2.31             2.63
--   power_w        2.72     2.44     2.47           3.06             2.78
--   pcie_tx_kibs   2.77     2.68     2.45           2.22             2.57
--   temp_gpu_c     0.77     0.77     0.73           0.76             0.88
--
-- Utilisation and power jump around: plain ZSTD at a higher level wins. Memory and PCIe throughput
-- drift: Gorilla's XOR with the previous value wins. Temperatures move by tenths: Delta wins.
-- Existing parts take the new codec when they are next merged.

ALTER TABLE {db}.gpu_samples
    MODIFY COLUMN gpu_util Nullable(Float32) CODEC(ZSTD(3)),
    MODIFY COLUMN mem_util Nullable(Float32) CODEC(ZSTD(3)),
    MODIFY COLUMN power_w Nullable(Float32) CODEC(ZSTD(3)),
    MODIFY COLUMN fb_used_mib Nullable(Float32) CODEC(Gorilla, ZSTD(1)),
    MODIFY COLUMN fb_free_mib Nullable(Float32) CODEC(Gorilla, ZSTD(1)),
    MODIFY COLUMN pcie_tx_kibs Nullable(Float32) CODEC(Gorilla, ZSTD(1)),
    MODIFY COLUMN pcie_rx_kibs Nullable(Float32) CODEC(Gorilla, ZSTD(1)),
    MODIFY COLUMN temp_gpu_c Nullable(Float32) CODEC(Delta, ZSTD(1)),
    MODIFY COLUMN temp_mem_c Nullable(Float32) CODEC(Delta, ZSTD(1))
;
