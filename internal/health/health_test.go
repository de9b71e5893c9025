package health

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
	"github.com/gpufleet/gpufleet/internal/xid"
)

// The numbers are gpu_events.code of kind health: the fleet's SQL reads them.
func TestHealthStateNumbersAndNames(t *testing.T) {
	want := []string{"healthy", "degraded", "restart_app", "reset_gpu", "reboot_node", "service"}
	if len(States) != len(want) {
		t.Fatalf("%d states, want %d", len(States), len(want))
	}
	for n, name := range want {
		s := State(n)
		if s.String() != name {
			t.Errorf("State(%d) is %q, want %q", n, s, name)
		}
		for _, in := range []string{name, fmt.Sprint(n)} {
			if got, err := ParseState(in); err != nil || got != s {
				t.Errorf("ParseState(%q) = %v, %v; want %v", in, got, err, s)
			}
		}
		if s.Critical() != (n >= 2) {
			t.Errorf("%s.Critical() = %v", s, s.Critical())
		}
	}
	for _, bad := range []string{"", "ok", "6", "Healthy", "-1"} {
		if _, err := ParseState(bad); err == nil {
			t.Errorf("ParseState(%q) accepted", bad)
		}
	}
}

// Every immediate action the catalog can give is covered by exactly one rule, and every code in
// the catalog resolves to a rule.
func TestHealthEveryXidActionHasARule(t *testing.T) {
	for _, a := range xid.Actions {
		var in []string
		for _, r := range Rules {
			if r.Kind == XIDBucket && slices.Contains(r.Buckets, a) {
				in = append(in, r.Name)
			}
		}
		if len(in) != 1 {
			t.Errorf("action %q is in rules %v, want exactly one", a, in)
		}
	}
	for _, e := range xid.All() {
		if ri, _, _ := xidRule(uint64(e.Code)); ri < 0 {
			t.Errorf("xid %d (%s) falls under no rule", e.Code, e.Immediate)
		}
	}
	names := map[string]bool{}
	for _, r := range Rules {
		if names[r.Name] {
			t.Errorf("rule %s twice", r.Name)
		}
		names[r.Name] = true
		if r.Reason == "" || r.Clears == "" {
			t.Errorf("rule %s lacks its reason or what clears it", r.Name)
		}
	}
}

// node builds sample batches the way the sources do: every catalogue column, one row per GPU per
// tick, a value present only where the test gives one.
type node struct {
	gpus []*wirepb.GPU
	t0   time.Time
}

func newNode(n int) *node {
	nd := &node{t0: time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)}
	for i := range n {
		nd.gpus = append(nd.gpus, &wirepb.GPU{Index: uint32(i), Uuid: fmt.Sprintf("GPU-%d", i), Model: "NVIDIA H100 80GB HBM3"})
	}
	return nd
}

// batch is one tick at t0+at: vals[g] are GPU g's readings by column.
func (nd *node) batch(at time.Duration, vals map[int]map[string]float64) *wirepb.SampleBatch {
	b := &wirepb.SampleBatch{Gpus: nd.gpus}
	ms := nd.t0.Add(at).UnixMilli()
	for g := range nd.gpus {
		b.TimeUnixMs = append(b.TimeUnixMs, ms)
		b.Gpu = append(b.Gpu, uint32(g))
	}
	for _, m := range gpumetric.All() {
		c := &wirepb.MetricColumn{Metric: uint32(m.ID)}
		for g := range nd.gpus {
			v := vals[g][m.Column]
			if m.Kind.Integer() {
				c.Counts = append(c.Counts, uint64(v))
			} else {
				c.Values = append(c.Values, v)
			}
		}
		c.Present = wire.SetPresent(len(nd.gpus), func(i int) bool { _, ok := vals[i][m.Column]; return ok })
		b.Metrics = append(b.Metrics, c)
	}
	return b
}

func (nd *node) xid(g int, at time.Duration, code uint64) *wirepb.Event {
	return &wirepb.Event{TimeUnixMs: nd.t0.Add(at).UnixMilli(), GpuIndex: uint32(g), GpuUuid: nd.gpus[g].Uuid,
		Kind: wirepb.EventKind_EVENT_KIND_XID, Code: code, Message: fmt.Sprintf("Xid %d", code)}
}

// firstWith is the lowest used code the catalog gives action a.
func firstWith(t *testing.T, a xid.Action) uint64 {
	t.Helper()
	for _, e := range xid.All() {
		if e.Used() && e.Immediate == a {
			return uint64(e.Code)
		}
	}
	t.Fatalf("no used Xid with action %s", a)
	return 0
}

// TestHealthXidBuckets: an Xid moves its GPU to the state its catalog bucket asks for, with the
// catalog's meaning in the message, and the other GPUs stay healthy.
func TestHealthXidBuckets(t *testing.T) {
	for _, tc := range []struct {
		name string
		code uint64
		want State
		msg  string // the message, or a prefix ending in "…"
	}{
		{"fell off the bus", 79, RebootNode, "xid 79 ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS: GPU has fallen off the bus → RESTART_BM"},
		{"double-bit ECC (workflow 48)", 48, ResetGPU, "xid 48 ROBUST_CHANNEL_GPU_ECC_DBE: Double Bit ECC Error → WORKFLOW_XID_48"},
		{"NVLink (workflow)", 74, ResetGPU, "xid 74 NVLINK_ERROR: NVLINK Error → WORKFLOW_NVLINK_ERR"},
		{"graphics exception", 13, RestartApp, "xid 13 …"},
		{"reset", firstWith(t, xid.ResetGPU), ResetGPU, "…→ RESET_GPU"},
		{"contact support", firstWith(t, xid.ContactSupport), Service, "…→ CONTACT_SUPPORT"},
		{"check mechanicals", firstWith(t, xid.CheckMechanicals), Service, "…→ CHECK_MECHANICALS"},
		{"no bucket", firstWith(t, xid.Unspecified), Degraded, "…→ no action in NVIDIA's catalog"},
		{"not in the catalog", 9999, Degraded, "unknown Xid 9999"},
		{"unused", 1, Degraded, "unknown Xid 1 (ROBUST_CHANNEL_FIFO_ERROR_FIFO_METHOD: unused in NVIDIA's catalog for A100 to GB200)"},
		{"ignore", 43, Healthy, "healthy (first evaluation since the agent started)"},
		{"workflow 45 follows the other Xid", 45, Healthy, "healthy (first evaluation since the agent started)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nd := newNode(2)
			ev := NewEvaluator(Config{})
			tr := ev.Observe(nd.batch(0, nil), 0, []*wirepb.Event{nd.xid(1, 0, tc.code)})
			if len(tr) != 2 {
				t.Fatalf("%d transitions, want 2 (first evaluation of each GPU): %+v", len(tr), tr)
			}
			if tr[0].To != Healthy || !tr[0].First {
				t.Errorf("GPU 0: %+v, want healthy, first", tr[0])
			}
			got := tr[1]
			if got.To != tc.want || got.UUID != "GPU-1" || got.GPUIndex != 1 {
				t.Errorf("GPU 1 went to %s (%s), want %s", got.To, got.UUID, tc.want)
			}
			if !matches(got.Message, tc.msg) {
				t.Errorf("message %q, want %q", got.Message, tc.msg)
			}
			e := got.Event()
			if e.Kind != wirepb.EventKind_EVENT_KIND_HEALTH || e.Code != uint64(tc.want) || e.Message != got.Message {
				t.Errorf("event %v", e)
			}
			// The same Xid again: the state holds, no event.
			if tr := ev.Observe(nd.batch(time.Second, nil), 0, []*wirepb.Event{nd.xid(1, time.Second, tc.code)}); len(tr) != 0 {
				t.Errorf("a repeat made %+v", tr)
			}
		})
	}
}

// matches compares a message with want: exact, or "…x" (ends with x), or "x …" (starts with x).
func matches(got, want string) bool {
	switch {
	case strings.HasPrefix(want, "…"):
		return strings.HasSuffix(got, strings.TrimPrefix(want, "…"))
	case strings.HasSuffix(want, "…"):
		return strings.HasPrefix(got, strings.TrimSuffix(want, "…"))
	}
	return got == want
}

type step struct {
	at     time.Duration
	vals   map[string]float64 // GPU 0's readings
	job    string
	xid    uint64 // an Xid on GPU 0 at this tick, 0 for none
	want   State
	msg    string // "" expects no transition this tick
	except bool   // the first tick: a transition (the first evaluation) is always expected
}

// TestHealthRules: each reading rule fires, holds without repeating itself, and clears with the
// message naming what cleared.
func TestHealthRules(t *testing.T) {
	const m = time.Minute
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"remap pending, then reset", []step{
			{at: 0, vals: map[string]float64{"remap_pending": 0}, want: Healthy, msg: "healthy (first evaluation since the agent started)"},
			{at: 1 * time.Second, vals: map[string]float64{"remap_pending": 1}, want: ResetGPU, msg: "remap_pending=1 (rows were remapped that only a GPU reset applies)"},
			{at: 2 * time.Second, vals: map[string]float64{"remap_pending": 1}, want: ResetGPU},
			{at: 3 * time.Second, vals: map[string]float64{}, want: ResetGPU}, // unsupported for a tick: no change
			{at: 4 * time.Second, vals: map[string]float64{"remap_pending": 0}, want: Healthy, msg: "cleared: remap_pending back to 0"},
		}},
		{"remap failure needs service, above the pending reset", []step{
			{at: 0, vals: map[string]float64{"remap_pending": 1, "remap_failure": 1}, want: Service, msg: "remap_failure=1 (a row remap failed: the GPU is out of spare rows)"},
			{at: time.Second, vals: map[string]float64{"remap_pending": 1, "remap_failure": 0}, want: ResetGPU,
				msg: "cleared: remap_failure back to 0; still reset_gpu: remap_pending=1 (rows were remapped that only a GPU reset applies)"},
		}},
		{"uncorrectable ECC", []step{
			{at: 0, vals: map[string]float64{"ecc_dbe_volatile": 0}, want: Healthy, msg: "healthy (first evaluation since the agent started)"},
			{at: time.Second, vals: map[string]float64{"ecc_dbe_volatile": 2}, want: ResetGPU, msg: "ecc_dbe_volatile=2 (uncorrectable ECC errors since the driver loaded or the GPU was reset)"},
			{at: 2 * time.Second, vals: map[string]float64{"ecc_dbe_volatile": 3}, want: ResetGPU},
			{at: 3 * time.Second, vals: map[string]float64{"ecc_dbe_volatile": 0}, want: Healthy, msg: "cleared: ecc_dbe_volatile back to 0"},
		}},
		{"retired pages pending", []step{
			{at: 0, vals: map[string]float64{"retired_pages_pending": 1}, want: ResetGPU, msg: "retired_pages_pending=1 (pages wait to be retired at the next GPU reset or driver reload)"},
			{at: time.Second, vals: map[string]float64{"retired_pages_pending": 0}, want: Healthy, msg: "cleared: retired_pages_pending back to 0"},
		}},
		{"NVLink CRC errors over 100/s", []step{
			{at: 0, vals: map[string]float64{"nvlink_crc_flit_errors": 1000, "nvlink_crc_data_errors": 0}, want: Healthy, msg: "healthy (first evaluation since the agent started)"},
			{at: 30 * time.Second, vals: map[string]float64{"nvlink_crc_flit_errors": 9000, "nvlink_crc_data_errors": 0}, want: Healthy}, // under a window yet
			{at: m, vals: map[string]float64{"nvlink_crc_flit_errors": 13000, "nvlink_crc_data_errors": 1000}, want: Degraded,
				msg: "nvlink_crc_flit_errors + nvlink_crc_data_errors grew 13000/min over 1m0s (threshold 6000/min): NVLink CRC errors (flit + data, all links) above DCGM's 100 per second"},
			{at: 2 * m, vals: map[string]float64{"nvlink_crc_flit_errors": 13010, "nvlink_crc_data_errors": 1000}, want: Healthy,
				msg: "cleared: nvlink_crc_flit_errors + nvlink_crc_data_errors grew 10/min over 1m0s (threshold 6000/min)"},
		}},
		{"NVLink CRC under the threshold", []step{
			{at: 0, vals: map[string]float64{"nvlink_crc_flit_errors": 0}, want: Healthy, msg: "healthy (first evaluation since the agent started)"},
			{at: m, vals: map[string]float64{"nvlink_crc_flit_errors": 5000}, want: Healthy},
		}},
		{"NVLink replays", []step{
			{at: 0, vals: map[string]float64{"nvlink_replay_errors": 0}, want: Healthy, msg: "healthy (first evaluation since the agent started)"},
			{at: 2 * m, vals: map[string]float64{"nvlink_replay_errors": 600}, want: Degraded, msg: "nvlink_replay_errors grew 300/min over 2m0s (threshold 60/min): NVLink replays (all links) above one per second"},
		}},
		{"a counter reset restarts the window rather than firing", []step{
			{at: 0, vals: map[string]float64{"nvlink_replay_errors": 100000}, want: Healthy, msg: "healthy (first evaluation since the agent started)"},
			{at: m, vals: map[string]float64{"nvlink_replay_errors": 5}, want: Healthy},
			{at: 2 * m, vals: map[string]float64{"nvlink_replay_errors": 10}, want: Healthy},
		}},
		{"thermal violation", []step{
			{at: 0, vals: map[string]float64{"viol_thermal_ns": 0, "viol_power_ns": 0}, want: Healthy, msg: "healthy (first evaluation since the agent started)"},
			{at: m, vals: map[string]float64{"viol_thermal_ns": 30e9, "viol_power_ns": 50e9}, want: Degraded, // power at 83 %: normal
				msg: "viol_thermal_ns grew 50 % of 1m0s (threshold 10 %): clocks held down by a thermal limit for over a tenth of the window: cooling"},
			{at: 2 * m, vals: map[string]float64{"viol_thermal_ns": 33e9, "viol_power_ns": 100e9}, want: Healthy,
				msg: "cleared: viol_thermal_ns grew 5 % of 1m0s (threshold 10 %)"},
		}},
		{"hysteresis: a violation holds until half the threshold", []step{
			{at: 0, vals: map[string]float64{"viol_thermal_ns": 0}, want: Healthy, msg: "healthy (first evaluation since the agent started)"},
			{at: m, vals: map[string]float64{"viol_thermal_ns": 12e9}, want: Degraded, msg: "viol_thermal_ns grew 20 % of 1m0s (threshold 10 %): …"},
			{at: 2 * m, vals: map[string]float64{"viol_thermal_ns": 16.8e9}, want: Degraded}, // 8 %: under the threshold, over half
			{at: 3 * m, vals: map[string]float64{"viol_thermal_ns": 19.2e9}, want: Healthy, msg: "cleared: viol_thermal_ns grew 4 % of 1m0s (threshold 10 %)"},
			{at: 4 * m, vals: map[string]float64{"viol_thermal_ns": 24e9}, want: Healthy}, // 8 % again: not enough to fire
		}},
		{"power held at a lowered limit", []step{
			{at: 0, vals: map[string]float64{"viol_power_ns": 0, "power_limit_w": 500, "power_max_w": 700}, want: Healthy, msg: "healthy (first evaluation since the agent started)"},
			{at: m, vals: map[string]float64{"viol_power_ns": 58e9, "power_limit_w": 500, "power_max_w": 700}, want: Degraded,
				msg: "viol_power_ns grew 97 % of 1m0s (threshold 90 %), power_limit_w 500 < power_max_w 700: clocks held down for over 90 % of the window by a power limit below the board's maximum"},
			{at: 2 * m, vals: map[string]float64{"viol_power_ns": 116e9, "power_limit_w": 700, "power_max_w": 700}, want: Healthy,
				msg: "cleared: viol_power_ns grew 97 % of 1m0s (threshold 90 %), but power_limit_w 700 is not below power_max_w 700"},
		}},
		{"power held at the board's maximum is normal", []step{
			{at: 0, vals: map[string]float64{"viol_power_ns": 0, "power_limit_w": 700, "power_max_w": 700}, want: Healthy, msg: "healthy (first evaluation since the agent started)"},
			{at: m, vals: map[string]float64{"viol_power_ns": 60e9, "power_limit_w": 700, "power_max_w": 700}, want: Healthy},
		}},
		{"power held, limits unknown", []step{
			{at: 0, vals: map[string]float64{"viol_power_ns": 0}, want: Healthy, msg: "healthy (first evaluation since the agent started)"},
			{at: m, vals: map[string]float64{"viol_power_ns": 60e9}, want: Healthy},
		}},
		{"restart_app clears after the hold", []step{
			{at: 0, vals: map[string]float64{}, xid: 13, want: RestartApp, msg: "xid 13 …"},
			{at: 9 * m, vals: map[string]float64{}, want: RestartApp},
			{at: 10 * m, vals: map[string]float64{}, want: Healthy, msg: "cleared: xid 13 not seen again for 10m0s"},
		}},
		{"a repeat restarts the hold", []step{
			{at: 0, vals: map[string]float64{}, xid: 13, want: RestartApp, msg: "xid 13 …"},
			{at: 5 * m, vals: map[string]float64{}, xid: 13, want: RestartApp},
			{at: 10 * m, vals: map[string]float64{}, want: RestartApp},
			{at: 15 * m, vals: map[string]float64{}, want: Healthy, msg: "cleared: xid 13 not seen again for 10m0s"},
		}},
		{"restart_app clears when the job changes", []step{
			{at: 0, vals: map[string]float64{}, job: "101", want: Healthy, msg: "healthy (first evaluation since the agent started)"},
			{at: time.Second, vals: map[string]float64{}, job: "101", xid: 13, want: RestartApp, msg: "xid 13 …"},
			{at: 2 * time.Second, vals: map[string]float64{}, job: "102", want: Healthy, msg: `cleared: xid 13: job on the GPU changed ("101" → "102")`},
		}},
		{"an Xid reset_gpu clears when volatile counters go back", []step{
			{at: 0, vals: map[string]float64{"energy_mj": 5e6}, xid: 48, want: ResetGPU, msg: "xid 48 …"},
			{at: 20 * m, vals: map[string]float64{"energy_mj": 6e6}, want: ResetGPU}, // no hold for a reset
			{at: 21 * m, vals: map[string]float64{"energy_mj": 100}, want: Healthy, msg: "cleared: xid 48: volatile counters went back (GPU reset or driver reload)"},
		}},
		{"reboot_node holds through a counter reset", []step{
			{at: 0, vals: map[string]float64{"energy_mj": 5e6}, xid: 79, want: RebootNode, msg: "xid 79 …"},
			{at: 60 * m, vals: map[string]float64{"energy_mj": 100}, want: RebootNode},
		}},
		{"reset_gpu under reboot_node", []step{
			{at: 0, vals: map[string]float64{"remap_pending": 1}, xid: 79, want: RebootNode, msg: "xid 79 …"},
			{at: time.Second, vals: map[string]float64{"remap_pending": 0}, want: RebootNode},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nd := newNode(1)
			ev := NewEvaluator(Config{})
			for k, s := range tc.steps {
				nd.gpus[0].JobId = s.job
				var evs []*wirepb.Event
				if s.xid != 0 {
					evs = append(evs, nd.xid(0, s.at, s.xid))
				}
				tr := ev.Observe(nd.batch(s.at, map[int]map[string]float64{0: s.vals}), 0, evs)
				if got := ev.GPUs()[0].State; got != s.want {
					t.Errorf("step %d (%s): state %s, want %s", k, s.at, got, s.want)
				}
				switch {
				case s.msg == "" && len(tr) != 0:
					t.Errorf("step %d (%s): transitions %+v, want none", k, s.at, tr)
				case s.msg != "" && len(tr) != 1:
					t.Errorf("step %d (%s): %d transitions %+v, want one", k, s.at, len(tr), tr)
				case s.msg != "":
					if tr[0].To != s.want || !matches(tr[0].Message, s.msg) {
						t.Errorf("step %d (%s): %s %q, want %s %q", k, s.at, tr[0].To, tr[0].Message, s.want, s.msg)
					}
					if want := nd.t0.Add(s.at).UnixMilli(); tr[0].TimeUnixMs != want {
						t.Errorf("step %d: transition at %d, want %d", k, tr[0].TimeUnixMs, want)
					}
				}
			}
		})
	}
}

// A GPU lost before the agent could open it has no UUID: its fell-off-bus event still puts it,
// by index, in reboot_node, and the GPUs that read stay healthy.
func TestHealthFellOffTheBusWithoutUUID(t *testing.T) {
	nd := newNode(2)
	ev := NewEvaluator(Config{})
	lost := &wirepb.Event{TimeUnixMs: nd.t0.UnixMilli(), GpuIndex: 7, Kind: wirepb.EventKind_EVENT_KIND_FELL_OFF_BUS, Code: 15,
		Message: "GPU 7 fell off the bus before the agent started (GPU is lost)"}
	tr := ev.Observe(nd.batch(0, nil), 0, []*wirepb.Event{lost})
	if len(tr) != 3 {
		t.Fatalf("%d transitions, want 3: %+v", len(tr), tr)
	}
	got := tr[2]
	if got.GPUIndex != 7 || got.UUID != "" || got.To != RebootNode ||
		got.Message != "fell off the bus: GPU 7 fell off the bus before the agent started (GPU is lost)" {
		t.Errorf("lost GPU: %+v", got)
	}
	if tr := ev.Observe(nd.batch(time.Second, nil), 0, nil); len(tr) != 0 {
		t.Errorf("the next tick: %+v, want none", tr)
	}
	f := ev.Findings()
	if len(f) != 1 || f[0].Rule != "fell_off_bus" || f[0].GPUIndex != 7 {
		t.Errorf("findings %+v", f)
	}
}

// An Xid NVML named no GPU for (wire.NoGPU, no UUID) is stored for the node but judges no GPU:
// neither GPU 0 nor a GPU "255" of its own.
func TestHealthXidOfNoGPU(t *testing.T) {
	nd := newNode(2)
	ev := NewEvaluator(Config{})
	x := &wirepb.Event{TimeUnixMs: nd.t0.UnixMilli(), GpuIndex: wire.NoGPU, Kind: wirepb.EventKind_EVENT_KIND_XID, Code: 79,
		Message: "Xid 79 (NVML named no GPU of this node)"}
	tr := ev.Observe(nd.batch(0, nil), 0, []*wirepb.Event{x})
	if len(tr) != 2 || tr[0].To != Healthy || tr[1].To != Healthy {
		t.Fatalf("transitions %+v, want the two GPUs' first evaluations, healthy", tr)
	}
	if f := ev.Findings(); len(f) != 0 {
		t.Errorf("findings %+v, want none", f)
	}
}

// Only rows from first on are evaluated, MIG instances not at all, and the per-GPU state stops at
// MaxGPUs.
func TestHealthRowsMIGAndBound(t *testing.T) {
	nd := newNode(3)
	nd.gpus = append(nd.gpus, &wirepb.GPU{Index: 136, Uuid: "MIG-1", ParentUuid: "GPU-1"})
	ev := NewEvaluator(Config{MaxGPUs: 2})
	b := nd.batch(0, map[int]map[string]float64{0: {"remap_pending": 1}, 1: {"remap_pending": 1}, 2: {"remap_pending": 1}, 3: {"remap_pending": 1}})
	tr := ev.Observe(b, 0, nil)
	if len(tr) != 2 || ev.Dropped() != 1 {
		t.Fatalf("%d transitions (%+v), %d dropped; want 2 and 1 (GPU 2 over the bound, the MIG instance skipped)", len(tr), tr, ev.Dropped())
	}
	for _, x := range tr {
		if x.To != ResetGPU || x.UUID == "MIG-1" {
			t.Errorf("%+v", x)
		}
	}
	// Rows before first were evaluated by an earlier call: a remap now cleared on them is not seen.
	b2 := nd.batch(time.Second, map[int]map[string]float64{0: {"remap_pending": 0}})
	if tr := ev.Observe(b2, len(b2.TimeUnixMs), nil); len(tr) != 0 {
		t.Errorf("rows before first evaluated: %+v", tr)
	}
}

func TestHealthMessageBounded(t *testing.T) {
	long := strings.Repeat("é", MaxMessage)
	nd := newNode(1)
	ev := NewEvaluator(Config{})
	lost := &wirepb.Event{TimeUnixMs: nd.t0.UnixMilli(), GpuUuid: "GPU-0", Kind: wirepb.EventKind_EVENT_KIND_FELL_OFF_BUS, Message: long}
	tr := ev.Observe(nd.batch(0, nil), 0, []*wirepb.Event{lost})
	if len(tr) != 1 || len(tr[0].Message) > MaxMessage || !strings.HasSuffix(tr[0].Message, "…") {
		t.Errorf("message of %d bytes: %+v", len(tr[0].Message), tr)
	}
}
