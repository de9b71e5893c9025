package agent_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/gpufleet/gpufleet/agent"
	"github.com/gpufleet/gpufleet/agent/sim"
	"github.com/gpufleet/gpufleet/agent/spool"
	"github.com/gpufleet/gpufleet/internal/kafka"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/internal/wire"
)

// countingSender is the real Producer with every request counted and, for the samples topic,
// each request's sequence numbers per node read back, so a test can tell which batches each
// Kafka request carried and whether it was acknowledged.
type countingSender struct {
	agent.Sender
	topic string
	// after, when set, runs after each request (with its index from 0 and its outcome) before
	// Send returns.
	after func(i int, err error)

	mu   sync.Mutex
	reqs []sentRequest
}

type sentRequest struct {
	first, last map[string]uint64 // per node, the first and last sequence number carried
	batches     int               // sample messages carried
	err         error
}

func (c *countingSender) Send(ctx context.Context, msgs []wire.Message) error {
	r := sentRequest{first: map[string]uint64{}, last: map[string]uint64{}}
	var dec wire.SampleDecoder
	for _, m := range msgs {
		if m.Topic != c.topic {
			continue
		}
		b, err := dec.Decode(m.Value)
		if err != nil {
			return fmt.Errorf("counting sender: %w", err)
		}
		if _, ok := r.first[b.Node]; !ok {
			r.first[b.Node] = b.Seq
		}
		r.last[b.Node] = b.Seq
		r.batches++
	}
	r.err = c.Sender.Send(ctx, msgs)
	c.mu.Lock()
	c.reqs = append(c.reqs, r)
	i := len(c.reqs) - 1
	c.mu.Unlock()
	if c.after != nil {
		c.after(i, r.err)
	}
	return r.err
}

func (c *countingSender) requests() []sentRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]sentRequest(nil), c.reqs...)
}

// drainNodes are the simulated nodes of the drain tests; the same seeds after a restart, so that
// their names and sequence numbers continue.
func drainNodes(n int) []agent.Source {
	var nodes []agent.Source
	for i := range n {
		nodes = append(nodes, sim.NewNode(11, "drain", i, 8))
	}
	return nodes
}

// prefill runs an agent at a 10 ms interval with Kafka unreachable (a real producer aimed at a
// closed port) until the spool in dir holds at least batches, and returns how many it holds.
func prefill(t testing.TB, dir, topic string, nodes, batches int) uint64 {
	t.Helper()
	sp, err := spool.Open(dir, spool.Options{MaxBytes: 256 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	down := kafka.NewProducer([]string{"127.0.0.1:1"})
	defer down.Close()
	a, err := agent.New(agent.Config{Sources: drainNodes(nodes), Sender: down, Interval: 10 * time.Millisecond,
		SamplesTopic: topic, EventsTopic: topic + ".ev", Spool: sp})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	for deadline := time.Now().Add(2 * time.Minute); sp.Stats().Batches < uint64(batches); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the spool holds %d batches after 2 min, want %d", sp.Stats().Batches, batches)
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("agent with Kafka down: %v", err)
	}
	return sp.Stats().Batches
}

// kafkaSeqs reads the whole of topic's partition 0 (up to its end offset) and returns each node's
// sequence numbers in the order Kafka holds them.
func kafkaSeqs(t *testing.T, ctx context.Context, brokers []string, topic string) map[string][]uint64 {
	t.Helper()
	conn, err := kafkago.DialLeader(ctx, "tcp", brokers[0], topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	end, err := conn.ReadLastOffset()
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: brokers, Topic: topic, Partition: 0, MaxWait: 200 * time.Millisecond})
	defer r.Close()
	var dec wire.SampleDecoder
	seqs := map[string][]uint64{}
	readCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for off := int64(0); off < end; {
		m, err := r.ReadMessage(readCtx)
		if err != nil {
			t.Fatalf("read at offset %d of %d: %v", off, end, err)
		}
		b, err := dec.Decode(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		seqs[b.Node] = append(seqs[b.Node], b.Seq)
		off = m.Offset + 1
	}
	return seqs
}

// exactlyOnceInOrder fails unless each node's sequence numbers in Kafka are 1..last, each once,
// in order.
func exactlyOnceInOrder(t *testing.T, seqs map[string][]uint64, last map[string]uint64) {
	t.Helper()
	for node, want := range last {
		got := seqs[node]
		for i, s := range got {
			if s != uint64(i+1) {
				t.Fatalf("%s: Kafka holds seq %d at position %d (after %v): want 1..%d each once, in order",
					node, s, i, got[max(0, i-3):i], want)
			}
		}
		if uint64(len(got)) != want {
			t.Fatalf("%s: Kafka holds %d batches, the agent numbered %d", node, len(got), want)
		}
	}
}

// drainUntilEmpty runs an agent on the spool in dir, sending through c, until the spool is empty,
// and returns its last sequence numbers.
func drainUntilEmpty(t *testing.T, dir, topic string, nodes int, c *countingSender, maxRecords int) map[string]uint64 {
	t.Helper()
	sp, err := spool.Open(dir, spool.Options{MaxBytes: 256 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	a, err := agent.New(agent.Config{Sources: drainNodes(nodes), Sender: c, Interval: 200 * time.Millisecond,
		SamplesTopic: topic, EventsTopic: topic + ".ev", Spool: sp, MaxSendRecords: maxRecords})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	waitFor(t, 2*time.Minute, "the backlog sent", func() bool { return sp.Stats().Batches == 0 }, func() string {
		return fmt.Sprintf("spool %+v, %d requests", sp.Stats(), len(c.requests()))
	})
	stop()
	if err := <-done; err != nil {
		t.Fatalf("agent: %v", err)
	}
	return sp.Seq()
}

// drainedAt is the number of requests up to and including the one that carried every node's
// batch numbered backlog[node] (the last one spooled while Kafka was down).
func drainedAt(reqs []sentRequest, backlog map[string]uint64) int {
	reached := map[string]bool{}
	for i, r := range reqs {
		for node, s := range r.last {
			if r.err == nil && s >= backlog[node] {
				reached[node] = true
			}
		}
		if len(reached) == len(backlog) {
			return i + 1
		}
	}
	return len(reqs)
}

// A backlog spooled while Kafka was unreachable goes out many batches per request: 400 batches
// of two nodes in a handful of requests, where one batch per request (MaxSendRecords 1, the old
// sender) takes one request each. Either way every (node, seq) is in Kafka exactly once, in order.
func TestSpoolBacklogDrainsInFewRequests(t *testing.T) {
	brokers := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const nodes, backlog = 2, 400
	cases := []struct {
		name        string
		maxRecords  int
		maxRequests int // to deliver the backlog
		minRequests int
	}{
		{"one batch per request (old)", 1, 1 << 30, backlog},
		{"default", 0, backlog / 50, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			topic := fmt.Sprintf("agent.drain.%d", time.Now().UnixNano())
			makeTopics(t, ctx, brokers, topic, topic+".ev")
			dir := t.TempDir()
			held := prefill(t, dir, topic, nodes, backlog)
			sp, err := spool.Open(dir, spool.Options{MaxBytes: 256 << 20})
			if err != nil {
				t.Fatal(err)
			}
			spooled := sp.Seq()
			sp.Close()
			cs := &countingSender{Sender: kafka.NewProducer(brokers), topic: topic}
			defer cs.Sender.(*kafka.Producer).Close()
			last := drainUntilEmpty(t, dir, topic, nodes, cs, c.maxRecords)
			reqs := cs.requests()
			n := drainedAt(reqs, spooled)
			if n > c.maxRequests || n < c.minRequests {
				t.Errorf("%d batches spooled went out in %d requests, want %d..%d", held, n, c.minRequests, c.maxRequests)
			}
			most := 0
			for _, r := range reqs {
				most = max(most, r.batches/nodes)
			}
			if c.maxRecords == 1 && most != 1 {
				t.Errorf("MaxSendRecords 1 sent %d batches in one request", most)
			}
			exactlyOnceInOrder(t, kafkaSeqs(t, ctx, brokers, topic), last)
			t.Logf("%d batches spooled while Kafka was down: sent in %d requests (at most %d batches each); %d requests in all",
				held, n, most, len(reqs))
		})
	}
}

// A samples topic whose max.message.bytes is below what a full request compresses to: the broker
// refuses the request as too large, and the sender sends fewer batches per request instead of
// the same refused request forever. Every (node, seq) arrives exactly once, in order.
func TestTooLargeRequestIsSplit(t *testing.T) {
	brokers := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const nodes = 2
	topic := fmt.Sprintf("agent.toolarge.%d", time.Now().UnixNano())
	// A batch's two messages take about 1 KB compressed; a full request (90 batches) far more.
	if err := kafka.EnsureTopics(ctx, brokers, []kafka.Topic{{Name: topic, Partitions: 1, MaxMessageBytes: 16 << 10},
		{Name: topic + ".ev", Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	held := prefill(t, dir, topic, nodes, 200)
	cs := &countingSender{Sender: kafka.NewProducer(brokers), topic: topic}
	defer cs.Sender.(*kafka.Producer).Close()
	last := drainUntilEmpty(t, dir, topic, nodes, cs, 0)
	reqs := cs.requests()
	var refused int
	for _, r := range reqs {
		if r.err != nil {
			refused++
		}
	}
	if refused == 0 || refused == len(reqs) {
		t.Fatalf("%d of %d requests refused; want the first ones refused as too large, then the rest delivered", refused, len(reqs))
	}
	exactlyOnceInOrder(t, kafkaSeqs(t, ctx, brokers, topic), last)
	t.Logf("%d batches spooled; %d requests, %d refused as too large before the sender sent fewer per request", held, len(reqs), refused)
}

// A request that fails (the broker stopped mid-drain) is sent again from its first batch, not
// from the start of the backlog and not past it: the requests acknowledged before the outage
// are not repeated, and every (node, seq) is in Kafka exactly once, in order.
func TestFailedRequestResendsFromUnacknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("a broker outage; not run with -short")
	}
	broker := testenv.NewKafka(t)
	brokers := []string{broker.Addr}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const nodes = 2
	topic := fmt.Sprintf("agent.resend.%d", time.Now().UnixNano())
	makeTopics(t, ctx, brokers, topic, topic+".ev")
	dir := t.TempDir()
	held := prefill(t, dir, topic, nodes, 300)
	var once sync.Once
	stopped := make(chan struct{})
	cs := &countingSender{Sender: kafka.NewProducer(brokers), topic: topic}
	defer cs.Sender.(*kafka.Producer).Close()
	// After the second acknowledged request the broker goes away; the test brings it back once a
	// request has failed.
	failed := make(chan struct{}, 1)
	cs.after = func(i int, err error) {
		if err != nil {
			select {
			case failed <- struct{}{}:
			default:
			}
			return
		}
		if i == 1 {
			once.Do(func() { broker.Stop(t); close(stopped) })
		}
	}
	go func() {
		<-stopped
		<-failed
		<-failed // two failed tries: the sender backs off and retries, it does not skip
		broker.Resume(t)
	}()
	last := drainUntilEmpty(t, dir, topic, nodes, cs, 25) // 25 batches per request: a dozen requests

	reqs := cs.requests()
	var fails int
	next := map[string]uint64{} // per node, the seq after the last acknowledged one
	for i, r := range reqs {
		for node, s := range r.first {
			if want, ok := next[node]; ok && s != want {
				t.Errorf("request %d (failed: %v) starts at %s seq %d, want %d: the first not acknowledged", i, r.err != nil, node, s, want)
			}
		}
		if r.err != nil {
			fails++
			continue
		}
		for node, s := range r.last {
			next[node] = s + 1
		}
	}
	if fails < 2 {
		t.Fatalf("%d failed requests; the broker was stopped mid-drain", fails)
	}
	exactlyOnceInOrder(t, kafkaSeqs(t, ctx, brokers, topic), last)
	t.Logf("%d batches spooled; %d requests, %d of them failed while the broker was stopped; each node's batches in Kafka once, in order",
		held, len(reqs), fails)
}

// copyDir copies the spool files of src (segments and state, not the lock) into a new directory.
func copyDir(b *testing.B, src string) string {
	b.Helper()
	dst := b.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range entries {
		if filepath.Ext(e.Name()) != ".seg" && e.Name() != "state.json" {
			continue
		}
		in, err := os.Open(filepath.Join(src, e.Name()))
		if err != nil {
			b.Fatal(err)
		}
		out, err := os.Create(filepath.Join(dst, e.Name()))
		if err == nil {
			_, err = io.Copy(out, in)
		}
		in.Close()
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	return dst
}

// BenchmarkSpoolDrain measures how fast a backlog spooled during an outage (1,000 batches of two
// 8-GPU nodes) goes to the real broker while the nodes go on being sampled every 10 ms: one batch
// per request (the old sender, MaxSendRecords 1) against the default, and, as the baseline for
// sampling, the same agent with nothing spooled. records/s counts the batches sent until the
// backlog was (5 s at most; left is what the spool still held then); missed_ticks/s the sampling
// intervals skipped meanwhile (of 100/s). Run:
//
//	go test -run '^$' -bench SpoolDrain -benchtime 3x ./agent/
func BenchmarkSpoolDrain(b *testing.B) {
	brokers := testenv.Kafka(b)
	const nodes, backlog, limit = 2, 1000, 5 * time.Second
	// The spooled messages name their topic: every run sends the same backlog to it.
	topic := fmt.Sprintf("bench.drain.%d", time.Now().UnixNano())
	makeTopics(b, context.Background(), brokers, topic, topic+".ev")
	template := b.TempDir()
	prefill(b, template, topic, nodes, backlog)
	for _, c := range []struct {
		name       string
		maxRecords int
		empty      bool
	}{{"one_per_request", 1, false}, {"default_256", 0, false}, {"no_backlog", 0, true}} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			prod := kafka.NewProducer(brokers)
			defer prod.Close()
			var records, missed, left float64
			var elapsed time.Duration
			for range b.N {
				b.StopTimer()
				dir := b.TempDir()
				if !c.empty {
					dir = copyDir(b, template)
				}
				sp, err := spool.Open(dir, spool.Options{MaxBytes: 256 << 20})
				if err != nil {
					b.Fatal(err)
				}
				held := sp.Stats().Batches
				a, err := agent.New(agent.Config{Sources: drainNodes(nodes), Sender: prod, Interval: 10 * time.Millisecond,
					SamplesTopic: topic, EventsTopic: topic + ".ev", Spool: sp, MaxSendRecords: c.maxRecords})
				if err != nil {
					b.Fatal(err)
				}
				runCtx, stop := context.WithCancel(ctx)
				done := make(chan error, 1)
				b.StartTimer()
				start := time.Now()
				go func() { done <- a.Run(runCtx) }()
				for time.Since(start) < limit && (held == 0 || a.Stats().Batches/nodes < held) {
					time.Sleep(5 * time.Millisecond)
				}
				st, took := a.Stats(), time.Since(start)
				b.StopTimer()
				left += float64(sp.Stats().Batches)
				stop()
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				sp.Close()
				records += float64(st.Batches / nodes)
				missed += float64(st.MissedTicks)
				elapsed += took
			}
			b.ReportMetric(records/elapsed.Seconds(), "records/s")
			b.ReportMetric(missed/elapsed.Seconds(), "missed_ticks/s")
			b.ReportMetric(left/float64(b.N), "left")
		})
	}
}
