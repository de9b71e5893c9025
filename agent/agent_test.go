package agent_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/gpufleet/gpufleet/agent"
	"github.com/gpufleet/gpufleet/agent/attribution"
	"github.com/gpufleet/gpufleet/agent/sim"
	"github.com/gpufleet/gpufleet/internal/kafka"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/internal/wire"
)

// With SendEvery 5, each node's message carries five sample instants, sequence numbers run 1, 2, 3
// without gaps, and the instants held when the agent stops are still sent: every sample taken is in
// Kafka exactly once. Jobs come from the attribution function, not the source; the configured pool
// overrides the simulator's, whose rack is kept. Every message says the sampling period.
func TestSendEveryBatchesInstants(t *testing.T) {
	brokers := testenv.Kafka(t)
	topic := fmt.Sprintf("agent.sendevery.%d", time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, brokers, []kafka.Topic{{Name: topic, Partitions: 1}, {Name: topic + ".ev", Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	prod := kafka.NewProducer(brokers)
	defer prod.Close()
	n0, n1 := sim.NewNode(1, "c", 0, 8), sim.NewNode(1, "c", 1, 8)
	podGPU := n1.GPUs()[1].Uuid // the kubelet names GPUs by UUID
	a, err := agent.New(agent.Config{Sources: []agent.Source{n0, n1},
		Sender: prod, Interval: 20 * time.Millisecond, SendEvery: 5, SamplesTopic: topic, EventsTopic: topic + ".ev",
		Jobs: func(context.Context) (attribution.Assignment, error) {
			return attribution.Assignment{ByIndex: map[uint32]string{0: "slurm-42"}, ByUUID: map[string]string{podGPU: "ml/train-0"}}, nil
		}, Pool: "batch"})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithTimeout(ctx, 700*time.Millisecond)
	defer stop()
	if err := a.Run(runCtx); err != nil {
		t.Fatal(err)
	}
	st := a.Stats()

	r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: brokers, Topic: topic, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	var dec wire.SampleDecoder
	var rows, msgs uint64
	lastSeq := map[string]uint64{}
	for msgs < st.Batches {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("after %d of %d messages: %v", msgs, st.Batches, err)
		}
		b, err := dec.Decode(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		wantJob1 := ""
		if b.Node == n1.Name {
			wantJob1 = "ml/train-0"
		}
		if b.GPUs[0].JobID != "slurm-42" || b.GPUs[1].JobID != wantJob1 || b.GPUs[2].JobID != "" {
			t.Errorf("%s seq %d: jobs %q, %q, %q; want slurm-42 by index on GPU 0, %q by UUID on GPU 1, none on GPU 2",
				b.Node, b.Seq, b.GPUs[0].JobID, b.GPUs[1].JobID, b.GPUs[2].JobID, wantJob1)
		}
		if b.Rack != "rack-000" || b.Pool != "batch" {
			t.Errorf("%s seq %d: rack %q pool %q, want the simulator's rack-000 and the configured pool batch", b.Node, b.Seq, b.Rack, b.Pool)
		}
		if b.IntervalMs != 20 {
			t.Errorf("%s seq %d: interval_ms %d, want the sampling period, 20", b.Node, b.Seq, b.IntervalMs)
		}
		if b.Seq != lastSeq[b.Node]+1 {
			t.Errorf("%s: seq %d after %d", b.Node, b.Seq, lastSeq[b.Node])
		}
		lastSeq[b.Node] = b.Seq
		instants := len(b.TimeUnixMs) / 8
		if instants < 1 || instants > 5 {
			t.Errorf("%s seq %d carries %d instants, want 1..5", b.Node, b.Seq, instants)
		}
		rows += uint64(len(b.TimeUnixMs))
		msgs++
	}
	if rows != st.Samples {
		t.Errorf("Kafka holds %d sample rows, the agent took %d", rows, st.Samples)
	}
	if cycles := st.Samples / 16; st.Batches > 2*(cycles/5+1) || st.Batches < 2*(cycles/5) {
		t.Errorf("%d messages for %d cycles of 2 nodes at 5 per message", st.Batches, cycles)
	}
	t.Logf("%d samples in %d messages", st.Samples, st.Batches)
}

// At Speed 10 the agent samples ten times a second of real time and stamps each sample a simulated
// second after the last, from Start: a second of real time is ten seconds of the fleet, every
// message saying the simulated interval.
func TestSpeedRunsTheClockFaster(t *testing.T) {
	brokers := testenv.Kafka(t)
	topic := fmt.Sprintf("agent.speed.%d", time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, brokers, []kafka.Topic{{Name: topic, Partitions: 1}, {Name: topic + ".ev", Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	prod := kafka.NewProducer(brokers)
	defer prod.Close()
	start := time.Now().Add(-time.Hour).Truncate(time.Second)
	a, err := agent.New(agent.Config{Sources: []agent.Source{sim.NewNode(1, "c", 0, 2)}, Sender: prod, Interval: time.Second,
		Speed: 10, Start: start, SamplesTopic: topic, EventsTopic: topic + ".ev"})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer stop()
	began := time.Now()
	if err := a.Run(runCtx); err != nil {
		t.Fatal(err)
	}
	real := time.Since(began)
	st := a.Stats()
	r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: brokers, Topic: topic, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	var dec wire.SampleDecoder
	var times []int64
	for range st.Batches {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		b, err := dec.Decode(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		if b.IntervalMs != 1000 {
			t.Errorf("interval_ms %d, want the simulated interval, 1000", b.IntervalMs)
		}
		times = append(times, b.TimeUnixMs[0])
	}
	// 1.5 s of real time: about 15 cycles, less on a loaded machine (skipped ticks skip simulated time too).
	if len(times) < 5 || len(times) > int(real/(100*time.Millisecond))+2 {
		t.Fatalf("%d samples in %s at 10× a 1 s interval", len(times), real)
	}
	if first := time.UnixMilli(times[0]); first.Before(start) || first.After(start.Add(time.Second)) {
		t.Errorf("first sample at %s, want Start %s", first, start)
	}
	last := time.UnixMilli(times[len(times)-1])
	if span := last.Sub(time.UnixMilli(times[0])); span < time.Duration(len(times)-1)*time.Second*8/10 || span > 10*real {
		t.Errorf("%d samples span %s of simulated time over %s of real time, want about a second each", len(times), span, real)
	}
	if last.After(time.Now()) {
		t.Errorf("last sample at %s, after the wall clock: Start an hour back should keep it behind", last)
	}
}
