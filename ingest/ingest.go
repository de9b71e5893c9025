// Package ingest consumes gpu.samples and gpu.events from Kafka as a consumer group, decodes and
// validates each message, builds columnar blocks and inserts them into ClickHouse, committing
// offsets only after ClickHouse acknowledged the insert. Bad messages go to gpu.dlq with a reason.
package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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

	samples *sampleColumns
	events  *eventColumns
	pending []kafka.Message
	dead    []kafka.Message
	first   time.Time
	sb      wirepb.SampleBatch
	eb      wirepb.EventBatch

	nSamples, nEvents, nDLQ, nMessages atomic.Uint64
	insertSeconds                      prometheus.Histogram
	insertRetries                      prometheus.Counter
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
	in := &Ingester{cfg: cfg, log: cfg.Logger, samples: newSampleColumns(), events: newEventColumns(),
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
			in.add(m)
			if in.samples.block.Rows() >= in.cfg.BatchRows {
				if err := in.flush(ctx); err != nil {
					runErr = err
					break loop
				}
			}
		case <-tick.C:
			if len(in.pending) > 0 && time.Since(in.first) >= in.cfg.BatchAge {
				if err := in.flush(ctx); err != nil {
					runErr = err
					break loop
				}
			}
		}
	}
	stopFetch()
	flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownFlush)
	defer cancel()
	if err := in.flush(flushCtx); err != nil && runErr == nil {
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

// add decodes one message into the pending blocks, or queues it for the dead-letter topic.
func (in *Ingester) add(m kafka.Message) {
	if len(in.pending) == 0 {
		in.first = time.Now()
	}
	in.pending = append(in.pending, m)
	var err error
	switch m.Topic {
	case in.cfg.SamplesTopic:
		if err = wire.DecodeSamples(m.Value, &in.sb); err == nil {
			if err = in.samples.check(&in.sb, in.cfg.Now()); err == nil {
				in.samples.appendBatch(&in.sb)
			}
		}
	case in.cfg.EventsTopic:
		if err = wire.DecodeEvents(m.Value, &in.eb); err == nil {
			if err = in.events.check(&in.eb, in.cfg.Now()); err == nil {
				in.events.appendBatch(&in.eb)
			}
		}
	default:
		err = fmt.Errorf("%w: unexpected topic %q", wire.ErrMalformed, m.Topic)
	}
	if err != nil {
		in.log.Warn("dead-lettering message", slog.String("topic", m.Topic), slog.Int("partition", m.Partition),
			slog.Int64("offset", m.Offset), slog.Any("reason", err))
		in.dead = append(in.dead, kafka.Message{Key: m.Key, Value: m.Value, Headers: []kafka.Header{
			{Key: "reason", Value: []byte(err.Error())},
			{Key: "source_topic", Value: []byte(m.Topic)},
			{Key: "source_partition", Value: []byte(strconv.Itoa(m.Partition))},
			{Key: "source_offset", Value: []byte(strconv.FormatInt(m.Offset, 10))},
		}})
	}
}

// flush inserts the pending blocks, writes dead letters, then commits the offsets. Each step is
// retried with capped backoff until it succeeds or ctx ends; while it retries nothing is fetched.
func (in *Ingester) flush(ctx context.Context) error {
	if len(in.pending) == 0 {
		return nil
	}
	token := dedupToken(in.pending)
	steps := []struct {
		what string
		do   func(context.Context) error
	}{
		{"insert samples", func(ctx context.Context) error {
			return in.insert(ctx, "gpu_samples", &in.samples.block, "samples:"+token)
		}},
		{"insert events", func(ctx context.Context) error {
			return in.insert(ctx, "gpu_events", &in.events.block, "events:"+token)
		}},
		{"write dead letters", func(ctx context.Context) error {
			if len(in.dead) == 0 {
				return nil
			}
			return in.dlq.WriteMessages(ctx, in.dead...)
		}},
		{"commit offsets", func(ctx context.Context) error { return in.reader.CommitMessages(ctx, in.pending...) }},
	}
	for _, s := range steps {
		if err := retry(ctx, in.log, s.what, in.insertRetries, s.do); err != nil {
			return fmt.Errorf("flush %d messages: %s: %w", len(in.pending), s.what, err)
		}
	}
	in.nSamples.Add(uint64(in.samples.block.Rows()))
	in.nEvents.Add(uint64(in.events.block.Rows()))
	in.nDLQ.Add(uint64(len(in.dead)))
	in.nMessages.Add(uint64(len(in.pending)))
	in.samples.block.Reset()
	in.events.block.Reset()
	in.pending, in.dead = in.pending[:0], in.dead[:0]
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

// dedupToken names the batch by the offset range it covers in each topic-partition, so a replay
// of the same messages after a crash between insert and commit carries the same token and
// ClickHouse drops the duplicate insert.
func dedupToken(msgs []kafka.Message) string {
	type span struct{ first, last int64 }
	spans := map[string]*span{}
	for _, m := range msgs {
		k := m.Topic + "/" + strconv.Itoa(m.Partition)
		if s, ok := spans[k]; ok {
			s.first, s.last = min(s.first, m.Offset), max(s.last, m.Offset)
		} else {
			spans[k] = &span{m.Offset, m.Offset}
		}
	}
	keys := make([]string, 0, len(spans))
	for k := range spans {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s:%d-%d;", k, spans[k].first, spans[k].last)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
