-- hottest GPUs
SELECT cluster, node, uuid, any(model), anyLast(job_id), max(temp_gpu_c_max) AS value FROM gpufleet.gpu_1m WHERE t >= toDateTime({from:Int64}, 'UTC') AND t < toDateTime({to:Int64}, 'UTC') AND temp_gpu_c_n > 0 GROUP BY cluster, node, uuid ORDER BY value DESC, node, uuid LIMIT 10;

-- least utilised in pool train of two clusters
SELECT cluster, node, uuid, any(model), anyLast(job_id), sum(gpu_util_sum) / sum(gpu_util_n) AS value FROM gpufleet.gpu_1m WHERE t >= toDateTime({from:Int64}, 'UTC') AND t < toDateTime({to:Int64}, 'UTC') AND pool IN {f0:Array(String)} AND cluster IN {f1:Array(String)} AND gpu_util_n > 0 GROUP BY cluster, node, uuid ORDER BY value ASC, node, uuid LIMIT 5;
-- params map[f0:['train'] f1:['east','it\'s']]

-- hottest GPUs by p99 (gpu_1h digests)
SELECT cluster, node, uuid, any(model), anyLast(job_id), quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(temp_gpu_c_q)[4] AS value FROM gpufleet.gpu_1h WHERE t >= toStartOfHour(toDateTime({from:Int64}, 'UTC')) AND t < toDateTime({to:Int64}, 'UTC') AND temp_gpu_c_n > 0 GROUP BY cluster, node, uuid HAVING isFinite(value) ORDER BY value DESC, node, uuid LIMIT 10;

-- stopped reporting
SELECT cluster, node, uuid, any(model), max(t) AS last_seen FROM gpufleet.gpu_1m WHERE t >= toDateTime({from:Int64}, 'UTC') AND t < toDateTime({to:Int64}, 'UTC') GROUP BY cluster, node, uuid HAVING last_seen < toDateTime({silent_since:Int64}, 'UTC') ORDER BY last_seen, node, uuid;

-- stragglers
SELECT g.job_id, g.node, g.uuid, g.u, j.med, j.n FROM (SELECT job_id, node, uuid, sum(gpu_util_sum) / sum(gpu_util_n) AS u FROM gpufleet.gpu_1m WHERE t >= toDateTime({from:Int64}, 'UTC') AND t < toDateTime({to:Int64}, 'UTC') AND job_id != '' AND gpu_util_n > 0 GROUP BY job_id, node, uuid) AS g INNER JOIN (SELECT job_id, median(u) AS med, count() AS n FROM (SELECT job_id, node, uuid, sum(gpu_util_sum) / sum(gpu_util_n) AS u FROM gpufleet.gpu_1m WHERE t >= toDateTime({from:Int64}, 'UTC') AND t < toDateTime({to:Int64}, 'UTC') AND job_id != '' AND gpu_util_n > 0 GROUP BY job_id, node, uuid) GROUP BY job_id HAVING n >= 2 AND med >= 10) AS j ON g.job_id = j.job_id WHERE g.u < {ratio:Float64} * j.med ORDER BY g.u / j.med, g.job_id, g.uuid;

-- events by model
SELECT e.kind, ifNull(nullIf(m.model, ''), 'unknown'), uniqExact(e.uuid), count() AS c FROM gpufleet.gpu_events AS e LEFT JOIN (SELECT uuid, any(model) AS model FROM gpufleet.gpu_1h WHERE t >= toStartOfHour(fromUnixTimestamp64Milli({from_ms:Int64})) - INTERVAL 1 DAY GROUP BY uuid) AS m ON e.uuid = m.uuid WHERE e.time >= fromUnixTimestamp64Milli({from_ms:Int64}) AND e.time < fromUnixTimestamp64Milli({to_ms:Int64}) GROUP BY e.kind, m.model ORDER BY c DESC, e.kind;

-- job usage
SELECT u.job_id, u.gpus, u.gpu_minutes / 60, u.mean_util, ifNull(e.mj, 0) / 3.6e9 FROM (SELECT job_id, uniqExact(uuid) AS gpus, count() AS gpu_minutes, sum(gpu_util_sum) / nullIf(sum(gpu_util_n), 0) AS mean_util FROM gpufleet.gpu_1m WHERE t >= toDateTime({from:Int64}, 'UTC') AND t < toDateTime({to:Int64}, 'UTC') AND job_id != '' GROUP BY job_id) AS u LEFT JOIN (SELECT job_id, sum(d) AS mj FROM (SELECT e.1 AS rt, e.4 AS job_id, e.3 AS d FROM (SELECT uuid, arrayJoin(arrayFilter(x -> x.2, arrayMap((c, p, i) -> (c.1, i > 1 OR c.6 != 1 OR c.3 != c.4, if(c.4 >= c.3, toInt64(c.4 - c.3), toInt64(c.5 - c.3) + toInt64(c.4)) + if(i > 1, if(c.3 >= p.4, toInt64(c.3 - p.4), toInt64(c.3)), 0), c.7), s, arrayPushFront(arrayPopBack(s), s[1]), arrayEnumerate(s)))) AS e FROM (SELECT uuid, arraySort(groupArray((rt, at, assumeNotNull(first), assumeNotNull(last), assumeNotNull(peak), n, job_id))) AS s FROM (SELECT t AS rt, first_sample AS at, finalizeAggregation(energy_mj_first) AS first, finalizeAggregation(energy_mj_last) AS last, energy_mj_max AS peak, energy_mj_n AS n, uuid, job_id FROM gpufleet.gpu_1m FINAL WHERE t >= toDateTime({from:Int64}, 'UTC') AND t < toDateTime({to:Int64}, 'UTC')) WHERE first IS NOT NULL AND last IS NOT NULL GROUP BY uuid))) GROUP BY job_id) AS e ON u.job_id = e.job_id ORDER BY u.gpu_minutes DESC, u.job_id;
