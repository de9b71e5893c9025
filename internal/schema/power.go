package schema

// ClusterPower1s (migration 0024) keeps, per cluster and second, what the total power draw of the
// cluster's GPUs in that second is computed from. A materialized view sees one insert block at a
// time, and a GPU's readings of one second may be split across two blocks (ingest cuts batches by
// rows and time, not on second edges), so it cannot take each GPU's mean and then add the means up.
// It keeps instead the sum and the count of the second's readings and the set of GPUs that read
// power, all of which merge across blocks exactly; the total is then
//
//	sum(PowerSum) / sum(PowerN) × uniqExactMerge(PowerGPUs)
//
// the mean reading times the GPUs. That is the sum over GPUs of each GPU's mean reading in the
// second whenever every GPU read power the same number of times in it: once each at 1 Hz, ten
// times at 10 Hz. Otherwise it weighs each GPU by its readings. Half the GPUs at 10 Hz drawing
// 700 W and half at 1 Hz drawing 100 W make (10 × 700 + 100) / 11 = 645 W a GPU, not 400; at k
// readings a GPU, one GPU with a reading more or less (sampling jitter at a second's edge) moves
// the total by about (its mean − the mean of all) / k. Where that matters the raw rows answer
// exactly: query.FleetPower with a filter on anything but the cluster reads gpu_samples
// (docs/power.md).
//
// The GPU set is an exact distinct-count state of cityHash64(uuid), 8 bytes a GPU uncompressed;
// consecutive seconds hold the same set and compress to almost nothing (BenchmarkPowerRollup).
const (
	PowerSum  = "power_w_sum" // SimpleAggregateFunction(sum, Float64): the readings of power_w added up
	PowerN    = "power_w_n"   // SimpleAggregateFunction(sum, UInt64): how many readings
	PowerGPUs = "power_gpus"  // AggregateFunction(uniqExact, UInt64): cityHash64 of each GPU's uuid that read power
)

// PowerTotal is the SQL of a second's total power in W over the rows of ClusterPower1s grouped by
// cluster and t; NULL for a second without a reading.
const PowerTotal = "sum(" + PowerSum + ") / nullIf(sum(" + PowerN + "), 0) * uniqExactMerge(" + PowerGPUs + ")"

// SampleViews are the tables a materialized view fills from GPUSamples, each counting every row
// (jobs: every row with a job) in its samples column: what a replayed insert must not count
// twice. Tests of exactly-once delivery check each of them.
func SampleViews() []string { return []string{Fleet1m, GPU1m, GPU1h, Jobs, ClusterPower1s} }
