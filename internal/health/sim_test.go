package health_test

import (
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/agent/sim"
	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/health"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// TestHealthOnSimulatedFleet: an hour of a simulated 64-GPU fleet at 1 s. Its busy GPUs are
// power-capped at their board limit, which is normal and must not show (a share-only power rule
// made 118 degraded events here). No GPU changes state more than maxChanges times in the hour: a
// GPU's load phases (a few an hour, each a thermal episode in and out) and the simulator's
// failures make under 10 here; a rule that flapped with the load would make dozens.
func TestHealthOnSimulatedFleet(t *testing.T) {
	const maxChanges = 12
	t0 := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	byRule := map[string]int{}
	perGPU := map[string]int{}
	firsts := 0
	capped := 0 // GPUs held down by power for over half the hour, at a limit equal to the board's maximum
	for node := range 8 {
		nd := sim.NewNode(1, "c", node, 8)
		ev := health.NewEvaluator(health.Config{})
		var first, last []uint64
		atMax := true
		for s := range 3600 {
			b := &wirepb.SampleBatch{}
			evs := nd.Sample(t0.Add(time.Duration(s)*time.Second), b, nil)
			for _, tr := range ev.Observe(b, 0, evs) {
				if tr.Message == "" {
					t.Errorf("%+v: no message", tr)
				}
				if tr.First {
					firsts++
					continue
				}
				byRule[tr.Rule]++
				perGPU[tr.UUID]++
			}
			viol := column(b, gpumetric.ViolPower)
			if s == 0 {
				first = append([]uint64(nil), viol.Counts...)
			}
			last = viol.Counts
			lim, mx := column(b, gpumetric.PowerLimit), column(b, gpumetric.PowerMax)
			for i := range b.TimeUnixMs {
				if wire.Present(lim, i) && wire.Present(mx, i) && lim.Values[i] < mx.Values[i] {
					atMax = false
				}
			}
		}
		for g := range last {
			if last[g]-first[g] > uint64(30*time.Minute) {
				capped++
			}
		}
		if !atMax {
			t.Fatalf("node %d: the simulator lowered a power limit; this test wants them at the board's maximum", node)
		}
	}
	if capped == 0 {
		t.Fatal("no simulated GPU was held down by power for half the hour: the test shows nothing")
	}
	if firsts != 64 {
		t.Errorf("%d first evaluations, want one per GPU (64)", firsts)
	}
	if byRule["power_violation"] != 0 {
		t.Errorf("%d power_violation transitions on GPUs capped at their board limit, want 0", byRule["power_violation"])
	}
	worst := 0
	for _, n := range perGPU {
		worst = max(worst, n)
	}
	if worst > maxChanges {
		t.Errorf("a GPU changed state %d times in the hour, more than %d", worst, maxChanges)
	}
	t.Logf("%d GPUs power-capped over half the hour; transitions by rule (to healthy under \"\"): %v; most for one GPU: %d", capped, byRule, worst)
}

// column is b's column of metric id, or nil.
func column(b *wirepb.SampleBatch, id gpumetric.ID) *wirepb.MetricColumn {
	for _, c := range b.Metrics {
		if gpumetric.ID(c.Metric) == id {
			return c
		}
	}
	return nil
}
