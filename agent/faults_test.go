package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/gpufleet/gpufleet/agent"
	"github.com/gpufleet/gpufleet/agent/sim"
	"github.com/gpufleet/gpufleet/agent/spool"
	"github.com/gpufleet/gpufleet/internal/kafka"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// waitFor polls cond (a test against a real broker and disk cannot be told when something
// happened); it fails the test after limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool, show ...func() string) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			var state []string
			for _, f := range show {
				state = append(state, f())
			}
			t.Fatalf("after %s: %s did not happen %s", limit, what, strings.Join(state, "; "))
		}
	}
}

// kafkaRows reads topic's partition 0 until it has want sample rows from distinct (node, seq)
// batches and returns how many batches each node is missing below its last.
func kafkaRows(t *testing.T, ctx context.Context, brokers []string, topic string, want uint64) (gaps uint64) {
	t.Helper()
	r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: brokers, Topic: topic, Partition: 0, MaxWait: 200 * time.Millisecond})
	defer r.Close()
	var dec wire.SampleDecoder
	seq := map[string]uint64{}
	var rows uint64
	readCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for rows < want {
		m, err := r.ReadMessage(readCtx)
		if err != nil {
			t.Fatalf("Kafka holds %d of %d sample rows: %v", rows, want, err)
		}
		b, err := dec.Decode(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		if b.Seq <= seq[b.Node] {
			continue // a producer retry; ingest drops it
		}
		gaps += b.Seq - seq[b.Node] - 1
		seq[b.Node] = b.Seq
		rows += uint64(len(b.TimeUnixMs))
	}
	return gaps
}

func makeTopics(t testing.TB, ctx context.Context, brokers []string, names ...string) {
	t.Helper()
	var topics []kafka.Topic
	for _, n := range names {
		topics = append(topics, kafka.Topic{Name: n, Partitions: 1})
	}
	if err := kafka.EnsureTopics(ctx, brokers, topics); err != nil {
		t.Fatal(err)
	}
}

// A full disk does not stop the agent (before, the first refused write ended Run with an error:
// a crash loop, though Kafka was up). While Kafka is up, batches the disk refuses are sent from
// memory; while Kafka is down too, memory holds a bounded number and the oldest beyond it are
// dropped and counted; when the disk takes writes again the rest go to disk and are sent when
// Kafka is back. At the end every sample taken is in Kafka or counted as dropped, and each node's
// sequence gaps are exactly the dropped batches.
func TestFullDiskKeepsSampling(t *testing.T) {
	if testing.Short() {
		t.Skip("broker outages; not run with -short")
	}
	broker := testenv.NewKafka(t)
	brokers := []string{broker.Addr}
	for name, disk := range map[string]func(*testing.T) fullDisk{"file size limit": fileSizeLimit, "full tmpfs": smallTmpfs} {
		t.Run(name, func(t *testing.T) {
			d := disk(t)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			topic := fmt.Sprintf("fulldisk.%d", time.Now().UnixNano())
			makeTopics(t, ctx, brokers, topic, topic+".ev")
			sp, err := spool.Open(d.dir, spool.Options{MaxBytes: 64 << 20, MemoryBytes: 256 << 10})
			if err != nil {
				t.Fatal(err)
			}
			defer sp.Close()
			prod := kafka.NewProducer(brokers)
			defer prod.Close()
			reg := prometheus.NewRegistry()
			a, err := agent.New(agent.Config{Sources: []agent.Source{sim.NewNode(5, "d", 0, 8), sim.NewNode(5, "d", 1, 8)},
				Sender: prod, Interval: 50 * time.Millisecond, SamplesTopic: topic, EventsTopic: topic + ".ev", Spool: sp, Registerer: reg})
			if err != nil {
				t.Fatal(err)
			}
			runCtx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- a.Run(runCtx) }()
			running := func(phase string) {
				t.Helper()
				select {
				case err := <-done:
					t.Fatalf("%s: the agent stopped: %v", phase, err)
				default:
				}
			}

			waitFor(t, 10*time.Second, "first batches sent", func() bool { return a.Stats().Batches > 10 })
			d.fill(t)
			sentBefore := a.Stats().Batches
			waitFor(t, 20*time.Second, "batches sent with the disk full", func() bool {
				return a.Stats().Batches > sentBefore+20 && sp.Stats().WriteErrors > 0
			})
			running("disk full, Kafka up")

			d.around(t, func() { broker.Stop(t) })
			waitFor(t, 30*time.Second, "batches dropped from the full memory queue", func() bool { return sp.Stats().UnspooledBatches > 0 })
			running("disk full, Kafka down")

			d.free(t)
			waitFor(t, 10*time.Second, "memory written to disk", func() bool { return sp.Durable() && sp.Stats().Batches > 0 })
			d.around(t, func() { broker.Resume(t) })
			waitFor(t, 60*time.Second, "spool sent", func() bool { return sp.Stats().Batches == 0 }, func() string {
				return fmt.Sprintf("agent %+v, spool %+v", a.Stats(), sp.Stats())
			})
			running("disk free, Kafka back")
			stop()
			if err := <-done; err != nil {
				t.Fatalf("agent: %v", err)
			}
			st, sst := a.Stats(), sp.Stats()
			gaps := kafkaRows(t, ctx, brokers, topic, st.Samples-sst.UnspooledRows)
			if gaps != 2*sst.UnspooledBatches {
				t.Errorf("sequence gaps %d, want 2 nodes × %d dropped batches", gaps, sst.UnspooledBatches)
			}
			if got := counterValue(t, reg, "gpufleet_agent_spool_dropped_samples_total", "reason", "disk"); got != float64(sst.UnspooledRows) {
				t.Errorf("dropped-samples counter {reason=disk} %v, want %d", got, sst.UnspooledRows)
			}
			t.Logf("%d samples; %d write errors; %d batches (%d samples) dropped while disk full and Kafka down, every other sample in Kafka",
				st.Samples, sst.WriteErrors, sst.UnspooledBatches, sst.UnspooledRows)
		})
	}
}

// counterValue is the value of the counter name{label=value} (any labels when label is empty).
func counterValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" {
				return m.GetCounter().GetValue()
			}
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no metric %s{%s=%q}", name, label, value)
	return 0
}

// The spool fills to its cap while Kafka is down; the agent stops (at once, status nil, though
// Kafka is down) and starts again with Kafka back. The restarted agent drops nothing: before, its
// first write, made before the sender could send, dropped a segment of the full spool.
func TestRestartWithFullSpool(t *testing.T) {
	if testing.Short() {
		t.Skip("a broker outage; not run with -short")
	}
	broker := testenv.NewKafka(t)
	brokers := []string{broker.Addr}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const topic = "fullspool.samples"
	makeTopics(t, ctx, brokers, topic, topic+".ev")
	broker.Stop(t)
	dir := t.TempDir()
	run := func(until func(*agent.Agent, *spool.Spool) bool) (agent.Stats, spool.Stats) {
		sp, err := spool.Open(dir, spool.Options{MaxBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		defer sp.Close()
		prod := kafka.NewProducer(brokers)
		defer prod.Close()
		// Four nodes fill the 1 MiB spool in seconds; at 50 ms the sender, many batches a request,
		// sends faster than the agent samples, as it must to catch up after an outage.
		var nodes []agent.Source
		for i := range 4 {
			nodes = append(nodes, sim.NewNode(6, "f", i, 8))
		}
		a, err := agent.New(agent.Config{Sources: nodes,
			Sender: prod, Interval: 50 * time.Millisecond, SamplesTopic: topic, EventsTopic: topic + ".ev", Spool: sp})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- a.Run(runCtx) }()
		waitFor(t, time.Minute, "the run's end", func() bool { return until(a, sp) }, func() string {
			return fmt.Sprintf("agent %+v, spool %+v", a.Stats(), sp.Stats())
		})
		stop()
		if err := <-done; err != nil {
			t.Fatalf("agent: %v", err)
		}
		return a.Stats(), sp.Stats()
	}
	// Kafka down: sample until the spool has dropped at its cap, then some more.
	var full time.Time
	st1, sp1 := run(func(_ *agent.Agent, sp *spool.Spool) bool {
		if full.IsZero() && sp.Stats().DroppedBatches > 0 {
			full = time.Now()
		}
		return !full.IsZero() && time.Since(full) > 500*time.Millisecond
	})
	broker.Resume(t)
	st2, sp2 := run(func(a *agent.Agent, sp *spool.Spool) bool {
		return a.Stats().Samples > 32*40 && sp.Stats().Batches == 0
	})
	if sp2.DroppedBatches != 0 || sp2.Batches != 0 {
		t.Fatalf("restarted with a full spool and Kafka up: %+v; want nothing dropped, everything sent", sp2)
	}
	gaps := kafkaRows(t, ctx, brokers, topic, st1.Samples-sp1.DroppedRows+st2.Samples)
	// The first run's drops are the oldest batches (4 nodes' each): the stream in Kafka starts after them.
	if gaps != 4*sp1.DroppedBatches {
		t.Errorf("%d batches missing, want the 4 nodes × %d dropped in the first run", gaps, sp1.DroppedBatches)
	}
	t.Logf("first run %d samples, %d batches dropped at the 1 MiB cap; second run %d samples, none dropped; all kept samples in Kafka",
		st1.Samples, sp1.DroppedBatches, st2.Samples)
}

// slowNode is a simulated node whose reading takes longer than the interval, as a slow NVML call does.
type slowNode struct {
	*sim.Node
	delay time.Duration
}

func (n slowNode) Sample(t time.Time, b *wirepb.SampleBatch, ev []*wirepb.Event) []*wirepb.Event {
	time.Sleep(n.delay)
	return n.Node.Sample(t, b, ev)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A cycle slower than the interval makes the ticker drop ticks: they are counted (Stats,
// gpufleet_agent_missed_ticks_total) and logged, once a minute at most. Before, nothing said so.
func TestSlowCycleCountsMissedTicks(t *testing.T) {
	brokers := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topic := fmt.Sprintf("agent.slow.%d", time.Now().UnixNano())
	makeTopics(t, ctx, brokers, topic, topic+".ev")
	sp, err := spool.Open(t.TempDir(), spool.Options{MaxBytes: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	prod := kafka.NewProducer(brokers)
	defer prod.Close()
	var logs lockedBuffer
	reg := prometheus.NewRegistry()
	a, err := agent.New(agent.Config{Sources: []agent.Source{slowNode{sim.NewNode(7, "s", 0, 8), 70 * time.Millisecond}},
		Sender: prod, Interval: 20 * time.Millisecond, SamplesTopic: topic, EventsTopic: topic + ".ev", Spool: sp,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer stop()
	if err := a.Run(runCtx); err != nil {
		t.Fatal(err)
	}
	st := a.Stats()
	cycles := st.Samples / 8
	// Each cycle spans at least three intervals, so at least two ticks are lost per cycle; the
	// ticker's first, stale tick hides one cycle's.
	if st.MissedTicks < cycles || cycles < 5 {
		t.Errorf("%d missed ticks counted over %d cycles of 70 ms at a 20 ms interval", st.MissedTicks, cycles)
	}
	if got := counterValue(t, reg, "gpufleet_agent_missed_ticks_total", "", ""); got != float64(st.MissedTicks) {
		t.Errorf("gpufleet_agent_missed_ticks_total %v, Stats %d", got, st.MissedTicks)
	}
	if n := strings.Count(logs.String(), "sampling fell behind"); n != 1 {
		t.Errorf("%d log lines about missed ticks in 1.5 s, want 1 (once a minute at most):\n%s", n, logs.String())
	}
	t.Logf("%d cycles, %d ticks missed", cycles, st.MissedTicks)
}
