package nvml

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// Options configures a Source. The zero value works.
type Options struct {
	// Cluster labels every batch; default "default".
	Cluster string
	// Node names this host in batches and is the Kafka key; default os.Hostname().
	Node string
	// Logger receives one line per (GPU, metric) that cannot be read and one per lost GPU;
	// default discards.
	Logger *slog.Logger
	// Registerer receives the source's self-metrics when set.
	Registerer prometheus.Registerer
}

// Source reads this node's GPUs through NVML; it implements agent.Source. It is not safe for
// concurrent use: the agent samples it from one goroutine.
type Source struct {
	cluster, node string
	driver, cuda  string
	log           *slog.Logger
	devs          []Device
	migs          []migInstance
	gpus          []*wirepb.GPU // devs' then migs', in batch order
	state         []gpuState    // by position in gpus
	lostAtStart   []lostGPU
	// lost counts GPUs lost since start, for the /metrics gauge: a scrape reads it from another
	// goroutine, and lostAtStart is emptied once its events are sent.
	lost atomic.Int64
	xid  XIDWatch

	// Kept across ticks so that a tick in steady state allocates nothing.
	rd []gpuReading // this tick's readings, one per row appended
	sc scratch

	errs *prometheus.CounterVec
	// errBy is errs' counter by metric id, looked up on a metric's first error: WithLabelValues
	// allocates on each call.
	errBy   [gpumetric.Count + 1]prometheus.Counter
	seconds prometheus.Histogram
}

// migInstance is a MIG instance sampled as a row of its own: its GPU (position in devs) and its
// position in gpus.
type migInstance struct {
	parent, pos int
	gi          uint32 // GPU instance id
	dev         Device
}

// maxMIGParents and maxMIGSlots keep a MIG instance's batch index, 128 + 8 × parent index + MIG
// device index, within gpu_samples.gpu (UInt8): A100 and H100 have at most 7 instances.
const maxMIGParents, maxMIGSlots = 16, 8

// gpuState is what the source remembers about one GPU between ticks.
type gpuState struct {
	lost        bool
	logged      [gpumetric.Count + 1]bool // by metric id: its failure was logged (once per GPU and metric)
	haveReasons bool
	reasons     uint64
	haveECC     bool
	sbe, dbe    uint64
	procsLogged bool // listing its processes failed, and that was logged
}

type lostGPU struct {
	index int
	err   error
}

// New enumerates the GPUs lib sees and reads their identities. A GPU that cannot be opened is
// logged and left out (a lost one also raises a fell-off-bus event on the first Sample), so one
// dead board does not blind the agent to the rest of the node.
func New(lib Lib, opts Options) (*Source, error) {
	s := &Source{cluster: opts.Cluster, node: opts.Node, log: opts.Logger}
	if s.cluster == "" {
		s.cluster = "default"
	}
	if s.node == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("nvml source: node name: %w (set the node explicitly)", err)
		}
		s.node = h
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	n, err := lib.DeviceCount()
	if err != nil {
		return nil, fmt.Errorf("nvml source: count GPUs: %w", err)
	}
	// Labels are best effort: a driver too old to answer one must not stop sampling.
	if s.driver, err = lib.DriverVersion(); err != nil {
		s.log.Warn("cannot read the driver version", slog.Any("err", err))
	}
	if s.cuda, err = lib.CUDADriverVersion(); err != nil {
		s.log.Warn("cannot read the CUDA driver version", slog.Any("err", err))
	}
	for i := 0; i < n; i++ {
		d, err := lib.Device(i)
		var uuid string
		if err == nil {
			uuid, err = d.UUID()
		}
		if err != nil {
			s.log.Error("cannot open GPU; it is left out", slog.Int("gpu", i), slog.Any("err", err))
			if errors.Is(err, ErrGPULost) {
				s.lostAtStart = append(s.lostAtStart, lostGPU{i, err})
				s.lost.Add(1)
			}
			continue
		}
		g := &wirepb.GPU{Index: uint32(i), Uuid: uuid}
		g.Model = s.label(i, "name", d.Name)
		g.Serial = s.label(i, "serial", d.Serial)
		g.PciBusId = s.label(i, "pci bus id", d.PCIBusID)
		s.devs = append(s.devs, d)
		s.gpus = append(s.gpus, g)
	}
	s.addMIGInstances()
	s.state = make([]gpuState, len(s.gpus))
	if len(s.devs) > 0 {
		if w, err := lib.WatchXID(s.devs); err != nil {
			s.log.Info("XID events unavailable; XIDs are not reported", slog.Any("err", err))
		} else {
			s.xid = w
		}
	}
	s.sc = newScratch()
	s.errs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gpufleet_nvml_errors_total",
		Help: "NVML readings that failed other than as not supported, by metric."}, []string{"metric"})
	s.seconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gpufleet_nvml_sample_seconds",
		Help: "Time to read every GPU once.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14)})
	if r := opts.Registerer; r != nil {
		if err := r.Register(s.errs); err != nil {
			return nil, fmt.Errorf("nvml source: register metrics: %w", err)
		}
		if err := r.Register(s.seconds); err != nil {
			return nil, fmt.Errorf("nvml source: register metrics: %w", err)
		}
		if err := r.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "gpufleet_nvml_gpus_lost",
			Help: "GPUs that fell off the bus since the agent started."}, s.lostCount)); err != nil {
			return nil, fmt.Errorf("nvml source: register metrics: %w", err)
		}
	}
	s.log.Info("NVML source ready", slog.Int("gpus", len(s.gpus)), slog.String("driver", s.driver), slog.String("cuda", s.cuda))
	return s, nil
}

func (s *Source) label(i int, what string, read func() (string, error)) string {
	v, err := read()
	if err != nil && !errors.Is(err, ErrNotSupported) {
		s.log.Warn("cannot read GPU "+what, slog.Int("gpu", i), slog.Any("err", err))
	}
	return v
}

func (s *Source) lostCount() float64 { return float64(s.lost.Load()) }

// addMIGInstances adds a row identity for every MIG instance of the GPUs in MIG mode. The layout is
// read once: repartitioning a GPU needs it idle, and the agent is restarted after it.
func (s *Source) addMIGInstances() {
	for g, d := range s.devs {
		if mode, err := d.MIGMode(); err != nil || mode != 1 {
			continue
		}
		parent := s.gpus[g]
		insts, err := d.MIGInstances()
		if err != nil {
			s.log.Warn("cannot list the GPU's MIG instances; they are not sampled", slog.Int("gpu", int(parent.Index)), slog.Any("err", err))
			continue
		}
		for _, in := range insts {
			if parent.Index >= maxMIGParents || in.Index >= maxMIGSlots {
				s.log.Warn("MIG instance beyond the indexes "+schema.GPUSamples+".gpu holds; not sampled",
					slog.Int("gpu", int(parent.Index)), slog.Int("mig", in.Index))
				continue
			}
			uuid, err := in.Device.UUID()
			if err != nil {
				s.log.Warn("cannot read a MIG instance's UUID; it is not sampled", slog.Int("gpu", int(parent.Index)),
					slog.Int("mig", in.Index), slog.Any("err", err))
				continue
			}
			name, _ := in.Device.Name()
			s.gpus = append(s.gpus, &wirepb.GPU{Index: 128 + maxMIGSlots*parent.Index + uint32(in.Index), Uuid: uuid,
				Model: cmp.Or(name, parent.Model), Serial: parent.Serial, PciBusId: parent.PciBusId, ParentUuid: parent.Uuid})
			s.migs = append(s.migs, migInstance{parent: g, pos: len(s.gpus) - 1, gi: in.GPUInstance, dev: in.Device})
		}
	}
	if len(s.migs) > 0 {
		s.log.Info("MIG instances sampled as rows of their own", slog.Int("instances", len(s.migs)))
	}
}

// Processes returns the PIDs running on each GPU now, by UUID: what attribution.ProcCgroups reads
// the Slurm jobs of. A process in a MIG instance is listed under the instance's UUID as well as
// the GPU's, so the instance's row is attributed too. A lost GPU is left out, and so is one that
// cannot list its processes (logged once). Call it from the goroutine that calls Sample, as the
// agent's loop does.
func (s *Source) Processes(ctx context.Context) (map[string][]uint32, error) {
	out := make(map[string][]uint32, len(s.gpus))
	for i, d := range s.devs {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("nvml source: processes: %w", err)
		}
		st := &s.state[i]
		if st.lost {
			continue
		}
		procs, err := d.Processes()
		if err != nil {
			if !st.procsLogged {
				st.procsLogged = true
				s.log.Warn("cannot list the GPU's processes; its jobs are not attributed from cgroups",
					slog.Int("gpu", int(s.gpus[i].Index)), slog.Any("err", err))
			}
			continue
		}
		for _, p := range procs {
			out[s.gpus[i].Uuid] = append(out[s.gpus[i].Uuid], p.PID)
			if p.GPUInstance == NoGPUInstance {
				continue
			}
			for _, m := range s.migs {
				if m.parent == i && m.gi == p.GPUInstance {
					out[s.gpus[m.pos].Uuid] = append(out[s.gpus[m.pos].Uuid], p.PID)
				}
			}
		}
	}
	return out, nil
}

// GPUs returns the identities of the GPUs the source reads, in batch order.
func (s *Source) GPUs() []*wirepb.GPU { return s.gpus }

// Identity implements agent.Source.
func (s *Source) Identity() (cluster, node string) { return s.cluster, s.node }

// Close releases the XID subscription. NVML itself is shut down by whoever opened it.
func (s *Source) Close() error {
	var errs []error
	if s.xid != nil {
		errs = append(errs, s.xid.Close())
		s.xid = nil
	}
	for _, d := range s.devs {
		errs = append(errs, d.Release())
	}
	for _, m := range s.migs {
		errs = append(errs, m.dev.Release())
	}
	return errors.Join(errs...)
}

// maxXIDs bounds the events drained per tick, so a GPU storming XIDs cannot stall sampling.
const maxXIDs = 256

// Sample implements agent.Source: it appends one reading of every GPU at t to b, as agent/sim
// does (b.Gpus, then per row b.TimeUnixMs and b.Gpu, one column per gpumetric.All() metric with a
// presence bitmap), and the events the reading raised to ev.
//
// A GPU that answers ERROR_GPU_IS_LOST raises one EVENT_KIND_FELL_OFF_BUS and its rows are dropped
// from then on (it keeps its place in b.Gpus so row references stay stable): a fleet view then
// sees it stop reporting, which is the truth, rather than rows of NULLs that look alive. NVML is
// not asked about it again; the board needs a reset or a reboot, after which the agent restarts.
func (s *Source) Sample(t time.Time, b *wirepb.SampleBatch, ev []*wirepb.Event) []*wirepb.Event {
	start := time.Now()
	if len(b.Gpus) == 0 {
		b.Gpus = s.gpus
	}
	if b.DriverVersion == "" {
		b.DriverVersion = s.driver
	}
	if b.CudaVersion == "" {
		b.CudaVersion = s.cuda
	}
	if len(b.Metrics) == 0 {
		for _, m := range gpumetric.All() {
			b.Metrics = append(b.Metrics, &wirepb.MetricColumn{Metric: uint32(m.ID)})
		}
	}
	ms := t.UnixMilli()
	for _, l := range s.lostAtStart {
		ev = append(ev, &wirepb.Event{TimeUnixMs: ms, GpuIndex: uint32(l.index), Kind: wirepb.EventKind_EVENT_KIND_FELL_OFF_BUS,
			Code: lostCode(l.err), Message: fmt.Sprintf("GPU %d fell off the bus before the agent started (%v)", l.index, l.err)})
	}
	s.lostAtStart = s.lostAtStart[:0:0]

	oldRows := len(b.TimeUnixMs)
	s.rd = s.rd[:0]
	for g, d := range s.devs {
		st := &s.state[g]
		if st.lost {
			continue
		}
		s.rd = append(s.rd, gpuReading{})
		r := &s.rd[len(s.rd)-1]
		r.read(d, s.sc)
		if err := r.lostErr(); err != nil {
			st.lost = true
			s.lost.Add(1)
			s.rd = s.rd[:len(s.rd)-1]
			s.log.Error("GPU fell off the bus; it is no longer sampled", slog.Int("gpu", int(s.gpus[g].Index)),
				slog.String("uuid", s.gpus[g].Uuid), slog.Any("err", err))
			ev = append(ev, &wirepb.Event{TimeUnixMs: ms, GpuIndex: s.gpus[g].Index, GpuUuid: s.gpus[g].Uuid,
				Kind: wirepb.EventKind_EVENT_KIND_FELL_OFF_BUS, Code: lostCode(err),
				Message: fmt.Sprintf("GPU fell off the bus (%v); no longer sampled", err)})
			continue
		}
		s.noteErrors(g, r)
		ev = s.events(ms, g, r, ev)
		b.TimeUnixMs = append(b.TimeUnixMs, ms)
		b.Gpu = append(b.Gpu, uint32(g))
	}
	for _, m := range s.migs {
		if s.state[m.parent].lost {
			continue
		}
		s.rd = append(s.rd, gpuReading{})
		r := &s.rd[len(s.rd)-1]
		r.readMIG(m.dev, s.sc)
		s.noteErrors(m.pos, r)
		b.TimeUnixMs = append(b.TimeUnixMs, ms)
		b.Gpu = append(b.Gpu, uint32(m.pos))
	}
	ev = s.pollXID(ms, ev)
	s.fill(b, oldRows)
	s.seconds.Observe(time.Since(start).Seconds())
	return ev
}

// lostCode is the event's code for a lost GPU: NVML's return code (ERROR_GPU_IS_LOST = 15).
func lostCode(err error) uint64 {
	var e *Error
	if errors.As(err, &e) && e.Code > 0 {
		return uint64(e.Code)
	}
	return 0
}

// fill appends this tick's readings (s.rd, rows oldRows… of b) to every metric column.
func (s *Source) fill(b *wirepb.SampleBatch, oldRows int) {
	rows := len(b.TimeUnixMs)
	for _, c := range b.Metrics {
		// A metric this build does not know has no reading: absent on every row.
		id := gpumetric.ID(c.Metric)
		m, known := gpumetric.Lookup(id)
		integer := known && m.Kind.Integer()
		for i := range s.rd {
			ok := known && s.rd[i].ok[id]
			var u uint64
			var f float64
			if ok {
				u, f = s.rd[i].u[id], s.rd[i].f[id]
			}
			if integer {
				c.Counts = append(c.Counts, u)
			} else {
				c.Values = append(c.Values, f)
			}
			if !ok {
				c.Present = markAbsent(c.Present, rows, oldRows+i)
			}
		}
		if len(c.Present) > 0 {
			c.Present = growPresent(c.Present, rows)
		}
	}
}

// markAbsent clears row i's bit in bm, a presence bitmap in wire.SetPresent's encoding (empty while
// every row is present; bits past the last row set), growing it to hold rows rows. It appends to
// bm's own room, so the column of a batch the agent reuses needs no new bitmap each tick.
func markAbsent(bm []byte, rows, i int) []byte {
	bm = growPresent(bm, rows)
	bm[i>>3] &^= 1 << (i & 7)
	return bm
}

// growPresent extends bm to rows rows, all present.
func growPresent(bm []byte, rows int) []byte {
	for n := (rows + 7) / 8; len(bm) < n; {
		bm = append(bm, 0xff)
	}
	return bm
}

// noteErrors logs each failed reading once per GPU and metric and counts the real errors.
func (s *Source) noteErrors(g int, r *gpuReading) {
	st := &s.state[g]
	all := gpumetric.All()
	for i := range all {
		m := &all[i]
		err := r.err[m.ID]
		if err == nil || errors.Is(err, errNoInterval) {
			continue
		}
		unsupported := errors.Is(err, ErrNotSupported)
		if !unsupported {
			if s.errBy[m.ID] == nil {
				s.errBy[m.ID] = s.errs.WithLabelValues(m.Column)
			}
			s.errBy[m.ID].Inc()
		}
		if st.logged[m.ID] {
			continue
		}
		st.logged[m.ID] = true
		msg, lvl := "GPU metric unavailable; reported as absent", slog.LevelWarn
		if unsupported {
			msg, lvl = "GPU does not support metric; reported as absent", slog.LevelInfo
		}
		s.log.LogAttrs(context.Background(), lvl, msg, slog.Int("gpu", int(s.gpus[g].Index)),
			slog.String("metric", m.Column), slog.Any("err", err))
	}
}

// NVML clock-event reason bits that mean power or thermal throttling (nvml.h
// nvmlClocksEventReason*): a change in them raises EVENT_KIND_THROTTLE. Idle, application clocks
// and sync boost come and go with load and are not worth an event.
const (
	reasonSwPowerCap    = 0x04
	reasonHwSlowdown    = 0x08
	reasonSwThermal     = 0x20
	reasonHwThermal     = 0x40
	reasonHwPowerBrake  = 0x80
	throttleReasonsMask = reasonSwPowerCap | reasonHwSlowdown | reasonSwThermal | reasonHwThermal | reasonHwPowerBrake
)

// events compares this tick's throttle bits and volatile ECC totals with the last tick's.
func (s *Source) events(ms int64, g int, r *gpuReading, ev []*wirepb.Event) []*wirepb.Event {
	st := &s.state[g]
	gpu := s.gpus[g]
	if r.ok[gpumetric.ThrottleReasons] {
		now := r.u[gpumetric.ThrottleReasons] & throttleReasonsMask
		// The first reading raises an event only when the GPU is already throttled: that is news.
		if (st.haveReasons && now != st.reasons&throttleReasonsMask) || (!st.haveReasons && now != 0) {
			ev = append(ev, &wirepb.Event{TimeUnixMs: ms, GpuIndex: gpu.Index, GpuUuid: gpu.Uuid,
				Kind: wirepb.EventKind_EVENT_KIND_THROTTLE, Code: r.u[gpumetric.ThrottleReasons], Message: throttleMessage(now)})
		}
		st.haveReasons, st.reasons = true, r.u[gpumetric.ThrottleReasons]
	}
	if r.ok[gpumetric.ECCSingleVolatile] && r.ok[gpumetric.ECCDoubleVolatile] {
		sbe, dbe := r.u[gpumetric.ECCSingleVolatile], r.u[gpumetric.ECCDoubleVolatile]
		// A total that went down is a driver reload resetting volatile counters: a new baseline.
		if st.haveECC && sbe > st.sbe {
			ev = append(ev, &wirepb.Event{TimeUnixMs: ms, GpuIndex: gpu.Index, GpuUuid: gpu.Uuid,
				Kind: wirepb.EventKind_EVENT_KIND_ECC_SINGLE_BIT, Code: sbe - st.sbe,
				Message: fmt.Sprintf("%d new corrected ECC errors (volatile total %d)", sbe-st.sbe, sbe)})
		}
		if st.haveECC && dbe > st.dbe {
			ev = append(ev, &wirepb.Event{TimeUnixMs: ms, GpuIndex: gpu.Index, GpuUuid: gpu.Uuid,
				Kind: wirepb.EventKind_EVENT_KIND_ECC_DOUBLE_BIT, Code: dbe - st.dbe,
				Message: fmt.Sprintf("%d new uncorrected ECC errors (volatile total %d)", dbe-st.dbe, dbe)})
		}
		st.haveECC, st.sbe, st.dbe = true, sbe, dbe
	}
	return ev
}

func throttleMessage(bits uint64) string {
	if bits == 0 {
		return "clock-event reasons changed: no power or thermal throttling"
	}
	var names []string
	for _, r := range gpumetric.ClockEventReasons { // the catalogue's names, as queries use them
		if bits&r.Bit != 0 {
			names = append(names, r.Name)
		}
	}
	return "clock-event reasons changed: " + strings.Join(names, ", ")
}

// pollXID drains the XID events NVML queued since the last tick.
func (s *Source) pollXID(ms int64, ev []*wirepb.Event) []*wirepb.Event {
	if s.xid == nil {
		return ev
	}
	xs, err := s.xid.Poll(maxXIDs)
	if err != nil {
		// A lost GPU can fail the wait too; the fell-off-bus event already says so.
		s.log.Warn("cannot read XID events", slog.Any("err", err))
		s.errs.WithLabelValues("xid").Inc()
	}
	for _, x := range xs {
		e := &wirepb.Event{TimeUnixMs: xidTime(ms, x.Time), Kind: wirepb.EventKind_EVENT_KIND_XID, Code: x.Code,
			Message: fmt.Sprintf("Xid %d", x.Code)}
		if x.Dev >= 0 && x.Dev < len(s.gpus) {
			e.GpuIndex, e.GpuUuid = s.gpus[x.Dev].Index, s.gpus[x.Dev].Uuid
		} else {
			// Stored for the node, judged against no GPU: index 0 would blame GPU 0.
			e.GpuIndex = wire.NoGPU
			e.Message += " (NVML named no GPU of this node)"
		}
		ev = append(ev, e)
	}
	return ev
}

// xidSkew bounds how far NVML's date of an XID may lie from the tick that polled it. Events wait
// at most an interval in the queue; a date beyond that is a clock NVML counts from something else
// than the Unix epoch, and the tick's time is the better answer.
const xidSkew = time.Hour

// xidTime is the event's time in Unix ms: when NVML delivered it, or the tick's time (ms) when
// NVML gave no date or an implausible one.
func xidTime(ms int64, at time.Time) int64 {
	if at.IsZero() {
		return ms
	}
	t := at.UnixMilli()
	if d := time.Duration(ms-t) * time.Millisecond; d > xidSkew || d < -xidSkew {
		return ms
	}
	return t
}
