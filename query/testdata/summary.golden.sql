-- overall
SELECT count() AS samples, uniqExactIf(uuid, parent_uuid = '') AS gpus, uniqExact(node) AS nodes, ifNotFinite(avg(gpu_util), 0) AS mean_util, ifNotFinite(quantileTDigest(0.99)(gpu_util), 0) AS p99_util FROM gpufleet.gpu_samples WHERE time >= fromUnixTimestamp64Milli(1714521600000) AND time < fromUnixTimestamp64Milli(1714525200000);

-- hottest
SELECT node, gpu, uuid, any(model) AS model, max(temp_gpu_c) AS max_temp, avg(gpu_util) AS mean_util FROM gpufleet.gpu_samples WHERE time >= fromUnixTimestamp64Milli(1714521600000) AND time < fromUnixTimestamp64Milli(1714525200000) AND temp_gpu_c IS NOT NULL GROUP BY node, gpu, uuid ORDER BY max_temp DESC, node, gpu LIMIT 5;

-- events
SELECT countIf(kind = 'xid') AS xids, countIf(kind = 'throttle') AS throttles FROM gpufleet.gpu_events WHERE time >= fromUnixTimestamp64Milli(1714521600000) AND time < fromUnixTimestamp64Milli(1714525200000);
