package ingest

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/gpufleet/gpufleet/agent/sim"
	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// agentFeeder drives the batcher of an ingester (a real chDB store, no broker: add is fed
// messages directly) with sample batches from as many distinct agent ids as asked.
type agentFeeder struct {
	in     *Ingester
	node   *sim.Node
	now    time.Time
	offset int64
	cuts   int
}

func newAgentFeeder(tb testing.TB, cfg Config) *agentFeeder {
	tb.Helper()
	st := testenv.CHDB(tb)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		tb.Fatal(err)
	}
	// The batcher never talks to the broker; the address is only required.
	cfg.Brokers, cfg.Store = []string{"127.0.0.1:1"}, st
	if cfg.BatchRows == 0 {
		cfg.BatchRows = 1024 // small open batches, so the heap measured is the per-agent state
	}
	in, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return &agentFeeder{in: in, node: sim.NewNode(5, "many", 0, 1), now: time.Now().Add(-time.Minute)}
}

// feed sends one batch numbered seq from each agent id first … first+n-1.
func (f *agentFeeder) feed(tb testing.TB, first, n int, seq uint64) {
	tb.Helper()
	ctx := context.Background()
	for i := first; i < first+n; i++ {
		id := fmt.Sprintf("agent-%08d", i)
		b := &wirepb.SampleBatch{AgentId: id, Seq: seq, Cluster: "many", Node: id}
		f.node.Sample(f.now, b, nil)
		data, err := wire.EncodeSamples(b)
		if err != nil {
			tb.Fatal(err)
		}
		m := kafka.Message{Topic: f.in.cfg.SamplesTopic, Partition: 0, Offset: f.offset, HighWaterMark: f.offset + 1, Value: data}
		f.offset++
		c, err := f.in.add(ctx, m)
		if err != nil {
			tb.Fatal(err)
		}
		if c != nil {
			f.cuts++ // dropped: only what the batcher keeps between cuts is measured
		}
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkAgentIDs reports the heap the batcher keeps after batches from N distinct agent ids:
// per-agent state (sequence numbers, recent batches) must stay bounded whatever N is.
// Run: GPUFLEET_LIBCHDB=… go test -run '^$' -bench AgentIDs -benchtime 1x ./ingest/
func BenchmarkAgentIDs(b *testing.B) {
	for _, n := range []int{8, 20_000, 200_000} {
		b.Run(fmt.Sprintf("ids=%d", n), func(b *testing.B) {
			f := newAgentFeeder(b, Config{})
			f.feed(b, 0, 8, 1) // warm up: columns, decoder, the first message's range lookup
			base := heapInUse()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				f.feed(b, 8+i*n, n, 1)
			}
			b.StopTimer()
			heap := heapInUse()
			b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
			b.ReportMetric((float64(heap)-float64(base))/float64(n*b.N), "B/agent-id")
			runtime.KeepAlive(f)
		})
	}
}

// The batcher keeps the state of at most AgentStateMax agents however many ids it sees, keeps an
// agent that goes on sending, and forgets agents idle for AgentStateIdle. Before, it kept every id
// it had ever seen (10,001 here, about 1.3 KiB each).
func TestAgentStateBounded(t *testing.T) {
	const bound = 1000
	f := newAgentFeeder(t, Config{AgentStateMax: bound, AgentStateIdle: time.Hour})
	steady := 0
	for i := range 100 {
		f.feed(t, 1+i*100, 100, 1) // 100 agents never seen before
		f.feed(t, steady, 1, uint64(i+1))
		if n := f.in.agents.len(); n > bound {
			t.Fatalf("after %d agent ids the batcher keeps %d agents' state, over the bound %d", 1+(i+1)*100, n, bound)
		}
	}
	if a := f.in.agents.peek(fmt.Sprintf("agent-%08d", steady)); a == nil || a.seq != 100 {
		t.Errorf("the agent that kept sending was forgotten (%+v)", a)
	}
	if f.in.nGaps.Load() != 0 {
		t.Errorf("counted %d missing batches, want none", f.in.nGaps.Load())
	}
	now := time.Now()
	f.in.agents.expire(now.Add(31 * time.Minute))
	f.in.agents.expire(now.Add(62 * time.Minute))
	if n := f.in.agents.len(); n != 0 {
		t.Errorf("%d agents' state kept after an hour without a batch, want none", n)
	}
}
