-- fleet p99 utilisation (reads fleet_1m)
SELECT toStartOfInterval(rt, toIntervalSecond({step:UInt32})) AS t, CAST(quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(gpu_util_q)[4] AS Nullable(Float64)) AS value FROM (SELECT t AS rt, gpu_util_sum, gpu_util_n, gpu_util_min, gpu_util_max, gpu_util_q FROM gpufleet.fleet_1m WHERE t >= toDateTime(intDiv({from:Int64}, 1000), 'UTC') AND t < toDateTime(intDiv({to:Int64}, 1000), 'UTC') AND gpu_util_n > 0) GROUP BY t ORDER BY t;
-- param from = 1714521600000
-- param step = 60
-- param to = 1714525200000

-- avg temperature by cluster and model, filtered (reads gpu_1m)
SELECT toStartOfInterval(rt, toIntervalSecond({step:UInt32})) AS t, cluster, model, CAST(sum(temp_gpu_c_sum) / sum(temp_gpu_c_n) AS Nullable(Float64)) AS value FROM (SELECT t AS rt, cluster, model, temp_gpu_c_sum, temp_gpu_c_n, temp_gpu_c_min, temp_gpu_c_max FROM gpufleet.gpu_1m WHERE t >= toDateTime(intDiv({from:Int64}, 1000), 'UTC') AND t < toDateTime(intDiv({to:Int64}, 1000), 'UTC') AND node IN {f0:Array(String)} AND temp_gpu_c_n > 0) GROUP BY t, cluster, model ORDER BY cluster, model, t;
-- param f0 = ['node-1','it\'s']
-- param from = 1714521600000
-- param step = 300
-- param to = 1714525200000

-- max power per GPU, gaps filled (reads gpu_1m)
SELECT toStartOfInterval(rt, toIntervalSecond({step:UInt32})) AS t, uuid, CAST(max(power_w_max) AS Nullable(Float64)) AS value, toUInt8(1) AS present FROM (SELECT t AS rt, uuid, power_w_sum, power_w_n, power_w_min, power_w_max FROM gpufleet.gpu_1m WHERE t >= toDateTime(intDiv({from:Int64}, 1000), 'UTC') AND t < toDateTime(intDiv({to:Int64}, 1000), 'UTC') AND power_w_n > 0) GROUP BY t, uuid ORDER BY uuid, t WITH FILL FROM toDateTime({fill_from:Int64}, 'UTC') TO toDateTime({fill_to:Int64}, 'UTC') STEP toIntervalSecond({step:UInt32});
-- param fill_from = 1714521600
-- param fill_to = 1714525200
-- param from = 1714521600000
-- param step = 60
-- param to = 1714525200000

-- energy increase by job (reads gpu_1m)
SELECT toStartOfInterval(rt, toIntervalSecond({step:UInt32})) AS t, job_id, CAST(sum(d) AS Nullable(Float64)) AS value FROM (SELECT rt, job_id, d FROM (SELECT uuid, s.2 AS rts, s.3 AS fs, s.4 AS ls, s.7 AS a_job_id, arrayMap((f, pl, w, i) -> w + if(i > 1, if(f >= pl, toInt64(f - pl), toInt64(f)), 0), fs, arrayPushFront(arrayPopBack(ls), 0), s.5, arrayEnumerate(fs)) AS ds, arrayMap((i, n, f, l) -> i > 1 OR n != 1 OR f != l, arrayEnumerate(fs), s.6, fs, ls) AS keeps FROM (SELECT uuid, arraySort(groupArray((k, rt, first, last, w, n, job_id))) AS s FROM (SELECT rt, k, assumeNotNull(f0) AS first, assumeNotNull(l0) AS last, assumeNotNull(p0) AS peak, if(last >= first, toInt64(last - first), toInt64(peak - first) + toInt64(last)) AS w, n, uuid, job_id FROM (SELECT t AS rt, greatest(toUnixTimestamp64Milli(first_sample), toInt64(toUnixTimestamp(t)) * 1000) AS k, if(bitShiftRight(energy_mj_first_reading, 127) = 0, toUInt64(bitAnd(energy_mj_first_reading, toUInt128(18446744073709551615))), NULL) AS f0, if(bitShiftRight(energy_mj_last_reading, 127) = 1, toUInt64(bitAnd(energy_mj_last_reading, toUInt128(18446744073709551615))), NULL) AS l0, energy_mj_max AS p0, energy_mj_n AS n, uuid, job_id FROM gpufleet.gpu_1m FINAL WHERE t >= toDateTime(intDiv({from:Int64}, 1000), 'UTC') AND t < toDateTime(intDiv({to:Int64}, 1000), 'UTC')) WHERE f0 IS NOT NULL AND l0 IS NOT NULL) GROUP BY uuid)) ARRAY JOIN rts AS rt, a_job_id AS job_id, ds AS d, keeps AS keep WHERE keep) GROUP BY t, job_id ORDER BY job_id, t;
-- param from = 1714521600000
-- param step = 3600
-- param to = 1714525200000

-- PCIe replay rate per GPU (reads gpu_1m)
SELECT toStartOfInterval(rt, toIntervalSecond({step:UInt32})) AS t, uuid, CAST(sum(d) * 1000 / (least(toInt64(toUnixTimestamp(t)) * 1000 + toInt64({step:UInt32}) * 1000, {to:Int64}) - greatest(toInt64(toUnixTimestamp(t)) * 1000, {from:Int64})) AS Nullable(Float64)) AS value FROM (SELECT rt, uuid, d FROM (SELECT uuid, s.2 AS rts, s.3 AS fs, s.4 AS ls, arrayMap((f, pl, w, i) -> w + if(i > 1, if(f >= pl, toInt64(f - pl), toInt64(f)), 0), fs, arrayPushFront(arrayPopBack(ls), 0), s.5, arrayEnumerate(fs)) AS ds, arrayMap((i, n, f, l) -> i > 1 OR n != 1 OR f != l, arrayEnumerate(fs), s.6, fs, ls) AS keeps FROM (SELECT uuid, arraySort(groupArray((k, rt, first, last, w, n))) AS s FROM (SELECT rt, k, assumeNotNull(f0) AS first, assumeNotNull(l0) AS last, assumeNotNull(p0) AS peak, if(last >= first, toInt64(last - first), toInt64(peak - first) + toInt64(last)) AS w, n, uuid FROM (SELECT t AS rt, greatest(toUnixTimestamp64Milli(first_sample), toInt64(toUnixTimestamp(t)) * 1000) AS k, if(bitShiftRight(pcie_replays_first_reading, 127) = 0, toUInt64(bitAnd(pcie_replays_first_reading, toUInt128(18446744073709551615))), NULL) AS f0, if(bitShiftRight(pcie_replays_last_reading, 127) = 1, toUInt64(bitAnd(pcie_replays_last_reading, toUInt128(18446744073709551615))), NULL) AS l0, pcie_replays_max AS p0, pcie_replays_n AS n, uuid FROM gpufleet.gpu_1m FINAL WHERE t >= toDateTime(intDiv({from:Int64}, 1000), 'UTC') AND t < toDateTime(intDiv({to:Int64}, 1000), 'UTC')) WHERE f0 IS NOT NULL AND l0 IS NOT NULL) GROUP BY uuid)) ARRAY JOIN rts AS rt, ds AS d, keeps AS keep WHERE keep) GROUP BY t, uuid ORDER BY uuid, t;
-- param from = 1714521600000
-- param step = 60
-- param to = 1714525200000

-- fleet p99 utilisation, raw forced (reads gpu_samples)
SELECT toStartOfInterval(time, toIntervalSecond({step:UInt32})) AS t, CAST(quantileTDigest(0.99)(v) AS Nullable(Float64)) AS value FROM (SELECT time, gpu_util AS v FROM gpufleet.gpu_samples WHERE time >= fromUnixTimestamp64Milli({from:Int64}) AND time < fromUnixTimestamp64Milli({to:Int64}) AND gpu_util IS NOT NULL) GROUP BY t ORDER BY t;
-- param from = 1714521600000
-- param step = 60
-- param to = 1714525200000

-- energy increase by job, raw forced (reads gpu_samples)
SELECT toStartOfInterval(time, toIntervalSecond({step:UInt32})) AS t, job_id, CAST(sum(d) AS Nullable(Float64)) AS value FROM (SELECT time, uuid, job_id, if(v >= prev, toInt64(v - prev), toInt64(v)) AS d FROM (SELECT time, uuid, job_id, energy_mj AS v, lagInFrame(energy_mj) OVER (PARTITION BY uuid ORDER BY time ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS prev, row_number() OVER (PARTITION BY uuid ORDER BY time) AS n FROM gpufleet.gpu_samples WHERE time >= fromUnixTimestamp64Milli({from:Int64}) AND time < fromUnixTimestamp64Milli({to:Int64}) AND energy_mj IS NOT NULL) WHERE n > 1) GROUP BY t, job_id ORDER BY job_id, t;
-- param from = 1714521600000
-- param step = 3600
-- param to = 1714525200000

-- last temperature per GPU per hour (gpu_1h keeps last readings) (reads gpu_1h)
SELECT toStartOfInterval(rt, toIntervalSecond({step:UInt32})) AS t, uuid, CAST(if(bitShiftRight(max(temp_gpu_c_last_reading), 127) = 1, reinterpretAsFloat32(toUInt32(bitAnd(max(temp_gpu_c_last_reading), toUInt128(4294967295)))), NULL) AS Nullable(Float64)) AS value FROM (SELECT t AS rt, uuid, temp_gpu_c_sum, temp_gpu_c_n, temp_gpu_c_min, temp_gpu_c_max, temp_gpu_c_last_reading FROM gpufleet.gpu_1h WHERE t >= toDateTime(intDiv({from:Int64}, 1000), 'UTC') AND t < toDateTime(intDiv({to:Int64}, 1000), 'UTC') AND temp_gpu_c_n > 0) GROUP BY t, uuid ORDER BY uuid, t;
-- param from = 1714521600000
-- param step = 3600
-- param to = 1714525200000

-- whole window: one mean per cluster (stat panels, alerts) (reads gpu_1h)
SELECT toDateTime(intDiv({from:Int64}, 1000), 'UTC') AS t, cluster, CAST(sum(gpu_util_sum) / sum(gpu_util_n) AS Nullable(Float64)) AS value FROM (SELECT t AS rt, cluster, gpu_util_sum, gpu_util_n, gpu_util_min, gpu_util_max FROM gpufleet.gpu_1h WHERE t >= toDateTime(intDiv({from:Int64}, 1000), 'UTC') AND t < toDateTime(intDiv({to:Int64}, 1000), 'UTC') AND gpu_util_n > 0) GROUP BY t, cluster ORDER BY cluster, t;
-- param from = 1714521600000
-- param step = 3600
-- param to = 1714525200000

-- misaligned window reads raw (reads gpu_samples)
SELECT toStartOfInterval(time, toIntervalSecond({step:UInt32})) AS t, CAST(avg(v) AS Nullable(Float64)) AS value FROM (SELECT time, gpu_util AS v FROM gpufleet.gpu_samples WHERE time >= fromUnixTimestamp64Milli({from:Int64}) AND time < fromUnixTimestamp64Milli({to:Int64}) AND gpu_util IS NOT NULL) GROUP BY t ORDER BY t;
-- param from = 1714521630000
-- param step = 60
-- param to = 1714525200000

-- p99 temperature per GPU per hour (gpu_1h keeps digests since 0015) (reads gpu_1h)
SELECT toStartOfInterval(rt, toIntervalSecond({step:UInt32})) AS t, uuid, CAST(quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(temp_gpu_c_q)[4] AS Nullable(Float64)) AS value FROM (SELECT t AS rt, uuid, temp_gpu_c_sum, temp_gpu_c_n, temp_gpu_c_min, temp_gpu_c_max, temp_gpu_c_q FROM gpufleet.gpu_1h WHERE t >= toDateTime(intDiv({from:Int64}, 1000), 'UTC') AND t < toDateTime(intDiv({to:Int64}, 1000), 'UTC') AND temp_gpu_c_n > 0) GROUP BY t, uuid ORDER BY uuid, t;
-- param from = 1714521600000
-- param step = 3600
-- param to = 1714525200000

-- p99 temperature per GPU per minute reads raw (gpu_1m keeps no digests) (reads gpu_samples)
SELECT toStartOfInterval(time, toIntervalSecond({step:UInt32})) AS t, uuid, CAST(quantileTDigest(0.99)(v) AS Nullable(Float64)) AS value FROM (SELECT time, uuid, temp_gpu_c AS v FROM gpufleet.gpu_samples WHERE time >= fromUnixTimestamp64Milli({from:Int64}) AND time < fromUnixTimestamp64Milli({to:Int64}) AND temp_gpu_c IS NOT NULL) GROUP BY t, uuid ORDER BY uuid, t;
-- param from = 1714521600000
-- param step = 60
-- param to = 1714525200000

-- p95 SM activity by job per hour (a GPM metric, in the rollups since 0014) (reads gpu_1h)
SELECT toStartOfInterval(rt, toIntervalSecond({step:UInt32})) AS t, job_id, CAST(quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(sm_active_q)[3] AS Nullable(Float64)) AS value FROM (SELECT t AS rt, job_id, sm_active_sum, sm_active_n, sm_active_min, sm_active_max, sm_active_q FROM gpufleet.gpu_1h WHERE t >= toDateTime(intDiv({from:Int64}, 1000), 'UTC') AND t < toDateTime(intDiv({to:Int64}, 1000), 'UTC') AND sm_active_n > 0) GROUP BY t, job_id ORDER BY job_id, t;
-- param from = 1714521600000
-- param step = 3600
-- param to = 1714525200000

-- NVLink rate per GPU (a metric 0008 added to the rollups) (reads gpu_1m)
SELECT toStartOfInterval(rt, toIntervalSecond({step:UInt32})) AS t, uuid, CAST(sum(d) * 1000 / (least(toInt64(toUnixTimestamp(t)) * 1000 + toInt64({step:UInt32}) * 1000, {to:Int64}) - greatest(toInt64(toUnixTimestamp(t)) * 1000, {from:Int64})) AS Nullable(Float64)) AS value FROM (SELECT rt, uuid, d FROM (SELECT uuid, s.2 AS rts, s.3 AS fs, s.4 AS ls, arrayMap((f, pl, w, i) -> w + if(i > 1, if(f >= pl, toInt64(f - pl), toInt64(f)), 0), fs, arrayPushFront(arrayPopBack(ls), 0), s.5, arrayEnumerate(fs)) AS ds, arrayMap((i, n, f, l) -> i > 1 OR n != 1 OR f != l, arrayEnumerate(fs), s.6, fs, ls) AS keeps FROM (SELECT uuid, arraySort(groupArray((k, rt, first, last, w, n))) AS s FROM (SELECT rt, k, assumeNotNull(f0) AS first, assumeNotNull(l0) AS last, assumeNotNull(p0) AS peak, if(last >= first, toInt64(last - first), toInt64(peak - first) + toInt64(last)) AS w, n, uuid FROM (SELECT t AS rt, greatest(toUnixTimestamp64Milli(first_sample), toInt64(toUnixTimestamp(t)) * 1000) AS k, if(bitShiftRight(nvlink_tx_kib_first_reading, 127) = 0, toUInt64(bitAnd(nvlink_tx_kib_first_reading, toUInt128(18446744073709551615))), NULL) AS f0, if(bitShiftRight(nvlink_tx_kib_last_reading, 127) = 1, toUInt64(bitAnd(nvlink_tx_kib_last_reading, toUInt128(18446744073709551615))), NULL) AS l0, nvlink_tx_kib_max AS p0, nvlink_tx_kib_n AS n, uuid FROM gpufleet.gpu_1m FINAL WHERE t >= toDateTime(intDiv({from:Int64}, 1000), 'UTC') AND t < toDateTime(intDiv({to:Int64}, 1000), 'UTC')) WHERE f0 IS NOT NULL AND l0 IS NOT NULL) GROUP BY uuid)) ARRAY JOIN rts AS rt, ds AS d, keeps AS keep WHERE keep) GROUP BY t, uuid ORDER BY uuid, t;
-- param from = 1714521600000
-- param step = 60
-- param to = 1714525200000

-- fleet power by cluster: each GPU's mean, summed (gpu_1m: fleet_1m keeps no uuid) (reads gpu_1m)
SELECT t, cluster, CAST(sum(gv) AS Nullable(Float64)) AS value FROM (SELECT toStartOfInterval(rt, toIntervalSecond({step:UInt32})) AS t, uuid, cluster, sum(power_w_sum) / sum(power_w_n) AS gv FROM (SELECT t AS rt, uuid, cluster, power_w_sum, power_w_n FROM gpufleet.gpu_1m WHERE t >= toDateTime(intDiv({from:Int64}, 1000), 'UTC') AND t < toDateTime(intDiv({to:Int64}, 1000), 'UTC') AND power_w_n > 0) GROUP BY t, uuid, cluster) GROUP BY t, cluster ORDER BY cluster, t;
-- param from = 1714521600000
-- param step = 60
-- param to = 1714525200000

-- fleet power by cluster, raw forced (reads gpu_samples)
SELECT t, cluster, CAST(sum(gv) AS Nullable(Float64)) AS value FROM (SELECT toStartOfInterval(time, toIntervalSecond({step:UInt32})) AS t, uuid, cluster, avg(v) AS gv FROM (SELECT time, uuid, cluster, power_w AS v FROM gpufleet.gpu_samples WHERE time >= fromUnixTimestamp64Milli({from:Int64}) AND time < fromUnixTimestamp64Milli({to:Int64}) AND power_w IS NOT NULL) GROUP BY t, uuid, cluster) GROUP BY t, cluster ORDER BY cluster, t;
-- param from = 1714521600000
-- param step = 60
-- param to = 1714525200000

-- whole window: energy rate per job over the window (reads gpu_1m)
SELECT toDateTime(intDiv({from:Int64}, 1000), 'UTC') AS t, job_id, CAST(sum(d) * 1000 / ({to:Int64} - {from:Int64}) AS Nullable(Float64)) AS value FROM (SELECT rt, job_id, d FROM (SELECT uuid, s.2 AS rts, s.3 AS fs, s.4 AS ls, s.7 AS a_job_id, arrayMap((f, pl, w, i) -> w + if(i > 1, if(f >= pl, toInt64(f - pl), toInt64(f)), 0), fs, arrayPushFront(arrayPopBack(ls), 0), s.5, arrayEnumerate(fs)) AS ds, arrayMap((i, n, f, l) -> i > 1 OR n != 1 OR f != l, arrayEnumerate(fs), s.6, fs, ls) AS keeps FROM (SELECT uuid, arraySort(groupArray((k, rt, first, last, w, n, job_id))) AS s FROM (SELECT rt, k, assumeNotNull(f0) AS first, assumeNotNull(l0) AS last, assumeNotNull(p0) AS peak, if(last >= first, toInt64(last - first), toInt64(peak - first) + toInt64(last)) AS w, n, uuid, job_id FROM (SELECT t AS rt, greatest(toUnixTimestamp64Milli(first_sample), toInt64(toUnixTimestamp(t)) * 1000) AS k, if(bitShiftRight(energy_mj_first_reading, 127) = 0, toUInt64(bitAnd(energy_mj_first_reading, toUInt128(18446744073709551615))), NULL) AS f0, if(bitShiftRight(energy_mj_last_reading, 127) = 1, toUInt64(bitAnd(energy_mj_last_reading, toUInt128(18446744073709551615))), NULL) AS l0, energy_mj_max AS p0, energy_mj_n AS n, uuid, job_id FROM gpufleet.gpu_1m FINAL WHERE t >= toDateTime(intDiv({from:Int64}, 1000), 'UTC') AND t < toDateTime(intDiv({to:Int64}, 1000), 'UTC')) WHERE f0 IS NOT NULL AND l0 IS NOT NULL) GROUP BY uuid)) ARRAY JOIN rts AS rt, a_job_id AS job_id, ds AS d, keeps AS keep WHERE keep) GROUP BY t, job_id ORDER BY job_id, t;
-- param from = 1714521600000
-- param step = 3600
-- param to = 1714525200000

