package ingest_test

import (
	"context"
	"fmt"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/gpufleet/gpufleet/agent/sim"
	"github.com/gpufleet/gpufleet/ingest"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// sendPinned writes sample batches of agent gap-<agent> numbered seqs to partition agent of the
// samples topic (as the key hash pins an agent to one partition), one GPU per batch.
func (r *rig) sendPinned(t *testing.T, agent int, seqs ...uint64) {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(r.brokers...), Topic: r.samples, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond,
		Balancer: kafka.BalancerFunc(func(m kafka.Message, _ ...int) int { return int(m.Key[0]) })}
	defer w.Close()
	node := sim.NewNode(11, "gap", agent, 1)
	id := fmt.Sprintf("gap-%d", agent)
	base := time.Now().Add(-time.Minute)
	var msgs []kafka.Message
	for _, s := range seqs {
		b := &wirepb.SampleBatch{AgentId: id, Seq: s, Cluster: "gap", Node: id}
		node.Sample(base.Add(time.Duration(s)*time.Second), b, nil)
		data, err := wire.EncodeSamples(b)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, kafka.Message{Key: []byte{byte(agent)}, Value: data})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// lagSeries lists the partitions reg has a consumer-lag series for.
func lagSeries(t *testing.T, reg *prometheus.Registry) []string {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, f := range fams {
		if f.GetName() != "gpufleet_ingest_consumer_lag_messages" {
			continue
		}
		for _, m := range f.GetMetric() {
			var tp string
			for _, l := range m.GetLabel() {
				tp += l.GetValue() + "/"
			}
			parts = append(parts, tp)
		}
	}
	sort.Strings(parts)
	return parts
}

// Two workers of a group on a 4-partition topic, each agent's batches on one partition: worker A
// alone takes seq 1–3, B joins and takes half the partitions for seq 4–6, B leaves and A takes
// seq 7 on. Before, A remembered seq 3 of the agents B had taken and recorded a gap 4–7 for each
// (2 false rows); now only the batch the producer really skipped (agent 0's seq 8) is recorded,
// once. The lag series of the partitions a worker gave up go with them.
func TestGapsAcrossRebalances(t *testing.T) {
	const agents = 4
	r := newRig(t, agents)
	regA, regB := prometheus.NewRegistry(), prometheus.NewRegistry()
	cfgA, cfgB := r.config("g"), r.config("g")
	cfgA.BatchAge, cfgB.BatchAge = 100*time.Millisecond, 100*time.Millisecond
	cfgA.Registerer, cfgB.Registerer = regA, regB
	committed := func(ins ...*ingest.Ingester) uint64 {
		var n uint64
		for _, in := range ins {
			n += in.Stats().Messages
		}
		return n
	}

	a, stopA := run(t, cfgA)
	for i := range agents {
		r.sendPinned(t, i, 1, 2, 3)
	}
	waitFor(t, time.Minute, "A to commit seq 1-3", func() bool { return committed(a) >= 3*agents })
	if got := lagSeries(t, regA); len(got) != agents {
		t.Fatalf("A reports lag for %v, want the %d samples partitions", got, agents)
	}

	b, stopB := run(t, cfgB)
	waitFor(t, time.Minute, "B to join", func() bool { return b.Stats().Rebalances >= 1 && a.Stats().Rebalances >= 2 })
	// A gave up half the samples partitions to B: their lag is B's to report.
	waitFor(t, 30*time.Second, "A to drop the lag series of the partitions it gave up", func() bool { return len(lagSeries(t, regA)) == agents/2 })
	for i := range agents {
		r.sendPinned(t, i, 4, 5, 6)
	}
	waitFor(t, time.Minute, "seq 4-6 committed", func() bool { return committed(a, b) >= 6*agents })
	if b.Stats().Messages == 0 {
		t.Fatal("B committed nothing: no agent moved between workers, the test proves nothing")
	}

	gens := a.Stats().Rebalances
	stopB()
	if got := lagSeries(t, regB); len(got) != 0 {
		t.Errorf("B left the group and still reports lag for %v", got)
	}
	waitFor(t, time.Minute, "A to take every partition back", func() bool { return a.Stats().Rebalances > gens })
	for i := 1; i < agents; i++ {
		r.sendPinned(t, i, 7, 8)
	}
	r.sendPinned(t, 0, 7, 9) // the producer skipped 8: one batch missing
	waitFor(t, time.Minute, "seq 7 on committed", func() bool { return committed(a, b) >= 8*agents })
	stopA()

	res, err := r.st.Query(context.Background(), "SELECT agent_id, partition, expected_seq, seen_seq, missing FROM "+
		store.Table(r.st.Database(), "ingest_gaps")+" ORDER BY agent_id, expected_seq")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(res.Rows), "[[gap-0 0 8 9 1]]"; got != want {
		t.Errorf("ingest_gaps holds %s, want %s (one real gap, no false one)", got, want)
	}
	if g, rec := a.Stats().Gaps+b.Stats().Gaps, a.Stats().GapsRecorded+b.Stats().GapsRecorded; g != 1 || rec != 1 {
		t.Errorf("counted %d missing batches in %d gaps, want 1 in 1", g, rec)
	}
	if got := gathered(t, regA, "gpufleet_ingest_gaps_recorded_total", ""); got != 1 {
		t.Errorf("gpufleet_ingest_gaps_recorded_total is %v on A, want 1", got)
	}
	if rows, distinct := r.stored(t); rows != 8*agents || distinct != rows {
		t.Errorf("gpu_samples holds %d rows (%d distinct), want %d", rows, distinct, 8*agents)
	}
}

// insertOutage makes a real store refuse inserts while down is set; reads go on working.
type insertOutage struct {
	store.Store
	down atomic.Bool
}

func (o *insertOutage) Insert(ctx context.Context, table string, b *store.Block, token string) error {
	if o.down.Load() {
		return errDown
	}
	return o.Store.Insert(ctx, table, b, token)
}

// A worker whose generation ended before it could commit (ClickHouse failing during a rebalance)
// fetches the same messages again in its next generation: they are counted fetched once. Before,
// gpufleet_ingest_messages_fetched_total counted them again (A's re-read partition twice). With
// ClickHouse down altogether the worker was stuck in its first message's range lookup and never
// rejoined, so the group waited for it, then went on without it.
func TestRefetchCountedOnce(t *testing.T) {
	for _, c := range []struct {
		name string
		wrap func(store.Store) (store.Store, *atomic.Bool)
	}{
		{"inserts refused", func(st store.Store) (store.Store, *atomic.Bool) { o := &insertOutage{Store: st}; return o, &o.down }},
		{"clickhouse down", func(st store.Store) (store.Store, *atomic.Bool) { o := &outage{Store: st}; return o, &o.down }},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, 2)
			want := r.produce(t, 6, 1, 5) // 30 messages
			cfg := r.config("g")
			var down *atomic.Bool
			cfg.Store, down = c.wrap(r.st)
			down.Store(true)
			a, _ := run(t, cfg)
			waitFor(t, time.Minute, "A to fetch every message", func() bool { return a.Stats().Fetched >= 30 })
			gens := a.Stats().Rebalances
			// B joining ends A's generation; A cannot commit, and reads its partitions again from the start.
			b, _ := run(t, cfg)
			waitFor(t, time.Minute, "both in a new generation", func() bool { return a.Stats().Rebalances > gens && b.Stats().Rebalances >= 1 })
			down.Store(false)
			waitFor(t, time.Minute, "every row", func() bool { return a.Stats().Samples+b.Stats().Samples >= want })
			if a.Stats().Messages == 0 {
				t.Fatal("A committed nothing after the rebalance: it re-read no partition, the test proves nothing")
			}
			if got := a.Stats().Fetched; got != 30 {
				t.Errorf("A counted %d messages fetched, want 30: each of the 30 once, however often it was read", got)
			}
			if rows, distinct := r.stored(t); rows != want || distinct != want {
				t.Errorf("gpu_samples holds %d rows (%d distinct), want %d", rows, distinct, want)
			}
		})
	}
}
