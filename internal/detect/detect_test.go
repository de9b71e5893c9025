//go:build cgo

package detect_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/health"
	"github.com/gpufleet/gpufleet/internal/health/nvmlmock"
	"github.com/gpufleet/gpufleet/query"
)

// TestDetectXIDEndToEnd proves the path BenchmarkDetect times, with the default flush settings:
// an Xid 79 queued in the mock DGX H100's NVML event set, while a simulated fleet streams beside
// it, becomes its row in gpu_events (code, GPU, node) and puts that GPU, and only that GPU of the
// node, on the drain list as reboot_node with the Xid's catalog meaning as the reason. No timing
// is asserted: how long it takes is the benchmark's to say.
func TestDetectXIDEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	r := startRig(t, ctx, rigConfig{mockNodes: 1, simNodes: 4, poll: 50 * time.Millisecond})
	r.waitReady(t, ctx)
	// Before the Xid the node has nothing to drain.
	rep, err := query.Drain(ctx, r.drainR, query.FleetWindow{At: time.Now(), Filters: mockFilter}, query.DefaultDrainMax)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.GPUs) != 0 {
		t.Fatalf("drain list before the Xid: %+v, want none", rep.GPUs)
	}

	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	r.watch(watchCtx)
	inj := r.inject(0, 3, 79, health.RebootNode)
	r.waitAll(t, ctx)
	stopWatch()

	if inj.tick.Before(inj.at.Add(-time.Second)) {
		t.Errorf("the row's time %s is more than an interval before the Xid was queued (%s)", inj.tick, inj.at)
	}
	rep, err = query.Drain(ctx, r.drainR, query.FleetWindow{At: time.Now(), Filters: mockFilter}, query.DefaultDrainMax)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.GPUs) != 1 {
		t.Fatalf("drain list: %+v, want GPU 3 alone", rep.GPUs)
	}
	g := rep.GPUs[0]
	if g.Cluster != mockCluster || g.Node != nodeName(0) || g.GPU != 3 || g.UUID != nvmlmock.UUID(3) ||
		g.Action != health.RebootNode.String() || !strings.Contains(g.Reason, "xid 79 ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS") {
		t.Errorf("drain list: %+v; want %s/%s GPU 3 %s, reboot_node for xid 79", g, mockCluster, nodeName(0), nvmlmock.UUID(3))
	}
	t.Logf("Xid 79: row after %s, drain listing after %s (polling every %s)", inj.row.Sub(inj.at), inj.drain.Sub(inj.at), r.cfg.poll)
}
