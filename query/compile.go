package query

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/store"
)

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
	if q.Agg == Share {
		r, _ := gpumetric.LookupClockEventReason(q.Reason) // checked by Validate
		p["reason_bit"] = strconv.FormatUint(r.Bit, 10)
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
	value := gaugeAggs[q.Agg]
	if q.Agg == Share {
		value = "100 * avg(bitAnd(v, {reason_bit:UInt64}) != 0)"
	}
	return body{bucket, value, fmt.Sprintf("SELECT time%s, %s AS v FROM %s WHERE %s",
		prefixed(groups), q.Metric, table, strings.Join(where, " AND "))}
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
