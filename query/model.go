package query

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/store"
)

// Agg is how a metric's readings in one step and group become one value.
type Agg string

// Aggregations. Gauges take avg … p99 and last (the latest reading in the step); counters take
// increase and rate (reset-aware: a reading below the previous one of the same GPU is a reset,
// and counts from zero). Sum is over GPUs: each GPU's mean in the step, added up (a fleet's power
// in W); summing every reading would scale with the sampling rate and mean nothing. Count is the
// readings in the step.
const (
	Avg      Agg = "avg"
	Min      Agg = "min"
	Max      Agg = "max"
	Sum      Agg = "sum"
	Count    Agg = "count"
	P50      Agg = "p50"
	P90      Agg = "p90"
	P95      Agg = "p95"
	P99      Agg = "p99"
	Last     Agg = "last"
	Increase Agg = "increase"
	Rate     Agg = "rate"
)

var gaugeAggs = map[Agg]string{
	Avg: "avg(v)", Min: "min(v)", Max: "max(v)", Count: "count(v)",
	P50: "quantileTDigest(0.5)(v)", P90: "quantileTDigest(0.9)(v)", P95: "quantileTDigest(0.95)(v)", P99: "quantileTDigest(0.99)(v)",
	Last: "argMax(v, time)",
	Sum:  "sum(gv)", // of perGPUMeans
}

// Dim is a label a query can group or filter by.
type Dim string

// Dimensions: columns of gpu_samples, from an allow-list (they are spliced into SQL as identifiers).
const (
	Cluster Dim = "cluster"
	Node    Dim = "node"
	GPU     Dim = "uuid"
	Model   Dim = "model"
	Job     Dim = "job_id"
	// Rack and Pool are the agent's static placement labels (--rack, --pool).
	Rack Dim = "rack"
	Pool Dim = "pool"
)

var dims = []Dim{Cluster, Node, GPU, Model, Job, Rack, Pool}

// Name is what users call d (DimByName takes it) and the key of the label its series carry: gpu
// for the uuid column, job for job_id. A label named as the group-by asked keeps dashboards and
// alert templates ($labels.gpu) in the user's words, not the schema's.
func (d Dim) Name() string {
	switch d {
	case GPU:
		return "gpu"
	case Job:
		return "job"
	}
	return string(d)
}

// Filter keeps rows whose Dim is one of Values.
type Filter struct {
	Dim    Dim
	Values []string
}

// Query is a time series question about one metric.
type Query struct {
	Metric  string // a gpu_samples metric column, e.g. "gpu_util"
	Agg     Agg
	GroupBy []Dim
	Filters []Filter
	From    time.Time
	To      time.Time
	Step    time.Duration // bucket width, whole seconds, at least 1 s
	// Fill emits every step of [From, To) for every series, with value NULL where nothing was read.
	Fill bool
	// Source is SourceAuto (the coarsest rollup that answers exactly, else raw) or SourceRaw.
	Source Source
	// Whole makes the window one bucket, stamped From: one number per group for stat panels and
	// alert conditions. Step is then the window's length, rounded up to a second.
	Whole bool
}

// Source says which tables a query may read.
type Source string

// Sources.
const (
	SourceAuto Source = ""
	SourceRaw  Source = "raw"
)

// ErrInvalid marks a query that cannot be compiled; the message names the field.
var ErrInvalid = errors.New("invalid query")

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, args...))
}

// MaxPoints bounds the rows one series may return, so that a 1 s step over a year is refused
// rather than computed.
const MaxPoints = 100_000

// Compiled is a query ready for store.QueryWith: SQL with {name:Type} placeholders and their values.
type Compiled struct {
	SQL    string
	Params store.Params
	// Columns of the result: "t" (DateTime, bucket start), the GroupBy dims, "value"
	// (Nullable(Float64)), then, when filled, "present" (1 on the rows the data made, 0 on those
	// WITH FILL made).
	Columns []string
	// Table is what the query reads: gpu_samples or a rollup.
	Table string
}

// Validate checks every field against the catalogue and the limits.
func (q *Query) Validate() error {
	i := gpumetric.IndexOfColumn(q.Metric)
	if i < 0 {
		return invalid("metric", "%q is not a "+schema.GPUSamples+" metric (see docs/schema.md)", q.Metric)
	}
	kind := gpumetric.All()[i].Kind
	switch {
	case kind == gpumetric.Gauge && gaugeAggs[q.Agg] == "":
		return invalid("agg", "%q does not apply to gauge %s; use avg, min, max, sum, count, p50, p90, p95, p99 or last", q.Agg, q.Metric)
	case kind == gpumetric.Counter && q.Agg != Increase && q.Agg != Rate:
		return invalid("agg", "%q does not apply to counter %s; use increase or rate", q.Agg, q.Metric)
	case kind == gpumetric.Bitmask && q.Agg != Last && q.Agg != Count:
		return invalid("agg", "%q does not apply to bitmask %s; use last or count", q.Agg, q.Metric)
	}
	for _, d := range q.GroupBy {
		if !slices.Contains(dims, d) {
			return invalid("group_by", "%q is not one of %v", d, dims)
		}
	}
	if err := checkFilters(q.Filters); err != nil {
		return err
	}
	if !q.To.After(q.From) {
		return invalid("to", "%s is not after from %s", q.To.UTC().Format(time.RFC3339), q.From.UTC().Format(time.RFC3339))
	}
	if q.Step < time.Second || q.Step%time.Second != 0 {
		return invalid("step", "%s: must be a whole number of seconds, at least 1s", q.Step)
	}
	if n := q.To.Sub(q.From) / q.Step; n > MaxPoints {
		return invalid("step", "%s over %s is %d points per series, limit %d: widen the step", q.Step, q.To.Sub(q.From), n, MaxPoints)
	}
	return nil
}

// Compile turns the query into SQL. It reads the coarsest rollup that can answer exactly (see
// pickLevel) and gpu_samples otherwise. Identifiers (metric, dims, tables) come from allow-lists;
// every value (times, step, filter values) is a bound parameter.
func (q *Query) Compile(db string) (*Compiled, error) {
	q = q.effective()
	if err := q.Validate(); err != nil {
		return nil, err
	}
	p := store.Params{
		"from": strconv.FormatInt(q.From.UnixMilli(), 10),
		"to":   strconv.FormatInt(q.To.UnixMilli(), 10),
		"step": strconv.FormatInt(int64(q.Step/time.Second), 10),
	}
	var groups []string
	for _, d := range q.GroupBy {
		groups = append(groups, string(d))
	}
	where := bindFilters(q.Filters, p)
	c := &Compiled{Params: p, Columns: append(append([]string{"t"}, groups...), "value"), Table: schema.GPUSamples}
	var b body
	if l := q.pickLevel(); l != nil {
		c.Table = l.Table
		b = q.rollupSQL(db, l, groups, where)
	} else {
		b = q.rawSQL(db, groups, where)
	}
	// Nullable, so that the rows WITH FILL adds carry NULL: it fills every other column with its
	// type's default, which for a plain number is a 0 no one measured.
	var sql strings.Builder
	fmt.Fprintf(&sql, "SELECT %s%s, CAST(%s AS Nullable(Float64)) AS value", b.t, prefixed(groups), b.value)
	if q.Fill {
		// 1 on every row the data made, 0 (the default) on the rows WITH FILL made: over an empty
		// window it makes a whole series of them, labelled with empty strings, which Run drops.
		sql.WriteString(", toUInt8(1) AS " + presentCol)
		c.Columns = append(c.Columns, presentCol)
	}
	fmt.Fprintf(&sql, " FROM (%s) GROUP BY %s ORDER BY %s", b.from,
		strings.Join(append([]string{"t"}, groups...), ", "), strings.Join(append(groups, "t"), ", "))
	if q.Fill {
		// Filled within each series: WITH FILL on the last sort key fills inside runs of the others.
		// The bounds are the first and past-the-last bucket starts, aligned as toStartOfInterval aligns.
		p["fill_from"] = strconv.FormatInt(q.fillFrom(), 10)
		p["fill_to"] = strconv.FormatInt(q.To.Unix(), 10)
		sql.WriteString(" WITH FILL FROM toDateTime({fill_from:Int64}, 'UTC') TO toDateTime({fill_to:Int64}, 'UTC')" +
			" STEP toIntervalSecond({step:UInt32})")
	}
	c.SQL = sql.String()
	return c, nil
}

// presentCol marks the rows of a filled query that the data made.
const presentCol = "present"

// effective is q as it runs: a Whole query is one bucket the window's length, never filled.
func (q *Query) effective() *Query {
	if !q.Whole {
		return q
	}
	w := *q
	w.Step, w.Fill = q.To.Sub(q.From), false
	if r := w.Step % time.Second; r != 0 {
		w.Step += time.Second - r
	}
	return &w
}

// fillFrom is the start, in Unix seconds, of the bucket holding From.
func (q *Query) fillFrom() int64 {
	step := int64(q.Step / time.Second)
	return floorDiv(q.From.Unix(), step) * step
}

// buckets is how many steps a filled series has: the points of each series.
func (q *Query) buckets() int64 {
	step := q.Step.Milliseconds()
	return (q.To.UnixMilli() - q.fillFrom()*1000 + step - 1) / step
}

// body is a query's outer SELECT before Compile wraps it: the bucket column t (SQL, aliased t),
// the value's aggregate and the subquery it reads.
type body struct{ t, value, from string }

const bucketExpr = "toStartOfInterval(%s, toIntervalSecond({step:UInt32}))"

// bucket is the SQL of the bucket start of time column col, aliased t.
func (q *Query) bucket(col string) string {
	if q.Whole {
		// Every row of the window falls in one bucket whatever the epoch alignment of its length.
		return "toDateTime(intDiv({from:Int64}, 1000), 'UTC') AS t"
	}
	return fmt.Sprintf(bucketExpr, col) + " AS t"
}

func (q *Query) isCounter() bool { return q.Agg == Increase || q.Agg == Rate }

// isBitmask reports whether the metric is a bitmask, which the rollups keep in a counter's
// columns: its last reading per minute in gpu_1m, nothing a gauge's aggregations read.
func (q *Query) isBitmask() bool {
	i := gpumetric.IndexOfColumn(q.Metric)
	return i >= 0 && gpumetric.All()[i].Kind == gpumetric.Bitmask
}

func (q *Query) rawSQL(db string, groups, filters []string) body {
	where := append([]string{"time >= fromUnixTimestamp64Milli({from:Int64})", "time < fromUnixTimestamp64Milli({to:Int64})"}, filters...)
	where = append(where, q.Metric+" IS NOT NULL")
	table := store.Table(db, schema.GPUSamples)
	bucket := q.bucket("time")
	if q.isCounter() {
		// Per GPU, the increase between consecutive readings, a reset counting from zero; the
		// first reading in the window has no predecessor in it and adds nothing.
		inner := uniq(append([]string{"time", "uuid"}, groups...))
		return body{bucket, q.counterValue(), fmt.Sprintf("SELECT %s, if(v >= prev, toInt64(v - prev), toInt64(v)) AS d FROM ("+
			"SELECT %s, %s AS v, lagInFrame(%s) OVER (PARTITION BY uuid ORDER BY time ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS prev, "+
			"row_number() OVER (PARTITION BY uuid ORDER BY time) AS n FROM %s WHERE %s) WHERE n > 1",
			strings.Join(inner, ", "), strings.Join(inner, ", "), q.Metric, q.Metric, table, strings.Join(where, " AND "))}
	}
	if q.Agg == Sum {
		gpu := uniq(append([]string{"uuid"}, groups...))
		return body{"t", gaugeAggs[Sum], fmt.Sprintf("SELECT %s, %s, avg(v) AS gv FROM (SELECT time, %s, %s AS v FROM %s WHERE %s) GROUP BY t, %s",
			bucket, strings.Join(gpu, ", "), strings.Join(gpu, ", "), q.Metric, table, strings.Join(where, " AND "), strings.Join(gpu, ", "))}
	}
	return body{bucket, gaugeAggs[q.Agg], fmt.Sprintf("SELECT time%s, %s AS v FROM %s WHERE %s",
		prefixed(groups), q.Metric, table, strings.Join(where, " AND "))}
}

// counterValue aggregates the increases d of a bucket. A rate divides by the part of the bucket
// inside [from, to): the newest bucket of a live window is still filling, and dividing what it
// has by the whole step reads low by the part still to come. A whole-window query divides by the
// window.
func (q *Query) counterValue() string {
	switch {
	case q.Agg != Rate:
		return "sum(d)"
	case q.Whole:
		return "sum(d) * 1000 / ({to:Int64} - {from:Int64})"
	}
	const start = "toInt64(toUnixTimestamp(t)) * 1000"
	return "sum(d) * 1000 / (least(" + start + " + toInt64({step:UInt32}) * 1000, {to:Int64}) - greatest(" + start + ", {from:Int64}))"
}

// rollupSQL reads level l. Gauges merge the stored aggregates; counters rebuild each GPU's
// reset-aware increase from its first, last and highest reading per bucket (bucketIncreases),
// which is exact only for short buckets: only per-minute levels keep counters (and, since 0018,
// their readings and each row's first sample time, which bucketIncreases needs).
func (q *Query) rollupSQL(db string, l *schema.Level, groups, filters []string) body {
	where := append([]string{"t >= toDateTime(intDiv({from:Int64}, 1000), 'UTC')", "t < toDateTime(intDiv({to:Int64}, 1000), 'UTC')"}, filters...)
	table := store.Table(db, l.Table)
	bucket := q.bucket("rt")
	m := q.Metric
	if q.isCounter() {
		return body{bucket, q.counterValue(), bucketIncreases(table, m, groups, strings.Join(where, " AND "))}
	}
	if q.isBitmask() { // Last only (pickLevel)
		return body{bucket, fmt.Sprintf("argMaxMerge(%s)", schema.LastCol(m)), fmt.Sprintf("SELECT t AS rt%s, %s FROM %s WHERE %s",
			prefixed(groups), schema.LastCol(m), table, strings.Join(where, " AND "))}
	}
	mean := fmt.Sprintf("sum(%s) / sum(%s)", schema.Sum(m), schema.N(m))
	var value string
	switch q.Agg {
	case Avg:
		value = mean
	case Min:
		value = fmt.Sprintf("min(%s)", schema.MinCol(m))
	case Max:
		value = fmt.Sprintf("max(%s)", schema.MaxCol(m))
	case Count:
		value = fmt.Sprintf("sum(%s)", schema.N(m))
	case Last:
		value = fmt.Sprintf("argMaxMerge(%s)", schema.LastCol(m))
	case Sum:
	default:
		value = fmt.Sprintf("%s(%s)[%d]", schema.QuantileFunc("Merge"), schema.Digest(m), quantileIndex(q.Agg)+1)
	}
	where = append(where, schema.N(m)+" > 0")
	if q.Agg == Sum {
		// Each GPU's mean over its rows in the bucket (pickLevel keeps uuid), then their sum.
		gpu := strings.Join(uniq(append([]string{"uuid"}, groups...)), ", ")
		return body{"t", gaugeAggs[Sum], fmt.Sprintf("SELECT %s, %s, %s AS gv FROM (SELECT t AS rt, %s, %s, %s FROM %s WHERE %s) GROUP BY t, %s",
			bucket, gpu, mean, gpu, schema.Sum(m), schema.N(m), table, strings.Join(where, " AND "), gpu)}
	}
	// The states only the aggregation that needs them reads: they are the heavy columns.
	cols := []string{schema.Sum(m), schema.N(m), schema.MinCol(m), schema.MaxCol(m)}
	switch {
	case quantileIndex(q.Agg) >= 0:
		cols = append(cols, schema.Digest(m))
	case q.Agg == Last:
		cols = append(cols, schema.LastCol(m))
	}
	return body{bucket, value, fmt.Sprintf("SELECT t AS rt%s, %s FROM %s WHERE %s",
		prefixed(groups), strings.Join(cols, ", "), table, strings.Join(where, " AND "))}
}

// bucketIncreases is SQL for each GPU's reset-aware increase of counter metric per row of a rollup
// table with counters: rows (rt, keep…, d). A row is a GPU-minute of one job (of one set of labels):
// inside it the increase is last − first, or, when it went down, peak − first before the reset plus
// last after it; it adds first − the previous row's last, or first after a reset. That equals the
// raw answer unless a counter resets twice in one minute, or resets and then climbs past where the
// minute started. A GPU whose job changes within a minute has a row per job there, ordered by its
// first sample (schema.FirstSample), so the step across the change is the new job's, as in the raw
// rows; a job that comes back within the same minute (A, B, A) is one row that overlaps the other.
// A GPU's first row in the window with its only reading (N = 1) adds nothing and makes no point,
// as its first raw reading, which has nothing before it in the window.
//
// FINAL merges the rows of one key as the table's sort order streams, and each GPU's rows go into
// one array of tuples, sorted by time and paired there: a GROUP BY over every GPU-minute and a
// window sorting them all was most of the 5.6 s BenchmarkDashboardPanels measured for "Energy by
// job". The readings are the plain first and last values (schema.FirstReading, 0020): finalizing
// the argMin/argMax states per row cost more than the rest of the scan, and one sort of tuples
// replaces a sort per array.
func bucketIncreases(table, metric string, keep []string, where string) string {
	var others []string
	for _, k := range uniq(keep) {
		if k != string(GPU) {
			others = append(others, k)
		}
	}
	// Each GPU's rows as tuples (k, rt, first, last, w, n, others…), sorted by k, then read apart:
	// s.2 is the array of the rows' rt.
	var arrays, joined []string
	for i, k := range others {
		arrays = append(arrays, fmt.Sprintf("s.%d AS a_%s", 7+i, k))
		joined = append(joined, fmt.Sprintf("a_%s AS %s", k, k))
	}
	outUUID := ""
	if slices.Contains(keep, string(GPU)) {
		outUUID = ", uuid"
	}
	const (
		// Rows of one minute in the order of their first samples; rows written before 0018 (first
		// sample 1970) by the minute alone.
		order  = "greatest(toUnixTimestamp64Milli(%s), toInt64(toUnixTimestamp(t)) * 1000)"
		within = "if(last >= first, toInt64(last - first), toInt64(peak - first) + toInt64(last))"
		across = "arrayMap((f, pl, w, i) -> w + if(i > 1, if(f >= pl, toInt64(f - pl), toInt64(f)), 0), fs, arrayPushFront(arrayPopBack(ls), 0), s.5, arrayEnumerate(fs))"
		// Rows written before 0018 have 0 readings recorded: kept, as before. A recorded 1 with
		// first ≠ last is a minute partly written before 0018.
		counts = "arrayMap((i, n, f, l) -> i > 1 OR n != 1 OR f != l, arrayEnumerate(fs), s.6, fs, ls)"
	)
	return fmt.Sprintf("SELECT rt%s%s, d FROM ("+
		"SELECT uuid, s.2 AS rts, s.3 AS fs, s.4 AS ls%s, %s AS ds, %s AS keeps FROM ("+
		"SELECT uuid, arraySort(groupArray((k, rt, first, last, w, n%s))) AS s FROM ("+
		"SELECT rt, k, assumeNotNull(f0) AS first, assumeNotNull(l0) AS last, assumeNotNull(p0) AS peak, %s AS w, n, uuid%s FROM ("+
		"SELECT t AS rt, "+order+" AS k, %s AS f0, %s AS l0, %s AS p0, %s AS n, uuid%s "+
		"FROM %s FINAL WHERE %s) WHERE f0 IS NOT NULL AND l0 IS NOT NULL) GROUP BY uuid)) "+
		"ARRAY JOIN rts AS rt%s, ds AS d, keeps AS keep WHERE keep",
		outUUID, prefixed(others),
		prefixed(arrays), across, counts,
		prefixed(others),
		within, prefixed(others),
		schema.FirstSample, schema.ReadingValue(true, schema.FirstReading(metric)), schema.ReadingValue(false, schema.LastReading(metric)), schema.MaxCol(metric), schema.N(metric), prefixed(others),
		table, where, prefixed(joined))
}

var quantileOf = map[Agg]float64{P50: 0.5, P90: 0.9, P95: 0.95, P99: 0.99}

// quantileIndex is a's position in schema.Quantiles, or -1 when a is not a percentile.
func quantileIndex(a Agg) int {
	q, ok := quantileOf[a]
	if !ok {
		return -1
	}
	return slices.Index(schema.Quantiles, q)
}

// pickLevel returns the coarsest rollup that answers q exactly, or nil for the raw table. A level
// qualifies when the query does not force raw, its step divides the query's, the window starts
// and ends on its step (no partial bucket at the edges), it keeps every label the query groups or
// filters by, and it keeps what the aggregation needs (digests for percentiles, per-GPU counters,
// last readings) and the metric itself (schema.Covers).
func (q *Query) pickLevel() *schema.Level {
	if q.Source == SourceRaw || !schema.Covers(q.Metric) {
		return nil
	}
	var best *schema.Level
	for i := range schema.Levels {
		l := &schema.Levels[i]
		if q.Step%l.Step != 0 || q.From.UnixMilli()%l.Step.Milliseconds() != 0 || q.To.UnixMilli()%l.Step.Milliseconds() != 0 {
			continue
		}
		// A bitmask's last reading is in the levels that keep counters; its count of readings is
		// read raw, since gpu_1m rows written before 0018 count none.
		if q.isBitmask() && (q.Agg != Last || !l.Counters) {
			continue
		}
		if q.isCounter() && !l.Counters || quantileIndex(q.Agg) >= 0 && !l.Digests || q.Agg == Last && !l.LastGauges ||
			q.Agg == Sum && !slices.Contains(l.Dims, string(GPU)) {
			continue
		}
		ok := true
		for _, d := range q.GroupBy {
			ok = ok && slices.Contains(l.Dims, string(d))
		}
		for _, f := range q.Filters {
			ok = ok && slices.Contains(l.Dims, string(f.Dim))
		}
		if !ok {
			continue
		}
		if best == nil || l.Step > best.Step || l.Step == best.Step && len(l.Dims) < len(best.Dims) {
			best = l
		}
	}
	return best
}

// Point is one step of a series; Value is nil where the step had no readings (Fill).
type Point struct {
	T     time.Time `json:"t"`
	Value *float64  `json:"value"`
}

// Series is the points of one group. Labels are keyed by the dimensions' names (Dim.Name: gpu,
// job, …), as the query grouped by them.
type Series struct {
	Labels map[string]string `json:"labels"`
	Points []Point           `json:"points"`
}

// Run compiles and executes q and splits the rows into series by their group labels, keyed by
// the dimensions' names (Dim.Name). A filled query whose buckets alone are more than the store's
// max_result_rows is refused before it runs; an answer the engine refuses as too large is
// ErrInvalid, a request to ask for less, not a failure of the store.
func Run(ctx context.Context, s store.Store, q *Query) ([]Series, error) {
	c, err := q.Compile(s.Database())
	if err != nil {
		return nil, err
	}
	op := fmt.Sprintf("query %s %s", q.Agg, q.Metric)
	if e := q.effective(); e.Fill {
		limit, err := resultRowLimit(ctx, s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		if n := e.buckets(); limit > 0 && uint64(n) > limit {
			return nil, invalid("step", "%s over the window %s .. %s (%s) is %d points per series, filled, and an answer holds at most %d "+
				"(max_result_rows): widen the step or shorten the window", e.Step, e.From.UTC().Format(time.RFC3339),
				e.To.UTC().Format(time.RFC3339), e.To.Sub(e.From), n, limit)
		}
	}
	r, err := s.QueryWith(ctx, c.SQL, c.Params)
	if err != nil {
		return nil, tooLarge(ctx, s, op, err)
	}
	present := slices.Index(c.Columns, presentCol)
	value := 1 + len(q.GroupBy)
	var out []Series
	var seen []bool // per series: has a row the data made
	index := map[string]int{}
	for _, row := range r.Rows {
		if len(row) != len(c.Columns) {
			return nil, fmt.Errorf("%s: %d columns in a row, want %d", op, len(row), len(c.Columns))
		}
		t, err := time.ParseInLocation(time.DateTime, asString(row[0]), time.UTC)
		if err != nil {
			return nil, fmt.Errorf("%s: bucket time %v: %w", op, row[0], err)
		}
		var key strings.Builder
		for i := range q.GroupBy {
			key.WriteString(asString(row[1+i]))
			key.WriteByte(0)
		}
		i, ok := index[key.String()]
		if !ok {
			labels := make(map[string]string, len(q.GroupBy))
			for j, d := range q.GroupBy {
				labels[d.Name()] = asString(row[1+j])
			}
			i = len(out)
			index[key.String()] = i
			out = append(out, Series{Labels: labels})
			seen = append(seen, false)
		}
		if present < 0 || asUint(row[present]) == 1 {
			seen[i] = true
		}
		// NaN or ±Inf is no value: a percentile of empty digests (hours before gpu_1h kept any)
		// answers NaN, which JSON cannot carry either.
		var v *float64
		if x := row[value]; x != nil {
			if f := asFloat(x); !math.IsNaN(f) && !math.IsInf(f, 0) {
				v = &f
			}
		}
		out[i].Points = append(out[i].Points, Point{T: t, Value: v})
	}
	// A series only WITH FILL made is no group at all: fill over a window without data invents one.
	kept := out[:0]
	for i, s := range out {
		if seen[i] {
			kept = append(kept, s)
		}
	}
	if len(kept) == 0 {
		return nil, nil
	}
	return kept, nil
}

// resultRowLimit is the most rows the engine lets one answer of s carry (its session's
// max_result_rows, store.Limits), 0 for no limit.
func resultRowLimit(ctx context.Context, s store.Store) (uint64, error) {
	r, err := s.Query(ctx, "SELECT toUInt64(getSetting('max_result_rows'))")
	if err != nil {
		return 0, fmt.Errorf("max_result_rows: %w", err)
	}
	if len(r.Rows) != 1 || len(r.Rows[0]) != 1 {
		return 0, fmt.Errorf("max_result_rows: %d rows, want 1", len(r.Rows))
	}
	return asUint(r.Rows[0][0]), nil
}

// tooLarge turns the engine's refusal of a result over max_result_rows or max_result_bytes
// (TOO_MANY_ROWS_OR_BYTES) into ErrInvalid, saying what to ask for instead; other errors are
// wrapped with op.
func tooLarge(ctx context.Context, s store.Store, op string, err error) error {
	msg := err.Error()
	if !strings.Contains(msg, "TOO_MANY_ROWS_OR_BYTES") && !strings.Contains(msg, "Limit for result exceeded") {
		return fmt.Errorf("%s: %w", op, err)
	}
	what := "more points than an answer may hold (max_result_bytes)"
	if !strings.Contains(msg, "max bytes") {
		what = "more points than an answer may hold (max_result_rows)"
		if n, lerr := resultRowLimit(ctx, s); lerr == nil && n > 0 {
			what = fmt.Sprintf("more than %d points", n)
		}
	}
	return &limitError{msg: fmt.Sprintf("%v: %s: the answer has %s: use a coarser step, a shorter window or fewer groups", ErrInvalid, op, what), err: err}
}

// limitError is ErrInvalid for an answer over the engine's result limits; it keeps the engine's
// error for errors.As.
type limitError struct {
	msg string
	err error
}

func (e *limitError) Error() string   { return e.msg }
func (e *limitError) Unwrap() []error { return []error{ErrInvalid, e.err} }

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func prefixed(cols []string) string {
	if len(cols) == 0 {
		return ""
	}
	return ", " + strings.Join(cols, ", ")
}

func uniq(cols []string) []string {
	var out []string
	for _, c := range cols {
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// DimByName maps the names users type (cluster, node, gpu, model, job, rack, pool) to dimensions.
func DimByName(name string) (Dim, bool) {
	switch name {
	case "cluster":
		return Cluster, true
	case "node":
		return Node, true
	case "gpu", "uuid":
		return GPU, true
	case "model":
		return Model, true
	case "job", "job_id":
		return Job, true
	case "rack":
		return Rack, true
	case "pool":
		return Pool, true
	}
	return "", false
}

// DimNames lists the names DimByName takes, for messages.
const DimNames = "cluster, node, gpu, model, job, rack, pool"

// ParseDims reads group-by names; the error names the first unknown one.
func ParseDims(names []string) ([]Dim, error) {
	var out []Dim
	for _, n := range names {
		d, ok := DimByName(strings.TrimSpace(n))
		if !ok {
			return nil, fmt.Errorf("%q is not one of %s", n, DimNames)
		}
		out = append(out, d)
	}
	return out, nil
}

// checkFilters refuses a filter on a column that is not a dimension (it is pasted into the SQL as
// an identifier) and one with no values (IN () would match nothing, silently).
func checkFilters(filters []Filter) error {
	for _, f := range filters {
		if !slices.Contains(dims, f.Dim) {
			return invalid("filters", "%q is not one of %v", f.Dim, dims)
		}
		if len(f.Values) == 0 {
			return invalid("filters", "%s has no values", f.Dim)
		}
	}
	return nil
}

// bindFilters returns one WHERE condition per checked filter, its values bound in p as f0, f1, ….
func bindFilters(filters []Filter, p store.Params) []string {
	where := make([]string, 0, len(filters))
	for i, f := range filters {
		name := "f" + strconv.Itoa(i)
		where = append(where, fmt.Sprintf("%s IN {%s:Array(String)}", f.Dim, name))
		p[name] = store.FormatArray(f.Values)
	}
	return where
}

// ParseFilter reads a filter written dim=v1|v2.
func ParseFilter(s string) (Filter, error) {
	name, values, ok := strings.Cut(s, "=")
	d, known := DimByName(name)
	if !ok || !known || values == "" {
		return Filter{}, fmt.Errorf("%q: want dim=v1|v2 with dim one of %s", s, DimNames)
	}
	return Filter{Dim: d, Values: strings.Split(values, "|")}, nil
}

// SnapWindow widens [from, to) to whole steps, as Grafana does, so that a rollup can answer; the
// last step may be the one still filling.
func SnapWindow(from, to time.Time, step time.Duration) (time.Time, time.Time) {
	f, t := from.Truncate(step), to.Truncate(step)
	if t.Before(to) {
		t = t.Add(step)
	}
	return f, t
}

// WriteSeries prints series as an aligned table ("text"), CSV ("csv", one row per point with a
// column per group label) or JSON ("json").
func WriteSeries(w io.Writer, format string, groupBy []Dim, series []Series) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if series == nil {
			series = []Series{}
		}
		return enc.Encode(series)
	case "csv":
		cw := csv.NewWriter(w)
		header := []string{"t"}
		for _, d := range groupBy {
			header = append(header, d.Name())
		}
		if err := cw.Write(append(header, "value")); err != nil {
			return err
		}
		for _, s := range series {
			for _, p := range s.Points {
				rec := []string{p.T.UTC().Format(time.RFC3339)}
				for _, d := range groupBy {
					rec = append(rec, s.Labels[d.Name()])
				}
				v := ""
				if p.Value != nil {
					v = strconv.FormatFloat(*p.Value, 'g', -1, 64)
				}
				cw.Write(append(rec, v))
			}
		}
		cw.Flush()
		return cw.Error()
	default:
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprint(tw, "TIME")
		for _, d := range groupBy {
			fmt.Fprintf(tw, "\t%s", strings.ToUpper(d.Name()))
		}
		fmt.Fprintln(tw, "\tVALUE")
		for _, s := range series {
			for _, p := range s.Points {
				fmt.Fprint(tw, p.T.UTC().Format("2006-01-02 15:04:05"))
				for _, d := range groupBy {
					fmt.Fprintf(tw, "\t%s", s.Labels[d.Name()])
				}
				if p.Value == nil {
					fmt.Fprintln(tw, "\t-")
				} else {
					fmt.Fprintf(tw, "\t%.3f\n", *p.Value)
				}
			}
		}
		return tw.Flush()
	}
}
