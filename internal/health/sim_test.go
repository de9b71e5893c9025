package health_test

import (
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/agent/sim"
	"github.com/gpufleet/gpufleet/internal/health"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// TestHealthOnSimulatedFleet: an hour of a simulated 64-GPU fleet at 1 s. Its busy GPUs are
// power-capped at their board limit, which is normal and must not show (a share-only power rule
// made 118 degraded events here); its Xids and thermal throttling do. No GPU changes state more
// than maxChanges times in the hour: a GPU's load phases (a few an hour, each a thermal episode in
// and out) and the simulator's Xids (far above a real fleet's rate) make up to 9 here; a rule
// that flapped with the load would make dozens.
func TestHealthOnSimulatedFleet(t *testing.T) {
	const maxChanges = 12
	t0 := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	byRule := map[string]int{}
	perGPU := map[string]int{}
	firsts := 0
	for node := range 8 {
		nd := sim.NewNode(1, "c", node, 8)
		ev := health.NewEvaluator(health.Config{})
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
		}
	}
	if firsts != 64 {
		t.Errorf("%d first evaluations, want one per GPU (64)", firsts)
	}
	if byRule["power_violation"] != 0 {
		t.Errorf("%d power_violation transitions on GPUs capped at their board limit, want 0", byRule["power_violation"])
	}
	for _, r := range []string{"thermal_violation", "xid_restart_app", "xid_reset_gpu"} {
		if byRule[r] == 0 {
			t.Errorf("no %s transition in an hour of the simulator, which raises them", r)
		}
	}
	worst := 0
	for _, n := range perGPU {
		worst = max(worst, n)
	}
	if worst > maxChanges {
		t.Errorf("a GPU changed state %d times in the hour, more than %d", worst, maxChanges)
	}
	t.Logf("transitions by rule (to healthy under \"\"): %v; most for one GPU: %d", byRule, worst)
}
