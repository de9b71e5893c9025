package query

import (
	"errors"
	"fmt"
	"time"

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
	// Share is, for a bitmask, the percent of readings in the bucket with the bit of Reason set:
	// the share of time a GPU was throttled for that reason (throttle_reasons).
	Share Agg = "share"
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
	// Reason is the bit Share asks about, by name (gpumetric.ClockEventReasons: sw_thermal,
	// sw_power_cap, …); only with Share.
	Reason string
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
