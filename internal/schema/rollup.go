package schema

// The rollups are gpufleet's pre-aggregated tables: per GPU per minute and per hour, and per
// cluster × model per minute, each filled from gpu_samples by a materialized view. Their migrations
// are generated (rollup_ddl_test.go, from the levels here; a test pins each shipped file to its
// generator) and the query layer reads which columns hold which aggregate from here, so the two
// cannot drift apart.

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gpufleet/gpufleet/internal/gpumetric"
)

// Level is one rollup table.
type Level struct {
	Table  string
	Step   time.Duration
	bucket string   // ClickHouse function from a DateTime to the bucket start
	Dims   []string // label columns kept, in ORDER BY order before t
	TTL    string
	// Digests: gauges keep a t-digest (percentiles answerable). Counters: counters kept, which
	// needs uuid among Dims (resets are per GPU). LastGauges: gauges keep their last reading (the
	// current temperature, the memory in use now), which only means something per GPU.
	Digests, Counters, LastGauges bool
	// From is the table the view reads: gpu_samples, or a finer level whose states it merges.
	From string
	// Dedup: the table keeps a deduplication window (DedupWindow) of the blocks its view wrote, so
	// that an insert into From replayed with the same token is not counted again (0017).
	Dedup bool
	// CounterReadings (0018, with Counters): each counter keeps how many readings it had (N), and
	// each row the time of its first sample (FirstSample). A GPU whose job changes within a minute
	// has a row per job in that minute; the query layer orders them by that time to pair each row's
	// first reading with the reading before it, as the raw rows would, and leaves out a GPU's lone
	// first reading in a window as the raw path does (it has nothing to increase from).
	CounterReadings bool
	// CounterValues (0020, with CounterReadings): each counter keeps its first and last reading as
	// plain values (FirstReading, LastReading) besides the argMin/argMax states, which reading per
	// row costs: finalizing the two states was most of the scan of "Energy by job" over 24 h.
	CounterValues bool
	// Packed (0025): the last reading of a gauge is a plain packed value (LastReading, by
	// LastGaugeReading), as a counter's is since 0020, and counters keep no argMin/argMax states.
	// A state per aggregate per row is what a rollup row costs most to make and merge: a live
	// fleet's insert block holds about one reading per GPU, so each row the per-GPU views write
	// folds one reading (BenchmarkRollupCost, docs/rollups.md).
	Packed bool
	// FoldBit (gpu_1m since 0028): the view leaves out the rows whose writer folded them into the
	// table itself, those with this bit set in FoldedColumn: ingest folds a partition's rows over
	// many blocks into one partial row per GPU-minute, which costs ClickHouse a fraction of the
	// view's row per GPU per block (docs/rollups.md). 0: the view takes every row.
	FoldBit uint8
	// Feed (gpu_1h since 0029): the writer inserts its folded rows into this Null table, whose
	// view (View(Feed)) writes them into Table: the table's columns, but each t-digest as its
	// state's bytes in a String (FeedDigest), which the view casts to the state. The server
	// transport's driver has no column for an AggregateFunction type; a String it has, on both
	// transports alike. "": the writer inserts into Table itself.
	Feed string
}

// FoldedColumn is gpu_samples' UInt8 of the levels a row's writer folded it into itself, a bit per
// level (Level.FoldBit, 0027), which their views leave out; 0 (the default) for every other writer,
// whose rows the views fold.
const FoldedColumn = "folded"

// FoldBitGPU1m and FoldBitGPU1h are gpu_1m's and gpu_1h's bits in FoldedColumn.
const (
	FoldBitGPU1m = 1
	FoldBitGPU1h = 2
)

// FeedDigest is the type of a t-digest column in a level's Feed: the state's bytes.
const FeedDigest = "String"

// FirstSample is the column of a row's earliest sample time, on levels with CounterReadings:
// SimpleAggregateFunction(min, DateTime64(3, 'UTC')); 1970-01-01 on rows written before 0018.
const FirstSample = "first_sample"

// DedupWindow is how many inserts' block ids a table remembers: the raw tables' window since 0001,
// the rollups' since 0017. A replay must come within that many inserts into the table.
const DedupWindow = 10000

// Levels, as migrations leave them. fleet_1m's t-digests answer the fleet-wide percentile trend
// Grafana shows most from few rows. gpu_1h keeps a t-digest per GPU-hour (0015), for a GPU's or a
// job's percentiles over days and GPUs ranked by p99; gpu_1m keeps none, because a digest of a
// minute's 60 readings costs about 60 % of the bytes of those raw readings (BenchmarkBytesPerValue
// measured 1,067 bytes per GPU-minute) while an hour's costs 6 %, so per-GPU percentiles by the
// minute read gpu_samples. gpu_1m keeps counters. gpu_1h is fed from raw rows since 0015, from
// gpu_1m's inserts before: its digests need the readings.
var Levels = []Level{
	{Table: Fleet1m, Step: time.Minute, bucket: "toStartOfMinute", Dims: []string{"cluster", "model", "pool"}, TTL: "INTERVAL 400 DAY",
		Digests: true, From: GPUSamples, Dedup: true},
	{Table: GPU1m, Step: time.Minute, bucket: "toStartOfMinute", Dims: []string{"cluster", "node", "uuid", "model", "job_id", "rack", "pool"}, TTL: "INTERVAL 90 DAY",
		Counters: true, LastGauges: true, From: GPUSamples, Dedup: true, CounterReadings: true, CounterValues: true, Packed: true, FoldBit: FoldBitGPU1m},
	// No counters per hour: first/last/peak per hour cannot tell a reset that climbs back past the
	// hour's first reading; hourly increases are summed from gpu_1m, where that takes a counter
	// climbing from zero past its lifetime value within one minute.
	{Table: GPU1h, Step: time.Hour, bucket: "toStartOfHour", Dims: []string{"cluster", "node", "uuid", "model", "job_id", "rack", "pool"}, TTL: "INTERVAL 400 DAY",
		LastGauges: true, Digests: true, From: GPUSamples, Dedup: true, Packed: true, FoldBit: FoldBitGPU1h, Feed: GPU1hFold},
}

// Historic returns the levels as migration version left them, for the generators of the shipped
// migrations: 0010 added the placement dims, 0011 the gauges' last readings, 0015 gpu_1h's digests
// (and fed it from raw rows), 0017 the deduplication windows, 0018 the counters' readings and the
// first sample's time, 0020 the counters' first and last readings as plain values, 0025 the
// gauges' last readings packed and the states dropped, 0028 gpu_1m's view leaving out folded rows,
// 0029 gpu_1h's view leaving them out too, and its feed.
func Historic(version int) []Level {
	var drop []string
	if version < 10 {
		drop = PlacementDims
	}
	out := Without(Levels, drop...) // a copy, so LastGauges below leaves Levels alone
	for i := range out {
		if version < 11 {
			out[i].LastGauges = false
		}
		if version < 15 && out[i].Table == GPU1h {
			out[i].Digests, out[i].From = false, GPU1m
		}
		if version < 17 {
			out[i].Dedup = false
		}
		if version < 18 {
			out[i].CounterReadings = false
		}
		if version < 20 {
			out[i].CounterValues = false
		}
		if version < 25 {
			out[i].Packed = false
		}
		if version < 28 || version < 29 && out[i].Table == GPU1h {
			out[i].FoldBit, out[i].Feed = 0, ""
		}
	}
	return out
}

// PlacementDims are the labels migration 0010 added to the levels: the agent's static rack and
// pool. fleet_1m keeps pool only; racks are too many to multiply its digests by.
var PlacementDims = []string{"rack", "pool"}

// Without returns copies of levels without the dims named: the levels as they were before a
// migration added those dims.
func Without(levels []Level, dims ...string) []Level {
	out := make([]Level, len(levels))
	for i, l := range levels {
		out[i] = l
		out[i].Dims = nil
		for _, d := range l.Dims {
			if !slices.Contains(dims, d) {
				out[i].Dims = append(out[i].Dims, d)
			}
		}
	}
	return out
}

// Covered is how many registry metrics (ids 1…Covered) the rollup tables hold: migration 0005 was
// generated from the first 22, 0008 added the next 9, 0014 MIG mode and the GPM metrics, 0023 the
// failure data (remap and retirement state, violation times, power limits, NVLink data CRC). A
// metric added later is answered from gpu_samples until a migration made by UpgradeSQL adds its
// columns.
const Covered = 50

// Covers reports whether the rollups hold the metric column.
func Covers(column string) bool {
	i := gpumetric.IndexOfColumn(column)
	return i >= 0 && i < Covered
}

// Quantiles kept by every gauge's t-digest state, in the order of its result array.
var Quantiles = []float64{0.5, 0.9, 0.95, 0.99}

// Column names of a metric's aggregates in a rollup table.
func Sum(metric string) string      { return metric + "_sum" }   // SimpleAggregateFunction(sum, Float64)
func N(metric string) string        { return metric + "_n" }     // readings, SimpleAggregateFunction(sum, UInt64)
func MinCol(metric string) string   { return metric + "_min" }   // SimpleAggregateFunction(min, Nullable(…))
func MaxCol(metric string) string   { return metric + "_max" }   // SimpleAggregateFunction(max, Nullable(…))
func Digest(metric string) string   { return metric + "_q" }     // quantilesTDigest state
func FirstCol(metric string) string { return metric + "_first" } // counters: argMin(value, time) state (before 0025)
func LastCol(metric string) string  { return metric + "_last" }  // argMax(value, time) state (before 0025)

// FirstReading and LastReading are a counter's first and last reading of a row as plain values,
// on levels with CounterValues: SimpleAggregateFunction(min, UInt128) and (max, UInt128) of
// Reading, so min is the earliest non-NULL reading and max the latest: argMin and argMax, merged
// as plain numbers and read without finalizing a state per row. (A tuple (flag, time, value) would
// say the same, but min and max of tuples compare generically: seeding BenchmarkDashboardPanels
// took twice as long with them.)
func FirstReading(metric string) string { return metric + "_first_reading" }
func LastReading(metric string) string  { return metric + "_last_reading" }

// Reading is the SQL packing a reading into FirstReading's (first) or LastReading's UInt128: bit
// 127 set where it is NULL (first) or present (last), so that min prefers and max finds a present
// one; bits 64–126 the time in Unix ms; bits 0–63 the value (0 when NULL).
func Reading(first bool, value, timeMs string) string {
	flag := "isNotNull"
	if first {
		flag = "isNull"
	}
	return fmt.Sprintf("bitOr(bitOr(bitShiftLeft(toUInt128(%s(%s)), 127), bitShiftLeft(toUInt128(%s), 64)), toUInt128(ifNull(%s, 0)))",
		flag, value, timeMs, value)
}

// ReadingValue is the SQL of the reading packed in col (Reading), NULL where there is none.
func ReadingValue(first bool, col string) string {
	present := "= 1"
	if first {
		present = "= 0"
	}
	return fmt.Sprintf("if(bitShiftRight(%s, 127) %s, toUInt64(bitAnd(%s, toUInt128(18446744073709551615))), NULL)", col, present, col)
}

// LastGaugeReading is the SQL packing a gauge's reading (Nullable(Float32)) into LastReading's
// UInt128 on Packed levels: bit 127 set where it is present, bits 64–126 the time in Unix ms, bits
// 0–31 the Float32's bits; max of it is the latest present reading, as argMax was.
func LastGaugeReading(value, timeMs string) string {
	return fmt.Sprintf("bitOr(bitOr(bitShiftLeft(toUInt128(isNotNull(%s)), 127), bitShiftLeft(toUInt128(%s), 64)), toUInt128(reinterpretAsUInt32(ifNull(%s, toFloat32(0)))))",
		value, timeMs, value)
}

// LastGaugeValue is the SQL of the gauge reading packed in col (LastGaugeReading): a
// Nullable(Float32), NULL where there is none.
func LastGaugeValue(col string) string {
	return fmt.Sprintf("if(bitShiftRight(%s, 127) = 1, reinterpretAsFloat32(toUInt32(bitAnd(%s, toUInt128(4294967295)))), NULL)", col, col)
}

// QuantileFunc is the aggregate the t-digest states were made with, with combinator comb ("" for
// the column type, "State" to make one, "Merge" to read one): quantilesTDigest<comb>(0.5, …).
func QuantileFunc(comb string) string {
	var qs []string
	for _, q := range Quantiles {
		qs = append(qs, fmt.Sprint(q))
	}
	return "quantilesTDigest" + comb + "(" + strings.Join(qs, ", ") + ")"
}
