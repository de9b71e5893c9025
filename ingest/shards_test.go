package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/agent/sim"
	"github.com/gpufleet/gpufleet/ingest"
	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// With two shard databases, partition p of both topics is written to shard p mod 2: each node's
// samples and events are whole on one shard, each shard's batch ranges are of its own partitions,
// and a worker stopped between insert and commit is replayed by another exactly once on every
// shard, raw tables and rollups alike (the replay finds each range on the shard it was recorded on).
func TestShardsRoutePartitionsExactlyOnce(t *testing.T) {
	r := newRig(t, 4)
	second := testenv.CHDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := migrate.Apply(ctx, second, nil); err != nil {
		t.Fatal(err)
	}
	shards := []store.Store{r.st, second}
	const nodes, perNode = 12, 5
	want := r.produce(t, nodes, 1, perNode)
	base := time.Now().Add(-time.Minute).Truncate(time.Second)
	var evs []*wirepb.EventBatch
	for n := range nodes {
		name := sim.NewNode(3, "eo", n, r.gpusPerNode).Name
		evs = append(evs, &wirepb.EventBatch{AgentId: name, Seq: 1, Cluster: "eo", Node: name,
			Events: []*wirepb.Event{xid(uint32(n%8), 79)}})
		evs[n].Events[0].TimeUnixMs = base.UnixMilli() + int64(n)
	}
	r.sendEvents(t, evs...)
	const msgs = nodes*perNode + nodes

	config := func(rows int, age time.Duration) ingest.Config {
		c := r.config("g")
		c.Store, c.Shards, c.BatchRows, c.BatchAge = nil, shards, rows, age
		return c
	}
	a, err := ingest.New(config(24, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// A stops after a cut that recorded ranges on both shards, once something was committed.
	var flushes atomic.Int32
	ranges := make([]uint64, len(shards))
	ingest.SetCrashAfterInsert(a, func() bool {
		grew := 0
		for i, s := range shards {
			if n := (&rig{st: s}).count(t, schema.IngestIntents); n > ranges[i] {
				ranges[i], grew = n, grew+1
			}
		}
		return flushes.Add(1) >= 2 && grew == len(shards)
	})
	actx, stopA := context.WithTimeout(ctx, time.Minute)
	defer stopA()
	if err := a.Run(actx); !errors.Is(err, ingest.ErrCrashed) {
		t.Fatalf("worker A: %v, want the crash hook's error (after %d cuts, none with ranges on both shards?)", err, flushes.Load())
	}
	var samplesA, eventsA uint64
	for _, s := range shards {
		sh := &rig{st: s}
		samplesA += sh.count(t, schema.GPUSamples)
		eventsA += sh.count(t, schema.GPUEvents)
	}
	if samplesA+eventsA <= a.Stats().Samples+a.Stats().Events {
		t.Fatalf("after the crash the shards hold %d sample and %d event rows, A committed %d and %d: nothing uncommitted to replay",
			samplesA, eventsA, a.Stats().Samples, a.Stats().Events)
	}

	b, err := ingest.New(config(100_000, 100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	bctx, stopB := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- b.Run(bctx) }()
	waitFor(t, time.Minute, "worker B to commit the rest", func() bool { return a.Stats().Messages+b.Stats().Messages >= msgs })
	stopB()
	if err := <-done; err != nil {
		t.Fatalf("worker B: %v", err)
	}

	// B found every uncommitted range on its shard and cut it again (its token makes the insert a
	// no-op); a range looked up on the wrong shard is missed, and its rows are only found stored.
	if d := b.Stats().Duplicates; d != 0 {
		t.Errorf("worker B dropped %d messages found stored: it missed the recorded ranges they were in", d)
	}

	nodeShard := map[string]int{}
	var rows uint64
	for i, s := range shards {
		sh := &rig{st: s}
		n, distinct := sh.stored(t)
		if n == 0 || n != distinct {
			t.Errorf("shard %d: %d sample rows, %d distinct; want some, each once", i, n, distinct)
		}
		rows += n
		sh.checkRollups(t)
		db := s.Database()
		res, err := s.Query(ctx, fmt.Sprintf("SELECT DISTINCT partition FROM %s WHERE group_id = %s",
			store.Table(db, schema.IngestIntents), store.QuoteString(r.config("g").GroupID)))
		if err != nil {
			t.Fatal(err)
		}
		for _, row := range res.Rows {
			if p, _ := row[0].(uint64); int(p)%len(shards) != i {
				t.Errorf("shard %d records a range of partition %d", i, p)
			}
		}
		for _, table := range []string{schema.GPUSamples, schema.GPUEvents} {
			res, err := s.Query(ctx, "SELECT DISTINCT node FROM "+store.Table(db, table))
			if err != nil {
				t.Fatal(err)
			}
			for _, row := range res.Rows {
				node := row[0].(string)
				if j, ok := nodeShard[node]; ok && j != i {
					t.Errorf("node %s has rows on shards %d and %d", node, j, i)
				}
				nodeShard[node] = i
			}
		}
		if ev := sh.count(t, schema.GPUEvents); ev == 0 {
			t.Errorf("shard %d holds no events", i)
		}
	}
	if rows != want {
		t.Errorf("the shards hold %d sample rows, produced %d", rows, want)
	}
	var events uint64
	for _, s := range shards {
		events += (&rig{st: s}).count(t, schema.GPUEvents)
	}
	if events != nodes || len(nodeShard) != nodes {
		t.Errorf("the shards hold %d events of %d nodes; want %d of %d", events, len(nodeShard), nodes, nodes)
	}
	t.Logf("%d sample rows and %d events over %d shards, exactly once through a crash; A committed %d, B %d messages",
		rows, events, len(shards), a.Stats().Messages, b.Stats().Messages)
}
