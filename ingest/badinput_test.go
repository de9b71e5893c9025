package ingest_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/gpufleet/gpufleet/ingest"
	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/kafka"
	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// newBadRig is newRig with one partition per topic, a samples topic that takes messages of up to
// 10 MB (as agents with 16 GPUs and long labels send) and a dead-letter topic limited to
// dlqMaxBytes.
func newBadRig(t *testing.T, dlqMaxBytes int) *rig {
	t.Helper()
	r := &rig{brokers: testenv.Kafka(t), gpusPerNode: 8}
	st := testenv.CHDB(t)
	r.st = st
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	r.samples, r.events, r.dlq = st.Database()+".samples", st.Database()+".events", st.Database()+".dlq"
	if err := kafka.EnsureTopics(ctx, r.brokers, []kafka.Topic{
		{Name: r.samples, Partitions: 1, MaxMessageBytes: 10_000_000}, {Name: r.events, Partitions: 1},
		{Name: r.dlq, Partitions: 1, MaxMessageBytes: dlqMaxBytes}}); err != nil {
		t.Fatal(err)
	}
	return r
}

// write produces msgs as kcat -z zstd -X message.max.bytes=10000000 would.
func (r *rig) write(t *testing.T, msgs ...kafkago.Message) {
	t.Helper()
	w := &kafkago.Writer{Addr: kafkago.TCP(r.brokers...), Balancer: &kafkago.Hash{}, RequiredAcks: kafkago.RequireAll,
		BatchTimeout: time.Millisecond, Compression: kafkago.Zstd, BatchBytes: 10_000_000}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// run starts a worker with cfg and returns a stop that ends it and fails t on its error.
func run(t *testing.T, cfg ingest.Config) (*ingest.Ingester, func()) {
	t.Helper()
	in, err := ingest.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("ingest: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return in, stop
}

// deadLetters reads n dead letters from the rig's dead-letter topic.
func (r *rig) deadLetters(t *testing.T, n int) []kafkago.Message {
	t.Helper()
	rd := kafkago.NewReader(kafkago.ReaderConfig{Brokers: r.brokers, Topic: r.dlq, Partition: 0, MaxWait: 100 * time.Millisecond,
		MaxBytes: 32 << 20})
	defer rd.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []kafkago.Message
	for len(out) < n {
		m, err := rd.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("read dead letter %d of %d: %v", len(out)+1, n, err)
		}
		out = append(out, m)
	}
	return out
}

func headers(m kafkago.Message) map[string]string {
	h := map[string]string{}
	for _, x := range m.Headers {
		h[x.Key] = string(x.Value)
	}
	return h
}

// A dead letter of 2 MB, over kafka-go's default 1 MiB batch, halted ingest for good: its write was
// retried forever and no partition committed again. Now it is delivered whole (zstd, with the
// dead-letter topic's max.message.bytes from the topic set-up), or, where the dead-letter topic
// refuses even that, truncated with its reason, origin and original size; either way the traffic
// after it is stored.
func TestOversizedDeadLetter(t *testing.T) {
	random := make([]byte, 2<<20)
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		dlqMaxBytes int
		value       []byte
		truncated   bool
	}{
		// 2 MB of zeros compress to almost nothing: the broker takes it whole on any topic.
		{name: "2 MB of zeros, delivered whole", dlqMaxBytes: kafka.PipelineTopics(1, 0)[2].MaxMessageBytes,
			value: make([]byte, 2<<20)},
		{name: "2 MB that does not compress, dead-letter topic of 256 KiB: truncated", dlqMaxBytes: 256 << 10,
			value: random, truncated: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newBadRig(t, tt.dlqMaxBytes)
			r.write(t, kafkago.Message{Topic: r.samples, Key: []byte("big"), Value: tt.value})
			rows, err := r.send(4, 1, 5) // 20 messages after it
			if err != nil {
				t.Fatal(err)
			}
			in, stop := run(t, r.config("big"))
			waitFor(t, 60*time.Second, "the messages after the oversized one to be committed", func() bool {
				return in.Stats().Messages >= 21
			})
			stop()
			if got, distinct := r.stored(t); got != rows || distinct != rows {
				t.Errorf("stored %d rows (%d distinct), sent %d", got, distinct, rows)
			}
			s := in.Stats()
			if s.DLQ != 1 {
				t.Errorf("%d dead letters, want 1", s.DLQ)
			}
			dl := r.deadLetters(t, 1)[0]
			h := headers(dl)
			if h["reason"] == "" || h["source_topic"] != r.samples || h["source_partition"] != "0" || h["source_offset"] != "0" {
				t.Errorf("dead letter without reason or origin: %v", h)
			}
			if string(dl.Key) != "big" {
				t.Errorf("dead letter key %q, want big", dl.Key)
			}
			if !tt.truncated {
				if !bytes.Equal(dl.Value, tt.value) || h["original_size"] != "" || s.Truncated != 0 {
					t.Errorf("dead letter of %d bytes (headers %v, %d truncated), want the %d bytes whole",
						len(dl.Value), h, s.Truncated, len(tt.value))
				}
				return
			}
			if h["original_size"] != strconv.Itoa(len(tt.value)) || h["truncated_to"] != strconv.Itoa(len(dl.Value)) ||
				!strings.Contains(h["truncated_reason"], "Message Size Too Large") {
				t.Errorf("truncated dead letter headers %v", h)
			}
			if len(dl.Value) == 0 || len(dl.Value) > 64<<10 || !bytes.Equal(dl.Value, tt.value[:len(dl.Value)]) {
				t.Errorf("truncated dead letter holds %d bytes, want a prefix of the original", len(dl.Value))
			}
			if s.Truncated != 1 {
				t.Errorf("%d dead letters counted as truncated, want 1", s.Truncated)
			}
			t.Logf("dead letter truncated to %d of %d bytes: %s", len(dl.Value), len(tt.value), h["truncated_reason"])
		})
	}
}

// A dead-letter topic that refuses even a dead letter's headers (max.message.bytes of 100) costs
// that dead letter, logged with its origin and counted, not the partition: the traffic after it is
// stored.
func TestDeadLetterRefusedEvenAsHeaders(t *testing.T) {
	r := newBadRig(t, 100)
	big := make([]byte, 2<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	r.write(t, kafkago.Message{Topic: r.samples, Key: []byte("big"), Value: big})
	rows, err := r.send(2, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	cfg := r.config("refused")
	cfg.Logger, cfg.Registerer = slogText(&logs), reg
	in, stop := run(t, cfg)
	waitFor(t, 60*time.Second, "the messages after the refused one to be committed", func() bool { return in.Stats().Messages >= 7 })
	stop()
	if got, distinct := r.stored(t); got != rows || distinct != rows {
		t.Errorf("stored %d rows (%d distinct), sent %d", got, distinct, rows)
	}
	if v := gathered(t, reg, "gpufleet_ingest_dlq_dropped_total", ""); v != 1 {
		t.Errorf("gpufleet_ingest_dlq_dropped_total = %v, want 1", v)
	}
	if want := "source=" + r.samples + "/0@0"; !strings.Contains(logs.String(), want) {
		t.Errorf("no log line names the dropped dead letter's origin %s:\n%s", want, logs.String())
	}
}

// A message on the wrong topic decodes as something empty and vanished without a dead letter (a
// sample batch on the events topic) or with a misleading reason. Each goes to the dead-letter
// topic saying what it is; the good messages around them are stored.
func TestWrongTopicDeadLettered(t *testing.T) {
	r := newBadRig(t, 0)
	now := time.Now()
	ms := now.UnixMilli()
	samples, err := wire.EncodeSamples(&wirepb.SampleBatch{AgentId: "node-1", Seq: 1, Cluster: "c", Node: "node-1",
		DriverVersion: "550.54.15", CudaVersion: "12.4",
		Gpus:       []*wirepb.GPU{{Index: 0, Uuid: "GPU-0", Model: "H100"}, {Index: 1, Uuid: "GPU-1", Model: "H100"}},
		TimeUnixMs: []int64{ms, ms}, Gpu: []uint32{0, 1},
		Metrics: []*wirepb.MetricColumn{{Metric: uint32(gpumetric.GPUUtil), Values: []float64{10, 20}}}})
	if err != nil {
		t.Fatal(err)
	}
	samplesNoDriver, err := wire.EncodeSamples(&wirepb.SampleBatch{AgentId: "node-2", Seq: 1, Node: "node-2",
		Gpus: []*wirepb.GPU{{Index: 0, Uuid: "GPU-2"}}, TimeUnixMs: []int64{ms}, Gpu: []uint32{0}})
	if err != nil {
		t.Fatal(err)
	}
	events, err := wire.EncodeEvents(&wirepb.EventBatch{AgentId: "node-1", Seq: 1, Cluster: "c", Node: "node-1",
		Events: []*wirepb.Event{{TimeUnixMs: ms, GpuIndex: 0, GpuUuid: "GPU-0", Kind: wirepb.EventKind_EVENT_KIND_XID, Code: 79}}})
	if err != nil {
		t.Fatal(err)
	}
	noEvents, err := wire.EncodeEvents(&wirepb.EventBatch{AgentId: "node-1", Seq: 2, Node: "node-1"})
	if err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		topic, key string
		value      []byte
		reason     string
	}{
		{r.events, "samples-on-events", samples, "a sample batch (2 rows) on the events topic"},
		{r.events, "samples-without-driver-on-events", samplesNoDriver, "a sample batch (1 rows) on the events topic"},
		{r.samples, "events-on-samples", events, "an event batch (1 events) on the samples topic"},
		{r.events, "no-events", noEvents, "event batch carries no events"},
	}
	var msgs []kafkago.Message
	for _, b := range bad {
		msgs = append(msgs, kafkago.Message{Topic: b.topic, Key: []byte(b.key), Value: b.value})
	}
	// The good ones: the same bytes on the right topics.
	msgs = append(msgs, kafkago.Message{Topic: r.samples, Key: []byte("good"), Value: samples},
		kafkago.Message{Topic: r.events, Key: []byte("good"), Value: events})
	r.write(t, msgs...)
	in, stop := run(t, r.config("wrong"))
	waitFor(t, 60*time.Second, "every message to be committed", func() bool { return in.Stats().Messages >= uint64(len(msgs)) })
	stop()
	if s := in.Stats(); s.Samples != 2 || s.Events != 1 || s.DLQ != uint64(len(bad)) {
		t.Errorf("stored %d samples and %d events, %d dead letters; want 2, 1, %d", s.Samples, s.Events, s.DLQ, len(bad))
	}
	got := map[string]map[string]string{}
	for _, m := range r.deadLetters(t, len(bad)) {
		got[string(m.Key)] = headers(m)
	}
	for _, b := range bad {
		h := got[b.key]
		if !strings.Contains(h["reason"], b.reason) || h["source_topic"] != b.topic {
			t.Errorf("%s: dead letter headers %v, want reason %q from %s", b.key, h, b.reason, b.topic)
		}
	}
}

// A counter sent as uint64(-5) is stored as NULL and counted (the other GPU's reading of the same
// message is kept); a clock 10 min ahead is stored, counted in gpufleet_ingest_clock_skew_seconds
// and logged once for its agent; a clock 2 h ahead is dead-lettered.
func TestImplausibleCounterAndClockSkew(t *testing.T) {
	r := newBadRig(t, 0)
	now := time.Now()
	msg := func(agent string, seq uint64, at time.Time, energy ...uint64) kafkago.Message {
		ms := at.UnixMilli()
		b := &wirepb.SampleBatch{AgentId: agent, Seq: seq, Cluster: "c", Node: agent,
			Gpus: []*wirepb.GPU{{Index: 0, Uuid: agent + "-0"}, {Index: 1, Uuid: agent + "-1"}}, TimeUnixMs: []int64{ms, ms}, Gpu: []uint32{0, 1},
			Metrics: []*wirepb.MetricColumn{{Metric: uint32(gpumetric.Energy), Counts: energy}}}
		data, err := wire.EncodeSamples(b)
		if err != nil {
			t.Fatal(err)
		}
		return kafkago.Message{Topic: r.samples, Key: []byte(agent), Value: data}
	}
	r.write(t,
		msg("minus-five", 1, now.Add(-time.Second), 18446744073709551611, 5000),
		msg("ahead", 1, now.Add(10*time.Minute), 1, 2),
		msg("ahead", 2, now.Add(10*time.Minute+time.Second), 3, 4),
		msg("far-ahead", 1, now.Add(2*time.Hour), 1, 2),
	)
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	cfg := r.config("skew")
	cfg.Logger = slogText(&logs)
	cfg.Registerer = reg
	in, stop := run(t, cfg)
	waitFor(t, 60*time.Second, "every message to be committed", func() bool { return in.Stats().Messages >= 4 })
	stop()
	s := in.Stats()
	if s.Samples != 6 || s.DLQ != 1 || s.Skewed != 2 {
		t.Errorf("stored %d samples, %d dead letters, %d skewed messages; want 6, 1, 2", s.Samples, s.DLQ, s.Skewed)
	}
	res, err := r.st.Query(context.Background(), "SELECT toUInt64(energy_mj IS NULL), ifNull(energy_mj, 0) FROM "+
		store.Table(r.st.Database(), "gpu_samples")+" WHERE agent_id = 'minus-five' ORDER BY gpu")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 2 || res.Rows[0][0] != uint64(1) || res.Rows[1][0] != uint64(0) || res.Rows[1][1] != uint64(5000) {
		t.Errorf("minus-five rows (null, energy) %v, want GPU 0's energy NULL and GPU 1's 5000", res.Rows)
	}
	if v := gathered(t, reg, "gpufleet_ingest_values_nulled_total", "energy_mj"); v != 1 {
		t.Errorf("gpufleet_ingest_values_nulled_total{metric=energy_mj} = %v, want 1", v)
	}
	if v := gathered(t, reg, "gpufleet_ingest_clock_skew_seconds", ""); v != 2 {
		t.Errorf("gpufleet_ingest_clock_skew_seconds count = %v, want 2", v)
	}
	if n := strings.Count(logs.String(), "agent clock is ahead"); n != 1 || !strings.Contains(logs.String(), "agent=ahead") {
		t.Errorf("%d clock skew log lines, want 1 naming agent ahead:\n%s", n, logs.String())
	}
	dl := r.deadLetters(t, 1)[0]
	if h := headers(dl); string(dl.Key) != "far-ahead" || !strings.Contains(h["reason"], "outside") {
		t.Errorf("dead letter %s: %v, want far-ahead's clock rejected", dl.Key, h)
	}
}

// slogText logs to w as text, for tests that count log lines.
func slogText(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(&lockedWriter{w: w}, nil))
}

// lockedWriter serialises writes from the worker's goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// gathered returns a counter's value (with the metric label value, or any labels when label is
// empty) or a histogram's count from reg.
func gathered(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			match := label == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "metric" && l.GetValue() == label {
					match = true
				}
			}
			if !match {
				continue
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}
