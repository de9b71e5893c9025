//go:build !agentonly

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/query"
)

// queryCmd is `gpufleet query`: a fleet summary, or, chosen by the one mode flag given, a time
// series (--metric), a report (--report) or a raw SELECT (--sql).
type queryCmd struct {
	sf                                      storeFlags
	since, step                             time.Duration
	top                                     int
	format, metric, agg, by, report, rawSQL string
	reason                                  string
	filters                                 filterFlag
	fill                                    bool
	ff                                      failureFlags
}

// queryModes are the flags that choose what query prints: at most one may be given (before, the
// first of them here silently won); none prints the summary.
var queryModes = []string{"metric", "sql", "report"}

// queryModeFlags are the flags only some modes read ("" is the summary): given to another mode they
// would be ignored, so they are refused.
var queryModeFlags = []struct {
	flag  string
	modes []string
}{
	{"agg", []string{"metric"}}, {"reason", []string{"metric"}}, {"by", []string{"metric"}}, {"step", []string{"metric"}},
	{"filter", []string{"metric"}}, {"fill", []string{"metric"}},
	{"format", []string{"", "metric"}}, {"top", []string{"", "report"}},
	{"lookback", []string{"report"}}, {"silent-after", []string{"report"}}, {"within", []string{"report"}}, {"limit", []string{"report"}},
}

func runQuery(ctx context.Context, e *env, args []string) error {
	f := newFlags(e, "query", "Without a mode flag: prints a fleet summary over a time window (GPUs reporting, mean and\n"+
		"p99 utilisation, hottest GPUs, XID and throttle counts). With one of --metric, --report or --sql\n"+
		"(at most one): a time series, a report or a SELECT's rows, e.g.\n"+
		"  gpufleet query --metric gpu_util --agg p99 --step 1m --since 24h\n"+
		"  gpufleet query --metric temp_gpu_c --agg max --by cluster,model --filter node=n1|n2 --format csv\n"+
		"  gpufleet query --metric energy_mj --agg increase --by job --step 1h")
	var c queryCmd
	c.register(f)
	if err := f.parse(args); err != nil {
		return err
	}
	mode, err := c.mode(f)
	if err != nil {
		return err
	}
	if err := c.sf.limits.Validate(); err != nil {
		return usageError{fmt.Errorf("--query-timeout: %w", err)}
	}
	switch mode {
	case "metric":
		return c.runSeries(ctx, e)
	case "sql":
		return c.withReader(ctx, func(st store.Store) error { return runRawSQL(ctx, e, st, c.rawSQL, c.since) })
	case "report":
		if !slices.Contains(reports, c.report) {
			return usageError{fmt.Errorf("--report %q: one of %s", c.report, strings.Join(reports, ", "))}
		}
		if slices.Contains(failureReports, c.report) {
			return c.withReader(ctx, func(st store.Store) error { return runFailureReport(ctx, e, st, c.report, c.since, c.ff) })
		}
		if c.top < 1 {
			c.top = 5
		}
		return c.withReader(ctx, func(st store.Store) error { return runReport(ctx, e, st, c.report, c.since, c.top) })
	}
	return c.runSummary(ctx, e)
}

func (c *queryCmd) register(f *flags) {
	c.sf.register(f)
	c.sf.registerLimits(f)
	c.ff.register(f)
	f.DurationVar(&c.since, "since", 15*time.Minute, "window: from now minus this to now")
	f.IntVar(&c.top, "top", 5, "how many hottest GPUs to list (summary, --report hottest and idle)")
	f.StringVar(&c.format, "format", "text", "output of the summary and --metric: text, json, or csv (--metric only)")
	f.StringVar(&c.metric, "metric", "", schema.GPUSamples+" metric column for a time series (gpu_util, temp_gpu_c, power_w, energy_mj, ...)")
	f.StringVar(&c.agg, "agg", "avg", "gauges: avg min max sum count p50 p90 p95 p99 last (sum: each GPU's mean in the step, summed over GPUs, e.g. fleet power in W; count: readings); counters: increase rate (per second);\n"+
		"throttle_reasons: last count share (with --reason: percent of readings throttled for it)")
	f.StringVar(&c.reason, "reason", "", "with --agg share: the clock-event reason, e.g. sw_thermal, sw_power_cap, hw_slowdown (docs/schema.md)")
	f.StringVar(&c.by, "by", "", "group by, comma-separated: cluster node gpu model job")
	f.DurationVar(&c.step, "step", time.Minute, "bucket width (whole seconds)")
	f.Var(&c.filters, "filter", "keep rows where dim is one of values: dim=v1|v2 (repeatable)")
	f.BoolVar(&c.fill, "fill", false, "emit every step of every series, empty where nothing was read")
	f.StringVar(&c.rawSQL, "sql", "", "run one SELECT (checked on ClickHouse's own parse, on a read-only session; macros $__timeFilter(col), $__timeInterval(col),\n"+
		"$__fromTime, $__toTime over --since) and print its rows as JSON")
	f.StringVar(&c.report, "report", "", "print a report as JSON over --since: hottest, idle (least utilised), silent\n"+
		"(stopped reporting), stragglers (under half their job's median), events (by model), jobs (usage);\n"+
		"health (GPUs by state, model, cluster), drain (GPUs to act on now), interruptions (jobs ended after a fatal event, by cause);\n"+
		"power (each cluster's total power draw per second in W; over more than 27h, the peak second of each step)")
}

// mode is the mode flag given ("" for the summary). Two mode flags, or a flag only another mode
// reads, are a usage error naming both.
func (c *queryCmd) mode(f *flags) (string, error) {
	values := map[string]string{"metric": c.metric, "sql": c.rawSQL, "report": c.report}
	mode := ""
	for _, m := range queryModes {
		if values[m] == "" {
			continue
		}
		if mode != "" {
			return "", usageError{fmt.Errorf("--%s and --%s: give one, not both", mode, m)}
		}
		mode = m
	}
	for _, mf := range queryModeFlags {
		if !f.isGiven(mf.flag) || slices.Contains(mf.modes, mode) {
			continue
		}
		var readers []string
		for _, m := range mf.modes {
			if m == "" {
				readers = append(readers, "the summary")
			} else {
				readers = append(readers, "--"+m)
			}
		}
		if mode == "" {
			return "", usageError{fmt.Errorf("--%s applies only to %s, not the summary", mf.flag, strings.Join(readers, " and "))}
		}
		return "", usageError{fmt.Errorf("--%s and --%s: --%s applies only to %s", mf.flag, mode, mf.flag, strings.Join(readers, " and "))}
	}
	return mode, nil
}

// withReader runs fn on the store opened for reading.
func (c *queryCmd) withReader(ctx context.Context, fn func(store.Store) error) error {
	st, err := c.sf.openReader(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(st)
}

func (c *queryCmd) runSummary(ctx context.Context, e *env) error {
	if c.since <= 0 {
		return usageError{fmt.Errorf("--since %s: must be positive", c.since)}
	}
	if c.top < 0 || c.top > 1000 {
		return usageError{fmt.Errorf("--top %d: must be 0..1000", c.top)}
	}
	if c.format != "text" && c.format != "json" {
		return usageError{fmt.Errorf("--format %q: use text or json", c.format)}
	}
	return c.withReader(ctx, func(st store.Store) error {
		now := time.Now()
		sum, err := query.FleetSummary(ctx, st, now.Add(-c.since), now, c.top)
		if err != nil {
			return explainMissingSchema(err)
		}
		if c.format == "json" {
			return sum.WriteJSON(e.stdout)
		}
		return sum.WriteText(e.stdout)
	})
}

func (c *queryCmd) runSeries(ctx context.Context, e *env) error {
	if c.format != "text" && c.format != "json" && c.format != "csv" {
		return usageError{fmt.Errorf("--format %q: use text, json or csv", c.format)}
	}
	now := time.Now()
	q := &query.Query{Metric: c.metric, Agg: query.Agg(c.agg), Filters: c.filters, Step: c.step, Fill: c.fill, Reason: c.reason}
	q.From, q.To = query.SnapWindow(now.Add(-c.since), now, c.step)
	if c.by != "" {
		groups, err := query.ParseDims(strings.Split(c.by, ","))
		if err != nil {
			return usageError{fmt.Errorf("--by %q: %w", c.by, err)}
		}
		q.GroupBy = groups
	}
	if err := q.Validate(); err != nil {
		return usageError{err}
	}
	return c.withReader(ctx, func(st store.Store) error {
		series, err := query.Run(ctx, st, q)
		if err != nil {
			return explainMissingSchema(err)
		}
		return query.WriteSeries(e.stdout, c.format, q.GroupBy, series)
	})
}

// filterFlag collects --filter dim=v1|v2 flags.
type filterFlag []query.Filter

func (f *filterFlag) String() string { return fmt.Sprint([]query.Filter(*f)) }

func (f *filterFlag) Set(s string) error {
	filter, err := query.ParseFilter(s)
	if err != nil {
		return err
	}
	*f = append(*f, filter)
	return nil
}

// runRawSQL prints a read-only statement's rows as JSON (query.RunSQL: macros, readonly = 1).
func runRawSQL(ctx context.Context, e *env, st store.Store, sql string, since time.Duration) error {
	now := time.Now()
	r, err := query.RunSQL(ctx, st, sql, query.Window{From: now.Add(-since), To: now, Interval: time.Minute})
	if err != nil {
		if errors.Is(err, query.ErrInvalid) {
			return usageError{err}
		}
		return explainMissingSchema(err)
	}
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]any{"columns": r.Columns, "rows": r.Rows, "rows_read": r.RowsRead})
}

// reports are the names --report takes.
var reports = []string{"hottest", "idle", "silent", "stragglers", "events", "jobs", "health", "drain", "interruptions", "power"}

// runReport prints one of the fleet reports as JSON.
func runReport(ctx context.Context, e *env, st store.Store, report string, since time.Duration, top int) error {
	now := time.Now()
	var v any
	var err error
	switch report {
	case "hottest":
		v, err = query.TopGPUs(ctx, st, "temp_gpu_c", "max", false, top, now.Add(-since), now)
	case "idle":
		v, err = query.TopGPUs(ctx, st, "gpu_util", "avg", true, top, now.Add(-since), now)
	case "silent":
		v, err = query.StoppedReporting(ctx, st, now, max(since, 3*time.Minute), 2*time.Minute)
	case "stragglers":
		v, err = query.Stragglers(ctx, st, now.Add(-since), now, 0.5)
	case "events":
		v, err = query.EventCounts(ctx, st, "model", now.Add(-since), now)
	case "jobs":
		v, err = query.JobUsages(ctx, st, now.Add(-since), now)
	case "power":
		// Per second while that fits an answer (query.MaxPoints: 27 h), else the fewest whole
		// seconds a step that do, each step its peak second.
		step := time.Second
		for since/step > query.MaxPoints {
			step += time.Second
		}
		if v, err = query.FleetPower(ctx, st, &query.PowerQuery{From: now.Add(-since), To: now, Step: step, Agg: query.Max}); errors.Is(err, query.ErrInvalid) {
			return usageError{fmt.Errorf("--report power --since %s: %w", since, err)}
		}
	default:
		return usageError{fmt.Errorf("--report %q: one of hottest, idle, silent, stragglers, events, jobs", report)}
	}
	if err != nil {
		return explainMissingSchema(err)
	}
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
