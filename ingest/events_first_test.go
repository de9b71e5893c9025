package ingest_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/ingest"
	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// gated holds every gpu_samples insert until gate is closed, and records the order in which the
// raw tables' inserts go through.
type gated struct {
	store.Store
	gate    chan struct{}
	waiting atomic.Int32
	mu      sync.Mutex
	order   []string
}

func (g *gated) Insert(ctx context.Context, table string, b *store.Block, token string) error {
	if table == schema.GPUSamples {
		g.waiting.Add(1)
		select {
		case <-g.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
		g.waiting.Add(-1)
	}
	if table == schema.GPUSamples || table == schema.GPUEvents {
		g.mu.Lock()
		g.order = append(g.order, table)
		g.mu.Unlock()
	}
	return g.Store.Insert(ctx, table, b, token)
}

// startGated runs an ingester on r whose gpu_samples inserts wait for the gate, until the test
// ends.
func startGated(t *testing.T, r *rig, batchAge, eventAge time.Duration) (*gated, *ingest.Ingester) {
	t.Helper()
	g := &gated{Store: r.st, gate: make(chan struct{})}
	cfg := r.config("g")
	cfg.Store = g
	cfg.BatchAge, cfg.EventBatchAge = batchAge, eventAge
	in, err := ingest.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return g, in
}

// An XID waits for at most the insert in flight, not behind sample batches queued for a slow
// ClickHouse: with one samples insert stuck and a second samples batch cut and waiting, an event
// that arrives is inserted right after the stuck insert, before the waiting one. (Before events
// had cuts of their own it went in after every samples cut made before it.)
func TestEventsGoAheadOfSamples(t *testing.T) {
	r := newRig(t, 1)
	g, in := startGated(t, r, 300*time.Millisecond, 100*time.Millisecond)

	want := r.produce(t, 1, 1, 5)
	waitFor(t, time.Minute, "the first samples insert to reach the gate", func() bool { return g.waiting.Load() == 1 })
	want += r.produce(t, 1, 6, 5)
	waitFor(t, time.Minute, "the second samples batch fetched", func() bool { return in.Stats().Fetched >= 10 })
	time.Sleep(3 * time.Second) // ten times BatchAge: the second batch is cut and waits for the inserter
	r.sendEvents(t, &wirepb.EventBatch{AgentId: "node-7", Seq: 1, Cluster: "ev", Node: "node-7",
		Events: []*wirepb.Event{func() *wirepb.Event { e := xid(2, 79); e.TimeUnixMs = time.Now().UnixMilli(); return e }()}})
	waitFor(t, time.Minute, "the event fetched", func() bool { return in.Stats().Fetched >= 11 })
	time.Sleep(3 * time.Second) // thirty times EventBatchAge: the event's batch is cut
	close(g.gate)
	waitFor(t, time.Minute, "every row stored", func() bool { s := in.Stats(); return s.Samples >= want && s.Events >= 1 })

	g.mu.Lock()
	order := slices.Clone(g.order)
	g.mu.Unlock()
	if len(order) < 3 || order[0] != schema.GPUSamples || order[1] != schema.GPUEvents {
		t.Errorf("inserts went through in the order %v; want the stuck samples insert, then the events, then the waiting samples", order)
	}
	if rows, distinct := r.stored(t); rows != want || distinct != want {
		t.Errorf("gpu_samples holds %d rows (%d distinct), want %d", rows, distinct, want)
	}
	if n := r.count(t, schema.GPUEvents); n != 1 {
		t.Errorf("gpu_events holds %d rows, want 1", n)
	}
}

// Inside one cut of several partitions' samples, an XID waits for the partition insert in flight,
// not for the rest of the cut: with two partitions' samples cut together and the first insert
// stuck, an event that arrives goes in before the second partition's insert. (Before, the events
// cut waited for the whole samples cut and its commit: a partition insert per partition, each
// through every rollup view.)
func TestEventsGoAheadWithinACut(t *testing.T) {
	r := newRig(t, 2)
	// Ticks 250 ms apart: two partitions' batches that open within a few ms of each other are due
	// at the same tick, so one cut holds both.
	g, in := startGated(t, r, 2*time.Second, time.Second)

	want := r.produce(t, 8, 1, 5) // eight nodes: both partitions get some
	waitFor(t, time.Minute, "the first samples insert to reach the gate", func() bool { return g.waiting.Load() == 1 })
	r.sendEvents(t, &wirepb.EventBatch{AgentId: "node-7", Seq: 1, Cluster: "ev", Node: "node-7",
		Events: []*wirepb.Event{func() *wirepb.Event { e := xid(2, 79); e.TimeUnixMs = time.Now().UnixMilli(); return e }()}})
	waitFor(t, time.Minute, "the event fetched", func() bool { return in.Stats().Fetched >= 41 })
	time.Sleep(3 * time.Second) // three times EventBatchAge: the event's batch is cut
	close(g.gate)
	waitFor(t, time.Minute, "every row stored", func() bool { s := in.Stats(); return s.Samples >= want && s.Events >= 1 })

	g.mu.Lock()
	order := slices.Clone(g.order)
	g.mu.Unlock()
	if !slices.Equal(order, []string{schema.GPUSamples, schema.GPUEvents, schema.GPUSamples}) {
		t.Errorf("inserts went through in the order %v; want one partition's samples, the events, the other partition's samples", order)
	}
	if rows, distinct := r.stored(t); rows != want || distinct != want {
		t.Errorf("gpu_samples holds %d rows (%d distinct), want %d", rows, distinct, want)
	}
	if n := r.count(t, schema.GPUEvents); n != 1 {
		t.Errorf("gpu_events holds %d rows, want 1", n)
	}
}
