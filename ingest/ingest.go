// Package ingest consumes gpu.samples and gpu.events from Kafka as a consumer group, decodes and
// validates each message, builds columnar blocks and inserts them into ClickHouse, committing
// offsets only after ClickHouse acknowledged the insert. Bad messages go to gpu.dlq with a reason.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/gpufleet/gpufleet/kafkaadmin"
	"github.com/gpufleet/gpufleet/store"
	"github.com/gpufleet/gpufleet/wire"
	"github.com/gpufleet/gpufleet/wire/wirepb"
)

// Config configures an Ingester; zero values take the documented defaults.
type Config struct {
	Brokers []string
	Store   store.Store
	// GroupID is the Kafka consumer group; default "gpufleet-ingest".
	GroupID string
	// SamplesTopic, EventsTopic, DLQTopic default to gpu.samples, gpu.events, gpu.dlq.
	SamplesTopic, EventsTopic, DLQTopic string
	// BatchRows flushes once this many sample rows are pending; default 100,000.
	BatchRows int
	// BatchAge flushes a non-empty batch this long after its first message; default 1 s.
	BatchAge time.Duration
	// Logger defaults to discarding.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Now is the clock for timestamp validation; default time.Now.
	Now func() time.Time
}

// Stats counts what the ingester has done.
type Stats struct {
	Samples  uint64 // sample rows inserted
	Events   uint64 // event rows inserted
	DLQ      uint64 // messages dead-lettered
	Messages uint64 // messages committed
}

// Ingester is one ingest worker; run several with the same GroupID to share partitions.
type Ingester struct {
	cfg    Config
	log    *slog.Logger
	reader *kafka.Reader
	dlq    *kafka.Writer

	parts map[partKey]*partBatch
	sb    wirepb.SampleBatch
	eb    wirepb.EventBatch

	nSamples, nEvents, nDLQ, nMessages atomic.Uint64
	insertSeconds                      prometheus.Histogram
	insertRetries                      prometheus.Counter

	// crashAfterInsert, when set by a test, makes Run return right after the inserts of a flush and
	// before its commit, as a worker killed at that instant would.
	crashAfterInsert func() bool
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
	next        int64 // offset expected next; another value means a rebalance or restart happened
	target      int64 // last offset of a range an earlier run recorded, or -1
	started     time.Time
	lastMsg     kafka.Message
	samples     *sampleColumns
	events      *eventColumns
	dead        []kafka.Message
	n           int
}

func (p *partBatch) table() (string, *store.Block) {
	if p.samples != nil {
		return "gpu_samples", &p.samples.block
	}
	return "gpu_events", &p.events.block
}

func (p *partBatch) rows() int {
	if p.samples != nil {
		return p.samples.block.Rows()
	}
	return p.events.block.Rows()
}

// New returns an ingester; Run starts consuming.
func New(cfg Config) (*Ingester, error) {
	if len(cfg.Brokers) == 0 || cfg.Store == nil {
		return nil, errors.New("ingest: brokers and store are required")
	}
	if cfg.GroupID == "" {
		cfg.GroupID = "gpufleet-ingest"
	}
	if cfg.SamplesTopic == "" {
		cfg.SamplesTopic = kafkaadmin.SamplesTopic
	}
	if cfg.EventsTopic == "" {
		cfg.EventsTopic = kafkaadmin.EventsTopic
	}
	if cfg.DLQTopic == "" {
		cfg.DLQTopic = kafkaadmin.DLQTopic
	}
	if cfg.BatchRows <= 0 {
		cfg.BatchRows = 100_000
	}
	if cfg.BatchAge <= 0 {
		cfg.BatchAge = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	in := &Ingester{cfg: cfg, log: cfg.Logger, parts: map[partKey]*partBatch{},
		insertSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gpufleet_ingest_insert_seconds",
			Help: "Time for ClickHouse to acknowledge one batch insert.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
		insertRetries: prometheus.NewCounter(prometheus.CounterOpts{Name: "gpufleet_ingest_insert_retries_total",
			Help: "Batch inserts retried after a ClickHouse error."}),
	}
	in.reader = kafka.NewReader(kafka.ReaderConfig{
		Brokers:     cfg.Brokers,
		GroupID:     cfg.GroupID,
		GroupTopics: []string{cfg.SamplesTopic, cfg.EventsTopic},
		MinBytes:    1,
		MaxBytes:    16 << 20,
		MaxWait:     250 * time.Millisecond,
		// Offsets are committed explicitly after each insert (CommitMessages is synchronous when
		// CommitInterval is 0), never on a timer that could run ahead of ClickHouse.
		CommitInterval:        0,
		StartOffset:           kafka.FirstOffset,
		HeartbeatInterval:     time.Second,
		SessionTimeout:        10 * time.Second,
		RebalanceTimeout:      10 * time.Second,
		JoinGroupBackoff:      500 * time.Millisecond,
		WatchPartitionChanges: true,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			in.log.Warn("kafka reader", slog.String("msg", fmt.Sprintf(msg, args...)))
		}),
	})
	in.dlq = &kafka.Writer{Addr: kafka.TCP(cfg.Brokers...), Topic: cfg.DLQTopic, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: 5 * time.Millisecond}
	if r := cfg.Registerer; r != nil {
		r.MustRegister(in.insertSeconds, in.insertRetries,
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "gpufleet_ingest_sample_rows_total", Help: "Sample rows inserted."}, func() float64 { return float64(in.nSamples.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "gpufleet_ingest_event_rows_total", Help: "Event rows inserted."}, func() float64 { return float64(in.nEvents.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "gpufleet_ingest_dlq_total", Help: "Messages sent to the dead-letter topic."}, func() float64 { return float64(in.nDLQ.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "gpufleet_ingest_messages_committed_total", Help: "Kafka messages committed after insert."}, func() float64 { return float64(in.nMessages.Load()) }),
		)
	}
	return in, nil
}

// Stats returns the ingester's counters.
func (in *Ingester) Stats() Stats {
	return Stats{Samples: in.nSamples.Load(), Events: in.nEvents.Load(), DLQ: in.nDLQ.Load(), Messages: in.nMessages.Load()}
}

// shutdownFlush bounds the final flush after ctx ends.
const shutdownFlush = 30 * time.Second

// errCrashed is returned by Run when the crashAfterInsert test hook fired.
var errCrashed = errors.New("ingest: stopped between insert and commit (test hook)")

// Run consumes until ctx ends, then flushes and commits what it holds and closes the reader.
func (in *Ingester) Run(ctx context.Context) error {
	fetchCtx, stopFetch := context.WithCancel(ctx)
	defer stopFetch()
	// A small channel between fetch and batch: when inserts stall, it fills, fetching stops,
	// and memory stays bounded by the reader's queue plus this channel.
	msgs := make(chan kafka.Message, 256)
	fetchErr := make(chan error, 1)
	go func() {
		defer close(msgs)
		for {
			m, err := in.reader.FetchMessage(fetchCtx)
			if err != nil {
				if fetchCtx.Err() == nil {
					fetchErr <- fmt.Errorf("fetch: %w", err)
				}
				return
			}
			select {
			case msgs <- m:
			case <-fetchCtx.Done():
				return
			}
		}
	}()
	tick := time.NewTicker(in.cfg.BatchAge / 4)
	defer tick.Stop()
	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-fetchErr:
			runErr = err
			break loop
		case m, ok := <-msgs:
			if !ok {
				break loop
			}
			if err := in.add(ctx, m); err != nil {
				runErr = err
				break loop
			}
		case <-tick.C:
			if err := in.flushDue(ctx, false); err != nil {
				runErr = err
				break loop
			}
		}
	}
	stopFetch()
	if errors.Is(runErr, errCrashed) {
		in.reader.Close() // leaves the group without committing, as a killed process would
		in.dlq.Close()
		return runErr
	}
	flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownFlush)
	defer cancel()
	if err := in.flushDue(flushCtx, true); err != nil && runErr == nil {
		runErr = err
	}
	if err := in.reader.Close(); err != nil && runErr == nil {
		runErr = fmt.Errorf("close reader: %w", err)
	}
	if err := in.dlq.Close(); err != nil && runErr == nil {
		runErr = fmt.Errorf("close dlq writer: %w", err)
	}
	return runErr
}

// add decodes one message into its partition's batch, or queues it for the dead-letter topic, and
// flushes the batch when it is full or reaches the range an earlier run recorded.
func (in *Ingester) add(ctx context.Context, m kafka.Message) error {
	k := partKey{m.Topic, m.Partition}
	p := in.parts[k]
	if p == nil {
		p = &partBatch{key: k, next: -1, target: -1}
		switch m.Topic {
		case in.cfg.SamplesTopic:
			p.samples = newSampleColumns()
		default:
			p.events = newEventColumns()
		}
		in.parts[k] = p
	}
	if p.n == 0 {
		if m.Offset != p.next {
			// First message of this partition since start-up or a rebalance: an earlier owner may
			// have inserted a range it did not commit; cut the same range again.
			t, err := in.intentCovering(ctx, k, m.Offset)
			if err != nil {
				return err
			}
			p.target = t
		}
		p.first, p.started = m.Offset, time.Now()
	}
	p.last, p.next, p.lastMsg = m.Offset, m.Offset+1, m
	p.n++
	var err error
	switch {
	case p.samples != nil && m.Topic == in.cfg.SamplesTopic:
		if err = wire.DecodeSamples(m.Value, &in.sb); err == nil {
			if err = p.samples.check(&in.sb, in.cfg.Now()); err == nil {
				p.samples.appendBatch(&in.sb)
			}
		}
	case p.events != nil && m.Topic == in.cfg.EventsTopic:
		if err = wire.DecodeEvents(m.Value, &in.eb); err == nil {
			if err = p.events.check(&in.eb, in.cfg.Now()); err == nil {
				p.events.appendBatch(&in.eb)
			}
		}
	default:
		err = fmt.Errorf("%w: unexpected topic %q", wire.ErrMalformed, m.Topic)
	}
	if err != nil {
		in.log.Warn("dead-lettering message", slog.String("topic", m.Topic), slog.Int("partition", m.Partition),
			slog.Int64("offset", m.Offset), slog.Any("reason", err))
		p.dead = append(p.dead, kafka.Message{Key: m.Key, Value: m.Value, Headers: []kafka.Header{
			{Key: "reason", Value: []byte(err.Error())},
			{Key: "source_topic", Value: []byte(m.Topic)},
			{Key: "source_partition", Value: []byte(strconv.Itoa(m.Partition))},
			{Key: "source_offset", Value: []byte(strconv.FormatInt(m.Offset, 10))},
		}})
	}
	if p.target >= 0 {
		if m.Offset >= p.target {
			return in.flush(ctx, []*partBatch{p})
		}
		return nil // replaying a recorded range: its end, not size or age, closes the batch
	}
	if p.rows() >= in.cfg.BatchRows {
		return in.flush(ctx, []*partBatch{p})
	}
	return nil
}

// flushDue flushes every partition batch older than BatchAge, or every non-empty one when all is set.
func (in *Ingester) flushDue(ctx context.Context, all bool) error {
	var due []*partBatch
	for _, p := range in.parts {
		if p.n > 0 && (all || p.target < 0 && time.Since(p.started) >= in.cfg.BatchAge) {
			due = append(due, p)
		}
	}
	sort.Slice(due, func(i, j int) bool {
		return due[i].key.topic < due[j].key.topic || due[i].key.topic == due[j].key.topic && due[i].key.partition < due[j].key.partition
	})
	return in.flush(ctx, due)
}

// flush records the batches' ranges, inserts each with a token naming its range, writes dead
// letters, then commits. Each step is retried with capped backoff until it succeeds or ctx ends;
// while it retries nothing is fetched.
func (in *Ingester) flush(ctx context.Context, ps []*partBatch) error {
	if len(ps) == 0 {
		return nil
	}
	var fresh []*partBatch
	for _, p := range ps {
		if p.target < 0 {
			fresh = append(fresh, p)
		}
	}
	if err := retry(ctx, in.log, "record batch ranges", in.insertRetries, func(ctx context.Context) error {
		return in.recordIntents(ctx, fresh)
	}); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	var commit []kafka.Message
	var dead []kafka.Message
	for _, p := range ps {
		table, block := p.table()
		token := fmt.Sprintf("%s/%d/%d-%d", p.key.topic, p.key.partition, p.first, p.last)
		if err := retry(ctx, in.log, "insert "+table, in.insertRetries, func(ctx context.Context) error {
			return in.insert(ctx, table, block, token)
		}); err != nil {
			return fmt.Errorf("flush %s: %w", token, err)
		}
		commit = append(commit, p.lastMsg)
		dead = append(dead, p.dead...)
	}
	if in.crashAfterInsert != nil && in.crashAfterInsert() {
		return errCrashed
	}
	if len(dead) > 0 {
		if err := retry(ctx, in.log, "write dead letters", in.insertRetries, func(ctx context.Context) error {
			return in.dlq.WriteMessages(ctx, dead...)
		}); err != nil {
			return fmt.Errorf("flush: %w", err)
		}
	}
	if err := retry(ctx, in.log, "commit offsets", in.insertRetries, func(ctx context.Context) error {
		return in.reader.CommitMessages(ctx, commit...)
	}); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	var msgs uint64
	for _, p := range ps {
		if p.samples != nil {
			in.nSamples.Add(uint64(p.samples.block.Rows()))
			p.samples.block.Reset()
		} else {
			in.nEvents.Add(uint64(p.events.block.Rows()))
			p.events.block.Reset()
		}
		msgs += uint64(p.n)
		p.n, p.target, p.dead = 0, -1, p.dead[:0]
	}
	in.nDLQ.Add(uint64(len(dead)))
	in.nMessages.Add(msgs)
	return nil
}

func (in *Ingester) insert(ctx context.Context, table string, b *store.Block, token string) error {
	if b.Rows() == 0 {
		return nil
	}
	start := time.Now()
	if err := in.cfg.Store.Insert(ctx, table, b, token); err != nil {
		return err
	}
	in.insertSeconds.Observe(time.Since(start).Seconds())
	return nil
}

func retry(ctx context.Context, log *slog.Logger, what string, retries prometheus.Counter, do func(context.Context) error) error {
	backoff := 100 * time.Millisecond
	for {
		err := do(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		retries.Inc()
		log.Warn("retrying", slog.String("step", what), slog.Any("err", err), slog.Duration("backoff", backoff))
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}
