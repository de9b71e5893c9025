//go:build !agentonly

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpufleet/gpufleet/ingest"
	"github.com/gpufleet/gpufleet/internal/kafka"
	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/store/backend"
	"github.com/gpufleet/gpufleet/internal/wire"
)

// ingestCmd is `gpufleet ingest`: its flags set an ingest.Config (defaults from
// ingest.DefaultConfig, so that --help shows what an unset flag means), which
// ingest.Config.Validate checks.
type ingestCmd struct {
	k           kafkaFlags
	sf          storeFlags
	shards      string        // comma-separated shard DSNs, in shard order
	cfg         ingest.Config // the fields whose flag has the field's unit
	batchMiB    int           // BatchBytes
	dlqMaxMiB   int           // DLQMaxBytes
	workers     int
	memLimitMiB int
	doMigrate   bool
	metricsAddr string
}

func runIngest(ctx context.Context, e *env, args []string) error {
	f := newFlags(e, "ingest", "Consumes gpu.samples and gpu.events as consumer group --group, inserts columnar batches\n"+
		"into ClickHouse and commits offsets only after the insert is acknowledged. Malformed messages\n"+
		"go to gpu.dlq with a reason. SIGTERM flushes the current batch and commits.")
	c := ingestCmd{cfg: ingest.DefaultConfig()}
	c.register(f)
	if err := f.parse(args); err != nil {
		return err
	}
	if err := c.validate(f); err != nil {
		return err
	}
	log, err := f.logger()
	if err != nil {
		return err
	}
	stores, err := c.openStores(ctx)
	for _, st := range stores {
		defer st.Close()
	}
	if err != nil {
		return err
	}
	for i, st := range stores {
		if err := c.schema(ctx, st, log); err != nil {
			if len(stores) > 1 {
				return fmt.Errorf("shard %d (%s): %w", i+1, st.Database(), err)
			}
			return err
		}
	}
	brokers, err := c.k.connect(ctx, log)
	if err != nil {
		return err
	}
	if err := c.k.checkGroup(ctx, brokers, c.cfg.GroupID); err != nil {
		return err
	}
	if len(stores) > 1 {
		c.checkShardBalance(ctx, log, brokers, len(stores))
	}
	reg := newRegistry()
	if err := serveHTTP(ctx, c.metricsAddr, reg, log, nil); err != nil {
		return err
	}
	if c.memLimitMiB > 0 {
		debug.SetMemoryLimit(int64(c.memLimitMiB) << 20)
	}
	c.cfg.Brokers, c.cfg.Kafka = brokers, c.k.conn
	if c.shards != "" {
		c.cfg.Shards = stores
	} else {
		c.cfg.Store = stores[0]
	}
	return c.run(ctx, log, reg)
}

// openStores opens --clickhouse, or each of --shards in order. What it opened is returned to be
// closed also with an error.
func (c *ingestCmd) openStores(ctx context.Context) ([]store.Store, error) {
	if c.shards == "" {
		st, err := c.sf.open(ctx)
		if err != nil {
			return nil, err
		}
		return []store.Store{st}, nil
	}
	var out []store.Store
	for i, dsn := range splitShards(c.shards) {
		sf := c.sf
		sf.dsn = dsn
		st, err := sf.open(ctx) // validate parsed every DSN
		if err != nil {
			return out, fmt.Errorf("shard %d (%s): %w", i+1, redact(dsn), err)
		}
		out = append(out, st)
	}
	return out, nil
}

// splitShards is --shards' DSNs. Spaces separate them because no URL holds one unescaped, while
// commas are ClickHouse's separator of a shard's replicas (clickhouse://a1:9000,a2:9000/db).
func splitShards(v string) []string { return strings.Fields(v) }

func (c *ingestCmd) register(f *flags) {
	c.k.register(f)
	c.sf.register(f)
	f.StringVar(&c.shards, "shards", "", "a sharded cluster's shard-local databases (gpufleet migrate --on-cluster --shard-database)\n"+
		"instead of --clickhouse: a DSN per shard, separated by spaces (a DSN's own commas list a shard's replicas),\n"+
		"in shard order, the same on every worker: partition p of both topics is written to shard p mod N, so a\n"+
		"node's rows and rollups are whole on one shard (docs/cluster.md)")
	d := &c.cfg
	f.StringVar(&d.GroupID, "group", d.GroupID, "Kafka consumer group; workers with the same group share partitions")
	f.IntVar(&c.workers, "workers", 1, "consumer group members in this process, each decoding on its own core")
	f.IntVar(&d.BatchRows, "batch-rows", d.BatchRows, "flush a partition's batch at this many sample rows")
	f.IntVar(&c.batchMiB, "batch-mib", d.BatchBytes>>20, "when the batches' messages add up to this many MiB, flush the largest; a worker holds\n"+
		"at most about 6x this (batches being built, waiting and being inserted, and their columns)")
	f.DurationVar(&d.BatchAge, "batch-age", d.BatchAge, "flush a batch this long after its first message")
	f.DurationVar(&d.EventBatchAge, "event-batch-age", d.EventBatchAge, "flush an events batch (XIDs, health changes) this long after its first message;\n"+
		"events are inserted ahead of waiting sample batches, so an XID reaches the drain report in about this plus one insert")
	f.BoolVar(&d.Fold, "fold", d.Fold, "fold "+schema.GPU1m+" and "+schema.GPU1h+" in ingest: each partition's rows over --fold-age into one row per\n"+
		"GPU-minute and one per GPU-hour (t-digests included), inserted in place of their views' rows per GPU per batch, at a\n"+
		"fraction of ClickHouse's CPU (docs/rollups.md); offsets are committed past each fold, so the two trail the raw rows\n"+
		"by up to --fold-age and a crash replays up to that much; exactly once either way. --fold=false leaves them to their\n"+
		"views. Change it, or upgrade to a version that folds more levels, after a graceful stop")
	f.DurationVar(&d.FoldAge, "fold-age", d.FoldAge, "with --fold, insert and commit a partition's fold this long after its first batch (1s..10m)")
	f.IntVar(&d.FoldRows, "fold-rows", d.FoldRows, "with --fold, when the folds hold this many rows (GPU-minutes and -hours, about 2.4 KiB each,\n"+
		"counted in the memory bound) or their digests 60 readings per row (104 bytes a sample), insert the largest")
	f.DurationVar(&d.SessionTimeout, "session-timeout", d.SessionTimeout, "how long the group waits for a silent worker before moving its partitions")
	f.IntVar(&c.memLimitMiB, "memory-limit-mib", 0, "soft memory limit for the Go runtime (GOMEMLIMIT); 0 leaves it unset")
	f.BoolVar(&c.doMigrate, "migrate", false, "apply schema migrations before consuming")
	f.StringVar(&c.metricsAddr, "metrics-addr", "127.0.0.1:9401", "address for Prometheus /metrics: loopback only by default; :9401 (every interface)\n"+
		"lets Prometheus on other hosts scrape it; empty disables")
	// The settings that bound bad input and per-agent memory.
	f.IntVar(&c.dlqMaxMiB, "dlq-max-mib", d.DLQMaxBytes>>20, "largest dead letter (the bad message, uncompressed) sent to gpu.dlq whole; a larger one, or one\n"+
		"the broker refuses, is sent truncated to 16 KiB with its original size (DLQMaxBytes; 1.."+strconv.Itoa(ingest.MaxDLQBytes>>20)+")")
	f.DurationVar(&d.MaxClockAhead, "max-clock-ahead", d.MaxClockAhead, "dead-letter a message with a timestamp further than this ahead of ingest's clock (a broken\n"+
		"agent clock; MaxClockAhead); lower it (e.g. 5m) to refuse skewed agents sooner")
	f.DurationVar(&d.ClockSkewTolerance, "clock-skew-tolerance", d.ClockSkewTolerance, "a message whose newest timestamp is further ahead than this is counted as clock skew\n"+
		"(gpufleet_ingest_clock_skew_seconds) and its agent logged, but stored (ClockSkewTolerance;\n"+
		"at most --max-clock-ahead)")
	f.DurationVar(&d.SkewLogInterval, "skew-log-interval", d.SkewLogInterval, "log one agent's clock skew at most this often (SkewLogInterval)")
	f.IntVar(&d.AgentStateMax, "agent-state-max", d.AgentStateMax, "most agents whose last sequence number and latest batches each worker keeps, about\n"+
		"1.3 KiB each, counted in the memory bound (AgentStateMax); a forgotten agent's next batch is looked up\n"+
		"in "+schema.GPUSamples+" as a possible repeat and not checked for a gap")
	f.DurationVar(&d.AgentStateIdle, "agent-state-idle", d.AgentStateIdle, "forget an agent not seen for this long, at the latest twice as long (AgentStateIdle);\n"+
		"keep it above the agents' longest send interval (--send-every × --interval)")
}

// validate checks the flags this command alone reads, then the ingest.Config they set, whose
// limits are ingest's.
func (c *ingestCmd) validate(f *flags) error {
	if c.workers < 1 || c.workers > 256 {
		return usageError{fmt.Errorf("--workers %d: must be between 1 and 256", c.workers)}
	}
	if c.shards != "" {
		if f.isGiven("clickhouse") {
			return usageError{errors.New("--shards and --clickhouse: give one; with --shards every partition is written to its shard")}
		}
		if c.doMigrate {
			return usageError{errors.New("--migrate with --shards: make the sharded schema once with gpufleet migrate --on-cluster C --shard-database D")}
		}
		dsns := splitShards(c.shards)
		if len(dsns) == 0 {
			return usageError{errors.New("--shards: no DSN (give one per shard, separated by spaces)")}
		}
		for i, dsn := range dsns {
			if _, err := backend.Parse(dsn); err != nil {
				return usageError{fmt.Errorf("--shards: shard %d: %w", i+1, err)}
			}
			if j := slices.Index(dsns, dsn); j < i {
				return usageError{fmt.Errorf("--shards: shard %d is shard %d again: give each shard once", i+1, j+1)}
			}
		}
	}
	if c.memLimitMiB < 0 {
		return usageError{fmt.Errorf("--memory-limit-mib %d: must not be negative", c.memLimitMiB)}
	}
	c.cfg.BatchBytes, c.cfg.DLQMaxBytes = mib(c.batchMiB), mib(c.dlqMaxMiB)
	return ingestFields.explain(f, c.cfg.Validate())
}

// mib is n MiB in bytes, saturated rather than wrapped past MaxInt so that a huge flag is refused
// as too large, not taken as a small or negative size.
func mib(n int) int {
	if n > math.MaxInt>>20 {
		return math.MaxInt
	}
	return n << 20
}

// schema migrates, with --migrate, or stops when the schema lacks migrations this ingest writes
// for: inserts would fail on columns the tables lack, and be retried until someone looked.
func (c *ingestCmd) schema(ctx context.Context, st store.Store, log *slog.Logger) error {
	if c.doMigrate {
		_, err := migrate.Apply(ctx, st, log)
		return err
	}
	fix := "run gpufleet migrate first, or pass --migrate"
	if c.shards != "" {
		fix = "run gpufleet migrate --on-cluster C --shard-database D first"
	}
	pending, err := migrate.Pending(ctx, st)
	if err != nil {
		return fmt.Errorf("check the schema: %w (%s)", err, fix)
	}
	if len(pending) > 0 {
		return fmt.Errorf("the schema lacks migrations %v that this ingest writes for: %s", pending, fix)
	}
	return nil
}

// run runs --workers ingesters on c.cfg until ctx ends and logs what they did.
func (c *ingestCmd) run(ctx context.Context, log *slog.Logger, reg prometheus.Registerer) error {
	ins := make([]*ingest.Ingester, c.workers)
	for i := range ins {
		cfg := c.cfg
		cfg.Logger = log.With(slog.Int("worker", i))
		cfg.Registerer = prometheus.WrapRegistererWith(prometheus.Labels{"worker": strconv.Itoa(i)}, reg)
		var err error
		if ins[i], err = ingest.New(cfg); err != nil {
			return err
		}
	}
	log.Info("ingesting", slog.String("group", c.cfg.GroupID), slog.Int("workers", c.workers), c.storeAttr(),
		slog.String("memory_bound_per_worker", fmt.Sprintf("%d MiB + 4 MiB per partition", ins[0].MemoryBound(0)>>20)))
	// ClickHouse answered and the schema is current (checked before this); ready once every worker
	// has joined the consumer group and while none has stopped.
	stopped := make([]atomic.Bool, len(ins))
	setReadyCheck(func() error {
		for i, in := range ins {
			if stopped[i].Load() {
				return fmt.Errorf("worker %d stopped", i)
			}
			if in.Stats().Rebalances == 0 {
				return fmt.Errorf("worker %d has not joined consumer group %q yet", i, c.cfg.GroupID)
			}
		}
		return nil
	})
	errs := make(chan error, c.workers)
	for i, in := range ins {
		go func() {
			err := in.Run(ctx)
			stopped[i].Store(true)
			errs <- err
		}()
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

// storeAttr is where the workers write, for the log, secrets masked.
func (c *ingestCmd) storeAttr() slog.Attr {
	if c.shards != "" {
		return slog.String("shards", redactDSNs(c.shards))
	}
	return slog.String("clickhouse", redact(c.sf.dsn))
}

// checkShardBalance warns when the topics' partitions do not spread evenly over the shards, or
// the two topics differ, which puts a node's events on another shard than its samples (the reads
// still find them, through the Distributed tables). A lookup that fails is left to the consumer
// group to report.
func (c *ingestCmd) checkShardBalance(ctx context.Context, log *slog.Logger, brokers []string, shards int) {
	cctx, cancel := context.WithTimeout(ctx, c.k.connectTimeout)
	defer cancel()
	n, err := kafka.NewAdmin(brokers, c.k.conn).Partitions(cctx, wire.SamplesTopic, wire.EventsTopic)
	if err != nil {
		return
	}
	samples, events := n[wire.SamplesTopic], n[wire.EventsTopic]
	switch {
	case samples != events:
		log.Warn("the samples and events topics have different partition counts: a node's events are written to another shard than its samples",
			slog.Int("samples_partitions", samples), slog.Int("events_partitions", events), slog.Int("shards", shards))
	case samples%shards != 0:
		log.Warn("the partition count is not a multiple of the shard count: shards get unequal shares of the fleet",
			slog.Int("partitions", samples), slog.Int("shards", shards))
	}
}
