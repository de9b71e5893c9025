package nvml

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// CallStats records how long each NVML question took, by operation name. It is what a probe of a
// real GPU reports: the mocks answer from memory, so only a real driver shows what a tick costs.
type CallStats struct {
	mu  sync.Mutex
	ops map[string]*opStat
}

type opStat struct {
	took []time.Duration
	errs int
}

func (c *CallStats) record(op string, start time.Time, err error) {
	d := time.Since(start)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ops == nil {
		c.ops = map[string]*opStat{}
	}
	s := c.ops[op]
	if s == nil {
		s = &opStat{}
		c.ops[op] = s
	}
	s.took = append(s.took, d)
	if err != nil {
		s.errs++
	}
}

// CallSummary is one operation's latency over a probe.
type CallSummary struct {
	Op            string        `json:"op"`
	Calls         int           `json:"calls"`
	Errors        int           `json:"errors"`
	P50, P99, Max time.Duration `json:"-"`
	P50us         float64       `json:"p50_us"`
	P99us         float64       `json:"p99_us"`
	MaxUs         float64       `json:"max_us"`
}

// Summary returns every operation's latency, slowest p99 first.
func (c *CallStats) Summary() []CallSummary {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []CallSummary
	for op, s := range c.ops {
		d := slices.Clone(s.took)
		slices.Sort(d)
		at := func(q float64) time.Duration { return d[int(q*float64(len(d)-1))] }
		cs := CallSummary{Op: op, Calls: len(d), Errors: s.errs, P50: at(0.5), P99: at(0.99), Max: d[len(d)-1]}
		cs.P50us, cs.P99us, cs.MaxUs = us(cs.P50), us(cs.P99), us(cs.Max)
		out = append(out, cs)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].P99 != out[j].P99 {
			return out[i].P99 > out[j].P99
		}
		return out[i].Op < out[j].Op
	})
	return out
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// Timed wraps lib so that every call it and its devices answer is recorded in stats.
func Timed(lib Lib, stats *CallStats) Lib { return timedLib{lib, stats} }

type timedLib struct {
	l Lib
	s *CallStats
}

func (t timedLib) DeviceCount() (int, error) {
	defer t.s.record("DeviceCount", time.Now(), nil)
	return t.l.DeviceCount()
}

func (t timedLib) Device(i int) (Device, error) {
	start := time.Now()
	d, err := t.l.Device(i)
	t.s.record("Device", start, err)
	if err != nil {
		return nil, err
	}
	return timedDevice{d, t.s}, nil
}

func (t timedLib) DriverVersion() (string, error) {
	start := time.Now()
	v, err := t.l.DriverVersion()
	t.s.record("DriverVersion", start, err)
	return v, err
}

func (t timedLib) CUDADriverVersion() (string, error) {
	start := time.Now()
	v, err := t.l.CUDADriverVersion()
	t.s.record("CUDADriverVersion", start, err)
	return v, err
}

// WatchXID hands the wrapped library its own devices: the adapter's event registration needs them.
func (t timedLib) WatchXID(devs []Device) (XIDWatch, error) {
	inner := make([]Device, len(devs))
	for i, d := range devs {
		if td, ok := d.(timedDevice); ok {
			d = td.d
		}
		inner[i] = d
	}
	start := time.Now()
	w, err := t.l.WatchXID(inner)
	t.s.record("WatchXID", start, err)
	return w, err
}

type timedDevice struct {
	d Device
	s *CallStats
}

// timeStr, timeU32 and the like record one call of a device method by its name.
func timeStr(s *CallStats, op string, f func() (string, error)) (string, error) {
	start := time.Now()
	v, err := f()
	s.record(op, start, err)
	return v, err
}

func timeU32(s *CallStats, op string, f func() (uint32, error)) (uint32, error) {
	start := time.Now()
	v, err := f()
	s.record(op, start, err)
	return v, err
}

func (t timedDevice) UUID() (string, error)     { return timeStr(t.s, "UUID", t.d.UUID) }
func (t timedDevice) Name() (string, error)     { return timeStr(t.s, "Name", t.d.Name) }
func (t timedDevice) Serial() (string, error)   { return timeStr(t.s, "Serial", t.d.Serial) }
func (t timedDevice) PCIBusID() (string, error) { return timeStr(t.s, "PCIBusID", t.d.PCIBusID) }
func (t timedDevice) Power() (uint32, error)    { return timeU32(t.s, "Power", t.d.Power) }
func (t timedDevice) Temperature() (uint32, error) {
	return timeU32(t.s, "Temperature", t.d.Temperature)
}
func (t timedDevice) SMClock() (uint32, error)  { return timeU32(t.s, "SMClock", t.d.SMClock) }
func (t timedDevice) MemClock() (uint32, error) { return timeU32(t.s, "MemClock", t.d.MemClock) }
func (t timedDevice) PCIeTx() (uint32, error)   { return timeU32(t.s, "PCIeTx", t.d.PCIeTx) }
func (t timedDevice) PCIeRx() (uint32, error)   { return timeU32(t.s, "PCIeRx", t.d.PCIeRx) }
func (t timedDevice) FanSpeed() (uint32, error) { return timeU32(t.s, "FanSpeed", t.d.FanSpeed) }
func (t timedDevice) MIGMode() (uint32, error)  { return timeU32(t.s, "MIGMode", t.d.MIGMode) }
func (t timedDevice) PerformanceState() (uint32, error) {
	return timeU32(t.s, "PerformanceState", t.d.PerformanceState)
}
func (t timedDevice) EncoderUtilization() (uint32, error) {
	return timeU32(t.s, "EncoderUtilization", t.d.EncoderUtilization)
}
func (t timedDevice) DecoderUtilization() (uint32, error) {
	return timeU32(t.s, "DecoderUtilization", t.d.DecoderUtilization)
}

func (t timedDevice) Utilization() (uint32, uint32, error) {
	start := time.Now()
	g, m, err := t.d.Utilization()
	t.s.record("Utilization", start, err)
	return g, m, err
}

func (t timedDevice) Memory() (uint64, uint64, uint64, error) {
	start := time.Now()
	total, free, used, err := t.d.Memory()
	t.s.record("Memory", start, err)
	return total, free, used, err
}

func (t timedDevice) ClockEventReasons() (uint64, error) {
	start := time.Now()
	v, err := t.d.ClockEventReasons()
	t.s.record("ClockEventReasons", start, err)
	return v, err
}

func (t timedDevice) RemappedRows() (bool, bool, error) {
	start := time.Now()
	pending, failure, err := t.d.RemappedRows()
	t.s.record("RemappedRows", start, err)
	return pending, failure, err
}

func (t timedDevice) Violation(p PerfPolicy) (uint64, error) {
	start := time.Now()
	v, err := t.d.Violation(p)
	t.s.record("Violation("+p.String()+")", start, err)
	return v, err
}

func (t timedDevice) EnforcedPowerLimit() (uint32, error) {
	start := time.Now()
	v, err := t.d.EnforcedPowerLimit()
	t.s.record("EnforcedPowerLimit", start, err)
	return v, err
}

func (t timedDevice) PowerLimitConstraints() (uint32, uint32, error) {
	start := time.Now()
	lo, hi, err := t.d.PowerLimitConstraints()
	t.s.record("PowerLimitConstraints", start, err)
	return lo, hi, err
}

func (t timedDevice) FieldValues(fields []Field, out []FieldValue) error {
	start := time.Now()
	err := t.d.FieldValues(fields, out)
	t.s.record(fmt.Sprintf("FieldValues(%d fields)", len(fields)), start, err)
	return err
}

func (t timedDevice) GPM(ids []uint32, out []FieldValue) error {
	start := time.Now()
	err := t.d.GPM(ids, out)
	t.s.record("GPM", start, err)
	return err
}

func (t timedDevice) Processes() ([]Process, error) {
	start := time.Now()
	p, err := t.d.Processes()
	t.s.record("Processes", start, err)
	return p, err
}

func (t timedDevice) MIGInstances() ([]MIGInstance, error) {
	start := time.Now()
	in, err := t.d.MIGInstances()
	t.s.record("MIGInstances", start, err)
	for i := range in {
		in[i].Device = timedDevice{in[i].Device, t.s}
	}
	return in, err
}

func (t timedDevice) Release() error { return t.d.Release() }

// ProbeReport is what a probe of this node's GPUs found: identities, which registry metrics each
// GPU answered, what each NVML call cost, and what a whole tick cost.
type ProbeReport struct {
	Driver  string          `json:"driver"`
	CUDA    string          `json:"cuda"`
	GPUs    []*wirepb.GPU   `json:"gpus"`
	Ticks   int             `json:"ticks"`
	Tick    CallSummary     `json:"tick"`
	Metrics []MetricPresent `json:"metrics"`
	Calls   []CallSummary   `json:"calls"`
}

// MetricPresent is how many GPU rows had a registry metric, out of how many rows were read.
type MetricPresent struct {
	Column  string `json:"column"`
	Present int    `json:"present"`
	Rows    int    `json:"rows"`
}

// Probe samples lib's GPUs every interval for dur through the source the agent uses, timing every
// NVML call, and reports what it found. Nothing is sent anywhere.
func Probe(ctx context.Context, lib Lib, interval, dur time.Duration, log *slog.Logger) (*ProbeReport, error) {
	stats := &CallStats{}
	s, err := New(Timed(lib, stats), Options{Cluster: "probe", Node: "probe", Logger: log})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	rep := &ProbeReport{Driver: s.driver, CUDA: s.cuda, GPUs: s.GPUs()}
	present := make([]int, len(gpumetric.All()))
	rows := 0
	ticks := &CallStats{}
	var dec wire.SampleDecoder
	tk := time.NewTicker(interval)
	defer tk.Stop()
	end := time.Now().Add(dur)
loop:
	for {
		b := &wirepb.SampleBatch{AgentId: "probe", Seq: 1, Cluster: "probe", Node: "probe"}
		start := time.Now()
		s.Sample(start, b, nil)
		ticks.record("tick", start, nil)
		rep.Ticks++
		data, err := wire.EncodeSamples(b)
		if err != nil {
			return nil, fmt.Errorf("nvml probe: encode: %w", err)
		}
		// Read back as ingest reads it: present is what would land in ClickHouse, not NULL.
		got, err := dec.Decode(data)
		if err != nil {
			return nil, fmt.Errorf("nvml probe: decode: %w", err)
		}
		rows += len(got.TimeUnixMs)
		for j := range got.Metrics {
			m := &got.Metrics[j]
			if i := gpumetric.Index(gpumetric.ID(m.ID)); i >= 0 {
				for r := range got.TimeUnixMs {
					if m.Has(r) {
						present[i]++
					}
				}
			}
		}
		if !time.Now().Before(end) {
			break
		}
		select {
		case <-ctx.Done():
			break loop
		case <-tk.C:
		}
	}
	for i, m := range gpumetric.All() {
		rep.Metrics = append(rep.Metrics, MetricPresent{Column: m.Column, Present: present[i], Rows: rows})
	}
	rep.Tick = ticks.Summary()[0]
	rep.Calls = stats.Summary()
	return rep, nil
}

// WriteText writes the report as the tables `gpufleet nvml-probe` prints.
func (r *ProbeReport) WriteText(w io.Writer) error {
	var err error
	p := func(format string, a ...any) {
		if err == nil {
			_, err = fmt.Fprintf(w, format, a...)
		}
	}
	p("driver %s, CUDA %s, %d GPU rows, %d ticks\n", r.Driver, r.CUDA, len(r.GPUs), r.Ticks)
	for _, g := range r.GPUs {
		p("  gpu %-3d %s  %s  serial %s  pci %s", g.Index, g.Uuid, g.Model, g.Serial, g.PciBusId)
		if g.ParentUuid != "" {
			p("  (MIG instance of %s)", g.ParentUuid)
		}
		p("\n")
	}
	p("\nwhole tick (every GPU read once): p50 %.0f µs, p99 %.0f µs, max %.0f µs\n", r.Tick.P50us, r.Tick.P99us, r.Tick.MaxUs)
	p("\n%-28s %8s %7s %10s %10s %10s\n", "NVML call", "calls", "errors", "p50 µs", "p99 µs", "max µs")
	for _, c := range r.Calls {
		p("%-28s %8d %7d %10.1f %10.1f %10.1f\n", c.Op, c.Calls, c.Errors, c.P50us, c.P99us, c.MaxUs)
	}
	p("\n%-24s %s\n", "metric", "rows with a reading")
	for _, m := range r.Metrics {
		p("%-24s %d/%d\n", m.Column, m.Present, m.Rows)
	}
	return err
}
