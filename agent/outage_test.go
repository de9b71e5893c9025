package agent_test

import (
	"context"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/gpufleet/gpufleet/agent"
	"github.com/gpufleet/gpufleet/agent/sim"
	"github.com/gpufleet/gpufleet/agent/spool"
	"github.com/gpufleet/gpufleet/ingest"
	"github.com/gpufleet/gpufleet/internal/kafka"
	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/internal/wire"
)

// The broker is stopped for 30 s while the agent samples, then restarted. Sampling never pauses
// (the spool takes the batches), and afterwards every sample taken is in Kafka exactly once, in
// order, with no sequence gap.
func TestBrokerOutageLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("a 30 s broker outage; not run with -short")
	}
	broker := testenv.NewKafka(t)
	brokers := []string{broker.Addr}
	// A bound for a stuck test, not a speed target: on a loaded 2-core machine the 30 s outage,
	// the drain, the read-back and the ingest take several minutes.
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	const topic = "outage.samples"
	if err := kafka.EnsureTopics(ctx, brokers, []kafka.Topic{{Name: topic, Partitions: 1},
		{Name: "outage.events", Partitions: 1}, {Name: "outage.dlq", Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(t.TempDir(), spool.Options{MaxBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	prod := kafka.NewProducer(brokers)
	defer prod.Close()
	a, err := agent.New(agent.Config{Sources: []agent.Source{sim.NewNode(4, "o", 0, 8), sim.NewNode(4, "o", 1, 8)},
		Sender: prod, Interval: 100 * time.Millisecond, SamplesTopic: topic, EventsTopic: "outage.events", Spool: sp})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stopAgent := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()

	time.Sleep(2 * time.Second)
	before := a.Stats().Samples
	broker.Stop(t)
	time.Sleep(30 * time.Second)
	during := a.Stats().Samples - before
	held := sp.Stats().Batches
	broker.Resume(t)
	// The spool drains while the agent runs; shutdown does not wait for a backlog.
	for deadline := time.Now().Add(3 * time.Minute); sp.Stats().Batches > 0 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	stopAgent()
	if err := <-done; err != nil {
		t.Fatalf("agent: %v", err)
	}
	st := a.Stats()
	// 30 s at 10 Hz of 16 GPUs is 4,800 samples and 300 batches. A sampler that waited on the dead
	// broker would take next to none; a loaded machine misses some ticks (counted in
	// MissedTicks), so the bound is half.
	if during < 2400 {
		t.Errorf("the agent took %d samples during the outage (missed ticks %d); sampling should not stop", during, st.MissedTicks)
	}
	if held < 150 {
		t.Errorf("the spool held %d batches at the end of the outage, want about 300", held)
	}
	if sp.Stats().Batches != 0 {
		t.Errorf("%d batches still spooled after the broker came back", sp.Stats().Batches)
	}

	// In Kafka: every batch, in order per node, no gap. A write whose acknowledgement the outage
	// swallowed is retried, so a batch may be there twice; ingest drops the repeat (below).
	r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: brokers, Topic: topic, Partition: 0, MaxWait: 200 * time.Millisecond})
	defer r.Close()
	var dec wire.SampleDecoder
	var rows, dups uint64
	seq := map[string]uint64{}
	readCtx, cancelRead := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelRead()
	for rows < st.Samples {
		m, err := r.ReadMessage(readCtx)
		if err != nil {
			t.Fatalf("read after %d of %d samples: %v", rows, st.Samples, err)
		}
		b, err := dec.Decode(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case b.Seq == seq[b.Node]+1:
			rows += uint64(len(b.TimeUnixMs))
			seq[b.Node] = b.Seq
		case b.Seq <= seq[b.Node]:
			dups++
		default:
			t.Fatalf("%s: seq %d after %d: batches lost", b.Node, b.Seq, seq[b.Node])
		}
	}

	// Downstream: ingest into ClickHouse stores every sample exactly once.
	st2 := testenv.CHDB(t)
	if _, err := migrate.Apply(ctx, st2, nil); err != nil {
		t.Fatal(err)
	}
	in, err := ingest.New(ingest.Config{Brokers: brokers, Store: st2, GroupID: "outage", SamplesTopic: topic,
		EventsTopic: "outage.events", DLQTopic: "outage.dlq", BatchAge: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ingCtx, stopIngest := context.WithCancel(ctx)
	ingDone := make(chan error, 1)
	go func() { ingDone <- in.Run(ingCtx) }()
	for in.Stats().Samples < st.Samples && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second) // a duplicate would arrive after the originals
	stopIngest()
	if err := <-ingDone; err != nil {
		t.Fatal(err)
	}
	res, err := st2.Query(ctx, "SELECT count(), uniqExact(agent_id, seq, gpu) FROM "+st2.Database()+".gpu_samples")
	if err != nil {
		t.Fatal(err)
	}
	if got, distinct := res.Rows[0][0].(uint64), res.Rows[0][1].(uint64); got != st.Samples || distinct != got {
		t.Fatalf("ClickHouse holds %d samples (%d distinct), the agent took %d", got, distinct, st.Samples)
	}
	t.Logf("%d samples, %d taken during the 30 s outage, %d batches spooled at its end, %d sent twice to Kafka (%d dropped by ingest); ClickHouse holds each once",
		st.Samples, during, held, dups, in.Stats().Duplicates)
}
