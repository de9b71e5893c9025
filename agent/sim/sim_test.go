package sim

import (
	"math"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// start is a fixed instant so every run of these tests sees the same readings.
var start = time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)

// sampleRun samples n at count instants step apart into one batch, as an agent batching a minute does.
func sampleRun(n *Node, from time.Time, step time.Duration, count int) (*wirepb.SampleBatch, []*wirepb.Event) {
	b := &wirepb.SampleBatch{}
	var ev []*wirepb.Event
	for k := 0; k < count; k++ {
		ev = n.Sample(from.Add(time.Duration(k)*step), b, ev)
	}
	return b, ev
}

func column(t *testing.T, b *wirepb.SampleBatch, id gpumetric.ID) *wirepb.MetricColumn {
	t.Helper()
	for _, c := range b.Metrics {
		if gpumetric.ID(c.Metric) == id {
			return c
		}
	}
	t.Fatalf("batch has no column for metric %d", id)
	return nil
}

func TestDeterministic(t *testing.T) {
	for _, tc := range []struct {
		seed uint64
		idx  int
		gpus int
	}{{1, 0, 8}, {42, 7, 4}, {0xdeadbeef, 12345, 8}} {
		a, b := NewNode(tc.seed, "c", tc.idx, tc.gpus), NewNode(tc.seed, "c", tc.idx, tc.gpus)
		// Sampling an unrelated node in between must not change anything: nodes share no state.
		other := NewNode(tc.seed+1, "c", tc.idx+1, tc.gpus)
		ba, ea := sampleRun(a, start, 10*time.Second, 30)
		sampleRun(other, start, 10*time.Second, 30)
		bb, eb := sampleRun(b, start, 10*time.Second, 30)
		if !proto.Equal(ba, bb) {
			t.Errorf("seed %d node %d: same seed and instants gave different batches", tc.seed, tc.idx)
		}
		if len(ea) != len(eb) {
			t.Fatalf("seed %d node %d: %d events vs %d", tc.seed, tc.idx, len(ea), len(eb))
		}
		for i := range ea {
			if !proto.Equal(ea[i], eb[i]) {
				t.Errorf("seed %d node %d: event %d differs: %v vs %v", tc.seed, tc.idx, i, ea[i], eb[i])
			}
		}
		if ca, na := a.Identity(); ca != "c" || na != b.Name {
			t.Errorf("Identity() = %q, %q", ca, na)
		}
	}
}

// Gauges depend only on (seed, node, instant), not on which instants were sampled before.
func TestGaugesIndependentOfHistory(t *testing.T) {
	at := start.Add(17 * time.Minute)
	fresh, _ := sampleRun(NewNode(5, "c", 3, 8), at, 0, 1)
	warm := NewNode(5, "c", 3, 8)
	sampleRun(warm, start, 7*time.Second, 50)
	later, _ := sampleRun(warm, at, 0, 1)
	for _, m := range gpumetric.All() {
		if m.Kind != gpumetric.Gauge {
			continue
		}
		f, l := column(t, fresh, m.ID), column(t, later, m.ID)
		for i := range f.Values {
			if f.Values[i] != l.Values[i] {
				t.Errorf("%s row %d: %v fresh, %v after earlier samples", m.Column, i, f.Values[i], l.Values[i])
			}
		}
	}
}

func TestDifferentSeedDifferentUUIDs(t *testing.T) {
	a, b := NewNode(1, "c", 0, 8), NewNode(2, "c", 0, 8)
	seen := map[string]bool{}
	for _, g := range a.GPUs() {
		seen[g.Uuid] = true
	}
	for _, g := range b.GPUs() {
		if seen[g.Uuid] {
			t.Errorf("uuid %s appears under seed 1 and seed 2", g.Uuid)
		}
	}
}

func TestFleetUUIDsUnique(t *testing.T) {
	const nodes, gpus = 100, 8
	uuids := map[string]string{}
	serials := map[string]string{}
	names := map[string]bool{}
	for idx := 0; idx < nodes; idx++ {
		n := NewNode(7, "fleet", idx, gpus)
		if names[n.Name] {
			t.Errorf("node name %s repeats", n.Name)
		}
		names[n.Name] = true
		if len(n.GPUs()) != gpus {
			t.Fatalf("node %d has %d gpus, want %d", idx, len(n.GPUs()), gpus)
		}
		for i, g := range n.GPUs() {
			where := n.Name + "/" + string(rune('0'+i))
			if g.Index != uint32(i) {
				t.Errorf("%s: index %d", where, g.Index)
			}
			if len(g.Uuid) != len("GPU-01234567-89ab-cdef-0123-456789abcdef") {
				t.Errorf("%s: uuid %q is not NVIDIA-shaped", where, g.Uuid)
			}
			if prev, ok := uuids[g.Uuid]; ok {
				t.Errorf("uuid %s on %s and %s", g.Uuid, prev, where)
			}
			uuids[g.Uuid] = where
			if prev, ok := serials[g.Serial]; ok {
				t.Errorf("serial %s on %s and %s", g.Serial, prev, where)
			}
			serials[g.Serial] = where
		}
	}
	if len(uuids) != nodes*gpus {
		t.Errorf("%d distinct uuids, want %d", len(uuids), nodes*gpus)
	}
}

func TestBatchShapeAndRanges(t *testing.T) {
	const gpus, instants = 8, 90
	for _, seed := range []uint64{1, 2, 3, 99} {
		for _, idx := range []int{0, 1, 16, 33} {
			n := NewNode(seed, "c", idx, gpus)
			b, ev := sampleRun(n, start, 10*time.Second, instants)
			rows := len(b.TimeUnixMs)
			if rows != gpus*instants || len(b.Gpu) != rows {
				t.Fatalf("seed %d node %d: %d rows, %d gpu refs, want %d", seed, idx, rows, len(b.Gpu), gpus*instants)
			}
			if len(b.Gpus) != gpus {
				t.Fatalf("batch has %d gpus, want %d", len(b.Gpus), gpus)
			}
			// Every metric has exactly one column, of the kind the catalogue says.
			if len(b.Metrics) != len(gpumetric.All()) {
				t.Fatalf("%d metric columns, want %d", len(b.Metrics), len(gpumetric.All()))
			}
			for _, m := range gpumetric.All() {
				c := column(t, b, m.ID)
				switch {
				case !m.Kind.Integer() && (len(c.Values) != rows || len(c.Counts) != 0),
					m.Kind.Integer() && (len(c.Counts) != rows || len(c.Values) != 0):
					t.Errorf("%s: %d values and %d counts for %d rows", m.Column, len(c.Values), len(c.Counts), rows)
				}
			}
			// The fan and retired-page columns are absent on every row (SXM boards have no fan,
			// Ampere and later remap rows instead); every other column is present on every row.
			for _, c := range b.Metrics {
				for i := 0; i < rows; i++ {
					id := gpumetric.ID(c.Metric)
					absent := id == gpumetric.FanSpeed || id == gpumetric.RetiredSBE || id == gpumetric.RetiredDBE || id == gpumetric.RetiredPending
					if want := !absent; wire.Present(c, i) != want {
						t.Fatalf("metric %d row %d: Present = %v, want %v", c.Metric, i, !want, want)
					}
				}
			}
			util, mem := column(t, b, gpumetric.GPUUtil).Values, column(t, b, gpumetric.MemUtil).Values
			temp, tmem := column(t, b, gpumetric.TempGPU).Values, column(t, b, gpumetric.TempMem).Values
			power := column(t, b, gpumetric.Power).Values
			used, free := column(t, b, gpumetric.FBUsed).Values, column(t, b, gpumetric.FBFree).Values
			total := column(t, b, gpumetric.FBTotal).Values
			energy := column(t, b, gpumetric.Energy).Counts
			for i := 0; i < rows; i++ {
				if b.Gpu[i] != uint32(i%gpus) || b.TimeUnixMs[i] != start.Add(time.Duration(i/gpus)*10*time.Second).UnixMilli() {
					t.Fatalf("row %d is gpu %d at %d", i, b.Gpu[i], b.TimeUnixMs[i])
				}
				if util[i] < 0 || util[i] > 100 || mem[i] < 0 || mem[i] > 100 {
					t.Errorf("row %d: util %v mem_util %v outside 0..100", i, util[i], mem[i])
				}
				if temp[i] < 20 || temp[i] > 110 || tmem[i] < 20 || tmem[i] > 110 {
					t.Errorf("row %d: temp %v mem temp %v outside 20..110", i, temp[i], tmem[i])
				}
				if !(power[i] > 0) || power[i] > 1500 {
					t.Errorf("row %d: power %v W", i, power[i])
				}
				if total[i] <= 0 || used[i] < 0 || free[i] < 0 || math.Abs(used[i]+free[i]-total[i]) > 1 {
					t.Errorf("row %d: fb used %v + free %v vs total %v", i, used[i], free[i], total[i])
				}
				// Energy only grows between consecutive readings of one GPU, and by about
				// power × interval (W × ms = mJ).
				if i >= gpus {
					prev := energy[i-gpus]
					if energy[i] < prev {
						t.Errorf("row %d gpu %d: energy fell from %d to %d", i, b.Gpu[i], prev, energy[i])
					} else if d := float64(energy[i] - prev); d < 10000*0.5*power[i] || d > 10000*2*power[i] {
						t.Errorf("row %d gpu %d: energy grew %v mJ in 10 s at %v W", i, b.Gpu[i], d, power[i])
					}
				}
			}
			for _, e := range ev {
				if int(e.GpuIndex) >= gpus || e.GpuUuid != b.Gpus[e.GpuIndex].Uuid {
					t.Errorf("event %v names a gpu not on the node", e)
				}
			}
			// The batch is what an agent sends once it stamps its identity.
			b.SchemaVersion, b.AgentId = 1, "agent-test"
			if err := wire.CheckSamples(b); err != nil {
				t.Errorf("seed %d node %d: CheckSamples: %v", seed, idx, err)
			}
			data, err := wire.EncodeSamples(b)
			if err != nil {
				t.Fatal(err)
			}
			var back wirepb.SampleBatch
			if err := wire.DecodeSamples(data, &back); err != nil {
				t.Errorf("seed %d node %d: DecodeSamples: %v", seed, idx, err)
			}
		}
	}
}

// Counters never fall across batches either: an agent sends one batch per interval, reusing the node.
func TestCountersMonotonicAcrossBatches(t *testing.T) {
	n := NewNode(11, "c", 4, 8)
	var last map[gpumetric.ID][]uint64
	for batch := 0; batch < 5; batch++ {
		b, _ := sampleRun(n, start.Add(time.Duration(batch)*time.Minute), 10*time.Second, 6)
		cur := map[gpumetric.ID][]uint64{}
		for _, m := range gpumetric.All() {
			if m.Kind != gpumetric.Counter {
				continue
			}
			counts := column(t, b, m.ID).Counts
			for i := 8; i < len(counts); i++ {
				if counts[i] < counts[i-8] {
					t.Errorf("batch %d %s row %d: %d after %d", batch, m.Column, i, counts[i], counts[i-8])
				}
			}
			if prev := last[m.ID]; prev != nil {
				for g := 0; g < 8; g++ {
					if counts[g] < prev[len(prev)-8+g] {
						t.Errorf("batch %d %s gpu %d: %d after %d in the previous batch", batch, m.Column, g, counts[g], prev[len(prev)-8+g])
					}
				}
			}
			cur[m.ID] = counts
		}
		last = cur
	}
}

// The failure data is what a healthy fleet shows: nothing waits for a reset, the power limits are
// the model's and constant, and each violation time grows by exactly the interval while its cause
// holds (thermal while the clock-event reasons say thermal) and not at all otherwise.
func TestFailureData(t *testing.T) {
	const gpus, instants, step = 8, 360, 10 * time.Second
	sawThermal := false
	for _, idx := range []int{0, 1, 16, 33} {
		n := NewNode(5, "c", idx, gpus)
		b, _ := sampleRun(n, start, step, instants)
		limit := powerLimitW[b.Gpus[0].Model]
		pending, failure := column(t, b, gpumetric.RemapPending).Values, column(t, b, gpumetric.RemapFailure).Values
		plimit, pmax := column(t, b, gpumetric.PowerLimit).Values, column(t, b, gpumetric.PowerMax).Values
		reasons := column(t, b, gpumetric.ThrottleReasons).Counts
		thermal := column(t, b, gpumetric.ViolThermal).Counts
		for i := range b.TimeUnixMs {
			if pending[i] != 0 || failure[i] != 0 {
				t.Errorf("node %d row %d: remap pending %v failure %v on a healthy board", idx, i, pending[i], failure[i])
			}
			if plimit[i] != limit || pmax[i] != limit {
				t.Errorf("node %d row %d: power limit %v max %v, want the %s's %v", idx, i, plimit[i], pmax[i], b.Gpus[0].Model, limit)
			}
			if i < gpus {
				continue
			}
			want := uint64(0)
			if reasons[i]&reasonSwThermal != 0 {
				want, sawThermal = uint64(step.Nanoseconds()), true
			}
			if d := thermal[i] - thermal[i-gpus]; d != want {
				t.Errorf("node %d row %d: thermal violation grew %d ns, want %d (reasons %#x)", idx, i, d, want, reasons[i])
			}
		}
		for _, id := range []gpumetric.ID{gpumetric.ViolSyncBoost, gpumetric.ViolBoardLimit, gpumetric.ViolReliability, gpumetric.NVLinkCRCData} {
			for i, v := range column(t, b, id).Counts {
				if v != 0 {
					t.Fatalf("node %d row %d: metric %d = %d, want 0 (not modelled as happening)", idx, i, id, v)
				}
			}
		}
	}
	if !sawThermal {
		t.Error("no GPU throttled in the run: the thermal case went untested")
	}
}
