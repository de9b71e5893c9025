package sim

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
	"github.com/gpufleet/gpufleet/internal/xid"
)

// The snapshot of Meta's Llama 3 report ("The Llama 3 Herd of Models", §3.3.4, Table 5) the
// failure rates come from: 16,384 H100 GPUs over 54 days, 419 unexpected interruptions.
const (
	SnapshotGPUs          = 16384
	SnapshotDays          = 54
	SnapshotInterruptions = 419
	SnapshotGPUHours      = SnapshotGPUs * SnapshotDays * 24 // 21,233,664
)

// Fault is what a failure does to a GPU's readings and events.
type Fault uint8

const (
	// FaultXID raises one Xid event. A code whose catalog action needs more than an application
	// restart leaves the GPU failed (idle) until it is repaired, which resets it.
	FaultXID Fault = iota + 1
	// FaultFellOffBus raises Xid 79 and a fell-off-bus event, then the GPU sends no rows until it is
	// repaired (the node rebooted), as agent/nvml drops a lost GPU's rows. PCIe replays climb for
	// a few minutes before.
	FaultFellOffBus
	// FaultDBE is an uncorrectable HBM error: single-bit errors climb for 20 minutes, then the
	// double-bit count rises, Xid 48 and Xid 63 (row remap) arrive, and remap_pending reads 1
	// until a reset applies the remap.
	FaultDBE
	// FaultRemapFailure is a bank running out of spare rows: the SBE climb, a first DBE whose
	// remap is pending (Xid 48 and 63, remap_pending 1) RemapLead before, then another DBE that
	// finds no spare row: Xid 48 and Xid 64, and remap_failure reads 1 until the GPU is serviced.
	FaultRemapFailure
	// FaultSRAM is an uncorrectable on-chip SRAM error: Xid 48 with Xid 172 (the SRAM detail), the
	// double-bit count rises; nothing to remap and no warning.
	FaultSRAM
	// FaultThermal is a failing thermal interface or sensor: for 10 minutes the temperature climbs
	// and the clocks are held down ever more often (viol_thermal_ns grows), then the GPU is held in
	// hardware thermal slowdown until repaired.
	FaultThermal
)

var faultNames = [...]string{FaultXID: "xid", FaultFellOffBus: "fell_off_bus", FaultDBE: "dbe",
	FaultRemapFailure: "remap_failure", FaultSRAM: "sram", FaultThermal: "thermal"}

func (f Fault) String() string {
	if int(f) < len(faultNames) && faultNames[f] != "" {
		return faultNames[f]
	}
	return "fault(?)"
}

// Precursor windows and how much the precursor counters climb over them. Meta's report gives no
// precursors; these are what the NVML counters show before such failures in the field, shortened
// so that a demo sees them.
const (
	MemoryPrecursor  = 20 * time.Minute
	ThermalPrecursor = 10 * time.Minute
	BusPrecursor     = 5 * time.Minute
	sbeClimb         = 48  // single-bit errors over a memory precursor
	replayClimb      = 400 // PCIe replays before the GPU falls off the bus
	thermalRiseC     = 12  // °C above the GPU's usual reading when held in slowdown
	// RemapLead is how long before a remap failure the first DBE leaves a remap pending.
	RemapLead = 5 * time.Minute
)

// Precursor is how long before the failure its warning signs start; 0 for a sudden one.
func (f Fault) Precursor() time.Duration {
	switch f {
	case FaultDBE, FaultRemapFailure:
		return MemoryPrecursor
	case FaultThermal:
		return ThermalPrecursor
	case FaultFellOffBus:
		return BusPrecursor
	}
	return 0
}

// DefaultRepairTime is how long a failed GPU stays failed before it "is repaired" (reset,
// rebooted, replaced): its volatile counters go back to 0 and its flags clear.
const DefaultRepairTime = 5 * time.Minute

// DemoFailureScale is the demo's --failure-scale: a 64-GPU fleet then sees a new failure every
// 3,600 / (64 × TotalPerGPUHour() × DemoFailureScale) ≈ 38 s.
const DemoFailureScale = 1e5

// MaxFailureScale bounds the scale (about 150 failures per GPU-hour): past it a GPU would fail
// again before any repair.
const MaxFailureScale = 1e7

// Mode is one way a cause shows on a GPU, with its weight among the cause's modes.
type Mode struct {
	Weight int
	Fault  Fault
	XID    uint64 // the Xid of FaultXID
}

// Cause is one root cause of Meta's table, with how it shows through NVML. The split among modes
// is ours: the report gives only the cause.
type Cause struct {
	Name          string // as the docs and tests name it
	Paper         string // the table's words
	Interruptions int    // of the 419
	Modes         []Mode
}

// Causes are the report's causes a GPU's NVML readings can show: the four GPU hardware causes,
// thermal interface and sensor, and software bugs (not a GPU fault, but what a GPU reports of one
// is an application Xid). Network, host, NIC, NCCL timeouts and silent data corruption leave no
// trace in NVML and are not modelled.
var Causes = []Cause{
	// "Faulty GPU" includes NVLink in the report.
	{"faulty_gpu", "Faulty GPU", 148, []Mode{{40, FaultFellOffBus, 79}, {25, FaultXID, 46}, {15, FaultXID, 62}, {20, FaultXID, 74}}},
	{"gpu_hbm3", "GPU HBM3 Memory", 72, []Mode{{75, FaultDBE, 48}, {25, FaultRemapFailure, 64}}},
	{"gpu_sram", "GPU SRAM Memory", 19, []Mode{{1, FaultSRAM, 48}}},
	{"gpu_system_processor", "GPU System Processor", 17, []Mode{{60, FaultXID, 119}, {40, FaultXID, 120}}},
	{"gpu_thermal", "GPU Thermal Interface + Sensor", 6, []Mode{{1, FaultThermal, 0}}},
	{"software_bug", "Software Bug", 54, []Mode{{45, FaultXID, 13}, {45, FaultXID, 31}, {10, FaultXID, 43}}},
}

// PerGPUHour is the cause's rate in Meta's snapshot: interruptions per GPU-hour.
func (c Cause) PerGPUHour() float64 { return float64(c.Interruptions) / SnapshotGPUHours }

// TotalPerGPUHour is the rate of all modelled causes per GPU-hour at scale 1.
func TotalPerGPUHour() float64 {
	var r float64
	for _, c := range Causes {
		r += c.PerGPUHour()
	}
	return r
}

func (c Cause) pick(h uint64) Mode {
	total := 0
	for _, m := range c.Modes {
		total += m.Weight
	}
	k := int(h % uint64(total))
	for _, m := range c.Modes {
		if k < m.Weight {
			return m
		}
		k -= m.Weight
	}
	return c.Modes[len(c.Modes)-1]
}

// failure is one scheduled or injected failure of one GPU, times in Unix ms.
type failure struct {
	at        int64
	precursor int64 // ms before at the warning signs start
	repair    int64 // ms after at the GPU is repaired; 0: it is not left failed
	lead      int64 // a remap failure's: ms before at its first DBE left a remap pending
	fault     Fault
	xid       uint64
	cause     int // in Causes; -1 injected
	climbed   uint64
}

// end is when the failure stops mattering: its repair, or its instant.
func (f *failure) end() int64 { return f.at + f.repair }

// begin is the failure's first happening: a remap failure's first DBE, else the failure itself.
func (f *failure) begin() int64 { return f.at - f.lead }

func (f *failure) failed(ms int64) bool { return f.repair > 0 && ms >= f.begin() && ms < f.at+f.repair }

// progress is how far into its precursor window the failure is at ms, 0 to 1; -1 outside it.
// The window ends at the failure's first happening.
func (f *failure) progress(ms int64) float64 {
	if f.precursor <= f.lead || ms < f.at-f.precursor || ms >= f.begin() {
		return -1
	}
	return float64(ms-(f.at-f.precursor)) / float64(f.precursor-f.lead)
}

// resets says whether the repair resets the GPU (volatile counters back to 0): a cooling fix
// does not.
func (f *failure) resets() bool { return f.repair > 0 && f.fault != FaultThermal }

// leavesFailed says whether the fault leaves the GPU failed until repaired: all but an Xid the
// catalog clears with an application restart or less.
func leavesFailed(fault Fault, code uint64) bool {
	if fault != FaultXID {
		return true
	}
	e, ok := xid.Lookup(code)
	if !ok {
		return false
	}
	switch e.Immediate {
	case xid.ResetGPU, xid.RestartBM, xid.RestartVM, xid.ContactSupport, xid.CheckMechanicals,
		xid.WorkflowXid48, xid.WorkflowNVLinkErr, xid.WorkflowNVLink5Err:
		return true
	}
	return false
}

// epochMs is the span a GPU's failures are drawn for at once: an hour.
const epochMs = int64(time.Hour / time.Millisecond)

// epochFailures are GPU g's failures in epoch e (hours since the Unix epoch): for each cause, a
// Poisson process of rate PerGPUHour × scale, drawn as exponential gaps from a hash of (seed, GPU,
// epoch, cause), so they depend on nothing but those and the options.
func (n *Node) epochFailures(g int, e int64, out []failure) []failure {
	if n.opt.scale <= 0 {
		return out
	}
	gseed := mix(n.seed, uint64(g)) ^ 0xfa11ed
	start, stop := float64(e*epochMs), float64((e+1)*epochMs)
	first := len(out)
	for ci, c := range Causes {
		perMs := c.PerGPUHour() * n.opt.scale / float64(epochMs)
		h := mix(gseed, uint64(e)*uint64(len(Causes))+uint64(ci))
		ts := start
		for k := uint64(0); ; k++ {
			u := (float64(mix(h, 2*k)>>11) + 1) / (1 << 53) // (0, 1]
			ts += float64(-math.Log(u) / perMs)
			if ts >= stop {
				break
			}
			m := c.pick(mix(h, 2*k+1))
			out = append(out, n.newFailure(int64(ts), ci, m.Fault, m.XID, 0))
		}
	}
	slices.SortFunc(out[first:], byTime)
	return out
}

// newFailure is a failure at ms with the fault's precursor; repair 0 takes the node's.
func (n *Node) newFailure(ms int64, cause int, fault Fault, code uint64, repair time.Duration) failure {
	f := failure{at: ms, fault: fault, xid: code, cause: cause, precursor: fault.Precursor().Milliseconds()}
	if fault == FaultRemapFailure {
		f.lead = RemapLead.Milliseconds()
	}
	if leavesFailed(fault, code) {
		if repair <= 0 {
			repair = n.opt.repair
		}
		f.repair = max(repair.Milliseconds(), 1)
	}
	return f
}

// schedule is GPU g's scheduled failures (injections left out) with from <= at < to.
func (n *Node) schedule(g int, from, to time.Time) []failure {
	var out []failure
	lo, hi := from.UnixMilli(), to.UnixMilli()
	for e := floorDiv(lo, epochMs); e*epochMs < hi; e++ {
		for _, f := range n.epochFailures(g, e, nil) {
			if f.at >= lo && f.at < hi {
				out = append(out, f)
			}
		}
	}
	return out
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// options are NewNode's.
type options struct {
	scale  float64
	repair time.Duration
	inject []Injection
}

// Option configures NewNode.
type Option func(*options)

// WithFailureScale multiplies every cause's rate: 1 (the default) is Meta's fleet, 0 turns
// scheduled failures off (injections still happen). A negative or NaN scale is 0; one over
// MaxFailureScale is MaxFailureScale.
func WithFailureScale(s float64) Option {
	return func(o *options) {
		switch {
		case !(s > 0):
			o.scale = 0
		case s > MaxFailureScale:
			o.scale = MaxFailureScale
		default:
			o.scale = s
		}
	}
}

// WithRepairTime sets how long a failed GPU stays failed; DefaultRepairTime when d <= 0.
func WithRepairTime(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.repair = d
		}
	}
}

// WithInjections adds explicit failures; those naming another node are left out.
func WithInjections(in ...Injection) Option {
	return func(o *options) { o.inject = append(o.inject, in...) }
}

func byTime(a, b failure) int { return cmp.Compare(a.at, b.at) }

// maxPrecursorMs is the longest precursor: failures are drawn that far ahead of the instant.
var maxPrecursorMs = max(MemoryPrecursor, ThermalPrecursor, BusPrecursor).Milliseconds()

// advance draws every GPU's failures up to the precursor horizon after ms. The first call places
// the injections; a node starts healthy: what was drawn before its first sample did not happen,
// so a fleet does not start with GPUs already off the bus.
func (n *Node) advance(ms int64) {
	lo := floorDiv(ms-n.opt.repair.Milliseconds(), epochMs)
	if !n.started {
		n.started, n.from, n.genNext = true, ms, floorDiv(ms, epochMs)
		for _, in := range n.opt.inject {
			f := n.newFailure(ms+in.After.Milliseconds(), -1, in.Fault, in.XID, in.Repair)
			f.precursor = min(f.precursor, in.After.Milliseconds())
			f.lead = min(f.lead, in.After.Milliseconds()/2) // half the warning climbing, half pending
			st := &n.state[in.GPU]
			st.fails = append(st.fails, f)
			slices.SortStableFunc(st.fails, byTime)
		}
	}
	// After a long gap, what fell within it is not drawn: nothing sampled it.
	n.genNext = max(n.genNext, lo)
	for ; n.genNext*epochMs <= ms+maxPrecursorMs; n.genNext++ {
		for g := range n.state {
			st := &n.state[g]
			k := len(st.fails)
			st.fails = n.epochFailures(g, n.genNext, st.fails)
			if n.genNext*epochMs < n.from {
				st.fails = slices.DeleteFunc(st.fails, func(f failure) bool { return f.cause >= 0 && f.begin() < n.from })
			}
			if k > 0 && len(st.fails) > k {
				slices.SortStableFunc(st.fails, byTime) // behind an injection
			}
		}
	}
}

// effects is what the GPU's failures do to its gauges at an instant: a function of the failures
// and the instant alone.
type effects struct {
	lost, idle                 bool
	remapPending, remapFailure bool
	hwSlowdown                 bool
	heat                       float64 // 0..1: how far a thermal failure has come
}

func effectsAt(fails []failure, ms int64) effects {
	var fx effects
	for i := range fails {
		f := &fails[i]
		if !f.failed(ms) {
			if f.fault == FaultThermal {
				fx.heat = max(fx.heat, f.progress(ms))
			}
			continue
		}
		switch f.fault {
		case FaultFellOffBus:
			fx.lost = true
		case FaultDBE:
			fx.remapPending, fx.idle = true, true
		case FaultRemapFailure:
			fx.remapPending, fx.idle = true, true
			fx.remapFailure = fx.remapFailure || ms >= f.at
		case FaultThermal:
			fx.heat, fx.hwSlowdown = 1, true
		default:
			fx.idle = true
		}
	}
	return fx
}

// lostAt says whether a fell-off-bus failure other than fails[skip] holds the GPU at ms.
func lostAt(fails []failure, ms int64, skip int) bool {
	for i := range fails {
		if i != skip && fails[i].fault == FaultFellOffBus && fails[i].failed(ms) && (fails[i].at < ms || i < skip) {
			return true
		}
	}
	return false
}

// happening is a failure arriving (a remap failure's first DBE: pending), or being repaired.
type happening struct {
	at      int64
	i       int
	repair  bool
	pending bool
}

// happen applies what GPU g's failures did since its last reading to its counters, in time
// order, and appends their events at their instants.
func (n *Node) happen(g int, st *gpuState, ms int64, ev []*wirepb.Event) []*wirepb.Event {
	gpu := n.gpus[g]
	prev := st.lastT.UnixMilli()
	if st.lastT.IsZero() {
		prev = ms - 1 // the first reading: only what happens at its instant (an injection after 0)
	}
	var haps []happening
	for i := range st.fails {
		f := &st.fails[i]
		if f.lead > 0 && f.begin() > prev && f.begin() <= ms {
			haps = append(haps, happening{f.begin(), i, false, true})
		}
		if f.at > prev && f.at <= ms {
			haps = append(haps, happening{f.at, i, false, false})
		}
		if f.repair > 0 && f.end() > prev && f.end() <= ms {
			haps = append(haps, happening{f.end(), i, true, false})
		}
	}
	// In time order; a repair before a failure at the same instant, so the reset spares it.
	slices.SortStableFunc(haps, func(a, b happening) int {
		if c := cmp.Compare(a.at, b.at); c != 0 {
			return c
		}
		return cmp.Compare(b2f(b.repair), b2f(a.repair))
	})
	for _, h := range haps {
		f := &st.fails[h.i]
		if h.repair {
			if f.resets() { // a GPU reset or reboot: NVML's volatile counters start again
				st.sbe, st.dbe, st.energyMJ = 0, 0, 0
			}
			continue
		}
		if lostAt(st.fails, h.at, h.i) {
			continue // a GPU already off the bus reports nothing
		}
		if h.pending {
			st.dbe++
			st.dbeAgg++
			st.remapUnc++
			ev = n.xidEvent(gpu, f, h.at, 48, "double-bit ECC error in HBM", ev)
			ev = n.xidEvent(gpu, f, h.at, 63, "row remapping pending", ev)
			continue
		}
		st.hit(f)
		ev = n.failureEvents(gpu, f, ev)
	}
	return ev
}

// nvmlErrorGPUIsLost is NVML's return code for a lost GPU, the fell-off-bus event's code as
// agent/nvml sends it.
const nvmlErrorGPUIsLost = 15

// hit counts the failure in the GPU's counters.
func (st *gpuState) hit(f *failure) {
	switch f.fault {
	case FaultDBE:
		st.dbe++
		st.dbeAgg++
		st.remapUnc++
	case FaultRemapFailure, FaultSRAM:
		st.dbe++
		st.dbeAgg++
	}
}

// xidEvent appends an Xid event of the failure at ms.
func (n *Node) xidEvent(gpu *wirepb.GPU, f *failure, ms int64, code uint64, what string, ev []*wirepb.Event) []*wirepb.Event {
	why := "injected"
	if f.cause >= 0 {
		why = Causes[f.cause].Name
	}
	msg := fmt.Sprintf("Xid %d (simulated %s)", code, why)
	if what != "" {
		msg = fmt.Sprintf("Xid %d: %s (simulated %s)", code, what, why)
	}
	return append(ev, &wirepb.Event{TimeUnixMs: ms, GpuIndex: gpu.Index, GpuUuid: gpu.Uuid, Kind: wirepb.EventKind_EVENT_KIND_XID,
		Code: code, Pid: uint32(1000 + mix(n.seed, uint64(gpu.Index)+9)%60000), Message: msg})
}

// failureEvents appends the Xid and fell-off-bus events of the failure, at its instant.
func (n *Node) failureEvents(gpu *wirepb.GPU, f *failure, ev []*wirepb.Event) []*wirepb.Event {
	x := func(code uint64, what string) { ev = n.xidEvent(gpu, f, f.at, code, what, ev) }
	switch f.fault {
	case FaultXID:
		x(f.xid, "")
	case FaultFellOffBus:
		x(79, "GPU has fallen off the bus")
		ev = append(ev, &wirepb.Event{TimeUnixMs: f.at, GpuIndex: gpu.Index, GpuUuid: gpu.Uuid, Kind: wirepb.EventKind_EVENT_KIND_FELL_OFF_BUS,
			Code: nvmlErrorGPUIsLost, Message: "GPU fell off the bus (simulated: GPU is lost); no longer sampled"})
	case FaultDBE:
		x(48, "double-bit ECC error in HBM")
		x(63, "row remapping pending")
	case FaultRemapFailure:
		x(48, "double-bit ECC error in HBM")
		x(64, "row remapping failed")
	case FaultSRAM:
		x(48, "uncorrectable ECC error in SRAM")
		x(172, "uncorrectable SRAM error")
	}
	return ev
}

// climb adds the precursor counts due by ms: single-bit errors before an HBM error, PCIe replays
// before the GPU falls off the bus, growing with the square of the time into the window.
func (st *gpuState) climb(ms int64) {
	for i := range st.fails {
		f := &st.fails[i]
		var total uint64
		switch f.fault {
		case FaultDBE, FaultRemapFailure:
			total = sbeClimb
		case FaultFellOffBus:
			total = replayClimb
		default:
			continue
		}
		want := total
		if p := f.progress(ms); p >= 0 {
			want = uint64(float64(total) * p * p)
		} else if ms < f.begin() {
			want = 0
		}
		if want <= f.climbed {
			continue
		}
		d := want - f.climbed
		f.climbed = want
		if f.fault == FaultFellOffBus {
			st.replays += d
		} else {
			st.sbe += d
			st.sbeAgg += d
		}
	}
}

// prune drops the failures that are over by ms.
func (st *gpuState) prune(ms int64) {
	st.fails = slices.DeleteFunc(st.fails, func(f failure) bool { return f.end() <= ms && f.at <= ms })
}
