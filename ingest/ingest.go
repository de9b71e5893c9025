// Package ingest consumes gpu.samples and gpu.events from Kafka as a consumer group, decodes and
// validates each message, builds columnar blocks per partition and inserts them into ClickHouse,
// committing offsets only after ClickHouse acknowledged the insert. Bad messages go to gpu.dlq
// with a reason. See intents.go for how a replay after a crash inserts nothing twice.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/gpufleet/gpufleet/internal/config"
	"github.com/gpufleet/gpufleet/internal/kafka"
	"github.com/gpufleet/gpufleet/internal/retry"
	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// Config configures an Ingester; zero values take the documented defaults, and a value out of
// range (see Validate) is refused.
type Config struct {
	Brokers []string
	// Kafka is how every connection to the brokers is made (TLS, SASL); nil is plaintext.
	Kafka *kafka.Conn
	// Store is where everything is written, unless Shards is set.
	Store store.Store
	// Shards are the shard-local databases of a sharded cluster (gpufleet migrate
	// --shard-database), one per shard, in the same order for every worker of the group: partition p
	// of either topic is written to Shards[p mod len(Shards)], its batch ranges, gaps and repeat
	// lookups with it, so a replay finds its range where it was recorded. The agents key both topics
	// by node and the two topics have the same partition count, so a node's samples and events are on
	// one shard and its rollups are whole there. Set Store or Shards, not both.
	Shards []store.Store
	// GroupID is the Kafka consumer group; default "gpufleet-ingest".
	GroupID string
	// SamplesTopic, EventsTopic, DLQTopic default to wire.SamplesTopic, wire.EventsTopic and wire.DLQTopic.
	SamplesTopic, EventsTopic, DLQTopic string
	// BatchRows flushes a partition's batch once it holds this many rows; default 100,000.
	BatchRows int
	// BatchBytes bounds the messages in the batches being built: past it the largest batch is cut.
	// Default 128 MiB, room for 100k-row batches of four partitions of 8-GPU messages (64 MiB cut
	// them at half that, and half-size blocks cost chDB twice the CPU per row). With QueueMessages it
	// bounds memory: see MemoryBound.
	BatchBytes int
	// BatchAge flushes a non-empty batch this long after its first message; default 5 s. At 1 Hz a
	// samples batch cut on age holds about BatchAge seconds of each of its GPUs, and the rollup
	// views cost per row they write: five readings per GPU per block cost ClickHouse 2.6 times less
	// than one (docs/rollups.md). Events have their own age (EventBatchAge), so detection does not
	// wait for it.
	BatchAge time.Duration
	// Fold makes ingest fold gpu_1m and gpu_1h itself (folds.go): each samples partition's rows
	// over FoldAge of batches into one partial row per GPU-minute and one per GPU-hour (with the
	// engine's t-digest states), inserted into gpu_1m and gpu_1h, while its raw rows are marked so
	// that their views leave them out. A live fleet's blocks hold a few readings per GPU, and the
	// views' rows per GPU per block are most of what the rollups cost ClickHouse
	// (docs/rollups.md). Offsets are committed only past a fold, so a crash replays up to FoldAge
	// of messages; the two levels' newest bucket trails the raw rows by up to FoldAge.
	Fold bool
	// FoldAge flushes a fold this long after its first batch; default 30 s.
	FoldAge time.Duration
	// FoldRows bounds the partial rows all folds hold together, counted in gpu_1m's rows
	// (GPU-minutes; gpu_1h holds no more), about 4.2 KiB each with gpu_1h's, counted in
	// MemoryBound; and the readings their digests hold to a GPU-minute's at 1 Hz per row (104 bytes
	// a sample): past either the largest is flushed. Default 100,000: a worker's 65,000 GPUs at the
	// default FoldAge.
	FoldRows int
	// EventBatchAge is BatchAge for the events topic's batches, which are inserted ahead of
	// samples: an XID reaches gpu_events (and the drain report) without waiting for a samples
	// batch; default 200 ms.
	EventBatchAge time.Duration
	// QueueMessages is how many fetched messages may wait for the batcher; default 1024.
	QueueMessages int
	// MaxMessageBytes is the largest message fetched; default 4 MiB (the agent's own limit is 1 MiB).
	MaxMessageBytes int
	// SessionTimeout is how long the group coordinator waits for a silent worker before giving its
	// partitions to others; default 10 s.
	SessionTimeout time.Duration
	// Logger defaults to discarding.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Now is the clock for timestamp validation; default time.Now.
	Now func() time.Time
	// DLQMaxBytes is the largest dead letter (value, key and headers, uncompressed) sent whole; a
	// larger one, or one the broker refuses as over the dead-letter topic's max.message.bytes, is
	// sent truncated with its original size in a header, so that no partition stalls on it.
	// Default 64 MiB.
	DLQMaxBytes int
	// MaxClockAhead dead-letters a message with a timestamp further ahead of the ingest clock
	// (a broken agent clock); default 1 h.
	MaxClockAhead time.Duration
	// ClockSkewTolerance is how far ahead of the ingest clock a message's newest timestamp may be
	// before it is counted as clock skew (gpufleet_ingest_clock_skew_seconds) and its agent
	// logged; it is stored all the same, up to MaxClockAhead. Default 5 s.
	ClockSkewTolerance time.Duration
	// SkewLogInterval is how often at most one agent's clock skew is logged; default 1 min.
	SkewLogInterval time.Duration
	// AgentStateMax bounds the agents whose last sequence number and latest batches are kept
	// (about 1.3 KiB each, counted in MemoryBound); default 50,000. An agent forgotten is not
	// checked for a gap on its next batch, which is looked up in gpu_samples as a possible repeat.
	AgentStateMax int
	// AgentStateIdle forgets an agent not seen for this long (at the latest twice as long);
	// default 1 h, above the longest send interval agents are run with (10 min).
	AgentStateIdle time.Duration
}

// MaxDLQBytes bounds DLQMaxBytes: a dead letter is held whole in memory while it is written, and
// no broker takes a record near a GiB.
const MaxDLQBytes = 1 << 30

// limit is one bounded setting of Config: its range, and what New makes of a zero.
type limit struct {
	field    string
	min, max int64 // max 0: no upper bound
	def      int64 // New's value for zero
	unit     unit
	ptr      func(*Config) any // *int or *time.Duration
}

type unit int

const (
	unitCount unit = iota
	unitBytes
	unitDuration
)

// limits are Config's bounded settings, the one table Validate checks and New takes defaults from.
var limits = []limit{
	{"BatchRows", 1, 0, 100_000, unitCount, func(c *Config) any { return &c.BatchRows }},
	{"BatchBytes", 1, 0, 128 << 20, unitBytes, func(c *Config) any { return &c.BatchBytes }},
	{"BatchAge", 1, 0, int64(5 * time.Second), unitDuration, func(c *Config) any { return &c.BatchAge }},
	{"FoldAge", int64(time.Second), int64(10 * time.Minute), int64(30 * time.Second), unitDuration, func(c *Config) any { return &c.FoldAge }},
	{"FoldRows", 1, 0, 100_000, unitCount, func(c *Config) any { return &c.FoldRows }},
	{"EventBatchAge", 1, 0, int64(200 * time.Millisecond), unitDuration, func(c *Config) any { return &c.EventBatchAge }},
	{"QueueMessages", 1, 0, 1024, unitCount, func(c *Config) any { return &c.QueueMessages }},
	{"MaxMessageBytes", 1, 0, 4 << 20, unitBytes, func(c *Config) any { return &c.MaxMessageBytes }},
	// Below a second a worker is thrown out of the group at every pause; brokers refuse under 6 s
	// by default (group.min.session.timeout.ms).
	{"SessionTimeout", int64(time.Second), 0, int64(10 * time.Second), unitDuration, func(c *Config) any { return &c.SessionTimeout }},
	{"DLQMaxBytes", 1, MaxDLQBytes, 64 << 20, unitBytes, func(c *Config) any { return &c.DLQMaxBytes }},
	{"MaxClockAhead", int64(time.Second), 0, int64(defaultMaxAhead), unitDuration, func(c *Config) any { return &c.MaxClockAhead }},
	{"ClockSkewTolerance", 1, 0, int64(5 * time.Second), unitDuration, func(c *Config) any { return &c.ClockSkewTolerance }},
	{"SkewLogInterval", 1, 0, int64(time.Minute), unitDuration, func(c *Config) any { return &c.SkewLogInterval }},
	{"AgentStateMax", 1, 0, 50_000, unitCount, func(c *Config) any { return &c.AgentStateMax }},
	{"AgentStateIdle", int64(time.Second), 0, int64(time.Hour), unitDuration, func(c *Config) any { return &c.AgentStateIdle }},
}

func (l limit) get(c *Config) int64 {
	switch p := l.ptr(c).(type) {
	case *int:
		return int64(*p)
	case *time.Duration:
		return int64(*p)
	}
	panic("ingest: limit " + l.field + " is neither int nor time.Duration")
}

func (l limit) set(c *Config, v int64) {
	switch p := l.ptr(c).(type) {
	case *int:
		*p = int(v)
	case *time.Duration:
		*p = time.Duration(v)
	}
}

func (l limit) format(v int64) string {
	switch l.unit {
	case unitDuration:
		return time.Duration(v).String()
	case unitBytes:
		for _, u := range []struct {
			shift int
			name  string
		}{{30, "GiB"}, {20, "MiB"}, {10, "KiB"}} {
			if v != 0 && v%(1<<u.shift) == 0 {
				return fmt.Sprintf("%d %s", v>>u.shift, u.name)
			}
		}
		return fmt.Sprintf("%d B", v)
	}
	return fmt.Sprint(v)
}

func (l limit) check(c *Config) error {
	v := l.get(c)
	if v >= l.min && (l.max == 0 || v <= l.max) {
		return nil
	}
	problem := "must be at least " + l.format(l.min)
	switch {
	case l.max != 0:
		problem = fmt.Sprintf("must be %s..%s", l.format(l.min), l.format(l.max))
	case l.unit == unitDuration && l.min == 1:
		problem = "must be positive"
	}
	var val any = v
	if l.unit == unitDuration {
		val = time.Duration(v)
	}
	return &config.FieldError{Field: l.field, Value: val, Problem: problem}
}

// DefaultConfig returns a Config with every bounded setting at its default (what New makes of a
// zero) and Fold on, for a caller that sets each one and validates the lot, as the CLI does: its
// flags' defaults come from here.
func DefaultConfig() Config {
	var c Config
	for _, l := range limits {
		l.set(&c, l.def)
	}
	c.GroupID = "gpufleet-ingest"
	c.Fold = true
	return c
}

// Validate checks every bounded setting as it stands, zeros included (New fills those with the
// defaults first), and that ClockSkewTolerance does not exceed MaxClockAhead. It leaves out the
// connections (Brokers, Store), so that a caller can check the settings before opening anything.
// The error is a *config.FieldError.
func (c Config) Validate() error {
	for _, l := range limits {
		if err := l.check(&c); err != nil {
			return fmt.Errorf("ingest: %w", err)
		}
	}
	if c.ClockSkewTolerance > c.MaxClockAhead {
		return fmt.Errorf("ingest: %w", &config.FieldError{Field: "ClockSkewTolerance", Value: c.ClockSkewTolerance,
			Problem: fmt.Sprintf("must not exceed MaxClockAhead %s, beyond which messages are dead-lettered", c.MaxClockAhead)})
	}
	return nil
}

// Stats counts what the ingester has done.
type Stats struct {
	Samples      uint64 // sample rows inserted
	Events       uint64 // event rows inserted
	DLQ          uint64 // messages dead-lettered
	Messages     uint64 // messages committed
	Gaps         uint64 // batches agents numbered that never arrived
	Rebalances   uint64 // consumer group generations joined
	Fetched      uint64 // messages fetched from Kafka, committed or not
	Duplicates   uint64 // sample and event messages dropped as a repeat of one already taken or stored
	Skewed       uint64 // messages whose newest timestamp was ahead of the ingest clock beyond ClockSkewTolerance
	Truncated    uint64 // dead letters sent truncated because the dead-letter topic refused them whole
	GapsRecorded uint64 // rows written to ingest_gaps: one per jump in an agent's sequence numbers
	FetchErrors  uint64 // partition fetches that failed and were retried
	Folds        uint64 // folds inserted and committed (Config.Fold)
	FoldRows     uint64 // partial rows those folds inserted, of every level (GPU-minutes, GPU-hours)
}

// Ingester is one ingest worker; run several with the same GroupID to share partitions.
type Ingester struct {
	cfg    Config
	log    *slog.Logger
	dlq    *kafkago.Writer
	shards []store.Store // Config.Shards, or Config.Store alone

	// Fold state (folds.go), owned by the goroutine running the current generation's inserter.
	folds      map[partKey]*openFold
	freeFolds  []*foldSet
	foldValues int   // foldValuesPerRow
	foldBits   uint8 // foldMask: the folded column's value on the rows ingest folds

	// Batcher state, owned by the goroutine running the current generation's batcher.
	parts    map[partKey]*partBatch
	building int // message bytes in the batches being built
	agents   *agentTable
	gen      uint64              // generations this batcher ran; agentState.gen refers to it
	runs     map[partKey]partRun // per partition, the run of offsets this worker read last
	runSeq   uint64              // the last run id given out
	lags     map[partKey]prometheus.Gauge
	freeCols chan *sampleColumns // columns of committed cuts, for reuse
	sd       wire.SampleDecoder
	eb       wirepb.EventBatch
	skewLog  skewLog

	nSamples, nEvents, nDLQ, nMessages, nGaps, nRebalances, nFetched, nDuplicates atomic.Uint64
	nSkewed, nTruncated, nGapsRecorded, nFetchErrors, nFolds, nFoldRows           atomic.Uint64
	foldHeld                                                                      atomic.Int64
	fetchMu                                                                       sync.Mutex
	fetchedTo                                                                     map[partKey]*atomic.Int64 // offset after the last message counted fetched
	m                                                                             metrics

	// crashAfterInsert, when set by a test, makes Run return right after the inserts of a flush and
	// before its commit, as a worker killed at that instant would.
	crashAfterInsert func() bool
	// crashAfterFold is crashAfterInsert for a fold's inserts into the rollups.
	crashAfterFold func() bool
}

type partKey struct {
	topic     string
	partition int
}

// partBatch is one partition's pending messages. Batches are cut per partition so that a replay
// can cut them identically (see intents.go).
type partBatch struct {
	key         partKey
	first, last int64
	next        int64  // offset expected next; another value means a restart or a new generation
	run         uint64 // the run of offsets (partRun) this batch's messages belong to
	target      int64  // last offset of a range an earlier run recorded, or -1
	// repeats are the offsets of messages left out as repeats (in memory as they were decoded, or
	// found stored before the insert); they are recorded with the range, so that a replay leaves
	// out exactly these (see intents.go).
	repeats []int64
	// recheck: the last batch was a recorded range cut again, so the next batch's first offset is
	// looked up too (track).
	recheck bool
	// replay, while cutting a recorded range again, is what that range left out; nil when there
	// is no such range, or it was recorded before ingest kept its repeats (then stored copies decide).
	replay      map[int64]bool
	started     time.Time
	samples     *sampleColumns
	events      *eventColumns
	dead        []kafkago.Message
	gaps        gapColumns
	sampleTimes []int64 // per message, the first row's time: the end-to-end delay histogram
	n, bytes    int
	lag         prometheus.Gauge
}

func (p *partBatch) table() (string, *store.Block) {
	if p.samples != nil {
		return schema.GPUSamples, &p.samples.block
	}
	return schema.GPUEvents, &p.events.block
}

func (p *partBatch) rows() int {
	_, b := p.table()
	return b.Rows()
}

func (p *partBatch) token() string {
	return fmt.Sprintf("%s/%d/%d-%d", p.key.topic, p.key.partition, p.first, p.last)
}

// New returns an ingester; Run starts consuming.
func New(cfg Config) (*Ingester, error) {
	if len(cfg.Brokers) == 0 || cfg.Store == nil && len(cfg.Shards) == 0 {
		return nil, errors.New("ingest: Brokers and Store (or Shards) are required")
	}
	shards, err := shardsOf(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.GroupID == "" {
		cfg.GroupID = "gpufleet-ingest"
	}
	if cfg.SamplesTopic == "" {
		cfg.SamplesTopic = wire.SamplesTopic
	}
	if cfg.EventsTopic == "" {
		cfg.EventsTopic = wire.EventsTopic
	}
	if cfg.DLQTopic == "" {
		cfg.DLQTopic = wire.DLQTopic
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	// Zero is the default; anything else out of range is refused, not replaced.
	for _, l := range limits {
		if l.get(&cfg) == 0 {
			l.set(&cfg, l.def)
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Fold {
		for _, l := range foldLevels() {
			if err := foldable(l); err != nil {
				return nil, err
			}
		}
	}
	in := &Ingester{folds: map[partKey]*openFold{}, foldValues: foldValuesPerRow(), foldBits: foldMask(), cfg: cfg, log: cfg.Logger, shards: shards, parts: map[partKey]*partBatch{},
		agents: newAgentTable(cfg.AgentStateMax, cfg.AgentStateIdle, time.Now()), runs: map[partKey]partRun{}, lags: map[partKey]prometheus.Gauge{},
		fetchedTo: map[partKey]*atomic.Int64{}, freeCols: make(chan *sampleColumns, 4), m: newMetrics()}
	// Dead letters are whole source messages, often several MB uncompressed: kafka-go's default
	// 1 MiB BatchBytes refused them client-side and uncompressed they exceed the broker's limit.
	in.dlq = &kafkago.Writer{Addr: kafkago.TCP(cfg.Brokers...), Transport: cfg.Kafka.Transport(), Topic: cfg.DLQTopic, Balancer: &kafkago.Hash{},
		RequiredAcks: kafkago.RequireAll, BatchTimeout: 5 * time.Millisecond, Compression: kafkago.Zstd,
		BatchBytes: int64(cfg.DLQMaxBytes)}
	if r := cfg.Registerer; r != nil {
		in.m.register(r, in)
	}
	return in, nil
}

// MemoryBound estimates the most bytes the ingester holds at once while it owns this many
// partitions: three BatchBytes of messages (being built, waiting, being inserted) and the columns
// decoded from them (about as large again), the queue between fetchers and batcher at a typical
// 1/16 of the largest message, one fetch buffer per partition, the state of AgentStateMax
// agents, and with Fold the FoldRows rows of the folds and the block of one being inserted.
func (in *Ingester) MemoryBound(partitions int) int {
	c := in.cfg
	n := 6*c.BatchBytes + c.QueueMessages*c.MaxMessageBytes/16 + partitions*c.MaxMessageBytes + c.AgentStateMax*agentStateBytes
	if c.Fold {
		n += foldBytes(c.FoldRows, c.FoldRows*foldValuesPerRow())
	}
	return n
}

// Stats returns the ingester's counters.
func (in *Ingester) Stats() Stats {
	return Stats{Samples: in.nSamples.Load(), Events: in.nEvents.Load(), DLQ: in.nDLQ.Load(),
		Messages: in.nMessages.Load(), Gaps: in.nGaps.Load(), Rebalances: in.nRebalances.Load(),
		Fetched: in.nFetched.Load(), Duplicates: in.nDuplicates.Load(), Skewed: in.nSkewed.Load(), Truncated: in.nTruncated.Load(),
		GapsRecorded: in.nGapsRecorded.Load(), FetchErrors: in.nFetchErrors.Load(), Folds: in.nFolds.Load(), FoldRows: in.nFoldRows.Load()}
}

// shutdownFlush bounds the final flush after ctx ends.
const shutdownFlush = 30 * time.Second

// errCrashed is returned by Run when the crashAfterInsert test hook fired.
var errCrashed = errors.New("ingest: stopped between insert and commit (test hook)")

// Run consumes until ctx ends, then flushes and commits what it holds and leaves the group.
//
// Each consumer group generation runs one fetcher per assigned partition and one batcher. When the
// generation ends (a worker joined or left), the batcher inserts and commits what it holds before
// the group rebalances, so the partition's next owner starts exactly where this one stopped.
func (in *Ingester) Run(ctx context.Context) error {
	group, err := kafkago.NewConsumerGroup(kafkago.ConsumerGroupConfig{
		ID:                     in.cfg.GroupID,
		Brokers:                in.cfg.Brokers,
		Dialer:                 in.cfg.Kafka.Dialer(),
		Topics:                 []string{in.cfg.SamplesTopic, in.cfg.EventsTopic},
		StartOffset:            kafkago.FirstOffset,
		HeartbeatInterval:      in.cfg.SessionTimeout / 10,
		SessionTimeout:         in.cfg.SessionTimeout,
		RebalanceTimeout:       in.cfg.SessionTimeout,
		JoinGroupBackoff:       500 * time.Millisecond,
		WatchPartitionChanges:  true,
		PartitionWatchInterval: 5 * time.Second,
		ErrorLogger: kafkago.LoggerFunc(func(msg string, args ...any) {
			in.log.Debug("kafka consumer group", slog.String("msg", fmt.Sprintf(msg, args...)))
		}),
	})
	if err != nil {
		return fmt.Errorf("ingest: consumer group: %w", err)
	}
	defer in.dlq.Close()
	// Whether it stopped or crashed, the worker owns no partition now: their lag is another's to report.
	defer in.forgetPartitions(nil)
	// In the background: a broker that is down at start-up must not delay joining the group.
	go in.checkDLQLimit(ctx)
	for {
		// Each join starts its backoff afresh: the last one succeeded.
		gen, err := retry.DoValue(ctx, retryPolicy, func(ctx context.Context) (*kafkago.Generation, error) {
			gen, err := group.Next(ctx)
			if errors.Is(err, kafkago.ErrGroupClosed) {
				return nil, retry.Permanent(err)
			}
			return gen, err
		}, retry.OnRetry(func(_ int, err error, wait time.Duration) {
			in.log.Warn("joining consumer group", slog.String("group", in.cfg.GroupID), slog.Any("err", err),
				slog.Duration("backoff", wait))
		}))
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return fmt.Errorf("ingest: consumer group closed: %w", err)
		}
		in.nRebalances.Add(1)
		err = in.runGeneration(ctx, gen)
		if errors.Is(err, errCrashed) {
			group.Close() // only speeds up the handover: nothing was committed, as in a kill -9
			return err
		}
		if err != nil && ctx.Err() == nil {
			in.log.Warn("generation ended with an error; rejoining", slog.Any("err", err))
		}
		if ctx.Err() != nil {
			if cerr := group.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("ingest: leave group: %w", cerr)
			}
			return err
		}
	}
	if err := group.Close(); err != nil {
		return fmt.Errorf("ingest: leave group: %w", err)
	}
	return nil
}

// runGeneration consumes the partitions gen assigned until the generation or ctx ends.
func (in *Ingester) runGeneration(ctx context.Context, gen *kafkago.Generation) error {
	var owned []string
	for topic, as := range gen.Assignments {
		for _, a := range as {
			owned = append(owned, fmt.Sprintf("%s/%d@%d", topic, a.ID, a.Offset))
		}
	}
	sort.Strings(owned)
	in.log.Info("consumer group generation", slog.Int("generation", int(gen.ID)), slog.Any("partitions", owned))

	msgs := make(chan kafkago.Message, in.cfg.QueueMessages)
	var fetchers sync.WaitGroup
	done := make(chan error, 1)
	for topic, as := range gen.Assignments {
		for _, a := range as {
			fetchers.Add(1)
			gen.Start(func(gctx context.Context) {
				defer fetchers.Done()
				in.fetch(ctx, gctx, topic, a, msgs)
			})
		}
	}
	gen.Start(func(gctx context.Context) {
		done <- in.batch(ctx, gctx, gen, msgs)
	})
	return <-done
}

// fetch reads one partition from offset a.Offset into msgs until the generation or ctx ends. A
// failed fetch is reported and retried with backoff from the offset after the last message
// passed on: returning would end the whole generation (kafka-go ends it when any of its
// goroutines returns), and a partition must not sit idle waiting for someone to rebalance.
func (in *Ingester) fetch(ctx, gctx context.Context, topic string, a kafkago.PartitionAssignment, msgs chan<- kafkago.Message) {
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(gctx, cancel)
	defer stop()
	counted := in.fetchMark(partKey{topic, a.ID})
	next := a.Offset
	// Not retry.Do: a fetch that passed messages on before failing starts the backoff again.
	backoff := retryPolicy.Backoff()
	for {
		progressed, err := in.fetchFrom(fctx, topic, a.ID, &next, counted, msgs)
		if fctx.Err() != nil {
			return
		}
		if progressed {
			backoff.Reset()
		}
		wait := backoff.Next()
		in.nFetchErrors.Add(1)
		in.m.retries.WithLabelValues("fetch").Inc()
		in.log.Warn("fetch partition failed; retrying", slog.String("topic", topic), slog.Int("partition", a.ID),
			slog.Int64("offset", next), slog.Any("err", err), slog.Duration("backoff", wait))
		if retry.Sleep(fctx, wait) != nil {
			return
		}
	}
}

// fetchFrom reads the partition from *next on, passing messages to msgs and advancing *next,
// until a fetch fails or ctx ends. It reports whether it passed any message on.
func (in *Ingester) fetchFrom(ctx context.Context, topic string, partition int, next *int64, counted *atomic.Int64,
	msgs chan<- kafkago.Message) (bool, error) {
	r := kafkago.NewReader(kafkago.ReaderConfig{
		Brokers:   in.cfg.Brokers,
		Dialer:    in.cfg.Kafka.Dialer(),
		Topic:     topic,
		Partition: partition,
		MinBytes:  1,
		MaxBytes:  in.cfg.MaxMessageBytes,
		MaxWait:   250 * time.Millisecond,
		ErrorLogger: kafkago.LoggerFunc(func(msg string, args ...any) {
			text := fmt.Sprintf(msg, args...)
			// kafka-go reports a long poll on an idle partition that outlived its read deadline as an
			// error and simply fetches again: worth a debug line, not a warning.
			level := slog.LevelWarn
			if strings.Contains(text, "i/o timeout") {
				level = slog.LevelDebug
			}
			in.log.Log(context.Background(), level, "kafka fetch", slog.String("topic", topic), slog.Int("partition", partition),
				slog.String("msg", text))
		}),
	})
	defer r.Close()
	if err := r.SetOffset(*next); err != nil {
		return false, fmt.Errorf("seek %s/%d to %d: %w", topic, partition, *next, err)
	}
	progressed := false
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return progressed, fmt.Errorf("fetch %s/%d at %d: %w", topic, partition, *next, err)
		}
		select {
		case msgs <- m:
		case <-ctx.Done():
			return progressed, ctx.Err()
		}
		*next, progressed = m.Offset+1, true
		// A message fetched again (the queue a generation left behind, a batch whose commit failed)
		// was counted the first time.
		if m.Offset >= counted.Load() {
			counted.Store(m.Offset + 1)
			in.nFetched.Add(1)
		}
	}
}

// fetchMark is the offset after the last message of a partition counted as fetched.
func (in *Ingester) fetchMark(k partKey) *atomic.Int64 {
	in.fetchMu.Lock()
	defer in.fetchMu.Unlock()
	c := in.fetchedTo[k]
	if c == nil {
		c = &atomic.Int64{}
		in.fetchedTo[k] = c
	}
	return c
}

// retryPolicy backs off from 100 ms to 10 s between tries. Decorrelated jitter keeps each wait
// at 100 ms or more while the workers of a group, which all fail together when a broker or the
// store does, spread their retries.
var retryPolicy = retry.Policy{Initial: 100 * time.Millisecond, Max: 10 * time.Second, Jitter: retry.Decorrelated}

// retry runs do until it succeeds or ctx ends (then returning do's last error), backing off per
// retryPolicy between tries.
func (in *Ingester) retry(ctx context.Context, what string, do func(context.Context) error) error {
	var last error
	err := retry.Do(ctx, retryPolicy, func(ctx context.Context) error {
		last = do(ctx)
		return last
	}, retry.OnRetry(func(_ int, err error, wait time.Duration) {
		in.m.retries.WithLabelValues(what).Inc()
		in.log.Warn("retrying", slog.String("step", what), slog.Any("err", err), slog.Duration("backoff", wait))
	}))
	if err != nil {
		return last // callers wrap it; ctx's end is theirs to see
	}
	return nil
}

// checkDLQLimit warns when the dead-letter topic takes smaller messages than the samples topic: a
// dead letter of a message the broker accepted could then only be sent truncated.
func (in *Ingester) checkDLQLimit(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	admin := kafka.NewAdmin(in.cfg.Brokers, in.cfg.Kafka)
	dlq, err := admin.MaxMessageBytes(ctx, in.cfg.DLQTopic)
	if err == nil {
		var src int
		if src, err = admin.MaxMessageBytes(ctx, in.cfg.SamplesTopic); err == nil && dlq < src {
			in.log.Warn("the dead-letter topic takes smaller messages than the samples topic: larger dead letters are sent truncated; raise its max.message.bytes",
				slog.String("dlq_topic", in.cfg.DLQTopic), slog.Int("dlq_max_message_bytes", dlq),
				slog.String("samples_topic", in.cfg.SamplesTopic), slog.Int("samples_max_message_bytes", src))
		}
	}
	if err != nil && ctx.Err() == nil {
		in.log.Debug("checking the dead-letter topic's max.message.bytes", slog.Any("err", err))
	}
}
