package health

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
	"github.com/gpufleet/gpufleet/internal/xid"
)

// Defaults of Config.
const (
	// DefaultWindow is the span the Rate and Share rules measure over.
	DefaultWindow = time.Minute
	// DefaultXIDHold is how long an Xid-derived degraded or restart_app condition holds without a
	// repeat: nothing the GPU reads says an application restarted.
	DefaultXIDHold = 10 * time.Minute
	// DefaultMaxGPUs bounds the GPUs an Evaluator keeps state for: what one batch may carry.
	DefaultMaxGPUs = wire.MaxGPUs
)

// MaxMessage bounds a health event's message (the wire allows 4 × wire.MaxLabelLen).
const MaxMessage = 512

// Config configures an Evaluator. The zero value takes the defaults.
type Config struct {
	Window  time.Duration
	XIDHold time.Duration
	MaxGPUs int
}

// Transition is a GPU's change of state (or its first evaluation), as the agent sends it.
type Transition struct {
	TimeUnixMs int64
	GPUIndex   uint32
	UUID       string
	From, To   State
	// First marks the GPU's first evaluation by this evaluator: From is then meaningless.
	First bool
	// Rule is the rule behind To (empty when healthy).
	Rule    string
	Message string
}

// Event is the transition as the wire carries it: EVENT_KIND_HEALTH, code = the new state.
func (t Transition) Event() *wirepb.Event {
	return &wirepb.Event{TimeUnixMs: t.TimeUnixMs, GpuIndex: t.GPUIndex, GpuUuid: t.UUID,
		Kind: wirepb.EventKind_EVENT_KIND_HEALTH, Code: uint64(t.To), Message: t.Message}
}

// Finding is one active condition of one GPU.
type Finding struct {
	GPUIndex uint32
	UUID     string
	State    State
	Rule     string
	Reason   string
	SinceMs  int64
}

// GPU is one GPU's current state.
type GPU struct {
	Index uint32
	UUID  string
	State State
}

// Evaluator applies Rules to a node's batches. It keeps state per GPU, bounded by MaxGPUs, and
// is not safe for concurrent use: the agent calls it from its sampling loop.
type Evaluator struct {
	cfg     Config
	gpus    map[string]*gpuState
	order   []*gpuState
	dropped uint64
	cols    [gpumetric.Count + 1]*wirepb.MetricColumn
	touched []*gpuState
}

// cond is one rule's active condition on one GPU.
type cond struct {
	rule            int // position in Rules
	reason          string
	sinceMs, lastMs int64
	code            uint64 // the Xid that set it
	job             string // the job on the GPU when it was set
}

// window is a Rate or Share rule's measurement in progress.
type window struct {
	have    bool
	startMs int64
	base    uint64
	mask    uint8 // which of the rule's columns were present at the start
}

type gpuState struct {
	key    string
	index  uint32
	uuid   string
	seen   bool
	state  State
	lastMs int64
	job    string
	conds  []cond   // the active ones (few: a GPU holds no state for the rules it passes)
	wins   []window // by position among the Rate and Share rules
	// The counters a GPU reset or driver reload zeroes, at the last reading.
	prev   [len(resetColumns)]uint64
	prevOK [len(resetColumns)]bool
	notes  []string // what cleared during this Observe
	marked bool
}

// resetColumns are counters NVML keeps since the driver loaded: one going backwards means the
// GPU was reset or the driver reloaded.
var resetColumns = [...]string{"ecc_sbe_volatile", "ecc_dbe_volatile", "energy_mj"}

// ruleIDs are the metric ids of each rule's columns; resetIDs those of resetColumns; winOf is
// a Rate or Share rule's position among them (its window), -1 for the others.
var (
	ruleIDs  [][]gpumetric.ID
	belowIDs [][2]gpumetric.ID // a Share rule's WhileBelow columns (0 when none)
	resetIDs [len(resetColumns)]gpumetric.ID
	winOf    []int
	windows  int
)

func init() {
	id := func(col string) gpumetric.ID {
		i := gpumetric.IndexOfColumn(col)
		if i < 0 {
			panic("health: rule reads " + col + ", which is no gpumetric column")
		}
		return gpumetric.All()[i].ID
	}
	for _, r := range Rules {
		var ids []gpumetric.ID
		if r.Kind != Fleet {
			for _, c := range r.Columns {
				ids = append(ids, id(c))
			}
		}
		ruleIDs = append(ruleIDs, ids)
		var below [2]gpumetric.ID
		if len(r.WhileBelow) == 2 {
			below = [2]gpumetric.ID{id(r.WhileBelow[0]), id(r.WhileBelow[1])}
		}
		belowIDs = append(belowIDs, below)
		w := -1
		if r.Kind == Rate || r.Kind == Share {
			w, windows = windows, windows+1
		}
		winOf = append(winOf, w)
	}
	for i, c := range resetColumns {
		resetIDs[i] = id(c)
	}
}

// NewEvaluator returns an evaluator with no GPU seen yet.
func NewEvaluator(cfg Config) *Evaluator {
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.XIDHold <= 0 {
		cfg.XIDHold = DefaultXIDHold
	}
	if cfg.MaxGPUs <= 0 {
		cfg.MaxGPUs = DefaultMaxGPUs
	}
	return &Evaluator{cfg: cfg, gpus: map[string]*gpuState{}}
}

// Dropped counts GPUs left unevaluated because MaxGPUs were already known.
func (e *Evaluator) Dropped() uint64 { return e.dropped }

// Observe evaluates the rows of b from first on (one reading per GPU per instant; MIG instances
// are left out, their GPU's row speaks for them) and the Xid and fell-off-bus events among
// events, and returns every GPU's change of state, plus the first evaluation of each GPU.
func (e *Evaluator) Observe(b *wirepb.SampleBatch, first int, events []*wirepb.Event) []Transition {
	clear(e.cols[:])
	for _, c := range b.Metrics {
		if int(c.Metric) < len(e.cols) {
			e.cols[c.Metric] = c
		}
	}
	e.touched = e.touched[:0]
	for i := max(first, 0); i < len(b.TimeUnixMs) && i < len(b.Gpu); i++ {
		pos := int(b.Gpu[i])
		if pos >= len(b.Gpus) || b.Gpus[pos].ParentUuid != "" {
			continue
		}
		g := b.Gpus[pos]
		if gs := e.gpu(g.Uuid, g.Index); gs != nil {
			e.reading(gs, g.JobId, i, b.TimeUnixMs[i])
		}
	}
	for _, ev := range events {
		if ev.Kind != wirepb.EventKind_EVENT_KIND_XID && ev.Kind != wirepb.EventKind_EVENT_KIND_FELL_OFF_BUS ||
			ev.GpuUuid == "" && ev.GpuIndex == wire.NoGPU {
			continue
		}
		if gs := e.gpu(ev.GpuUuid, ev.GpuIndex); gs != nil {
			e.event(gs, ev)
		}
	}
	var out []Transition
	for _, gs := range e.touched {
		gs.marked = false
		st, top := gs.current()
		if gs.seen && st == gs.state {
			gs.notes = gs.notes[:0]
			continue
		}
		t := Transition{TimeUnixMs: gs.lastMs, GPUIndex: gs.index, UUID: gs.uuid, From: gs.state, To: st, First: !gs.seen}
		var reason string
		if top != nil {
			t.Rule, reason = Rules[top.rule].Name, top.reason
		}
		switch {
		case !gs.seen && st == Healthy:
			t.Message = "healthy (first evaluation since the agent started)"
		case !gs.seen || st > gs.state:
			t.Message = reason
		default:
			t.Message = "cleared: " + strings.Join(gs.notes, "; ")
			if st != Healthy {
				t.Message += "; still " + st.String() + ": " + reason
			}
		}
		t.Message = truncate(t.Message, MaxMessage)
		out = append(out, t)
		gs.seen, gs.state = true, st
		gs.notes = gs.notes[:0]
	}
	return out
}

// gpu returns the state of the GPU with uuid (or, without one, its index: a GPU lost before it
// could be opened has none), creating it within MaxGPUs; nil when over the bound.
func (e *Evaluator) gpu(uuid string, index uint32) *gpuState {
	key := uuid
	if key == "" {
		key = fmt.Sprintf("#%d", index)
	}
	gs := e.gpus[key]
	if gs == nil {
		if len(e.gpus) >= e.cfg.MaxGPUs {
			e.dropped++
			return nil
		}
		gs = &gpuState{key: key, index: index, uuid: uuid, wins: make([]window, windows)}
		e.gpus[key] = gs
		e.order = append(e.order, gs)
	}
	if !gs.marked {
		gs.marked = true
		e.touched = append(e.touched, gs)
	}
	return gs
}

// value is row i of metric id: as an integer for counters, a float for gauges.
func (e *Evaluator) value(id gpumetric.ID, i int) (u uint64, f float64, ok bool) {
	c := e.cols[id]
	if c == nil || !wire.Present(c, i) {
		return 0, 0, false
	}
	switch {
	case i < len(c.Counts):
		return c.Counts[i], float64(c.Counts[i]), true
	case i < len(c.Values):
		return uint64(max(c.Values[i], 0)), c.Values[i], true
	}
	return 0, 0, false
}

// cond is rule r's condition on the GPU, nil when not active.
func (gs *gpuState) cond(r int) *cond {
	for i := range gs.conds {
		if gs.conds[i].rule == r {
			return &gs.conds[i]
		}
	}
	return nil
}

func (gs *gpuState) set(r int, ms int64, reason string) *cond {
	c := gs.cond(r)
	if c == nil {
		gs.conds = append(gs.conds, cond{rule: r, sinceMs: ms})
		c = &gs.conds[len(gs.conds)-1]
	}
	c.lastMs, c.reason = ms, reason
	return c
}

func (gs *gpuState) clear(r int, why string) {
	for i := range gs.conds {
		if gs.conds[i].rule == r {
			gs.conds = slices.Delete(gs.conds, i, i+1)
			gs.notes = append(gs.notes, why)
			return
		}
	}
}

// reading applies row i (the GPU's reading at ms, job its job) to the GPU's conditions.
func (e *Evaluator) reading(gs *gpuState, job string, i int, ms int64) {
	gs.lastMs = max(gs.lastMs, ms)
	reset := false
	for k, id := range resetIDs {
		u, _, ok := e.value(id, i)
		if !ok {
			continue
		}
		if gs.prevOK[k] && u < gs.prev[k] {
			reset = true
		}
		gs.prev[k], gs.prevOK[k] = u, true
	}
	gs.job = job
	win := e.cfg.Window.Milliseconds()
	for ri, r := range Rules {
		ids := ruleIDs[ri]
		switch r.Kind {
		case XIDBucket, XIDUnknown:
			c := gs.cond(ri)
			if c == nil {
				continue
			}
			switch {
			case reset && r.Clears != clearsRestart:
				gs.clear(ri, fmt.Sprintf("xid %d: volatile counters went back (GPU reset or driver reload)", c.code))
			case r.Clears == clearsXIDHold && c.job != job && (c.job != "" || job != ""):
				gs.clear(ri, fmt.Sprintf("xid %d: job on the GPU changed (%q → %q)", c.code, c.job, job))
			case r.Clears == clearsXIDHold && ms-c.lastMs >= e.cfg.XIDHold.Milliseconds():
				gs.clear(ri, fmt.Sprintf("xid %d not seen again for %s", c.code, e.cfg.XIDHold))
			}
		case Flag:
			_, f, ok := e.value(ids[0], i)
			switch {
			case !ok:
			case f >= 0.5:
				gs.set(ri, ms, fmt.Sprintf("%s=1 (%s)", r.Columns[0], r.Reason))
			case gs.cond(ri) != nil:
				gs.clear(ri, r.Columns[0]+" back to 0")
			}
		case NonZero:
			u, _, ok := e.value(ids[0], i)
			switch {
			case !ok:
			case u > 0:
				gs.set(ri, ms, fmt.Sprintf("%s=%d (%s)", r.Columns[0], u, r.Reason))
			case gs.cond(ri) != nil:
				gs.clear(ri, r.Columns[0]+" back to 0")
			}
		case Event:
			if gs.cond(ri) != nil {
				gs.clear(ri, "the GPU sends readings again")
			}
		case Rate, Share:
			var sum uint64
			var mask uint8
			for k, id := range ids {
				if u, _, ok := e.value(id, i); ok {
					sum += u
					mask |= 1 << k
				}
			}
			w := &gs.wins[winOf[ri]]
			if mask == 0 || !w.have || mask != w.mask || sum < w.base || ms < w.startMs {
				// No reading, a first one, a column appearing or vanishing, or a counter reset:
				// measure from here.
				*w = window{have: mask != 0, startMs: ms, base: sum, mask: mask}
				continue
			}
			el := ms - w.startMs
			if el < win || el <= 0 {
				continue
			}
			grew := sum - w.base
			*w = window{have: true, startMs: ms, base: sum, mask: mask}
			v := float64(grew) / (float64(el) / 60000) // per minute
			if r.Kind == Share {
				v = float64(grew) / (float64(el) * 1e6) // of the wall time
			}
			over := v > r.Threshold
			// Hysteresis: an active condition holds until a window at half the threshold or
			// under, so a GPU hovering at the threshold does not change state every window.
			under := v <= r.Threshold/2
			var gate string
			if b := belowIDs[ri]; over && b[0] != 0 {
				_, lo, okLo := e.value(b[0], i)
				_, hi, okHi := e.value(b[1], i)
				switch {
				case !okLo || !okHi:
					over, under, gate = false, true, fmt.Sprintf(", but %s or %s unknown", r.WhileBelow[0], r.WhileBelow[1])
				case lo >= hi:
					over, under, gate = false, true, fmt.Sprintf(", but %s %g is not below %s %g", r.WhileBelow[0], lo, r.WhileBelow[1], hi)
				default:
					gate = fmt.Sprintf(", %s %g < %s %g", r.WhileBelow[0], lo, r.WhileBelow[1], hi)
				}
			}
			if !over && gs.cond(ri) == nil {
				continue // the common case, without formatting a reason
			}
			span := time.Duration(el) * time.Millisecond
			what := fmt.Sprintf("%s grew %.0f/min over %s (threshold %g/min)", strings.Join(r.Columns, " + "), v, span, r.Threshold)
			if r.Kind == Share {
				what = fmt.Sprintf("%s grew %.0f %% of %s (threshold %g %%)", r.Columns[0], v*100, span, r.Threshold*100)
			}
			switch {
			case over:
				gs.set(ri, ms, what+gate+": "+r.Reason)
			case under:
				gs.clear(ri, what+gate)
			}
		}
	}
}

// event applies an Xid or fell-off-bus event to the GPU's conditions.
func (e *Evaluator) event(gs *gpuState, ev *wirepb.Event) {
	gs.lastMs = max(gs.lastMs, ev.TimeUnixMs)
	if ev.Kind == wirepb.EventKind_EVENT_KIND_FELL_OFF_BUS {
		for ri, r := range Rules {
			if r.Kind == Event && r.EventKind == "fell_off_bus" {
				gs.set(ri, ev.TimeUnixMs, "fell off the bus: "+cmp.Or(ev.Message, r.Reason))
			}
		}
		return
	}
	ri, ent, known := xidRule(ev.Code)
	if ri < 0 || Rules[ri].NoChange {
		return
	}
	c := gs.set(ri, ev.TimeUnixMs, XIDReason(ev.Code, ent, known))
	c.code, c.job = ev.Code, gs.job
}

// XIDReason is how a finding names an Xid: "xid 79 ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS:
// GPU has fallen off the bus → RESTART_BM", or "unknown Xid 999".
func XIDReason(code uint64, e xid.Entry, known bool) string {
	switch {
	case !known:
		return fmt.Sprintf("unknown Xid %d", code)
	case !e.Used():
		return fmt.Sprintf("unknown Xid %d (%s: unused in NVIDIA's catalog for A100 to GB200)", code, e.Mnemonic)
	case e.Immediate == xid.Unspecified:
		return fmt.Sprintf("xid %d %s: %s → no action in NVIDIA's catalog", code, e.Mnemonic, e.Description)
	}
	return fmt.Sprintf("xid %d %s: %s → %s", code, e.Mnemonic, e.Description, e.Immediate)
}

// current is the GPU's state and the condition behind it (of the most severe, the one first in
// table order; nil when healthy).
func (gs *gpuState) current() (State, *cond) {
	st := Healthy
	var top *cond
	for i := range gs.conds {
		c := &gs.conds[i]
		r := Rules[c.rule]
		if r.State > st || (top != nil && r.State == st && c.rule < top.rule) {
			st, top = r.State, c
		}
	}
	return st, top
}

// GPUs returns every GPU evaluated so far and its state, by index.
func (e *Evaluator) GPUs() []GPU {
	out := make([]GPU, 0, len(e.order))
	for _, gs := range e.order {
		st, _ := gs.current()
		out = append(out, GPU{Index: gs.index, UUID: gs.uuid, State: st})
	}
	slices.SortStableFunc(out, func(a, b GPU) int { return cmp.Compare(a.Index, b.Index) })
	return out
}

// Findings returns every active condition, by GPU index, most severe first within a GPU.
func (e *Evaluator) Findings() []Finding {
	var out []Finding
	for _, gs := range e.order {
		for _, c := range gs.conds {
			r := Rules[c.rule]
			out = append(out, Finding{GPUIndex: gs.index, UUID: gs.uuid, State: r.State, Rule: r.Name, Reason: c.reason, SinceMs: c.sinceMs})
		}
	}
	slices.SortStableFunc(out, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(a.GPUIndex, b.GPUIndex), cmp.Compare(b.State, a.State), cmp.Compare(ruleIndex(a.Rule), ruleIndex(b.Rule)))
	})
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n-len("…")]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}

func ruleIndex(name string) int {
	return slices.IndexFunc(Rules, func(r Rule) bool { return r.Name == name })
}
