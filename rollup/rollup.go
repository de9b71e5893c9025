// Package rollup defines gpufleet's pre-aggregated tables: per GPU per minute and per hour, and per
// cluster × model per minute, each filled from gpu_samples by a materialized view. It generates
// their migration (deploy/migrations/0005_rollups.sql, pinned by a test) and tells the query layer
// which columns hold which aggregate, so the two cannot drift apart.
package rollup

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
}

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
	{Table: "fleet_1m", Step: time.Minute, bucket: "toStartOfMinute", Dims: []string{"cluster", "model", "pool"}, TTL: "INTERVAL 400 DAY",
		Digests: true, From: "gpu_samples", Dedup: true},
	{Table: "gpu_1m", Step: time.Minute, bucket: "toStartOfMinute", Dims: []string{"cluster", "node", "uuid", "model", "job_id", "rack", "pool"}, TTL: "INTERVAL 90 DAY",
		Counters: true, LastGauges: true, From: "gpu_samples", Dedup: true, CounterReadings: true},
	// No counters per hour: first/last/peak per hour cannot tell a reset that climbs back past the
	// hour's first reading; hourly increases are summed from gpu_1m, where that takes a counter
	// climbing from zero past its lifetime value within one minute.
	{Table: "gpu_1h", Step: time.Hour, bucket: "toStartOfHour", Dims: []string{"cluster", "node", "uuid", "model", "job_id", "rack", "pool"}, TTL: "INTERVAL 400 DAY",
		LastGauges: true, Digests: true, From: "gpu_samples", Dedup: true},
}

// Historic returns the levels as migration version left them, for the generators of the shipped
// migrations: 0010 added the placement dims, 0011 the gauges' last readings, 0015 gpu_1h's digests
// (and fed it from raw rows), 0017 the deduplication windows, 0018 the counters' readings and the
// first sample's time.
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
		if version < 15 && out[i].Table == "gpu_1h" {
			out[i].Digests, out[i].From = false, "gpu_1m"
		}
		if version < 17 {
			out[i].Dedup = false
		}
		if version < 18 {
			out[i].CounterReadings = false
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
// generated from the first 22, 0008 added the next 9, 0014 MIG mode and the GPM metrics. A metric
// added later is answered from gpu_samples until a migration made by UpgradeSQL adds its columns.
const Covered = 36

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
func FirstCol(metric string) string { return metric + "_first" } // counters: argMin(value, time) state
func LastCol(metric string) string  { return metric + "_last" }  // argMax(value, time) state

// QuantileFunc is the aggregate the t-digest states were made with, with combinator comb ("" for
// the column type, "State" to make one, "Merge" to read one): quantilesTDigest<comb>(0.5, …).
func QuantileFunc(comb string) string {
	var qs []string
	for _, q := range Quantiles {
		qs = append(qs, fmt.Sprint(q))
	}
	return "quantilesTDigest" + comb + "(" + strings.Join(qs, ", ") + ")"
}

// SQL is the migration creating every level's table and view for metrics.
func SQL(levels []Level, metrics []gpumetric.Metric) string {
	var b strings.Builder
	b.WriteString("-- 0005: rollups, generated by rollup.SQL from gpumetric/registry.go (rollup_test.go pins this\n" +
		"-- file to the generator). Each table is an AggregatingMergeTree filled by a materialized view on\n" +
		"-- gpu_samples; a block ClickHouse drops as a duplicate insert never reaches the views.\n" +
		"-- Gauges keep sum, count, min and max, and on fleet_1m a t-digest; per-GPU levels keep counters'\n" +
		"-- min, max and first and last reading with its time, from which the query layer computes\n" +
		"-- reset-aware increases. gpu_1h is fed from gpu_1m's inserts.\n")
	for _, l := range levels {
		writeLevel(&b, l, metrics)
	}
	return b.String()
}

// columnDefs are the rollup columns of metric m at level l, as "name type" definitions.
func columnDefs(l Level, m gpumetric.Metric) []string {
	if m.Kind == gpumetric.Gauge {
		defs := []string{
			Sum(m.Column) + " SimpleAggregateFunction(sum, Float64)",
			N(m.Column) + " SimpleAggregateFunction(sum, UInt64)",
			MinCol(m.Column) + " SimpleAggregateFunction(min, Nullable(Float32))",
			MaxCol(m.Column) + " SimpleAggregateFunction(max, Nullable(Float32))",
		}
		if l.LastGauges {
			defs = append(defs, LastCol(m.Column)+" AggregateFunction(argMax, Nullable(Float32), DateTime64(3, 'UTC'))")
		}
		if l.Digests {
			defs = append(defs, fmt.Sprintf("%s AggregateFunction(%s, Nullable(Float32)) CODEC(ZSTD(1))", Digest(m.Column), QuantileFunc("")))
		}
		return defs
	}
	if !l.Counters {
		return nil
	}
	defs := []string{
		MinCol(m.Column) + " SimpleAggregateFunction(min, Nullable(UInt64))",
		MaxCol(m.Column) + " SimpleAggregateFunction(max, Nullable(UInt64))",
		FirstCol(m.Column) + " AggregateFunction(argMin, Nullable(UInt64), DateTime64(3, 'UTC'))",
		LastCol(m.Column) + " AggregateFunction(argMax, Nullable(UInt64), DateTime64(3, 'UTC'))",
	}
	if l.CounterReadings {
		defs = append(defs, N(m.Column)+" SimpleAggregateFunction(sum, UInt64)")
	}
	return defs
}

// rowDefs are the columns of level l that belong to no metric, as "name type" definitions.
func rowDefs(l Level) []string {
	defs := []string{"samples SimpleAggregateFunction(sum, UInt64)"}
	if l.Counters && l.CounterReadings {
		defs = append(defs, FirstSample+" SimpleAggregateFunction(min, DateTime64(3, 'UTC'))")
	}
	return defs
}

func writeLevel(b *strings.Builder, l Level, metrics []gpumetric.Metric) {
	fmt.Fprintf(b, "\nCREATE TABLE IF NOT EXISTS {db}.%s\n(\n    t DateTime('UTC'),\n", l.Table)
	for _, d := range l.Dims {
		fmt.Fprintf(b, "    %s LowCardinality(String),\n", d)
	}
	b.WriteString("    " + strings.Join(rowDefs(l), ",\n    "))
	for _, m := range metrics {
		for _, def := range columnDefs(l, m) {
			b.WriteString(",\n    " + def)
		}
	}
	fmt.Fprintf(b, "\n)\nENGINE = AggregatingMergeTree\nPARTITION BY toYYYYMM(t)\nORDER BY (%s, t)\nTTL t + %s\n",
		strings.Join(l.Dims, ", "), l.TTL)
	if l.Dedup {
		fmt.Fprintf(b, "SETTINGS non_replicated_deduplication_window = %d\n", DedupWindow)
	}
	b.WriteString(";\n")
	writeView(b, l, metrics)
}

// UpgradeSQL is the migration that extends every level from the metrics in have to those in want:
// their columns are added, and each view is dropped and created again to fill them. (Rows inserted
// between the drop and the create of a view miss that level.)
func UpgradeSQL(levels []Level, have, want []gpumetric.Metric, version string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "-- %s: rollup columns for metrics %d-%d, generated by rollup.UpgradeSQL (pinned by rollup_test.go).\n",
		version, len(have)+1, len(want))
	for _, l := range levels {
		var defs []string
		for _, m := range want[len(have):] {
			for _, def := range columnDefs(l, m) {
				defs = append(defs, "ADD COLUMN IF NOT EXISTS "+def)
			}
		}
		if len(defs) > 0 {
			fmt.Fprintf(&b, "\nALTER TABLE {db}.%s\n    %s\n;\n", l.Table, strings.Join(defs, ",\n    "))
		}
		fmt.Fprintf(&b, "DROP VIEW IF EXISTS {db}.%s_mv\n;\n", l.Table)
		writeView(&b, l, want)
	}
	return b.String()
}

// ColumnsSQL is the migration that adds to every level the aggregate columns to has and from
// lacks (same tables and dims), and makes the changed levels' views again to fill them.
func ColumnsSQL(from, to []Level, metrics []gpumetric.Metric, version, why string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "-- %s: %s, generated by rollup.ColumnsSQL (pinned by rollup_test.go).\n", version, why)
	for i, l := range to {
		var defs []string
		for _, def := range rowDefs(l) {
			if !slices.Contains(rowDefs(from[i]), def) {
				defs = append(defs, "ADD COLUMN IF NOT EXISTS "+def)
			}
		}
		for _, m := range metrics {
			old := columnDefs(from[i], m)
			for _, def := range columnDefs(l, m) {
				if !slices.Contains(old, def) {
					defs = append(defs, "ADD COLUMN IF NOT EXISTS "+def)
				}
			}
		}
		if len(defs) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\nALTER TABLE {db}.%s\n    %s\n;\n", l.Table, strings.Join(defs, ",\n    "))
		fmt.Fprintf(&b, "DROP VIEW IF EXISTS {db}.%s_mv\n;\n", l.Table)
		writeView(&b, l, metrics)
	}
	return b.String()
}

// DimsSQL is the migration that takes every level from the dims of from to those of to (same
// tables, to's dims a superset): the new label columns are added and appended to the sorting key —
// after t, the only place ClickHouse lets an ALTER put them — and each view is made again to fill
// them. Existing rows keep ” in the new columns.
func DimsSQL(from, to []Level, metrics []gpumetric.Metric, version, why string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "-- %s: %s, generated by rollup.DimsSQL (pinned by rollup_test.go).\n", version, why)
	for i, l := range to {
		var added, defs []string
		for _, d := range l.Dims {
			if !slices.Contains(from[i].Dims, d) {
				added = append(added, d)
				defs = append(defs, "ADD COLUMN IF NOT EXISTS "+d+" LowCardinality(String)")
			}
		}
		if len(added) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\nALTER TABLE {db}.%s\n    %s,\n    MODIFY ORDER BY (%s, t, %s)\n;\n", l.Table, strings.Join(defs, ",\n    "),
			strings.Join(from[i].Dims, ", "), strings.Join(added, ", "))
		fmt.Fprintf(&b, "DROP VIEW IF EXISTS {db}.%s_mv\n;\n", l.Table)
		writeView(&b, l, metrics)
	}
	return b.String()
}

// DedupSQL is the migration that gives every level's table, and the other tables named, the
// deduplication window. An insert into gpu_samples carries a token, and with
// deduplicate_blocks_in_dependent_materialized_views (store.InsertSettings) each view's block is
// named by that token and the view; a target without a window forgets those names at once, so
// before this a replay that gpu_samples dropped was counted again in every rollup.
func DedupSQL(levels []Level, others []string, version, why string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "-- %s: %s, generated by rollup.DedupSQL (pinned by rollup_test.go).\n", version, why)
	var tables []string
	for _, l := range levels {
		if l.Dedup {
			tables = append(tables, l.Table)
		}
	}
	for _, t := range append(tables, others...) {
		fmt.Fprintf(&b, "\nALTER TABLE {db}.%s\n    MODIFY SETTING non_replicated_deduplication_window = %d\n;\n", t, DedupWindow)
	}
	return b.String()
}

func writeView(b *strings.Builder, l Level, metrics []gpumetric.Metric) {
	raw := l.From == "gpu_samples"
	timeCol := "time"
	if !raw {
		timeCol = "t"
	}
	fmt.Fprintf(b, "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.%s_mv TO {db}.%s AS\nSELECT\n    %s(%s) AS t,\n",
		l.Table, l.Table, l.bucket, timeCol)
	for _, d := range l.Dims {
		fmt.Fprintf(b, "    %s,\n", d)
	}
	if raw {
		b.WriteString("    count() AS samples")
	} else {
		b.WriteString("    sum(samples) AS samples")
	}
	if l.Counters && l.CounterReadings {
		if raw {
			fmt.Fprintf(b, ",\n    min(time) AS %s", FirstSample)
		} else {
			fmt.Fprintf(b, ",\n    min(%s) AS %s", FirstSample, FirstSample)
		}
	}
	for _, m := range metrics {
		c := m.Column
		switch {
		case m.Kind == gpumetric.Gauge && raw:
			fmt.Fprintf(b, ",\n    toFloat64(ifNull(sum(%s), 0)) AS %s", c, Sum(c))
			fmt.Fprintf(b, ",\n    count(%s) AS %s", c, N(c))
			fmt.Fprintf(b, ",\n    min(%s) AS %s", c, MinCol(c))
			fmt.Fprintf(b, ",\n    max(%s) AS %s", c, MaxCol(c))
			if l.LastGauges {
				fmt.Fprintf(b, ",\n    argMaxState(%s, time) AS %s", c, LastCol(c))
			}
			if l.Digests {
				fmt.Fprintf(b, ",\n    %s(%s) AS %s", QuantileFunc("State"), c, Digest(c))
			}
		case m.Kind == gpumetric.Gauge:
			fmt.Fprintf(b, ",\n    sum(%s) AS %s", Sum(c), Sum(c))
			fmt.Fprintf(b, ",\n    sum(%s) AS %s", N(c), N(c))
			fmt.Fprintf(b, ",\n    min(%s) AS %s", MinCol(c), MinCol(c))
			fmt.Fprintf(b, ",\n    max(%s) AS %s", MaxCol(c), MaxCol(c))
			if l.LastGauges {
				fmt.Fprintf(b, ",\n    argMaxMergeState(%s) AS %s", LastCol(c), LastCol(c))
			}
			if l.Digests {
				fmt.Fprintf(b, ",\n    %s(%s) AS %s", QuantileFunc("MergeState"), Digest(c), Digest(c))
			}
		case !l.Counters:
		case raw:
			fmt.Fprintf(b, ",\n    min(%s) AS %s", c, MinCol(c))
			fmt.Fprintf(b, ",\n    max(%s) AS %s", c, MaxCol(c))
			fmt.Fprintf(b, ",\n    argMinState(%s, time) AS %s", c, FirstCol(c))
			fmt.Fprintf(b, ",\n    argMaxState(%s, time) AS %s", c, LastCol(c))
			if l.CounterReadings {
				fmt.Fprintf(b, ",\n    count(%s) AS %s", c, N(c))
			}
		default:
			fmt.Fprintf(b, ",\n    min(%s) AS %s", MinCol(c), MinCol(c))
			fmt.Fprintf(b, ",\n    max(%s) AS %s", MaxCol(c), MaxCol(c))
			fmt.Fprintf(b, ",\n    argMinMergeState(%s) AS %s", FirstCol(c), FirstCol(c))
			fmt.Fprintf(b, ",\n    argMaxMergeState(%s) AS %s", LastCol(c), LastCol(c))
			if l.CounterReadings {
				fmt.Fprintf(b, ",\n    sum(%s) AS %s", N(c), N(c))
			}
		}
	}
	fmt.Fprintf(b, "\nFROM {db}.%s\nGROUP BY t, %s\n;\n", l.From, strings.Join(l.Dims, ", "))
}
