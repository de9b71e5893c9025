//go:build cgo

package agent_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/gpufleet/gpufleet/agent"
	agentnvml "github.com/gpufleet/gpufleet/agent/nvml"
	"github.com/gpufleet/gpufleet/internal/health"
	"github.com/gpufleet/gpufleet/internal/health/nvmlmock"
	"github.com/gpufleet/gpufleet/internal/kafka"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// TestHealthEventsFromNVML runs the agent on NVIDIA's mock DGX H100 through the real NVML source
// and a real broker, with faults injected between ticks: an Xid 79 on GPU 3, repeated three ticks
// later; remap pending on GPU 5, cleared four ticks later. gpu.events must carry one health event
// per GPU for its first evaluation (healthy), exactly one for GPU 3 (reboot_node, none for the
// repeat), and for GPU 5 one to reset_gpu and one back to healthy naming what cleared.
func TestHealthEventsFromNVML(t *testing.T) {
	brokers := testenv.Kafka(t)
	topic := fmt.Sprintf("agent.health.%d", time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	makeTopics(t, ctx, brokers, topic, topic+".ev")
	mock := nvmlmock.New()
	src, err := agentnvml.New(agentnvml.FromNVML(mock.Server), agentnvml.Options{Cluster: "c", Node: "dgx-health"})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	prod := kafka.NewProducer(brokers)
	defer prod.Close()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	// Faults go in from Observe, which runs in the sampling loop after each tick: tick k's fault
	// is read by tick k+1, whatever the timing.
	tick := 0
	faults := map[int]func(){
		2: func() { mock.XID(3, 79) },
		3: func() { mock.RemapPending(5, true) },
		5: func() { mock.XID(3, 79) },
		7: func() { mock.RemapPending(5, false) },
		9: stop,
	}
	a, err := agent.New(agent.Config{Sources: []agent.Source{src}, Sender: prod, Interval: 20 * time.Millisecond,
		SamplesTopic: topic, EventsTopic: topic + ".ev", Health: &health.Config{},
		Observe: func(*wirepb.SampleBatch, int, []*wirepb.Event) {
			tick++
			if f := faults[tick]; f != nil {
				f()
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Run(runCtx); err != nil {
		t.Fatal(err)
	}
	st := a.Stats()

	r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: brokers, Topic: topic + ".ev", Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	var got []*wirepb.Event
	xids := 0
	for n := uint64(0); n < st.Events; {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("after %d of %d events: %v", n, st.Events, err)
		}
		var b wirepb.EventBatch
		if err := wire.DecodeEvents(m.Value, &b); err != nil {
			t.Fatal(err)
		}
		for _, e := range b.Events {
			n++
			switch e.Kind {
			case wirepb.EventKind_EVENT_KIND_HEALTH:
				got = append(got, e)
			case wirepb.EventKind_EVENT_KIND_XID:
				xids++
			}
		}
	}
	if xids != 2 {
		t.Errorf("%d Xid events, want the 2 injected", xids)
	}
	type want struct {
		gpu   uint32
		state health.State
		msg   string
	}
	var wants []want
	for g := range uint32(nvmlmock.GPUs) {
		wants = append(wants, want{g, health.Healthy, "healthy (first evaluation since the agent started)"})
	}
	wants = append(wants,
		want{3, health.RebootNode, "xid 79 ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS: GPU has fallen off the bus → RESTART_BM"},
		want{5, health.ResetGPU, "remap_pending=1 (rows were remapped that only a GPU reset applies)"},
		want{5, health.Healthy, "cleared: remap_pending back to 0"},
	)
	if len(got) != len(wants) {
		for _, e := range got {
			t.Logf("health event: GPU %d %s %q", e.GpuIndex, health.State(e.Code), e.Message)
		}
		t.Fatalf("%d health events, want %d", len(got), len(wants))
	}
	for i, w := range wants {
		e := got[i]
		if e.GpuIndex != w.gpu || e.GpuUuid != nvmlmock.UUID(int(w.gpu)) || health.State(e.Code) != w.state || e.Message != w.msg {
			t.Errorf("health event %d: GPU %d %s %s %q; want GPU %d %s %q", i, e.GpuIndex, e.GpuUuid, health.State(e.Code), e.Message, w.gpu, w.state, w.msg)
		}
	}
}
