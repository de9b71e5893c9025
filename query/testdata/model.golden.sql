-- fleet p99 utilisation
SELECT toStartOfInterval(time, toIntervalSecond({step:UInt32})) AS t, quantileTDigest(0.99)(v) AS value FROM (SELECT time, gpu_util AS v FROM gpufleet.gpu_samples WHERE time >= fromUnixTimestamp64Milli({from:Int64}) AND time < fromUnixTimestamp64Milli({to:Int64}) AND gpu_util IS NOT NULL) GROUP BY t ORDER BY t;
-- param from = 1714521600000
-- param step = 60
-- param to = 1714525200000

-- avg temperature by cluster and model, filtered
SELECT toStartOfInterval(time, toIntervalSecond({step:UInt32})) AS t, cluster, model, avg(v) AS value FROM (SELECT time, cluster, model, temp_gpu_c AS v FROM gpufleet.gpu_samples WHERE time >= fromUnixTimestamp64Milli({from:Int64}) AND time < fromUnixTimestamp64Milli({to:Int64}) AND node IN {f0:Array(String)} AND temp_gpu_c IS NOT NULL) GROUP BY t, cluster, model ORDER BY cluster, model, t;
-- param f0 = ['node-1','it\'s']
-- param from = 1714521600000
-- param step = 300
-- param to = 1714525200000

-- max power per GPU, gaps filled
SELECT toStartOfInterval(time, toIntervalSecond({step:UInt32})) AS t, uuid, max(v) AS value FROM (SELECT time, uuid, power_w AS v FROM gpufleet.gpu_samples WHERE time >= fromUnixTimestamp64Milli({from:Int64}) AND time < fromUnixTimestamp64Milli({to:Int64}) AND power_w IS NOT NULL) GROUP BY t, uuid ORDER BY uuid, t WITH FILL FROM toDateTime({fill_from:Int64}, 'UTC') TO toDateTime({fill_to:Int64}, 'UTC') STEP toIntervalSecond({step:UInt32});
-- param fill_from = 1714521600
-- param fill_to = 1714525200
-- param from = 1714521600000
-- param step = 60
-- param to = 1714525200000

-- energy increase by job
SELECT toStartOfInterval(time, toIntervalSecond({step:UInt32})) AS t, job_id, sum(d) AS value FROM (SELECT time, uuid, job_id, if(v >= prev, toInt64(v - prev), toInt64(v)) AS d FROM (SELECT time, uuid, job_id, energy_mj AS v, lagInFrame(energy_mj) OVER (PARTITION BY uuid ORDER BY time ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS prev, row_number() OVER (PARTITION BY uuid ORDER BY time) AS n FROM gpufleet.gpu_samples WHERE time >= fromUnixTimestamp64Milli({from:Int64}) AND time < fromUnixTimestamp64Milli({to:Int64}) AND energy_mj IS NOT NULL) WHERE n > 1) GROUP BY t, job_id ORDER BY job_id, t;
-- param from = 1714521600000
-- param step = 3600
-- param to = 1714525200000

-- PCIe replay rate per GPU
SELECT toStartOfInterval(time, toIntervalSecond({step:UInt32})) AS t, uuid, sum(d) / {step:UInt32} AS value FROM (SELECT time, uuid, if(v >= prev, toInt64(v - prev), toInt64(v)) AS d FROM (SELECT time, uuid, pcie_replays AS v, lagInFrame(pcie_replays) OVER (PARTITION BY uuid ORDER BY time ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS prev, row_number() OVER (PARTITION BY uuid ORDER BY time) AS n FROM gpufleet.gpu_samples WHERE time >= fromUnixTimestamp64Milli({from:Int64}) AND time < fromUnixTimestamp64Milli({to:Int64}) AND pcie_replays IS NOT NULL) WHERE n > 1) GROUP BY t, uuid ORDER BY uuid, t;
-- param from = 1714521600000
-- param step = 60
-- param to = 1714525200000

