package query

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/gpufleet/gpufleet/internal/store"
)

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
