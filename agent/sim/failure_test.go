package sim

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/health"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// reading is row i of metric id, whatever its kind.
func reading(t *testing.T, b *wirepb.SampleBatch, id gpumetric.ID, i int) float64 {
	t.Helper()
	c := column(t, b, id)
	if i < len(c.Counts) {
		return float64(c.Counts[i])
	}
	return c.Values[i]
}

// rowsOf are the rows of GPU g in b, in order.
func rowsOf(b *wirepb.SampleBatch, g int) []int {
	var out []int
	for i, x := range b.Gpu {
		if int(x) == g {
			out = append(out, i)
		}
	}
	return out
}

func TestFailureScheduleSameSeedSameFailures(t *testing.T) {
	from := start
	to := from.Add(2000 * time.Hour)
	a := NewNode(3, "c", 5, 8, WithFailureScale(DemoFailureScale))
	b := NewNode(3, "c", 5, 8, WithFailureScale(DemoFailureScale))
	other := NewNode(4, "c", 5, 8, WithFailureScale(DemoFailureScale))
	total := 0
	for g := range 8 {
		sa, sb, so := a.schedule(g, from, to), b.schedule(g, from, to), other.schedule(g, from, to)
		if !slices.Equal(sa, sb) {
			t.Errorf("gpu %d: the same seed drew different failures", g)
		}
		if slices.Equal(sa, so) {
			t.Errorf("gpu %d: seeds 3 and 4 drew the same %d failures", g, len(sa))
		}
		// A window cut out of the span holds exactly the span's failures within it: the draw
		// does not depend on where one starts looking.
		mid, end := from.Add(777*time.Hour+17*time.Minute), from.Add(901*time.Hour)
		var want []failure
		for _, f := range sa {
			if f.at >= mid.UnixMilli() && f.at < end.UnixMilli() {
				want = append(want, f)
			}
		}
		if got := a.schedule(g, mid, end); !slices.Equal(got, want) {
			t.Errorf("gpu %d: %d failures in a window, %d in the span's same window", g, len(got), len(want))
		}
		total += len(sa)
	}
	if total == 0 {
		t.Fatal("no failure in 16,000 GPU-hours at the demo scale")
	}

	// Sampled, the same seed raises the same events at the same instants.
	evs := func(n *Node) []*wirepb.Event {
		_, ev := sampleRun(n, start, 10*time.Second, 6*360)
		return ev
	}
	ea := evs(NewNode(9, "c", 2, 8, WithFailureScale(DemoFailureScale)))
	eb := evs(NewNode(9, "c", 2, 8, WithFailureScale(DemoFailureScale)))
	if len(ea) != len(eb) {
		t.Fatalf("%d events vs %d from the same seed", len(ea), len(eb))
	}
	xids := 0
	for i := range ea {
		if ea[i].String() != eb[i].String() {
			t.Errorf("event %d: %v vs %v", i, ea[i], eb[i])
		}
		if ea[i].Kind == wirepb.EventKind_EVENT_KIND_XID {
			xids++
		}
	}
	if xids == 0 {
		t.Error("no Xid in 6 hours of 8 GPUs at the demo scale")
	}
}

// Over 64 GPUs × 2,000 hours at the demo scale each cause's count is its rate in Meta's snapshot
// × scale × GPU-hours, within 5 standard deviations of a Poisson count, and each mode's share of
// its cause is its weight's within 5 binomial standard deviations.
func TestFailureRatesMatchPaper(t *testing.T) {
	const nodes, gpus, hours = 8, 8, 2000
	scale := DemoFailureScale
	byCause := make([]int, len(Causes))
	byMode := map[[2]int]int{}
	for idx := range nodes {
		n := NewNode(21, "c", idx, gpus, WithFailureScale(scale))
		for g := range gpus {
			for _, f := range n.schedule(g, start, start.Add(hours*time.Hour)) {
				byCause[f.cause]++
				m := slices.IndexFunc(Causes[f.cause].Modes, func(m Mode) bool { return m.Fault == f.fault && m.XID == f.xid })
				byMode[[2]int{f.cause, m}]++
			}
		}
	}
	gpuHours := float64(nodes * gpus * hours)
	for ci, c := range Causes {
		want := c.PerGPUHour() * scale * gpuHours
		tol := 5 * math.Sqrt(want)
		if got := float64(byCause[ci]); math.Abs(got-want) > tol {
			t.Errorf("%s: %v failures, want %.0f ± %.0f (%d in %d GPU-hours × %g)", c.Name, got, want, tol, c.Interruptions, SnapshotGPUHours, scale)
		}
		weights := 0
		for _, m := range c.Modes {
			weights += m.Weight
		}
		for mi, m := range c.Modes {
			p := float64(m.Weight) / float64(weights)
			nTotal := float64(byCause[ci])
			want, tol := p*nTotal, 5*math.Sqrt(nTotal*p*(1-p))+1
			if got := float64(byMode[[2]int{ci, mi}]); math.Abs(got-want) > tol {
				t.Errorf("%s mode %s/xid %d: %v of %v, want %.0f ± %.0f", c.Name, m.Fault, m.XID, got, nTotal, want, tol)
			}
		}
	}
	t.Logf("per cause in %.0f GPU-hours at scale %g: %v", gpuHours, scale, byCause)
}

// The demo's scale gives a 64-GPU fleet a new failure every 30 to 60 s, and scale 1 (Meta's
// fleet) gives the same fleet about one in two months: nothing for days.
func TestFailureScaleOfTheDemo(t *testing.T) {
	every := time.Duration(float64(time.Hour) / (64 * TotalPerGPUHour() * DemoFailureScale))
	if every < 30*time.Second || every > 60*time.Second {
		t.Errorf("a 64-GPU demo fails every %s, want 30-60 s", every)
	}
	if days := 1 / (64 * TotalPerGPUHour()) / 24; days < 30 {
		t.Errorf("at scale 1 a 64-GPU fleet fails every %.0f days, want weeks", days)
	}
	n := NewNode(1, "c", 0, 8)
	for g := range 8 {
		if fs := n.schedule(g, start, start.Add(72*time.Hour)); len(fs) > 1 {
			t.Errorf("gpu %d: %d failures in 3 days at scale 1", g, len(fs))
		}
	}
	t.Logf("demo (64 GPUs, scale %g): a failure every %s", DemoFailureScale, every.Round(time.Second))
}

// A scheduled HBM error is preceded by single-bit errors climbing over its precursor window, then
// the double-bit count rises, Xid 48 arrives at the failure's instant and remap_pending reads 1
// until the repair resets the counters.
func TestFailureDBEPrecededBySBEClimb(t *testing.T) {
	n := NewNode(5, "c", 1, 8, WithFailureScale(DemoFailureScale))
	var f failure
	g := -1
	// The first DBE of the fleet more than its precursor after the start, on a GPU with no
	// other failure from its precursor to its repair.
	for gg := 0; gg < 8 && g < 0; gg++ {
		fs := n.schedule(gg, start, start.Add(200*time.Hour))
		for i, c := range fs {
			lo, hi := c.at-c.precursor-MemoryPrecursor.Milliseconds(), c.end()+time.Minute.Milliseconds()
			alone := (i == 0 || fs[i-1].end() < lo) && (i == len(fs)-1 || fs[i+1].at-fs[i+1].precursor > hi)
			if c.fault == FaultDBE && c.at-c.precursor > start.UnixMilli() && alone {
				f, g = c, gg
				break
			}
		}
	}
	if g < 0 {
		t.Fatal("no lone DBE in 1,600 GPU-hours at the demo scale")
	}
	from := time.UnixMilli(f.at - f.precursor - 2*time.Minute.Milliseconds())
	step := 10 * time.Second
	b, ev := sampleRun(n, from, step, int((f.precursor+f.repair)/step.Milliseconds())+30)
	var sbe []float64
	sawDBE, sawRepair := false, false
	for _, i := range rowsOf(b, g) {
		ms := b.TimeUnixMs[i]
		s, d, p := reading(t, b, gpumetric.ECCSingleVolatile, i), reading(t, b, gpumetric.ECCDoubleVolatile, i), reading(t, b, gpumetric.RemapPending, i)
		switch {
		case ms < f.at:
			sbe = append(sbe, s)
			if d != 0 || p != 0 {
				t.Fatalf("at %d, before the DBE at %d: dbe %v remap_pending %v", ms, f.at, d, p)
			}
		case ms < f.end():
			sawDBE = true
			if d != 1 || p != 1 || reading(t, b, gpumetric.RemappedUnc, i) < 1 {
				t.Errorf("at %d, after the DBE at %d: dbe %v remap_pending %v, want 1 and 1", ms, f.at, d, p)
			}
		default:
			sawRepair = true
			if d != 0 || p != 0 || reading(t, b, gpumetric.ECCDoubleAggregate, i) != 1 {
				t.Errorf("at %d, after the repair at %d: dbe %v remap_pending %v aggregate %v, want 0, 0, 1", ms, f.end(), d, p,
					reading(t, b, gpumetric.ECCDoubleAggregate, i))
			}
		}
	}
	if !sawDBE || !sawRepair {
		t.Fatalf("the run missed the DBE (%v) or the repair (%v)", sawDBE, sawRepair)
	}
	// Climbing: never falling, at least the climb over the window, and faster at its end.
	for k := 1; k < len(sbe); k++ {
		if sbe[k] < sbe[k-1] {
			t.Fatalf("sbe fell from %v to %v in the precursor", sbe[k-1], sbe[k])
		}
	}
	q := len(sbe) / 4
	if grew := sbe[len(sbe)-1] - sbe[0]; grew < sbeClimb*0.9 {
		t.Errorf("sbe grew by %v before the DBE, want about %d", grew, sbeClimb)
	}
	if early, late := sbe[2*q]-sbe[q], sbe[len(sbe)-1]-sbe[len(sbe)-1-q]; late <= early {
		t.Errorf("sbe grew %v in the window's second quarter and %v in its last: not climbing faster", early, late)
	}
	var at []int64
	for _, e := range ev {
		if e.Kind == wirepb.EventKind_EVENT_KIND_XID && e.Code == 48 && int(e.GpuIndex) == g {
			at = append(at, e.TimeUnixMs)
		}
	}
	if len(at) != 1 || at[0] != f.at {
		t.Errorf("Xid 48 on gpu %d at %v, want once at %d", g, at, f.at)
	}
}

// Each injected fault happens on its GPU at its time, once, with its signals, and the GPU is well
// again after the repair; other GPUs and nodes see nothing.
func TestInjectedFaultOnceAtItsTime(t *testing.T) {
	const after, repair, gpu = 150 * time.Second, 2 * time.Minute, 3
	// A remap failure's first DBE leaves a remap pending half the way from the first sample.
	const lead = after / 2
	for _, tc := range []struct {
		spec  string
		xids  []string // code@seconds from the failure's instant
		check func(t *testing.T, b *wirepb.SampleBatch, i int, ms, at int64)
	}{
		{spec: "fault=xid119", xids: []string{"119@0"}},
		{spec: "fault=xid13", xids: []string{"13@0"}},
		{spec: "fault=dbe", xids: []string{"48@0", "63@0"}, check: func(t *testing.T, b *wirepb.SampleBatch, i int, ms, at int64) {
			want := b2f(ms >= at && ms < at+repair.Milliseconds())
			if p := reading(t, b, gpumetric.RemapPending, i); p != want {
				t.Errorf("at %+ds: remap_pending %v, want %v", (ms-at)/1000, p, want)
			}
		}},
		{spec: "fault=remap_failure", xids: []string{"48@-75", "63@-75", "48@0", "64@0"}, check: func(t *testing.T, b *wirepb.SampleBatch, i int, ms, at int64) {
			want := b2f(ms >= at && ms < at+repair.Milliseconds())
			if p := reading(t, b, gpumetric.RemapFailure, i); p != want {
				t.Errorf("at %+ds: remap_failure %v, want %v", (ms-at)/1000, p, want)
			}
			// The remap the first DBE left pending waits from then until the repair.
			want = b2f(ms >= at-lead.Milliseconds() && ms < at+repair.Milliseconds())
			if p := reading(t, b, gpumetric.RemapPending, i); p != want {
				t.Errorf("at %+ds: remap_pending %v, want %v", (ms-at)/1000, p, want)
			}
			wantDBE := b2f(ms >= at-lead.Milliseconds()) + b2f(ms >= at)
			if ms >= at+repair.Milliseconds() {
				wantDBE = 0
			}
			if d := reading(t, b, gpumetric.ECCDoubleVolatile, i); d != wantDBE {
				t.Errorf("at %+ds: ecc_dbe_volatile %v, want %v", (ms-at)/1000, d, wantDBE)
			}
		}},
		{spec: "fault=sram", xids: []string{"48@0", "172@0"}},
		{spec: "fault=fell_off_bus", xids: []string{"79@0"}},
		{spec: "fault=thermal", check: func(t *testing.T, b *wirepb.SampleBatch, i int, ms, at int64) {
			hw := uint64(reading(t, b, gpumetric.ThrottleReasons, i))&reasonHwThermal != 0
			if want := ms >= at && ms < at+repair.Milliseconds(); hw != want {
				t.Errorf("at %+ds: hardware thermal slowdown %v, want %v", (ms-at)/1000, hw, want)
			}
		}},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			spec := fmt.Sprintf("node=node-00002,gpu=%d,%s,after=%s,repair=%s", gpu, tc.spec, after, repair)
			in, err := ParseInjections(spec + ";node=7,gpu=1,fault=xid79")
			if err != nil {
				t.Fatal(err)
			}
			n := NewNode(8, "c", 2, 8, WithFailureScale(0), WithInjections(in...))
			from := start.Add(333 * time.Millisecond)
			at := from.Add(after).UnixMilli()
			b, ev := sampleRun(n, from, time.Second, int((after+repair)/time.Second)+60)
			var got []string
			lost := 0
			for _, e := range ev {
				switch {
				case e.Kind == wirepb.EventKind_EVENT_KIND_THROTTLE:
				case e.GpuIndex != gpu || e.GpuUuid != n.GPUs()[gpu].Uuid:
					t.Errorf("event %v: want gpu %d", e, gpu)
				case e.Kind == wirepb.EventKind_EVENT_KIND_XID:
					got = append(got, fmt.Sprintf("%d@%d", e.Code, (e.TimeUnixMs-at)/1000))
				case e.Kind == wirepb.EventKind_EVENT_KIND_FELL_OFF_BUS && e.TimeUnixMs == at:
					lost++
				default:
					t.Errorf("event %v: want it at %d", e, at)
				}
			}
			if !slices.Equal(got, tc.xids) {
				t.Errorf("Xids %v, want %v once each", got, tc.xids)
			}
			if wantLost := b2f(tc.spec == "fault=fell_off_bus"); float64(lost) != wantLost {
				t.Errorf("%d fell-off-bus events, want %v", lost, wantLost)
			}
			rows := rowsOf(b, gpu)
			for _, i := range rows {
				if ms := b.TimeUnixMs[i]; tc.spec == "fault=fell_off_bus" && ms >= at && ms < at+repair.Milliseconds() {
					t.Fatalf("a row at %+ds while the GPU is off the bus", (ms-at)/1000)
				}
				if tc.check != nil {
					tc.check(t, b, i, b.TimeUnixMs[i], at)
				}
			}
			if last := rows[len(rows)-1]; b.TimeUnixMs[last] < at+repair.Milliseconds() {
				t.Errorf("gpu %d's last row is before its repair: it never reported again", gpu)
			}
			for g := range 8 {
				if g != gpu && len(rowsOf(b, g)) != len(rows)+b2i(tc.spec == "fault=fell_off_bus")*int(repair/time.Second) {
					t.Errorf("gpu %d has %d rows, gpu %d %d", g, len(rowsOf(b, g)), gpu, len(rows))
				}
			}
			b.SchemaVersion, b.AgentId = 1, "agent-test"
			if err := wire.CheckSamples(b); err != nil {
				t.Errorf("CheckSamples: %v", err)
			}
		})
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// A thermal failure heats the GPU and holds its clocks down ever more often before it: the
// health evaluator's thermal_violation rule (degraded) fires before the failure's instant.
func TestFailureThermalPrecursorDegrades(t *testing.T) {
	const after = 15 * time.Minute
	n := NewNode(8, "c", 0, 8, WithFailureScale(0), WithInjections(Injection{Node: "node-00000", GPU: 5, Fault: FaultThermal, After: after}))
	ev := health.NewEvaluator(health.Config{})
	at := start.Add(after)
	firstDegraded := time.Time{}
	for k := 0; k < int(after/(10*time.Second)); k++ {
		ts := start.Add(time.Duration(k) * 10 * time.Second)
		b := &wirepb.SampleBatch{}
		evs := n.Sample(ts, b, nil)
		for _, tr := range ev.Observe(b, 0, evs) {
			if tr.GPUIndex == 5 && tr.Rule == "thermal_violation" && firstDegraded.IsZero() {
				firstDegraded = ts
			}
		}
	}
	if firstDegraded.IsZero() || !firstDegraded.Before(at) || firstDegraded.Before(at.Add(-ThermalPrecursor)) {
		t.Errorf("thermal_violation first at %v, want within the %s before the failure at %v", firstDegraded, ThermalPrecursor, at)
	}
}

// An hour of a 64-GPU demo fleet through the agent's health evaluator: the drain list's states
// (reset_gpu, reboot_node, service, degraded, restart_app) all appear, and repairs keep most of
// the fleet healthy.
func TestFailureDemoFleetDrainMix(t *testing.T) {
	seen := map[health.State]map[string]bool{}
	for _, s := range health.States {
		seen[s] = map[string]bool{}
	}
	down := 0
	const step, span = 10 * time.Second, 3 * time.Hour
	for idx := range 8 {
		n := NewNode(1, "demo", idx, 8, WithFailureScale(DemoFailureScale))
		ev := health.NewEvaluator(health.Config{})
		for k := 0; k < int(span/step); k++ {
			b := &wirepb.SampleBatch{}
			evs := n.Sample(start.Add(time.Duration(k)*step), b, nil)
			for _, tr := range ev.Observe(b, 0, evs) {
				seen[tr.To][tr.Rule] = true
			}
		}
		for g := range n.state {
			fx := effectsAt(n.state[g].fails, start.Add(span-step).UnixMilli())
			if fx.lost || fx.idle || fx.hwSlowdown || fx.remapFailure || fx.remapPending {
				down++
			}
		}
	}
	for _, s := range []health.State{health.Degraded, health.RestartApp, health.ResetGPU, health.RebootNode, health.Service} {
		if len(seen[s]) == 0 {
			t.Errorf("no GPU went %s in %s of 64 GPUs at the demo scale", s, span)
		}
	}
	if down > 16 {
		t.Errorf("%d of 64 GPUs failed at the end: repairs do not keep up", down)
	}
	t.Logf("rules behind each state: %v; failed at the end: %d of 64", seen, down)
}

// A node starts healthy, whenever it starts: at the demo's scale about 2 % of GPUs would
// otherwise be off the bus at any instant, and a demo would start without their rows. An
// injection after 0 happens at the first sample.
func TestFailureNodeStartsHealthy(t *testing.T) {
	for k := range 100 {
		from := start.Add(time.Duration(k) * 37 * time.Minute)
		n := NewNode(2, "c", k, 8, WithFailureScale(DemoFailureScale),
			WithInjections(Injection{Node: nodeName(k), GPU: 6, Fault: FaultXID, XID: 79}))
		b, ev := sampleRun(n, from, 0, 1)
		if len(b.Gpu) != 8 {
			t.Errorf("start %d: %d rows at the first sample, want 8", k, len(b.Gpu))
		}
		for i := range b.Gpu {
			if reading(t, b, gpumetric.RemapPending, i) != 0 || reading(t, b, gpumetric.RemapFailure, i) != 0 || reading(t, b, gpumetric.ECCDoubleVolatile, i) != 0 {
				t.Errorf("start %d gpu %d: a failure before the first sample shows", k, b.Gpu[i])
			}
		}
		var xids []string
		for _, e := range ev {
			if e.Kind == wirepb.EventKind_EVENT_KIND_XID {
				xids = append(xids, fmt.Sprintf("gpu %d xid %d at %+dms", e.GpuIndex, e.Code, e.TimeUnixMs-from.UnixMilli()))
			}
		}
		if !slices.Equal(xids, []string{"gpu 6 xid 79 at +0ms"}) {
			t.Errorf("start %d: first sample's Xids %v, want the injected one", k, xids)
		}
	}
}
