package query

import (
	"fmt"
	"slices"
	"strings"

	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/store"
)

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
		return body{bucket, schema.ReadingValue(false, "max("+schema.LastReading(m)+")"), fmt.Sprintf("SELECT t AS rt%s, %s FROM %s WHERE %s",
			prefixed(groups), schema.LastReading(m), table, strings.Join(where, " AND "))}
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
		value = schema.LastGaugeValue("max(" + schema.LastReading(m) + ")")
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
	// The digests and readings only the aggregation that needs them reads: they are the heavy columns.
	cols := []string{schema.Sum(m), schema.N(m), schema.MinCol(m), schema.MaxCol(m)}
	switch {
	case quantileIndex(q.Agg) >= 0:
		cols = append(cols, schema.Digest(m))
	case q.Agg == Last:
		cols = append(cols, schema.LastReading(m))
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
