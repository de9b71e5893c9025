//go:build !agentonly

package main

// The commands that run beside ClickHouse: ingest, migrate and query.

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpufleet/gpufleet/ingest"
	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/store/backend"
	"github.com/gpufleet/gpufleet/query"
)

func serverCommands() []command {
	return []command{
		{"ingest", "consume Kafka and insert into ClickHouse", runIngest},
		{"migrate", "create or upgrade the ClickHouse schema", runMigrate},
		{"query", "print a fleet summary, a report or a metric's time series from ClickHouse", runQuery},
		{"api", "serve the query layer as JSON over HTTP", runAPI},
		{"demo", "run the whole pipeline in one process on embedded defaults", runDemo},
	}
}

const defaultDSN = "chdb://gpufleet-data"

// storeFlags are the ClickHouse settings.
type storeFlags struct {
	dsn     string
	libchdb string
	limits  store.Limits // the read paths' limits (registerLimits)
}

// registerLimits adds the flags that bound every read query (query, api, demo).
func (s *storeFlags) registerLimits(f *flags) {
	d := store.DefaultLimits()
	f.DurationVar(&s.limits.MaxExecutionTime, "query-timeout", d.MaxExecutionTime, "longest a read query runs in ClickHouse (max_execution_time)")
	f.Uint64Var(&s.limits.MaxResultRows, "query-max-rows", d.MaxResultRows, "most rows a read query returns (max_result_rows)")
	f.Uint64Var(&s.limits.MaxResultBytes, "query-max-result-bytes", d.MaxResultBytes, "most bytes a read query's result takes in ClickHouse (max_result_bytes)")
	f.Uint64Var(&s.limits.MaxMemoryUsage, "query-max-memory-bytes", d.MaxMemoryUsage, "most memory one read query uses in ClickHouse (max_memory_usage)")
	f.Uint64Var(&s.limits.MaxRowsToRead, "query-max-rows-to-read", d.MaxRowsToRead, "most rows a read query scans (max_rows_to_read)")
}

func (s *storeFlags) register(f *flags) {
	f.StringVar(&s.dsn, "clickhouse", defaultDSN, "ClickHouse: clickhouse://user:pass@host:9000/db (server) or chdb:///data/dir[?database=db] (embedded)")
	f.StringVar(&s.libchdb, "libchdb", "", "path of libchdb.so for chdb:// (default: search "+strings.Join([]string{"$GPUFLEET_LIBCHDB", "next to the binary", "/usr/local/lib"}, ", ")+")")
}

func (s *storeFlags) open(ctx context.Context) (store.Store, error) {
	if _, err := backend.Parse(s.dsn); err != nil {
		return nil, usageError{fmt.Errorf("--clickhouse: %w", err)}
	}
	return backend.Open(ctx, s.dsn, backend.Options{LibCHDB: s.libchdb})
}

// openReader opens the store for a read path: read-only, with the query limits.
func (s *storeFlags) openReader(ctx context.Context) (store.Store, error) {
	if _, err := backend.Parse(s.dsn); err != nil {
		return nil, usageError{fmt.Errorf("--clickhouse: %w", err)}
	}
	return backend.OpenReader(ctx, s.dsn, backend.Options{LibCHDB: s.libchdb}, s.limits)
}

func runIngest(ctx context.Context, e *env, args []string) error {
	f := newFlags(e, "ingest", "Consumes gpu.samples and gpu.events as consumer group --group, inserts columnar batches\n"+
		"into ClickHouse and commits offsets only after the insert is acknowledged. Malformed messages\n"+
		"go to gpu.dlq with a reason. SIGTERM flushes the current batch and commits.")
	var k kafkaFlags
	var sf storeFlags
	var group, metricsAddr string
	var rows, batchMiB, workers, memLimitMiB int
	var age, session time.Duration
	var doMigrate bool
	var tune ingestTuning
	k.register(f)
	sf.register(f)
	tune.register(f)
	f.StringVar(&group, "group", "gpufleet-ingest", "Kafka consumer group; workers with the same group share partitions")
	f.IntVar(&workers, "workers", 1, "consumer group members in this process, each decoding on its own core")
	f.IntVar(&rows, "batch-rows", 100_000, "flush a partition's batch at this many sample rows")
	f.IntVar(&batchMiB, "batch-mib", 128, "when the batches' messages add up to this many MiB, flush the largest; a worker holds\n"+
		"at most about 6x this (batches being built, waiting and being inserted, and their columns)")
	f.DurationVar(&age, "batch-age", time.Second, "flush a batch this long after its first message")
	f.DurationVar(&session, "session-timeout", 10*time.Second, "how long the group waits for a silent worker before moving its partitions")
	f.IntVar(&memLimitMiB, "memory-limit-mib", 0, "soft memory limit for the Go runtime (GOMEMLIMIT); 0 leaves it unset")
	f.BoolVar(&doMigrate, "migrate", false, "apply schema migrations before consuming")
	f.StringVar(&metricsAddr, "metrics-addr", "127.0.0.1:9401", "address for Prometheus /metrics: loopback only by default; :9401 (every interface)\n"+
		"lets Prometheus on other hosts scrape it; empty disables")
	if err := f.parse(args); err != nil {
		return err
	}
	if rows < 1 {
		return usageError{fmt.Errorf("--batch-rows %d: must be at least 1", rows)}
	}
	if age <= 0 {
		return usageError{fmt.Errorf("--batch-age %s: must be positive", age)}
	}
	if workers < 1 || workers > 256 {
		return usageError{fmt.Errorf("--workers %d: must be between 1 and 256", workers)}
	}
	if batchMiB < 1 {
		return usageError{fmt.Errorf("--batch-mib %d: must be at least 1", batchMiB)}
	}
	if session < time.Second {
		return usageError{fmt.Errorf("--session-timeout %s: must be at least 1s", session)}
	}
	if memLimitMiB < 0 {
		return usageError{fmt.Errorf("--memory-limit-mib %d: must not be negative", memLimitMiB)}
	}
	if err := tune.validate(); err != nil {
		return usageError{err}
	}
	log, err := f.logger()
	if err != nil {
		return err
	}
	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	if doMigrate {
		if _, err := migrate.Apply(ctx, st, log); err != nil {
			return err
		}
	} else if pending, err := migrate.Pending(ctx, st); err != nil {
		return fmt.Errorf("check the schema: %w (run gpufleet migrate first, or pass --migrate)", err)
	} else if len(pending) > 0 {
		// Inserts would fail on columns the tables lack, and be retried until someone looked.
		return fmt.Errorf("the schema lacks migrations %v that this ingest writes for: run gpufleet migrate first, or pass --migrate", pending)
	}
	brokers, err := k.connect(ctx, log)
	if err != nil {
		return err
	}
	if err := k.checkGroup(ctx, brokers, group); err != nil {
		return err
	}
	reg := newRegistry()
	if err := serveHTTP(ctx, metricsAddr, reg, log, nil); err != nil {
		return err
	}
	if memLimitMiB > 0 {
		debug.SetMemoryLimit(int64(memLimitMiB) << 20)
	}
	ins := make([]*ingest.Ingester, workers)
	for i := range ins {
		r := prometheus.WrapRegistererWith(prometheus.Labels{"worker": strconv.Itoa(i)}, reg)
		cfg := ingest.Config{Brokers: brokers, Kafka: k.conn, Store: st, GroupID: group, BatchRows: rows,
			BatchBytes: batchMiB << 20, BatchAge: age, SessionTimeout: session,
			Logger: log.With(slog.Int("worker", i)), Registerer: r}
		tune.apply(&cfg)
		ins[i], err = ingest.New(cfg)
		if err != nil {
			return err
		}
	}
	log.Info("ingesting", slog.String("group", group), slog.Int("workers", workers), slog.String("clickhouse", redact(sf.dsn)),
		slog.String("memory_bound_per_worker", fmt.Sprintf("%d MiB + 4 MiB per partition", ins[0].MemoryBound(0)>>20)))
	errs := make(chan error, workers)
	for _, in := range ins {
		go func() { errs <- in.Run(ctx) }()
	}
	var runErr error
	for range ins {
		if err := <-errs; err != nil && runErr == nil {
			runErr = err
		}
	}
	var total ingest.Stats
	for _, in := range ins {
		s := in.Stats()
		total.Samples, total.Events, total.DLQ, total.Gaps = total.Samples+s.Samples, total.Events+s.Events, total.DLQ+s.DLQ, total.Gaps+s.Gaps
	}
	log.Info("stopped", slog.Uint64("samples", total.Samples), slog.Uint64("events", total.Events),
		slog.Uint64("dlq", total.DLQ), slog.Uint64("sequence_gaps", total.Gaps))
	return runErr
}

// ingestTuning are the ingest.Config settings that bound bad input and per-agent memory. The
// defaults written here are ingest.New's own, so that --help shows what an unset flag means.
type ingestTuning struct {
	dlqMaxMiB              int
	maxClockAhead, skewTol time.Duration
	skewLogEvery           time.Duration
	agentStateMax          int
	agentStateIdle         time.Duration
}

// maxDLQMiB bounds --dlq-max-mib: a dead letter is held whole in memory while it is written, and
// no broker takes a record near a GiB.
const maxDLQMiB = 1024

func (t *ingestTuning) register(f *flags) {
	f.IntVar(&t.dlqMaxMiB, "dlq-max-mib", 64, "largest dead letter (the bad message, uncompressed) sent to gpu.dlq whole; a larger one, or one\n"+
		"the broker refuses, is sent truncated to 16 KiB with its original size (DLQMaxBytes; 1.."+strconv.Itoa(maxDLQMiB)+")")
	f.DurationVar(&t.maxClockAhead, "max-clock-ahead", time.Hour, "dead-letter a message with a timestamp further than this ahead of ingest's clock (a broken\n"+
		"agent clock; MaxClockAhead); lower it (e.g. 5m) to refuse skewed agents sooner")
	f.DurationVar(&t.skewTol, "clock-skew-tolerance", 5*time.Second, "a message whose newest timestamp is further ahead than this is counted as clock skew\n"+
		"(gpufleet_ingest_clock_skew_seconds) and its agent logged, but stored (ClockSkewTolerance;\n"+
		"at most --max-clock-ahead)")
	f.DurationVar(&t.skewLogEvery, "skew-log-interval", time.Minute, "log one agent's clock skew at most this often (SkewLogInterval)")
	f.IntVar(&t.agentStateMax, "agent-state-max", 50_000, "most agents whose last sequence number and latest batches each worker keeps, about\n"+
		"1.3 KiB each, counted in the memory bound (AgentStateMax); a forgotten agent's next batch is looked up\n"+
		"in "+schema.GPUSamples+" as a possible repeat and not checked for a gap")
	f.DurationVar(&t.agentStateIdle, "agent-state-idle", time.Hour, "forget an agent not seen for this long, at the latest twice as long (AgentStateIdle);\n"+
		"keep it above the agents' longest send interval (--send-every × --interval)")
}

// validate refuses what ingest.New would silently replace by its default (zero, negative) or what
// contradicts another setting, naming the flag and the field it sets.
func (t *ingestTuning) validate() error {
	switch {
	case t.dlqMaxMiB < 1 || t.dlqMaxMiB > maxDLQMiB:
		return fmt.Errorf("--dlq-max-mib %d (DLQMaxBytes): must be 1..%d", t.dlqMaxMiB, maxDLQMiB)
	case t.maxClockAhead < time.Second:
		return fmt.Errorf("--max-clock-ahead %s (MaxClockAhead): must be at least 1s", t.maxClockAhead)
	case t.skewTol <= 0:
		return fmt.Errorf("--clock-skew-tolerance %s (ClockSkewTolerance): must be positive", t.skewTol)
	case t.skewTol > t.maxClockAhead:
		return fmt.Errorf("--clock-skew-tolerance %s (ClockSkewTolerance): must not exceed --max-clock-ahead %s, beyond which messages are dead-lettered",
			t.skewTol, t.maxClockAhead)
	case t.skewLogEvery <= 0:
		return fmt.Errorf("--skew-log-interval %s (SkewLogInterval): must be positive", t.skewLogEvery)
	case t.agentStateMax < 1:
		return fmt.Errorf("--agent-state-max %d (AgentStateMax): must be at least 1", t.agentStateMax)
	case t.agentStateIdle < time.Second:
		return fmt.Errorf("--agent-state-idle %s (AgentStateIdle): must be at least 1s", t.agentStateIdle)
	}
	return nil
}

func (t *ingestTuning) apply(cfg *ingest.Config) {
	cfg.DLQMaxBytes = t.dlqMaxMiB << 20
	cfg.MaxClockAhead, cfg.ClockSkewTolerance, cfg.SkewLogInterval = t.maxClockAhead, t.skewTol, t.skewLogEvery
	cfg.AgentStateMax, cfg.AgentStateIdle = t.agentStateMax, t.agentStateIdle
}

func runMigrate(ctx context.Context, e *env, args []string) error {
	f := newFlags(e, "migrate", "Creates or upgrades the gpufleet schema in ClickHouse. Safe to run any number of times.\n"+
		"With --on-cluster, everything is created ON CLUSTER with Replicated engines.")
	var sf storeFlags
	var cluster string
	var ret migrate.Retention
	var to int
	sf.register(f)
	f.IntVar(&to, "to", 0, "stop after this migration version (an upgrade in steps); 0 applies all")
	f.IntVar(&ret.SamplesDays, "samples-days", 0, "keep raw samples this many days (0 leaves the TTL as it is; new schemas keep 30)")
	f.IntVar(&ret.EventsDays, "events-days", 0, "keep GPU events this many days (0 leaves the TTL as it is; new schemas keep 180)")
	f.StringVar(&cluster, "on-cluster", "", "ClickHouse cluster (remote_servers) to create the schema on, with Replicated engines")
	if err := f.parse(args); err != nil {
		return err
	}
	if cluster != "" {
		if err := store.CheckIdent("--on-cluster", cluster); err != nil {
			return usageError{err}
		}
	}
	if to < 0 || to > migrate.Latest() {
		return usageError{fmt.Errorf("--to %d: must be 1..%d, or 0 for all", to, migrate.Latest())}
	}
	log, err := f.logger()
	if err != nil {
		return err
	}
	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	applied, err := migrate.ApplyWith(ctx, st, log, migrate.Options{Cluster: cluster, Until: to})
	if err != nil {
		return err
	}
	if err := migrate.SetRetention(ctx, st, ret, cluster); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "schema at version %d (applied now: %v)\n", cmp.Or(to, migrate.Latest()), applied)
	return nil
}

func runQuery(ctx context.Context, e *env, args []string) error {
	f := newFlags(e, "query", "Without --metric: prints a fleet summary over a time window (GPUs reporting, mean and\n"+
		"p99 utilisation, hottest GPUs, XID and throttle counts).\n"+
		"With --metric: prints a time series, e.g.\n"+
		"  gpufleet query --metric gpu_util --agg p99 --step 1m --since 24h\n"+
		"  gpufleet query --metric temp_gpu_c --agg max --by cluster,model --filter node=n1|n2 --format csv\n"+
		"  gpufleet query --metric energy_mj --agg increase --by job --step 1h")
	var sf storeFlags
	var since, step time.Duration
	var top int
	var format, metric, agg, by, report, rawSQL string
	var filters filterFlag
	var fill bool
	sf.register(f)
	sf.registerLimits(f)
	f.DurationVar(&since, "since", 15*time.Minute, "window: from now minus this to now")
	f.IntVar(&top, "top", 5, "how many hottest GPUs to list (summary)")
	f.StringVar(&format, "format", "text", "output: text, json, or csv (series only)")
	f.StringVar(&metric, "metric", "", schema.GPUSamples+" metric column for a time series (gpu_util, temp_gpu_c, power_w, energy_mj, ...)")
	f.StringVar(&agg, "agg", "avg", "gauges: avg min max sum count p50 p90 p95 p99 last (sum: each GPU's mean in the step, summed over GPUs, e.g. fleet power in W; count: readings); counters: increase rate (per second)")
	f.StringVar(&by, "by", "", "group by, comma-separated: cluster node gpu model job")
	f.DurationVar(&step, "step", time.Minute, "bucket width (whole seconds)")
	f.Var(&filters, "filter", "keep rows where dim is one of values: dim=v1|v2 (repeatable)")
	f.BoolVar(&fill, "fill", false, "emit every step of every series, empty where nothing was read")
	f.StringVar(&rawSQL, "sql", "", "run one SELECT (checked on ClickHouse's own parse, on a read-only session; macros $__timeFilter(col), $__timeInterval(col),\n"+
		"$__fromTime, $__toTime over --since) and print its rows as JSON")
	f.StringVar(&report, "report", "", "print a report as JSON over --since: hottest, idle (least utilised), silent\n"+
		"(stopped reporting), stragglers (under half their job's median), events (by model), jobs (usage)")
	if err := f.parse(args); err != nil {
		return err
	}
	if err := sf.limits.Validate(); err != nil {
		return usageError{fmt.Errorf("--query-timeout: %w", err)}
	}
	if metric != "" {
		return runSeries(ctx, e, &sf, since, step, format, metric, agg, by, filters, fill)
	}
	if rawSQL != "" {
		st, err := sf.openReader(ctx)
		if err != nil {
			return err
		}
		defer st.Close()
		return runRawSQL(ctx, e, st, rawSQL, since)
	}
	if report != "" {
		if !slices.Contains(reports, report) {
			return usageError{fmt.Errorf("--report %q: one of %s", report, strings.Join(reports, ", "))}
		}
		if top < 1 {
			top = 5
		}
		st, err := sf.openReader(ctx)
		if err != nil {
			return err
		}
		defer st.Close()
		return runReport(ctx, e, st, report, since, top)
	}
	if since <= 0 {
		return usageError{fmt.Errorf("--since %s: must be positive", since)}
	}
	if top < 0 || top > 1000 {
		return usageError{fmt.Errorf("--top %d: must be 0..1000", top)}
	}
	if format != "text" && format != "json" {
		return usageError{fmt.Errorf("--format %q: use text or json", format)}
	}
	st, err := sf.openReader(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	now := time.Now()
	sum, err := query.FleetSummary(ctx, st, now.Add(-since), now, top)
	if err != nil {
		return explainMissingSchema(err)
	}
	if format == "json" {
		return sum.WriteJSON(e.stdout)
	}
	return sum.WriteText(e.stdout)
}

func runSeries(ctx context.Context, e *env, sf *storeFlags, since, step time.Duration, format, metric, agg, by string,
	filters filterFlag, fill bool) error {
	if format != "text" && format != "json" && format != "csv" {
		return usageError{fmt.Errorf("--format %q: use text, json or csv", format)}
	}
	now := time.Now()
	q := &query.Query{Metric: metric, Agg: query.Agg(agg), Filters: filters, Step: step, Fill: fill}
	q.From, q.To = query.SnapWindow(now.Add(-since), now, step)
	if by != "" {
		groups, err := query.ParseDims(strings.Split(by, ","))
		if err != nil {
			return usageError{fmt.Errorf("--by %q: %w", by, err)}
		}
		q.GroupBy = groups
	}
	if err := q.Validate(); err != nil {
		return usageError{err}
	}
	st, err := sf.openReader(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	series, err := query.Run(ctx, st, q)
	if err != nil {
		return explainMissingSchema(err)
	}
	return query.WriteSeries(e.stdout, format, q.GroupBy, series)
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

// explainMissingSchema adds the fix to the engine's "table doesn't exist".
func explainMissingSchema(err error) error {
	if strings.Contains(err.Error(), "UNKNOWN_TABLE") || strings.Contains(err.Error(), "UNKNOWN_DATABASE") {
		return fmt.Errorf("%w\n(the schema is missing: run 'gpufleet migrate' with the same --clickhouse)", err)
	}
	return err
}

// redact hides a DSN's password and secret-like parameters for logs.
func redact(dsn string) string { return backend.Redact(dsn) }
