package query

import (
	"slices"
	"strings"
	"time"

	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/schema"
)

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
	case kind == gpumetric.Bitmask && q.Agg != Last && q.Agg != Count && q.Agg != Share:
		return invalid("agg", "%q does not apply to bitmask %s; use last, count or share (with a reason)", q.Agg, q.Metric)
	}
	if q.Agg == Share {
		if _, ok := gpumetric.LookupClockEventReason(q.Reason); !ok {
			return invalid("reason", "%q is not a clock-event reason; one of %s", q.Reason, reasonNames())
		}
	} else if q.Reason != "" {
		return invalid("reason", "applies only to agg share")
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

func reasonNames() string {
	names := make([]string, 0, len(gpumetric.ClockEventReasons))
	for _, r := range gpumetric.ClockEventReasons {
		names = append(names, r.Name)
	}
	return strings.Join(names, ", ")
}
