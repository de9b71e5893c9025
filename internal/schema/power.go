package schema

// ClusterPower1s (migrations 0024, 0026) keeps, per cluster and second, what the total power draw
// of the cluster's GPUs in that second is computed from. A materialized view sees one insert block
// at a time, and a GPU's readings of one second may be split across two blocks (ingest cuts batches
// by rows and time, not on second edges), so it cannot take each GPU's mean and then add the means
// up. Each reading instead stands for the share of the second its agent's sampling period covers
// (gpu_samples.interval_ms, at most one second; 0, an agent older than the field, counts as one
// second), and the total is the sum of reading × share over the second's readings:
//
//	sum(PowerTotal) = Σ power_w × min(interval_ms, 1000) / 1000
//
// a plain sum, which merges across blocks exactly and in O(1). It equals the sum over GPUs of each
// GPU's mean reading whenever each GPU read power 1000 / interval_ms times in the second: once at
// 1 Hz, ten times at 10 Hz, whatever the other GPUs' rates. A GPU with a reading more (jitter at a
// second's edge) adds that reading's share again; one with a reading less is short of it, as the raw
// rows are of a GPU with none. Where that matters the raw rows answer exactly: query.FleetPower with
// Source SourceRaw or a filter on anything but the cluster reads gpu_samples (docs/power.md).
//
// 0024 kept an exact distinct-count state of the GPUs instead and answered mean × GPUs, which cost a
// merge of a GPU set per second read: O(GPUs), 2.6 s for a day of four 256-GPU clusters.
const (
	PowerSum   = "power_w_sum"   // SimpleAggregateFunction(sum, Float64): the readings of power_w added up
	PowerN     = "power_w_n"     // SimpleAggregateFunction(sum, UInt64): how many readings
	PowerTotal = "power_w_total" // SimpleAggregateFunction(sum, Float64): Σ reading × its share of the second, in W
)

// PowerTotalSQL is the SQL of a second's total power in W over the rows of ClusterPower1s grouped by
// cluster and t; NULL for a second without a reading.
const PowerTotalSQL = "if(sum(" + PowerN + ") = 0, NULL, sum(" + PowerTotal + "))"

// SampleViews are the tables a materialized view fills from GPUSamples, each counting every row
// (jobs: every row with a job) in its samples column: what a replayed insert must not count
// twice. Tests of exactly-once delivery check each of them.
func SampleViews() []string { return []string{Fleet1m, GPU1m, GPU1h, Jobs, ClusterPower1s} }
