package ingest_test

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/gpufleet/gpufleet/agent/sim"
	"github.com/gpufleet/gpufleet/ingest"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// eventBatch is one agent's event message numbered seq, its events at base, base+1 ms, ….
func eventBatch(seq uint64, base time.Time, events ...*wirepb.Event) *wirepb.EventBatch {
	for i, e := range events {
		e.TimeUnixMs = base.UnixMilli() + int64(i)
	}
	return &wirepb.EventBatch{AgentId: "node-7", Seq: seq, Cluster: "ev", Node: "node-7", Events: events}
}

func xid(gpu uint32, code uint64) *wirepb.Event {
	return &wirepb.Event{GpuIndex: gpu, GpuUuid: "GPU-x", Kind: wirepb.EventKind_EVENT_KIND_XID, Code: code, Message: "Xid"}
}

// sendEvents writes the messages to the events topic in order, keyed by node as the agent does.
func (r *rig) sendEvents(t *testing.T, batches ...*wirepb.EventBatch) {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(r.brokers...), Topic: r.events, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	var msgs []kafka.Message
	for _, b := range batches {
		data, err := wire.EncodeEvents(b)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, kafka.Message{Key: []byte(b.Node), Value: data})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
}

// ingestAll runs a worker of group until it has committed n messages more than before, then
// stops it.
func (r *rig) ingestAll(t *testing.T, group string, n uint64) {
	t.Helper()
	in, err := ingest.New(r.config(group))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	waitFor(t, 45*time.Second, "every message committed", func() bool { return in.Stats().Messages >= n })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func (r *rig) count(t *testing.T, table string) uint64 {
	t.Helper()
	res, err := r.st.Query(context.Background(), "SELECT count() FROM "+store.Table(r.st.Database(), table))
	if err != nil {
		t.Fatal(err)
	}
	return res.Rows[0][0].(uint64)
}

// An event message delivered twice (a producer retry after a lost acknowledgement: the same bytes
// at two offsets) is stored once, whether the copy comes in the same batch or after a restart of
// ingest; two identical XIDs in one message are two rows; an agent restarted without its spool
// reuses a sequence number with new event times and is kept. Before the lookup in gpu_events each
// retried message was stored twice (4 rows for 2 in the first two cases).
func TestEventMessagesExactlyOnce(t *testing.T) {
	base := time.Now().Add(-time.Minute).Truncate(time.Second)
	twoXIDs := func(seq uint64, at time.Time) *wirepb.EventBatch { return eventBatch(seq, at, xid(0, 79), xid(1, 48)) }
	sameXIDTwice := eventBatch(9, base, xid(3, 79), xid(3, 79))
	sameXIDTwice.Events[1].TimeUnixMs = sameXIDTwice.Events[0].TimeUnixMs
	for _, c := range []struct {
		name string
		// rounds of messages, each ingested by a new worker of the same group after the last
		rounds [][]*wirepb.EventBatch
		want   uint64
	}{
		{"retried in one batch", [][]*wirepb.EventBatch{{twoXIDs(5, base), twoXIDs(5, base)}}, 2},
		{"retried after an ingest restart", [][]*wirepb.EventBatch{{twoXIDs(5, base)}, {twoXIDs(5, base)}}, 2},
		{"two identical XIDs in one message", [][]*wirepb.EventBatch{{sameXIDTwice}}, 2},
		{"identical XIDs message retried", [][]*wirepb.EventBatch{{sameXIDTwice, sameXIDTwice}}, 2},
		{"agent restarted without spool reuses seq", [][]*wirepb.EventBatch{{twoXIDs(5, base), twoXIDs(5, base.Add(time.Second))}}, 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, 1)
			var sent uint64
			for _, round := range c.rounds {
				r.sendEvents(t, round...)
				sent += uint64(len(round))
				// A new worker of the group starts at the committed offset, with nothing in memory.
				r.ingestAll(t, "g", uint64(len(round)))
			}
			if got := r.count(t, "gpu_events"); got != c.want {
				t.Errorf("gpu_events holds %d rows after %d messages, want %d", got, sent, c.want)
			}
		})
	}
}

// A sample batch retried by its producer after the original was taken by an earlier worker (or
// generation, or process) is stored once: the first batch of each agent in a generation, and any
// that comes with a lower sequence number than the agent's last, is looked up in gpu_samples. In
// memory alone the copy was stored again (32 rows for 24 before the lookup).
func TestSampleBatchRetriedAcrossRestart(t *testing.T) {
	r := newRig(t, 1)
	node := sim.NewNode(8, "dup", 0, 8)
	now := time.Now().Add(-time.Minute)
	var msgs []kafka.Message
	for s := range 3 {
		b := &wirepb.SampleBatch{AgentId: node.Name, Seq: uint64(s + 1), Cluster: "dup", Node: node.Name}
		node.Sample(now.Add(time.Duration(s)*time.Second), b, nil)
		data, err := wire.EncodeSamples(b)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, kafka.Message{Key: []byte(node.Name), Value: data})
	}
	w := &kafka.Writer{Addr: kafka.TCP(r.brokers...), Topic: r.samples, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, round := range [][]kafka.Message{
		msgs[:2],                    // seq 1, 2: taken and committed by the first worker
		{msgs[1]},                   // seq 2 again, the first batch of the next worker
		{msgs[2], msgs[1], msgs[0]}, // seq 3, then 2 and 1 again: lower than the last
	} {
		if err := w.WriteMessages(ctx, round...); err != nil {
			t.Fatal(err)
		}
		r.ingestAll(t, "g", uint64(len(round)))
	}
	if rows, _ := r.stored(t); rows != 3*8 {
		t.Errorf("gpu_samples holds %d rows, want 24 (3 batches of 8 GPUs, each once)", rows)
	}
	r.checkRollups(t)
}
