package query

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/store"
)

// PowerQuery asks for each cluster's total power draw, second by second: the sum over its GPUs of
// each GPU's mean power_w reading in the second. Training steps synchronise, so a cluster's draw
// swings by megawatts within seconds; a mean per minute hides that.
type PowerQuery struct {
	// Filters narrow the GPUs. On the cluster alone (or none) the answer reads cluster_power_1s,
	// one row per cluster and second; a filter on any other dimension (a pool, a job) reads
	// gpu_samples, which the rollup cannot split.
	Filters []Filter
	From    time.Time
	To      time.Time
	// Step is the bucket width, whole seconds, at least 1 s: at 1 s each point is one second's
	// total; wider, Agg of the totals of the seconds in the step.
	Step time.Duration
	// Agg is Avg (the default), Max (the peak second) or Min (the lowest) of a step's seconds.
	Agg Agg
	// Source SourceRaw reads gpu_samples whatever the filters: exact also when a GPU's readings in a
	// second are not what its sampling period makes them (schema.PowerTotal says when the rollup is
	// not exact).
	Source Source
}

// Power is FleetPower's answer: a series per cluster (labelled cluster), in W.
type Power struct {
	Series []Series `json:"series"`
	// Table is what it read: cluster_power_1s or gpu_samples.
	Table string `json:"table"`
	// RowsRead is how many rows the engine read to answer, as it reported them.
	RowsRead uint64 `json:"rows_read"`
}

// Bounds on the label values a power query takes. Values are bound parameters, never SQL; these
// catch what cannot be a label (an empty value, a control character, a pasted document) with a
// message rather than an answer with no series.
const (
	maxPowerValues   = 1000
	maxPowerValueLen = 256
)

func (q *PowerQuery) effective() *PowerQuery {
	e := *q
	if e.Agg == "" {
		e.Agg = Avg
	}
	if e.Step == 0 {
		e.Step = time.Second
	}
	return &e
}

// Validate checks the fields and the limits: MaxPoints points per series at most, so that 24 h at
// 1 s (86,400) passes and a week at 1 s is refused, asking for a wider step.
func (q *PowerQuery) Validate() error {
	switch q.Agg {
	case Avg, Max, Min:
	default:
		return invalid("agg", "%q: a step's seconds take avg, max or min", q.Agg)
	}
	if q.Source != SourceAuto && q.Source != SourceRaw {
		return invalid("source", "%q: empty (the rollup where it answers) or raw", q.Source)
	}
	if err := checkFilters(q.Filters); err != nil {
		return err
	}
	for _, f := range q.Filters {
		if len(f.Values) > maxPowerValues {
			return invalid("filters", "%s has %d values, at most %d", f.Dim.Name(), len(f.Values), maxPowerValues)
		}
		for _, v := range f.Values {
			if err := checkLabelValue(f.Dim, v); err != nil {
				return invalid("filters", "%s value %.40q: %v", f.Dim.Name(), v, err)
			}
		}
	}
	if q.From.IsZero() || q.To.IsZero() {
		return invalid("from", "the window needs both from and to")
	}
	if !q.To.After(q.From) {
		return invalid("to", "%s is not after from %s", q.To.UTC().Format(time.RFC3339), q.From.UTC().Format(time.RFC3339))
	}
	if q.Step < time.Second || q.Step%time.Second != 0 {
		return invalid("step", "%s: must be a whole number of seconds, at least 1s", q.Step)
	}
	if n := q.To.Sub(q.From) / q.Step; n > MaxPoints {
		return invalid("step", "%s over %s is %d points per cluster, limit %d: widen the step", q.Step, q.To.Sub(q.From), n, MaxPoints)
	}
	return nil
}

// checkLabelValue: a cluster is never empty (the agent's default is "default", the simulator's
// "sim"); a rack, pool or job is empty where it was not set, and matching that is a question.
func checkLabelValue(d Dim, v string) error {
	switch {
	case v == "" && d == Cluster:
		return fmt.Errorf("empty")
	case len(v) > maxPowerValueLen:
		return fmt.Errorf("%d bytes, at most %d", len(v), maxPowerValueLen)
	case !utf8.ValidString(v):
		return fmt.Errorf("not UTF-8")
	case strings.ContainsFunc(v, unicode.IsControl):
		return fmt.Errorf("has a control character")
	}
	return nil
}

// rollup reports whether the rollup answers q: every filter is on the cluster.
func (q *PowerQuery) rollup() bool {
	if q.Source == SourceRaw {
		return false
	}
	for _, f := range q.Filters {
		if f.Dim != Cluster {
			return false
		}
	}
	return true
}

// Compile is the SQL FleetPower runs, with its parameters; the columns are b (bucket start), cluster
// and value (W). The window is widened to whole steps.
func (q *PowerQuery) Compile(db string) (*Compiled, error) {
	q = q.effective()
	if err := q.Validate(); err != nil {
		return nil, err
	}
	from, to := SnapWindow(q.From, q.To, q.Step)
	p := store.Params{
		"from": strconv.FormatInt(from.Unix(), 10),
		"to":   strconv.FormatInt(to.Unix(), 10),
		"step": strconv.FormatInt(int64(q.Step/time.Second), 10),
	}
	filters := bindFilters(q.Filters, p)
	c := &Compiled{Params: p, Columns: []string{"b", "cluster", "value"}}
	var seconds string
	if q.rollup() {
		c.Table = schema.ClusterPower1s
		where := append([]string{"t >= toDateTime({from:Int64}, 'UTC') AND t < toDateTime({to:Int64}, 'UTC')"}, filters...)
		seconds = "SELECT t, cluster, " + schema.PowerTotalSQL + " AS w FROM " + store.Table(db, schema.ClusterPower1s) +
			" WHERE " + strings.Join(where, " AND ") + " GROUP BY cluster, t"
	} else {
		// The definition itself: each GPU's mean reading in the second, added up over the GPUs.
		c.Table = schema.GPUSamples
		where := append([]string{"time >= fromUnixTimestamp64Milli({from:Int64} * 1000) AND time < fromUnixTimestamp64Milli({to:Int64} * 1000)",
			"power_w IS NOT NULL"}, filters...)
		seconds = "SELECT t, cluster, sum(m) AS w FROM (SELECT toDateTime(toStartOfSecond(time), 'UTC') AS t, cluster, uuid, " +
			"avg(power_w) AS m FROM " + store.Table(db, schema.GPUSamples) + " WHERE " + strings.Join(where, " AND ") +
			" GROUP BY t, cluster, uuid) GROUP BY t, cluster"
	}
	c.SQL = "SELECT toDateTime(intDiv(toUInt32(t), {step:UInt32}) * {step:UInt32}, 'UTC') AS b, cluster, " +
		"CAST(" + string(q.Agg) + "(w) AS Nullable(Float64)) AS value FROM (" + seconds + ") WHERE w IS NOT NULL " +
		"GROUP BY b, cluster ORDER BY cluster, b"
	return c, nil
}

// FleetPower runs q: a series per cluster, its points the total power of the cluster's GPUs per
// step, in W. An answer over the engine's result limits is ErrInvalid (ask for a wider step or
// fewer clusters), as Run's is.
func FleetPower(ctx context.Context, s store.Store, q *PowerQuery) (*Power, error) {
	c, err := q.Compile(s.Database())
	if err != nil {
		return nil, err
	}
	e := q.effective()
	const op = "fleet power"
	limit, err := resultRowLimit(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	from, to := SnapWindow(e.From, e.To, e.Step)
	if n := to.Sub(from) / e.Step; limit > 0 && uint64(n) > limit {
		return nil, invalid("step", "%s over %s is %d points per cluster, and an answer holds at most %d (max_result_rows): widen the step",
			e.Step, to.Sub(from), n, limit)
	}
	r, err := s.QueryWith(ctx, c.SQL, c.Params)
	if err != nil {
		return nil, tooLarge(ctx, s, op, err)
	}
	out := &Power{Series: []Series{}, Table: c.Table, RowsRead: r.RowsRead}
	index := map[string]int{}
	for _, row := range r.Rows {
		if len(row) != 3 {
			return nil, fmt.Errorf("%s: %d columns in a row, want 3", op, len(row))
		}
		t, err := time.ParseInLocation(time.DateTime, asString(row[0]), time.UTC)
		if err != nil {
			return nil, fmt.Errorf("%s: bucket time %v: %w", op, row[0], err)
		}
		cluster := asString(row[1])
		i, ok := index[cluster]
		if !ok {
			i = len(out.Series)
			index[cluster] = i
			out.Series = append(out.Series, Series{Labels: map[string]string{Cluster.Name(): cluster}})
		}
		var v *float64
		if row[2] != nil {
			f := asFloat(row[2])
			v = &f
		}
		out.Series[i].Points = append(out.Series[i].Points, Point{T: t, Value: v})
	}
	return out, nil
}
