package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/gpufleet/gpufleet/agent/sim"
	"github.com/gpufleet/gpufleet/ingest"
	"github.com/gpufleet/gpufleet/internal/kafka"
	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// rig is a migrated per-test database and its own topics on the shared test broker.
type rig struct {
	brokers              []string
	st                   store.Store
	samples, events, dlq string
	gpusPerNode          int
}

func newRig(t *testing.T, partitions int) *rig {
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
		{Name: r.samples, Partitions: partitions}, {Name: r.events, Partitions: partitions}, {Name: r.dlq, Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) config(group string) ingest.Config {
	return ingest.Config{Brokers: r.brokers, Store: r.st, GroupID: r.st.Database() + "." + group,
		SamplesTopic: r.samples, EventsTopic: r.events, DLQTopic: r.dlq, SessionTimeout: 6 * time.Second}
}

// produce sends perNode sample batches (one instant of every GPU each) for each of nodes simulated
// nodes, numbered from seq first, and returns the sample rows sent.
func (r *rig) produce(t *testing.T, nodes, first, perNode int) uint64 {
	t.Helper()
	rows, err := r.send(nodes, first, perNode)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func (r *rig) send(nodes, first, perNode int) (uint64, error) {
	// Retries long enough for a partition's leader to be re-elected after a broker dies.
	w := &kafkago.Writer{Addr: kafkago.TCP(r.brokers...), Topic: r.samples, Balancer: &kafkago.Hash{},
		RequiredAcks: kafkago.RequireAll, BatchTimeout: time.Millisecond, MaxAttempts: 40}
	defer w.Close()
	now := time.Now().Add(-time.Duration(first+perNode) * time.Second)
	var msgs []kafkago.Message
	var rows uint64
	for n := range nodes {
		node := sim.NewNode(3, "eo", n, r.gpusPerNode)
		for s := first; s < first+perNode; s++ {
			b := &wirepb.SampleBatch{AgentId: node.Name, Seq: uint64(s), Cluster: "eo", Node: node.Name}
			node.Sample(now.Add(time.Duration(s)*time.Second), b, nil)
			data, err := wire.EncodeSamples(b)
			if err != nil {
				return 0, err
			}
			msgs = append(msgs, kafkago.Message{Key: []byte(node.Name), Value: data})
			rows += uint64(len(b.TimeUnixMs))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		return 0, fmt.Errorf("produce: %w", err)
	}
	return rows, nil
}

// stored returns the rows in gpu_samples and how many distinct (agent, seq, gpu) they hold: equal
// numbers mean no duplicates.
func (r *rig) stored(t *testing.T) (rows, distinct uint64) {
	t.Helper()
	res, err := r.st.Query(context.Background(), "SELECT count(), uniqExact(agent_id, seq, gpu) FROM "+
		store.Table(r.st.Database(), "gpu_samples"))
	if err != nil {
		t.Fatal(err)
	}
	return res.Rows[0][0].(uint64), res.Rows[0][1].(uint64)
}

// checkRollups fails the test unless every rollup counts each gpu_samples row exactly once: a
// replay that gpu_samples dropped but a view took again shows here, not in stored.
func (r *rig) checkRollups(t *testing.T) {
	t.Helper()
	db := r.st.Database()
	q := "SELECT (SELECT count() FROM " + store.Table(db, "gpu_samples") + "), (SELECT countIf(job_id != '') FROM " + store.Table(db, "gpu_samples") + ")"
	tables := schema.SampleViews()
	for _, table := range tables {
		q += ", (SELECT sum(samples) FROM " + store.Table(db, table) + ")"
	}
	res, err := r.st.Query(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	row := res.Rows[0]
	raw, withJob := row[0].(uint64), row[1].(uint64)
	for i, table := range tables {
		want := raw
		if table == "jobs" {
			want = withJob
		}
		switch got := row[2+i].(uint64); {
		case got > want:
			t.Errorf("%s counts %d samples, gpu_samples holds %d: a replay was counted again", table, got, want)
		case got < want:
			t.Errorf("%s counts %d samples, gpu_samples holds %d: rows stored raw never reached the rollup", table, got, want)
		}
	}
}

// waitFor polls cond every 50 ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A worker stopped between ClickHouse's acknowledgement and the offset commit (as by kill -9), then
// a worker with different batch settings takes over: every row is stored exactly once. Without the
// recorded ranges the second worker would cut different batches, their tokens would differ, and the
// uncommitted rows would be stored twice.
func TestKillBetweenInsertAndCommit(t *testing.T) {
	r := newRig(t, 2)
	want := r.produce(t, 6, 1, 10) // 60 messages, 480 rows
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	cfgA := r.config("g")
	cfgA.BatchRows = 24 // three messages per batch
	a, err := ingest.New(cfgA)
	if err != nil {
		t.Fatal(err)
	}
	var flushes atomic.Int32
	ingest.SetCrashAfterInsert(a, func() bool { return flushes.Add(1) == 4 })
	if err := a.Run(ctx); !errors.Is(err, ingest.ErrCrashed) {
		t.Fatalf("worker A: %v, want the crash hook's error", err)
	}
	committedA := a.Stats().Samples
	rowsA, _ := r.stored(t)
	if rowsA <= committedA {
		t.Fatalf("after the crash the table holds %d rows and A committed %d: the crash left nothing uncommitted to replay", rowsA, committedA)
	}
	t.Logf("worker A committed %d rows, inserted %d, then stopped before committing", committedA, rowsA)

	r.replayRest(t, ctx, a, 60, want)
}

// replayRest runs worker B, with other batch settings than the crashed worker a, until the two have
// committed all msgs messages, and fails t unless gpu_samples and every rollup hold want rows once.
func (r *rig) replayRest(t *testing.T, ctx context.Context, a *ingest.Ingester, msgs, want uint64) {
	t.Helper()
	cfgB := r.config("g")
	cfgB.BatchRows, cfgB.BatchAge = 100_000, 100*time.Millisecond
	b, err := ingest.New(cfgB)
	if err != nil {
		t.Fatal(err)
	}
	bctx, stopB := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- b.Run(bctx) }()
	// Messages, not rows: rows B finds stored already (A's uncommitted insert) are not inserted again.
	waitFor(t, time.Minute, "worker B to commit the rest", func() bool { return a.Stats().Messages+b.Stats().Messages >= msgs })
	stopB()
	if err := <-done; err != nil {
		t.Fatalf("worker B: %v", err)
	}
	rows, distinct := r.stored(t)
	if rows != want || distinct != want {
		t.Fatalf("gpu_samples holds %d rows (%d distinct), want exactly %d", rows, distinct, want)
	}
	r.checkRollups(t)
}

// Three workers share the partitions while agents keep sending: one joins late, one leaves in the
// middle. Each rebalance flushes and commits before partitions move, and the count is exact.
func TestWorkersRebalanceCountExact(t *testing.T) {
	r := newRig(t, 6)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	var want atomic.Uint64
	var produced sync.WaitGroup
	produced.Add(1)
	go func() {
		defer produced.Done()
		for round := range 6 {
			n, err := r.send(8, 1+round*5, 5)
			if err != nil {
				t.Error(err)
				return
			}
			want.Add(n)
			time.Sleep(400 * time.Millisecond)
		}
	}()

	type worker struct {
		in   *ingest.Ingester
		stop context.CancelFunc
		done chan error
	}
	start := func() *worker {
		cfg := r.config("g")
		cfg.BatchAge = 150 * time.Millisecond
		in, err := ingest.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		wctx, stop := context.WithCancel(ctx)
		w := &worker{in: in, stop: stop, done: make(chan error, 1)}
		go func() { w.done <- in.Run(wctx) }()
		return w
	}
	stop := func(w *worker) {
		w.stop()
		if err := <-w.done; err != nil {
			t.Errorf("worker: %v", err)
		}
	}
	w1 := start()
	w2 := start()
	time.Sleep(1500 * time.Millisecond)
	w3 := start()
	time.Sleep(1500 * time.Millisecond)
	stop(w1)
	produced.Wait()
	waitFor(t, time.Minute, "every row", func() bool { n, _ := r.stored(t); return n >= want.Load() })
	time.Sleep(500 * time.Millisecond) // a duplicate would arrive after the last original
	stop(w2)
	stop(w3)
	rows, distinct := r.stored(t)
	if rows != want.Load() || distinct != rows {
		t.Fatalf("gpu_samples holds %d rows (%d distinct), want exactly %d", rows, distinct, want.Load())
	}
	r.checkRollups(t)
	gens := w1.in.Stats().Rebalances + w2.in.Stats().Rebalances + w3.in.Stats().Rebalances
	if gens < 4 {
		t.Errorf("workers joined %d generations in all; the test meant to force rebalances", gens)
	}
	t.Logf("%d rows exact across 3 workers and %d generations", rows, gens)
}

// outage makes a real store fail every call while down is set, as a ClickHouse restart would.
type outage struct {
	store.Store
	down atomic.Bool
}

var errDown = errors.New("clickhouse unavailable (test outage)")

func (o *outage) Insert(ctx context.Context, table string, b *store.Block, token string) error {
	if o.down.Load() {
		return errDown
	}
	return o.Store.Insert(ctx, table, b, token)
}

func (o *outage) Query(ctx context.Context, q string) (*store.Result, error) {
	if o.down.Load() {
		return nil, errDown
	}
	return o.Store.Query(ctx, q)
}

// While ClickHouse is down the worker retries, stops fetching once its queue is full, keeps memory
// bounded, and when ClickHouse returns it stores everything exactly once.
func TestStoreOutageNoLossBoundedMemory(t *testing.T) {
	r := newRig(t, 2)
	r.gpusPerNode = 64 // big messages, so that unbounded fetching would show in the heap
	o := &outage{Store: r.st}
	o.down.Store(true)
	want := r.produce(t, 20, 1, 60) // 1200 messages, 76,800 rows
	cfg := r.config("g")
	cfg.Store = o
	cfg.QueueMessages = 16
	cfg.BatchRows = 2048
	cfg.BatchBytes = 1 << 20
	in, err := ingest.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Live heap, after a collection, not HeapInuse: garbage that earlier tests in this process and
	// the retry loop leave for the collector says nothing about what the worker holds, and on a
	// busy machine the collector runs late enough to make HeapInuse a measure of scheduling.
	liveHeap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	base := liveHeap()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()

	var peak uint64
	for range 30 { // 3 s of outage
		time.Sleep(100 * time.Millisecond)
		peak = max(peak, liveHeap())
	}
	during := in.Stats()
	if during.Messages != 0 {
		t.Fatalf("committed %d messages while ClickHouse was down", during.Messages)
	}
	// Fetching stops once the batcher is stuck retrying: at most the batches that triggered the
	// first flush (BatchRows of 64-GPU messages per partition), the queue, one per fetcher.
	if limit := uint64(2*cfg.BatchRows/64 + cfg.QueueMessages + 2); during.Fetched > limit {
		t.Errorf("fetched %d of 1200 messages during the outage, want at most %d", during.Fetched, limit)
	}
	o.down.Store(false)
	waitFor(t, time.Minute, "every row after the outage", func() bool { return in.Stats().Samples >= want })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("ingest: %v", err)
	}
	rows, distinct := r.stored(t)
	if rows != want || distinct != want {
		t.Fatalf("gpu_samples holds %d rows (%d distinct), want exactly %d", rows, distinct, want)
	}
	r.checkRollups(t)
	// The whole topic is about 5 MB of protobuf and decodes to several times that in columns; the
	// bound is what the configuration allows over the live heap before the worker started, plus
	// the Kafka client's connections and buffers.
	bound := base + uint64(in.MemoryBound(2)) + 16<<20
	t.Logf("during the outage: fetched %d of 1200 messages; live heap peaked at %.1f MiB, %.1f MiB over the %.1f MiB before the worker (bound %.1f MiB)",
		during.Fetched, float64(peak)/(1<<20), float64(peak-min(peak, base))/(1<<20), float64(base)/(1<<20), float64(bound)/(1<<20))
	if peak > bound {
		t.Errorf("live heap reached %d bytes during the outage, over %d", peak, bound)
	}
}

// Batches an agent numbered but that never arrived are counted and recorded, once, with the agent
// and where in the stream the gap showed.
func TestSequenceGapsRecorded(t *testing.T) {
	r := newRig(t, 1)
	want := r.produce(t, 1, 1, 3)  // seq 1..3
	want += r.produce(t, 1, 6, 2)  // seq 6..7: 4 and 5 missing
	want += r.produce(t, 1, 10, 1) // seq 10: 8 and 9 missing
	want += r.produce(t, 1, 1, 1)  // seq 1 again: an agent restart, not a gap
	in, err := ingest.New(r.config("g"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	waitFor(t, 30*time.Second, "all rows", func() bool { return in.Stats().Samples >= want })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if g := in.Stats().Gaps; g != 4 {
		t.Errorf("counted %d missing batches, want 4", g)
	}
	res, err := r.st.Query(context.Background(), "SELECT agent_id, expected_seq, seen_seq, missing FROM "+
		store.Table(r.st.Database(), "ingest_gaps")+" ORDER BY expected_seq")
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(res.Rows)
	if want := "[[node-00000 4 6 2] [node-00000 8 10 2]]"; got != want {
		t.Errorf("ingest_gaps rows %s, want %s", got, want)
	}
}

// A batch written twice (a producer retry after a lost acknowledgement) is stored once; an agent
// restarted without its spool, reusing sequence numbers with new sample times, is not mistaken for
// a repeat.
func TestDuplicateBatchesDropped(t *testing.T) {
	r := newRig(t, 1)
	node := sim.NewNode(8, "dup", 0, 8)
	now := time.Now().Add(-time.Minute)
	var msgs []kafkago.Message
	for s := range 3 {
		b := &wirepb.SampleBatch{AgentId: node.Name, Seq: uint64(s + 1), Cluster: "dup", Node: node.Name}
		node.Sample(now.Add(time.Duration(s)*time.Second), b, nil)
		data, err := wire.EncodeSamples(b)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, kafkago.Message{Key: []byte(node.Name), Value: data})
	}
	restarted := &wirepb.SampleBatch{AgentId: node.Name, Seq: 2, Cluster: "dup", Node: node.Name}
	node.Sample(now.Add(10*time.Second), restarted, nil)
	again, err := wire.EncodeSamples(restarted)
	if err != nil {
		t.Fatal(err)
	}
	// 1, 2, 3, then 2 and 3 again (retried), then a restarted agent's seq 2 at a later time.
	send := append(msgs, msgs[1], msgs[2], kafkago.Message{Key: []byte(node.Name), Value: again})
	w := &kafkago.Writer{Addr: kafkago.TCP(r.brokers...), Topic: r.samples, RequiredAcks: kafkago.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := w.WriteMessages(ctx, send...); err != nil {
		t.Fatal(err)
	}
	in, err := ingest.New(r.config("g"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	runCtx, stop := context.WithCancel(ctx)
	go func() { done <- in.Run(runCtx) }()
	waitFor(t, 30*time.Second, "every message committed", func() bool { return in.Stats().Messages >= uint64(len(send)) })
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	rows, _ := r.stored(t)
	if rows != 4*8 || in.Stats().Duplicates != 2 {
		t.Fatalf("stored %d rows and dropped %d duplicates, want 32 rows (3 batches and the restart) and 2 dropped", rows, in.Stats().Duplicates)
	}
}

// viewsCut inserts its armed gpu_samples insert with the rollups' views detached: the state a
// worker killed after ClickHouse wrote the raw part and before it fed the views leaves behind.
type viewsCut struct {
	store.Store
	inserts, armAt int
}

var rollupViews = func() (mvs []string) {
	for _, t := range schema.SampleViews() {
		mvs = append(mvs, schema.View(t))
	}
	return mvs
}()

func (v *viewsCut) Insert(ctx context.Context, table string, b *store.Block, token string) error {
	if table != "gpu_samples" {
		return v.Store.Insert(ctx, table, b, token)
	}
	v.inserts++
	if v.inserts != v.armAt {
		return v.Store.Insert(ctx, table, b, token)
	}
	for _, mv := range rollupViews {
		if err := v.Store.Exec(ctx, "DETACH TABLE "+store.Table(v.Database(), mv)); err != nil {
			return err
		}
	}
	err := v.Store.Insert(ctx, table, b, token)
	for _, mv := range rollupViews {
		if aerr := v.Store.Exec(ctx, "ATTACH TABLE "+store.Table(v.Database(), mv)); aerr != nil && err == nil {
			err = aerr
		}
	}
	return err
}

// A worker killed between ClickHouse writing the raw part and feeding the rollups' views (found by
// the fault matrix with kill -9: gpu_samples exact, gpu_1m one batch short). The replay must send
// the same block under the same token, so that gpu_samples drops it and the views take it. Before,
// the replay looked its agents' first batches up, found them (its own raw insert), left them out,
// and the views never counted them.
func TestKillBetweenRawInsertAndViews(t *testing.T) {
	r := newRig(t, 1)
	want := r.produce(t, 6, 1, 10) // 60 messages, 480 rows
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	cfgA := r.config("g")
	cfgA.BatchRows = 24 // three messages per batch
	cfgA.Store = &viewsCut{Store: r.st, armAt: 4}
	a, err := ingest.New(cfgA)
	if err != nil {
		t.Fatal(err)
	}
	var flushes atomic.Int32
	ingest.SetCrashAfterInsert(a, func() bool { return flushes.Add(1) == 4 })
	if err := a.Run(ctx); !errors.Is(err, ingest.ErrCrashed) {
		t.Fatalf("worker A: %v, want the crash hook's error", err)
	}

	r.replayRest(t, ctx, a, 60, want)
}
