package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpufleet/gpufleet/agent"
	"github.com/gpufleet/gpufleet/agent/attribution"
	agentnvml "github.com/gpufleet/gpufleet/agent/nvml"
	"github.com/gpufleet/gpufleet/agent/sim"
	"github.com/gpufleet/gpufleet/agent/spool"
	"github.com/gpufleet/gpufleet/ingest"
	"github.com/gpufleet/gpufleet/kafkaadmin"
	"github.com/gpufleet/gpufleet/migrate"
	"github.com/gpufleet/gpufleet/query"
	"github.com/gpufleet/gpufleet/store"
	"github.com/gpufleet/gpufleet/store/backend"
)

const defaultDSN = "chdb://gpufleet-data"

// kafkaFlags are the Kafka settings agent, simulate and ingest share.
type kafkaFlags struct {
	brokers        string
	partitions     int
	connectTimeout time.Duration
}

func (k *kafkaFlags) register(f *flags) {
	f.StringVar(&k.brokers, "brokers", "127.0.0.1:9092", "Kafka bootstrap brokers, comma-separated host:port")
	f.IntVar(&k.partitions, "partitions", 8, "partitions for topics this command creates when they are missing")
	f.DurationVar(&k.connectTimeout, "connect-timeout", 30*time.Second, "how long to retry an unreachable broker at start-up")
}

// connect checks the brokers and creates the topics; it returns the parsed broker list.
// connectOrSpool is connect for an agent: with a spool it does not wait for Kafka (sampling
// starts at once and batches wait on disk), only checking the broker list.
func (k *kafkaFlags) connectOrSpool(ctx context.Context, log *slog.Logger, sp *spool.Spool) ([]string, error) {
	if sp == nil {
		return k.connect(ctx, log)
	}
	brokers, err := kafkaadmin.ParseBrokers(k.brokers)
	if err != nil {
		return nil, usageError{fmt.Errorf("--brokers: %w", err)}
	}
	// Topics are still created once Kafka answers; until then the spool holds the batches.
	go func() {
		for ctx.Err() == nil {
			if _, err := k.connect(ctx, log); err == nil {
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Second):
			}
		}
	}()
	return brokers, nil
}

func (k *kafkaFlags) connect(ctx context.Context, log *slog.Logger) ([]string, error) {
	brokers, err := kafkaadmin.ParseBrokers(k.brokers)
	if err != nil {
		return nil, usageError{fmt.Errorf("--brokers: %w", err)}
	}
	if k.partitions < 1 {
		return nil, usageError{fmt.Errorf("--partitions %d: must be at least 1", k.partitions)}
	}
	if err := kafkaadmin.WaitReachable(ctx, brokers, k.connectTimeout, log); err != nil {
		return nil, err
	}
	topics := []kafkaadmin.Topic{{Name: kafkaadmin.SamplesTopic, Partitions: k.partitions}, {Name: kafkaadmin.EventsTopic, Partitions: k.partitions}, {Name: kafkaadmin.DLQTopic, Partitions: 1}}
	if err := kafkaadmin.EnsureTopics(ctx, brokers, topics); err != nil {
		return nil, err
	}
	return brokers, nil
}

// storeFlags are the ClickHouse settings.
type storeFlags struct {
	dsn     string
	libchdb string
}

func (s *storeFlags) register(f *flags) {
	f.StringVar(&s.dsn, "clickhouse", defaultDSN, "ClickHouse: clickhouse://user:pass@host:9000/db (server) or chdb:///data/dir[?database=db] (embedded)")
	f.StringVar(&s.libchdb, "libchdb", "", "path of libchdb.so for chdb:// (default: search "+strings.Join([]string{"$GPUFLEET_LIBCHDB", "next to the binary", "/usr/local/lib"}, ", ")+")")
}

func (s *storeFlags) open(ctx context.Context) (store.Store, error) {
	if _, err := backend.Parse(s.dsn); err != nil {
		return nil, usageError{err}
	}
	return backend.Open(ctx, s.dsn, backend.Options{LibCHDB: s.libchdb})
}

// simFlags describe a simulated fleet.
type simFlags struct {
	cluster     string
	rack, pool  string
	gpus        int
	gpusPerNode int
	seed        uint64
	interval    time.Duration
	sendEvery   int
	nodeOffset  int
	spoolDir    string
	spoolMiB    int
}

func (s *simFlags) register(f *flags, gpus int) {
	f.StringVar(&s.cluster, "cluster", "sim", "cluster label of the samples (the simulator's default is sim; --source nvml uses \"default\" unless set)")
	f.StringVar(&s.rack, "rack", "", "rack label of every sample and event; empty leaves it to the source (the simulator puts\n"+
		"8 nodes in a rack; NVML knows none)")
	f.StringVar(&s.pool, "pool", "", "pool label (node pool, Slurm partition) of every sample and event; empty leaves it to the\n"+
		"source (the simulator puts every fourth rack in pool infer, the rest in train)")
	f.IntVar(&s.gpus, "gpus", gpus, "simulated GPUs in all")
	f.IntVar(&s.gpusPerNode, "gpus-per-node", 8, "GPUs per simulated node")
	f.Uint64Var(&s.seed, "seed", 1, "seed of the simulated readings: the same seed gives the same fleet")
	f.DurationVar(&s.interval, "interval", time.Second, "sample interval")
	f.IntVar(&s.sendEvery, "send-every", 1, "samples per Kafka message: the send interval is this times --interval\n"+
		"(at --interval 100ms, 10 keeps one request per node per second)")
	f.StringVar(&s.spoolDir, "spool-dir", "", "directory of the on-disk spool: batches wait there while Kafka is unreachable and\n"+
		"survive a restart (recommended in production); empty keeps them in memory, one interval at a time")
	f.IntVar(&s.spoolMiB, "spool-mib", 1024, "size cap of the spool; past it the oldest batches are dropped and counted")
	f.IntVar(&s.nodeOffset, "node-offset", 0, "number of the first simulated node, to run several simulators side by side")
}

// spoolAndBrokers opens the spool, then reaches Kafka (or, with a spool, only checks --brokers).
func (s *simFlags) spoolAndBrokers(ctx context.Context, log *slog.Logger, k *kafkaFlags) (*spool.Spool, []string, error) {
	sp, err := s.openSpool(log)
	if err != nil {
		return nil, nil, err
	}
	brokers, err := k.connectOrSpool(ctx, log, sp)
	if err != nil {
		if sp != nil {
			sp.Close()
		}
		return nil, nil, err
	}
	return sp, brokers, nil
}

// openSpool opens --spool-dir, or returns nil when it is not set.
func (s *simFlags) openSpool(log *slog.Logger) (*spool.Spool, error) {
	if s.spoolDir == "" {
		log.Warn("no --spool-dir: while Kafka is unreachable sampling waits for it instead of spooling to disk")
		return nil, nil
	}
	if s.spoolMiB < 1 {
		return nil, usageError{fmt.Errorf("--spool-mib %d: must be at least 1", s.spoolMiB)}
	}
	sp, err := spool.Open(s.spoolDir, int64(s.spoolMiB)<<20)
	if err != nil {
		return nil, fmt.Errorf("--spool-dir %s: %w", s.spoolDir, err)
	}
	if st := sp.Stats(); st.Batches > 0 {
		log.Info("spool holds batches from the last run; sending them first", slog.Uint64("batches", st.Batches))
	}
	return sp, nil
}

func (s *simFlags) sources() ([]agent.Source, error) {
	switch {
	case s.gpus < 1:
		return nil, usageError{fmt.Errorf("--gpus %d: must be at least 1", s.gpus)}
	case s.gpusPerNode < 1 || s.gpusPerNode > 64:
		return nil, usageError{fmt.Errorf("--gpus-per-node %d: must be 1..64", s.gpusPerNode)}
	case s.interval < 10*time.Millisecond:
		return nil, usageError{fmt.Errorf("--interval %s: must be at least 10ms", s.interval)}
	case s.sendEvery < 1 || s.sendEvery > 600:
		return nil, usageError{fmt.Errorf("--send-every %d: must be 1..600", s.sendEvery)}
	}
	var out []agent.Source
	for left, i := s.gpus, 0; left > 0; i++ {
		n := min(left, s.gpusPerNode)
		out = append(out, sim.NewNode(s.seed, s.cluster, s.nodeOffset+i, n))
		left -= n
	}
	return out, nil
}

func runAgent(ctx context.Context, e *env, args []string) error {
	f := newFlags(e, "agent", "Samples this node's GPUs every --interval and streams them to Kafka (gpu.samples,\n"+
		"key = node) with GPU events (XID, ECC, throttle, fell off the bus) on gpu.events. SIGTERM\n"+
		"delivers the cycle in flight, then exits.\n"+
		"Sources: nvml reads this host's NVIDIA GPUs through libnvidia-ml.so.1 (labels: --cluster, --node);\n"+
		"sim streams simulated GPUs (--gpus, --gpus-per-node, --seed) and needs no GPU.")
	var k kafkaFlags
	var s simFlags
	var source, node, metricsAddr, jobDir string
	var forDur time.Duration
	k.register(f)
	s.register(f, 8)
	f.StringVar(&source, "source", "sim", "GPU source: nvml (this host's GPUs) or sim (simulated)")
	f.StringVar(&jobDir, "job-mapping-dir", "", "directory of per-GPU job files (dcgm-exporter's --hpc-job-mapping-dir convention,\n"+
		"written by Slurm prolog/epilog): a file per busy GPU index holding its job id")
	f.StringVar(&node, "node", "", "with --source nvml: this host's node label and Kafka key (default: the hostname)")
	f.StringVar(&metricsAddr, "metrics-addr", ":9400", "address for Prometheus /metrics; empty disables")
	f.DurationVar(&forDur, "for", 0, "stop after this long (0 runs until SIGTERM)")
	if err := f.parse(args); err != nil {
		return err
	}
	switch source {
	case "sim":
		return streamFleet(ctx, f, &k, &s, metricsAddr, forDur)
	case "nvml":
	default:
		return usageError{fmt.Errorf("--source %q: use nvml or sim", source)}
	}

	log, err := f.logger()
	if err != nil {
		return err
	}
	// --cluster is shared with the simulator, whose default ("sim") would mislabel real GPUs:
	// unless it was given, the NVML source uses its own default.
	cluster := s.cluster
	clusterSet := e.getenv(envName("cluster")) != ""
	f.Visit(func(fl *flag.Flag) { clusterSet = clusterSet || fl.Name == "cluster" })
	if !clusterSet {
		cluster = ""
	}
	// NVML before Kafka: on a host without the driver, say that rather than a broker problem.
	lib, closeNVML, err := agentnvml.Open()
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		return fmt.Errorf("--source nvml: %w; or use --source sim", err)
	case errors.Is(err, agentnvml.ErrLibraryNotFound):
		return fmt.Errorf("--source nvml: NVML (libnvidia-ml.so.1) was not found: install the NVIDIA driver on this host, or use --source sim to run without GPUs")
	case err != nil:
		return fmt.Errorf("--source nvml: initialise NVML: %w (use --source sim to run without GPUs)", err)
	}
	defer func() {
		if err := closeNVML(); err != nil {
			log.Warn("NVML shutdown", slog.Any("err", err))
		}
	}()
	reg := newRegistry()
	src, err := agentnvml.New(lib, agentnvml.Options{Cluster: cluster, Node: node, Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	defer src.Close()
	if len(src.GPUs()) == 0 {
		log.Warn("NVML sees no GPUs; sending empty batches as a heartbeat")
	}
	sp, brokers, err := s.spoolAndBrokers(ctx, log, &k)
	if err != nil {
		return err
	}
	if sp != nil {
		defer sp.Close()
	}
	if err := serveHTTP(ctx, metricsAddr, reg, log, nil); err != nil {
		return err
	}
	prod := agent.NewProducer(brokers)
	defer prod.Close()
	cfg := agent.Config{Sources: []agent.Source{src}, Sender: prod, Interval: s.interval, SendEvery: s.sendEvery, Logger: log, Registerer: reg, Spool: sp,
		Rack: s.rack, Pool: s.pool}
	if jobDir != "" {
		cfg.Jobs = attribution.MappingDir{Dir: jobDir}.Jobs
	}
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	runCtx, cancel := withDeadline(ctx, forDur)
	defer cancel()
	c, n := src.Identity()
	log.Info("streaming", slog.String("cluster", c), slog.String("node", n), slog.Int("gpus", len(src.GPUs())), slog.Duration("interval", s.interval))
	err = a.Run(runCtx)
	st := a.Stats()
	log.Info("stopped", slog.Uint64("samples", st.Samples), slog.Uint64("batches", st.Batches), slog.Uint64("events", st.Events))
	return err
}

func runSimulate(ctx context.Context, e *env, args []string) error {
	f := newFlags(e, "simulate", "Streams a simulated fleet (seeded, time-varying utilisation, temperature, power, clocks,\n"+
		"ECC counters, occasional XIDs and thermal throttling) to Kafka, as that many agents would.")
	var k kafkaFlags
	var s simFlags
	var metricsAddr string
	var forDur time.Duration
	k.register(f)
	s.register(f, 64)
	f.StringVar(&metricsAddr, "metrics-addr", ":9402", "address for Prometheus /metrics; empty disables")
	f.DurationVar(&forDur, "for", 0, "stop after this long (0 runs until SIGTERM)")
	if err := f.parse(args); err != nil {
		return err
	}
	return streamFleet(ctx, f, &k, &s, metricsAddr, forDur)
}

func streamFleet(ctx context.Context, f *flags, k *kafkaFlags, s *simFlags, metricsAddr string, forDur time.Duration) error {
	log, err := f.logger()
	if err != nil {
		return err
	}
	srcs, err := s.sources()
	if err != nil {
		return err
	}
	sp, brokers, err := s.spoolAndBrokers(ctx, log, k)
	if err != nil {
		return err
	}
	if sp != nil {
		defer sp.Close()
	}
	reg := newRegistry()
	if err := serveHTTP(ctx, metricsAddr, reg, log, nil); err != nil {
		return err
	}
	prod := agent.NewProducer(brokers)
	defer prod.Close()
	a, err := agent.New(agent.Config{Sources: srcs, Sender: prod, Interval: s.interval, SendEvery: s.sendEvery, Logger: log, Registerer: reg, Spool: sp,
		Rack: s.rack, Pool: s.pool})
	if err != nil {
		return err
	}
	runCtx, cancel := withDeadline(ctx, forDur)
	defer cancel()
	log.Info("streaming", slog.Int("nodes", len(srcs)), slog.Int("gpus", s.gpus), slog.Duration("interval", s.interval))
	err = a.Run(runCtx)
	st := a.Stats()
	log.Info("stopped", slog.Uint64("samples", st.Samples), slog.Uint64("batches", st.Batches), slog.Uint64("events", st.Events))
	return err
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
	k.register(f)
	sf.register(f)
	f.StringVar(&group, "group", "gpufleet-ingest", "Kafka consumer group; workers with the same group share partitions")
	f.IntVar(&workers, "workers", 1, "consumer group members in this process, each decoding on its own core")
	f.IntVar(&rows, "batch-rows", 100_000, "flush a partition's batch at this many sample rows")
	f.IntVar(&batchMiB, "batch-mib", 128, "when the batches' messages add up to this many MiB, flush the largest; a worker holds\n"+
		"at most about 6x this (batches being built, waiting and being inserted, and their columns)")
	f.DurationVar(&age, "batch-age", time.Second, "flush a batch this long after its first message")
	f.DurationVar(&session, "session-timeout", 10*time.Second, "how long the group waits for a silent worker before moving its partitions")
	f.IntVar(&memLimitMiB, "memory-limit-mib", 0, "soft memory limit for the Go runtime (GOMEMLIMIT); 0 leaves it unset")
	f.BoolVar(&doMigrate, "migrate", false, "apply schema migrations before consuming")
	f.StringVar(&metricsAddr, "metrics-addr", ":9401", "address for Prometheus /metrics; empty disables")
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
	}
	brokers, err := k.connect(ctx, log)
	if err != nil {
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
		ins[i], err = ingest.New(ingest.Config{Brokers: brokers, Store: st, GroupID: group, BatchRows: rows,
			BatchBytes: batchMiB << 20, BatchAge: age, SessionTimeout: session,
			Logger: log.With(slog.Int("worker", i)), Registerer: r})
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

func runMigrate(ctx context.Context, e *env, args []string) error {
	f := newFlags(e, "migrate", "Creates or upgrades the gpufleet schema in ClickHouse. Safe to run any number of times.\n"+
		"With --on-cluster, everything is created ON CLUSTER with Replicated engines.")
	var sf storeFlags
	var cluster string
	var ret migrate.Retention
	sf.register(f)
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
	log, err := f.logger()
	if err != nil {
		return err
	}
	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	applied, err := migrate.ApplyWith(ctx, st, log, migrate.Options{Cluster: cluster})
	if err != nil {
		return err
	}
	if err := migrate.SetRetention(ctx, st, ret, cluster); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "schema at version %d (applied now: %v)\n", migrate.Latest(), applied)
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
	f.DurationVar(&since, "since", 15*time.Minute, "window: from now minus this to now")
	f.IntVar(&top, "top", 5, "how many hottest GPUs to list (summary)")
	f.StringVar(&format, "format", "text", "output: text, json, or csv (series only)")
	f.StringVar(&metric, "metric", "", "gpu_samples metric column for a time series (gpu_util, temp_gpu_c, power_w, energy_mj, ...)")
	f.StringVar(&agg, "agg", "avg", "gauges: avg min max sum count p50 p90 p95 p99; counters: increase rate")
	f.StringVar(&by, "by", "", "group by, comma-separated: cluster node gpu model job")
	f.DurationVar(&step, "step", time.Minute, "bucket width (whole seconds)")
	f.Var(&filters, "filter", "keep rows where dim is one of values: dim=v1|v2 (repeatable)")
	f.BoolVar(&fill, "fill", false, "emit every step of every series, empty where nothing was read")
	f.StringVar(&rawSQL, "sql", "", "run one read-only SQL statement (readonly = 1; macros $__timeFilter(col), $__timeInterval(col),\n"+
		"$__fromTime, $__toTime over --since) and print its rows as JSON")
	f.StringVar(&report, "report", "", "print a report as JSON over --since: hottest, idle (least utilised), silent\n"+
		"(stopped reporting), stragglers (under half their job's median), events (by model), jobs (usage)")
	if err := f.parse(args); err != nil {
		return err
	}
	if metric != "" {
		return runSeries(ctx, e, &sf, since, step, format, metric, agg, by, filters, fill)
	}
	if rawSQL != "" {
		if err := query.CheckReadOnly(rawSQL); err != nil {
			return usageError{err}
		}
		st, err := sf.open(ctx)
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
		st, err := sf.open(ctx)
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
	st, err := sf.open(ctx)
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
	st, err := sf.open(ctx)
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

// redact hides a DSN's password for logs.
func redact(dsn string) string {
	at := strings.LastIndex(dsn, "@")
	scheme := strings.Index(dsn, "://")
	if at < 0 || scheme < 0 {
		return dsn
	}
	cred := dsn[scheme+3 : at]
	if user, _, ok := strings.Cut(cred, ":"); ok {
		return dsn[:scheme+3] + user + ":***" + dsn[at:]
	}
	return dsn
}
