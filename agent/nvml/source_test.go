//go:build cgo

package nvml

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh200"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpufleet/gpufleet/agent"
	"github.com/gpufleet/gpufleet/agent/attribution"
	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

var _ agent.Source = (*Source)(nil)

var t0 = time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)

func newSource(t testing.TB, n *node, log *slog.Logger) *Source {
	t.Helper()
	s, err := New(FromNVML(n.srv), Options{Cluster: "c1", Node: "host-1", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// tick samples s once into a fresh batch, as the agent does each interval, and checks that the
// batch encodes and decodes.
func tick(t testing.TB, s *Source, at time.Time) (*wirepb.SampleBatch, []*wirepb.Event, *wire.Samples) {
	t.Helper()
	cluster, node := s.Identity()
	b := &wirepb.SampleBatch{AgentId: node, Seq: 1, Cluster: cluster, Node: node}
	ev := s.Sample(at, b, nil)
	return b, ev, roundTrip(t, b)
}

func roundTrip(t testing.TB, b *wirepb.SampleBatch) *wire.Samples {
	t.Helper()
	data, err := wire.EncodeSamples(b)
	if err != nil {
		t.Fatal(err)
	}
	var d wire.SampleDecoder
	got, err := d.Decode(data)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return got
}

func column(t testing.TB, s *wire.Samples, id gpumetric.ID) *wire.Metric {
	t.Helper()
	for i := range s.Metrics {
		if gpumetric.ID(s.Metrics[i].ID) == id {
			return &s.Metrics[i]
		}
	}
	t.Fatalf("no column for metric %d", id)
	return nil
}

func TestSampleMockDGX(t *testing.T) {
	for _, tc := range []struct {
		name string
		srv  *server.Server
	}{
		{"dgxh100", dgxh100.New()},
		{"dgxa100", dgxa100.New()},
		{"dgxh200", dgxh200.New()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t, tc.srv)
			n.devs[2].MigMode = 1 // partitioned into MIG instances
			s := newSource(t, n, nil)
			b, ev, got := tick(t, s, t0)
			if len(ev) != 0 {
				t.Errorf("events on a healthy node: %v", ev)
			}
			if got.Cluster != "c1" || got.Node != "host-1" || got.DriverVersion != "550.54.15" || got.CudaVersion != "12.4" {
				t.Errorf("batch labels: cluster %q node %q driver %q cuda %q", got.Cluster, got.Node, got.DriverVersion, got.CudaVersion)
			}
			if len(got.GPUs) != 8 || len(got.TimeUnixMs) != 8 {
				t.Fatalf("%d gpus, %d rows, want 8 and 8", len(got.GPUs), len(got.TimeUnixMs))
			}
			for i, g := range got.GPUs {
				d := n.devs[i]
				want := wire.GPU{Index: uint32(i), UUID: d.UUID, Model: d.Config.Name, Serial: fmt.Sprintf("1654922%06d", i), PCIBusID: d.PciBusID}
				if g != want {
					t.Errorf("gpu %d: %+v, want %+v", i, g, want)
				}
			}
			for r, ms := range got.TimeUnixMs {
				if ms != t0.UnixMilli() || got.GPU[r] != uint32(r) {
					t.Errorf("row %d: time %d gpu %d", r, ms, got.GPU[r])
				}
			}
			if len(b.Metrics) != len(gpumetric.All()) {
				t.Fatalf("%d columns, want one per registry metric (%d)", len(b.Metrics), len(gpumetric.All()))
			}
			for _, m := range gpumetric.All() {
				c := column(t, got, m.ID)
				if n := len(c.Values) + len(c.Counts); n != 8 || (m.Kind == gpumetric.Gauge) != (len(c.Values) == 8) {
					t.Errorf("%s: %d values, %d counts for 8 rows", m.Column, len(c.Values), len(c.Counts))
				}
				for r := 0; r < 8; r++ {
					// Fans are absent on SXM boards, GPM metrics on the first tick (no interval yet);
					// everything else the mock answers.
					// Hopper and Ampere remap rows rather than retire pages.
					retires := m.ID == gpumetric.RetiredSBE || m.ID == gpumetric.RetiredDBE || m.ID == gpumetric.RetiredPending
					if want := m.ID != gpumetric.FanSpeed && m.Source.GPM == 0 && !retires; c.Has(r) != want {
						t.Errorf("%s row %d: present %v, want %v", m.Column, r, c.Has(r), want)
					}
				}
			}
			for r := 0; r < 8; r++ {
				for _, w := range []struct {
					id   gpumetric.ID
					want float64
				}{
					{gpumetric.GPUUtil, float64(50 + r)}, {gpumetric.MemUtil, float64(20 + r)},
					{gpumetric.Power, 300 + 1.5*float64(r)}, {gpumetric.TempGPU, float64(40 + r)},
					{gpumetric.TempMem, float64(50 + r)}, {gpumetric.ClockSM, 1980}, {gpumetric.ClockMem, 2619},
					{gpumetric.PCIeTx, float64(1000 + r)}, {gpumetric.PCIeRx, float64(2000 + r)},
					{gpumetric.FBUsed, float64(1024 * (1 + r))}, {gpumetric.PState, 0},
					{gpumetric.FBTotal, float64(n.devs[r].MemoryInfo.Total >> 20)},
					{gpumetric.MIGMode, map[bool]float64{true: 1}[r == 2]},
				} {
					if got := column(t, got, w.id).Values[r]; math.Abs(got-w.want) > 1e-9 {
						t.Errorf("row %d metric %d = %v, want %v", r, w.id, got, w.want)
					}
				}
				for _, w := range []struct {
					id   gpumetric.ID
					want uint64
				}{
					{gpumetric.Energy, 1_000_000 * uint64(1+r)}, {gpumetric.PCIeReplays, uint64(r)},
					{gpumetric.ECCSingleAggregate, 100}, {gpumetric.RetiredPages, uint64(r) + 1},
				} {
					if got := column(t, got, w.id).Counts[r]; got != w.want {
						t.Errorf("row %d metric %d = %d, want %d", r, w.id, got, w.want)
					}
				}
			}
		})
	}
}

// GPM metrics measure between two samples: absent on the first tick, then each GPU's own values;
// a GPU without GPM has them absent and says so once, not every tick.
func TestGPM(t *testing.T) {
	n := newNode(t, dgxh100.New())
	n.noGPM[5].Store(true)
	rec := &logRecorder{}
	s := newSource(t, n, slog.New(rec))
	_, _, first := tick(t, s, t0)
	for _, id := range []gpumetric.ID{gpumetric.SMActive, gpumetric.SMOccupancy, gpumetric.TensorActive, gpumetric.DRAMActive} {
		if c := column(t, first, id); c.Has(0) {
			t.Errorf("metric %d present on the first tick", id)
		}
	}
	for tk := 1; tk <= 2; tk++ {
		_, _, got := tick(t, s, t0.Add(time.Duration(tk)*time.Second))
		for r := 0; r < 8; r++ {
			for _, w := range []struct {
				id   gpumetric.ID
				base float64
			}{{gpumetric.SMActive, 60}, {gpumetric.SMOccupancy, 30}, {gpumetric.TensorActive, 40}, {gpumetric.DRAMActive, 20}} {
				c := column(t, got, w.id)
				if r == 5 {
					if c.Has(r) {
						t.Errorf("tick %d: metric %d present on the GPU without GPM", tk, w.id)
					}
					continue
				}
				if !c.Has(r) || c.Values[r] != w.base+float64(r) {
					t.Errorf("tick %d row %d metric %d: present %v value %v, want %v", tk, r, w.id, c.Has(r), c.Values[r], w.base+float64(r))
				}
			}
		}
	}
	if got := rec.count("msg", "GPU does not support metric; reported as absent", "metric", "sm_active"); got != 1 {
		t.Errorf("GPM unsupported logged %d times for sm_active, want once (GPU 5)", got)
	}
	if got := rec.count("msg", "GPU metric unavailable; reported as absent"); got != 0 {
		t.Errorf("%d warnings: the first tick's missing interval is not an error", got)
	}
	// Two samples for each GPU with GPM, all freed on Close.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	freed := 0
	for _, g := range n.gpmSamples {
		if g.freed {
			freed++
		}
	}
	if len(n.gpmSamples) != 14 || freed != 14 {
		t.Errorf("%d GPM samples allocated, %d freed; want 2 per GPU with GPM (14), all freed", len(n.gpmSamples), freed)
	}
}

// Readings the registry does not carry yet (see the report on issue #3) are still read.
func TestReadingsBeyondTheCoreSet(t *testing.T) {
	n := newNode(t, dgxh100.New())
	var r gpuReading
	r.read(FromNVML(n.srv).(adapter).mustDevice(t, 3), newScratch())
	for _, w := range []struct {
		k    gpumetric.ID
		want float64
	}{{gpumetric.EncUtil, 3}, {gpumetric.DecUtil, 6}, {gpumetric.NVLinkTx, 1 << 30}, {gpumetric.NVLinkRx, 1 << 30}, {gpumetric.RemappedCor, 3}, {gpumetric.RemappedUnc, 1}, {gpumetric.NVLinkCRCFlit, 0}} {
		if !r.ok[w.k] || r.f[w.k] != w.want {
			t.Errorf("%s: ok %v value %v, want %v (err %v)", gpumetric.All()[w.k-1].Column, r.ok[w.k], r.f[w.k], w.want, r.err[w.k])
		}
	}
}

func (a adapter) mustDevice(t *testing.T, i int) Device {
	d, err := a.Device(i)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// A GPU that cannot answer a question leaves that reading absent (never zero) on its rows only,
// and says so once, not every tick.
func TestUnsupportedIsAbsentAndLoggedOnce(t *testing.T) {
	cases := []struct {
		name   string
		gpu    int
		metric gpumetric.ID
		break_ func(d *server.Device)
		level  string
		counts bool // counted as an NVML error (not merely unsupported)
	}{
		{"power not supported", 3, gpumetric.Power, func(d *server.Device) {
			d.GetPowerUsageFunc = func() (uint32, gonvml.Return) { return 0, gonvml.ERROR_NOT_SUPPORTED }
		}, "INFO", false},
		{"memory temperature field not supported", 5, gpumetric.TempMem, func(d *server.Device) {
			inner := d.GetFieldValuesFunc
			d.GetFieldValuesFunc = func(v []gonvml.FieldValue) gonvml.Return {
				ret := inner(v)
				for k := range v {
					if v[k].FieldId == gonvml.FI_DEV_MEMORY_TEMP {
						v[k].NvmlReturn = uint32(gonvml.ERROR_NOT_SUPPORTED)
					}
				}
				return ret
			}
		}, "INFO", false},
		{"sm clock fails", 0, gpumetric.ClockSM, func(d *server.Device) {
			d.GetClockInfoFunc = func(gonvml.ClockType) (uint32, gonvml.Return) { return 0, gonvml.ERROR_UNKNOWN }
		}, "WARN", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t, dgxh100.New())
			tc.break_(n.devs[tc.gpu])
			rec := &logRecorder{}
			reg := prometheus.NewRegistry()
			s, err := New(FromNVML(n.srv), Options{Node: "h", Logger: slog.New(rec), Registerer: reg})
			if err != nil {
				t.Fatal(err)
			}
			const ticks = 20
			// Many ticks into one batch, as an agent batching several instants would.
			b := &wirepb.SampleBatch{AgentId: "h"}
			for k := 0; k < ticks; k++ {
				s.Sample(t0.Add(time.Duration(k)*time.Second), b, nil)
			}
			got := roundTrip(t, b)
			if len(got.TimeUnixMs) != 8*ticks {
				t.Fatalf("%d rows, want %d", len(got.TimeUnixMs), 8*ticks)
			}
			c := column(t, got, tc.metric)
			for r := range got.TimeUnixMs {
				if want := got.GPU[r] != uint32(tc.gpu); c.Has(r) != want {
					t.Fatalf("row %d (gpu %d): present %v, want %v", r, got.GPU[r], c.Has(r), want)
				}
			}
			col := gpumetric.All()[gpumetric.Index(tc.metric)].Column
			if n := rec.count("metric", col); n != 1 {
				t.Errorf("%s logged %d times over %d ticks, want once", col, n, ticks)
			}
			if n := rec.count("metric", col, "gpu", fmt.Sprint(tc.gpu), "level", tc.level); n != 1 {
				t.Errorf("the line for %s names gpu %d at %s %d times, want once", col, tc.gpu, tc.level, n)
			}
			if n := rec.count("metric", "fan_pct"); n != 8 {
				t.Errorf("fan_pct logged %d times, want once per GPU (8)", n)
			}
			wantErrs := 0.0
			if tc.counts {
				wantErrs = ticks
			}
			if got := counterValue(t, reg, "gpufleet_nvml_errors_total", col); got != wantErrs {
				t.Errorf("gpufleet_nvml_errors_total{metric=%q} = %v, want %v", col, got, wantErrs)
			}
		})
	}
}

// gaugeValue reads an unlabelled gauge from reg.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

// counterValue reads a counter with label metric=label from reg (0 when absent).
func counterValue(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "metric" && l.GetValue() == label {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// A metric that becomes unsupported part way through a batch keeps the earlier rows present.
func TestPresenceAcrossSamplesOfOneBatch(t *testing.T) {
	n := newNode(t, dgxh100.New())
	s := newSource(t, n, nil)
	b := &wirepb.SampleBatch{AgentId: "h"}
	s.Sample(t0, b, nil)
	s.Sample(t0.Add(time.Second), b, nil)
	n.devs[1].GetPowerUsageFunc = func() (uint32, gonvml.Return) { return 0, gonvml.ERROR_NOT_SUPPORTED }
	s.Sample(t0.Add(2*time.Second), b, nil)
	got := roundTrip(t, b)
	c := column(t, got, gpumetric.Power)
	for r := range got.TimeUnixMs {
		if want := !(r >= 16 && got.GPU[r] == 1); c.Has(r) != want {
			t.Errorf("row %d: present %v, want %v", r, c.Has(r), want)
		}
	}
}

func TestGPULost(t *testing.T) {
	cases := []struct {
		name      string
		lostAfter int // ticks before GPU 5 falls off the bus
		atStart   bool
	}{
		{"mid-run", 3, false},
		{"first tick", 0, false},
		{"before the agent started", 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t, dgxh100.New())
			const lostGPU = 5
			uuid := n.devs[lostGPU].UUID
			var lost bool
			gone := func() (uint32, gonvml.Return) {
				if lost {
					return 0, gonvml.ERROR_GPU_IS_LOST
				}
				return 300_000, gonvml.SUCCESS
			}
			d := n.devs[lostGPU]
			d.GetPowerUsageFunc = gone
			d.GetUtilizationRatesFunc = func() (gonvml.Utilization, gonvml.Return) {
				if _, ret := gone(); ret != gonvml.SUCCESS {
					return gonvml.Utilization{}, ret
				}
				return gonvml.Utilization{Gpu: 1}, gonvml.SUCCESS
			}
			if tc.atStart {
				inner := n.srv.DeviceGetHandleByIndexFunc
				n.srv.DeviceGetHandleByIndexFunc = func(i int) (gonvml.Device, gonvml.Return) {
					if i == lostGPU {
						return nil, gonvml.ERROR_GPU_IS_LOST
					}
					return inner(i)
				}
			}
			rec := &logRecorder{}
			reg := prometheus.NewRegistry()
			s, err := New(FromNVML(n.srv), Options{Cluster: "c1", Node: "host-1", Logger: slog.New(rec), Registerer: reg})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			var fell []*wirepb.Event
			for k := 0; k < 8; k++ {
				lost = k >= tc.lostAfter
				_, ev, got := tick(t, s, t0.Add(time.Duration(k)*time.Second))
				for _, e := range ev {
					if e.Kind == wirepb.EventKind_EVENT_KIND_FELL_OFF_BUS {
						fell = append(fell, e)
					}
				}
				wantRows := 8
				if k >= tc.lostAfter {
					wantRows = 7
				}
				if len(got.TimeUnixMs) != wantRows {
					t.Fatalf("tick %d: %d rows, want %d", k, len(got.TimeUnixMs), wantRows)
				}
				for r, g := range got.GPU {
					if k >= tc.lostAfter && got.GPUs[g].UUID == uuid {
						t.Fatalf("tick %d row %d: the lost GPU still has a row", k, r)
					}
				}
				if c := column(t, got, gpumetric.GPUUtil); len(c.Present) != 0 {
					t.Fatalf("tick %d: the other GPUs' readings are not all present", k)
				}
			}
			if len(fell) != 1 {
				t.Fatalf("%d fell-off-bus events, want 1: %v", len(fell), fell)
			}
			e := fell[0]
			wantUUID := uuid
			if tc.atStart {
				wantUUID = "" // NVML could not open it, so its UUID is unknown
			}
			if e.GpuIndex != lostGPU || e.GpuUuid != wantUUID || e.Code != uint64(gonvml.ERROR_GPU_IS_LOST) ||
				e.TimeUnixMs != t0.Add(time.Duration(tc.lostAfter)*time.Second).UnixMilli() || e.Message == "" {
				t.Errorf("event %v", e)
			}
			if err := wireEvents(e); err != nil {
				t.Error(err)
			}
			if rec.count("gpu", fmt.Sprint(lostGPU), "level", "ERROR") != 1 {
				t.Errorf("lost GPU not logged exactly once: %v", rec.recs)
			}
			// The gauge keeps counting it after its event went out (a GPU lost before the start too).
			if v := gaugeValue(t, reg, "gpufleet_nvml_gpus_lost"); v != 1 {
				t.Errorf("gpufleet_nvml_gpus_lost = %v after the ticks, want 1", v)
			}
		})
	}
}

func wireEvents(ev ...*wirepb.Event) error {
	data, err := wire.EncodeEvents(&wirepb.EventBatch{AgentId: "h", Events: ev})
	if err != nil {
		return err
	}
	return wire.DecodeEvents(data, &wirepb.EventBatch{})
}

func TestThrottleAndECCEvents(t *testing.T) {
	type step struct {
		reasons  uint64
		sbe, dbe uint64
		want     []wirepb.EventKind
		code     uint64
	}
	steps := []step{
		{reasons: 0x1}, // idle: no event
		{reasons: 0x1 | reasonSwThermal, want: []wirepb.EventKind{wirepb.EventKind_EVENT_KIND_THROTTLE}, code: 0x21},
		{reasons: reasonSwThermal}, // only the idle bit changed: no event
		{reasons: reasonSwThermal, sbe: 3, // three corrected errors
			want: []wirepb.EventKind{wirepb.EventKind_EVENT_KIND_ECC_SINGLE_BIT}, code: 3},
		{reasons: 0, sbe: 3, dbe: 1, want: []wirepb.EventKind{wirepb.EventKind_EVENT_KIND_THROTTLE, wirepb.EventKind_EVENT_KIND_ECC_DOUBLE_BIT}},
		{reasons: 0, sbe: 0, dbe: 0}, // driver reload reset the volatile counters: new baseline, no event
		{reasons: 0, sbe: 1, want: []wirepb.EventKind{wirepb.EventKind_EVENT_KIND_ECC_SINGLE_BIT}, code: 1},
	}
	n := newNode(t, dgxh100.New())
	s := newSource(t, n, nil)
	const g = 2
	for k, st := range steps {
		n.reasons[g].Store(st.reasons)
		n.sbe[g].Store(st.sbe)
		n.dbe[g].Store(st.dbe)
		_, ev, _ := tick(t, s, t0.Add(time.Duration(k)*time.Second))
		var kinds []wirepb.EventKind
		for _, e := range ev {
			kinds = append(kinds, e.Kind)
			if e.GpuIndex != g || e.GpuUuid != n.devs[g].UUID {
				t.Errorf("step %d: event for gpu %d %s", k, e.GpuIndex, e.GpuUuid)
			}
		}
		if fmt.Sprint(kinds) != fmt.Sprint(st.want) {
			t.Fatalf("step %d: events %v, want %v", k, ev, st.want)
		}
		if len(ev) == 1 && st.code != 0 && ev[0].Code != st.code {
			t.Errorf("step %d: code %d, want %d", k, ev[0].Code, st.code)
		}
		if err := wireEvents(ev...); err != nil {
			t.Error(err)
		}
	}
}

// A GPU already throttled when the agent starts is news: one event on the first tick.
func TestThrottledAtStart(t *testing.T) {
	n := newNode(t, dgxh100.New())
	n.reasons[0].Store(reasonHwPowerBrake)
	s := newSource(t, n, nil)
	_, ev, _ := tick(t, s, t0)
	if len(ev) != 1 || ev[0].Kind != wirepb.EventKind_EVENT_KIND_THROTTLE || ev[0].Message != "clock-event reasons changed: hw_power_brake" {
		t.Fatalf("events %v", ev)
	}
	if _, ev, _ = tick(t, s, t0.Add(time.Second)); len(ev) != 0 {
		t.Fatalf("second tick events %v", ev)
	}
}

// An XID is dated when NVML delivered it (nvmlEventSetWait_v3's µs timestamp, kept to the ms),
// not at the tick that polled it; without a timestamp, with one too far from the tick to be Unix
// time, or on a driver without v3, at the tick.
func TestXIDEvents(t *testing.T) {
	at := t0.Add(-1234567 * time.Microsecond) // 1.234567 s before the tick
	for _, tc := range []struct {
		name     string
		noV3     bool
		usec     uint64
		wantTime int64
	}{
		{"v3 timestamp", false, uint64(at.UnixMicro()), at.UnixMilli()},
		{"v3 without timestamp", false, 0, t0.UnixMilli()},
		{"v3 timestamp not Unix time", false, 5_000_000, t0.UnixMilli()}, // µs since boot, say
		{"driver without v3", true, uint64(at.UnixMicro()), t0.UnixMilli()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t, dgxh100.New())
			n.noV3.Store(tc.noV3)
			s := newSource(t, n, nil)
			n.xids <- xidEvent{gonvml.EventData{Device: n.devs[4], EventType: gonvml.EventTypeXidCriticalError, EventData: 79}, tc.usec}
			n.xids <- xidEvent{gonvml.EventData{Device: n.devs[6], EventType: gonvml.EventTypeXidCriticalError, EventData: 48}, tc.usec}
			_, ev, _ := tick(t, s, t0)
			if len(ev) != 2 {
				t.Fatalf("events %v, want 2 XIDs", ev)
			}
			for i, w := range []struct {
				gpu  uint32
				code uint64
			}{{4, 79}, {6, 48}} {
				e := ev[i]
				if e.Kind != wirepb.EventKind_EVENT_KIND_XID || e.GpuIndex != w.gpu || e.GpuUuid != n.devs[w.gpu].UUID || e.Code != w.code {
					t.Errorf("event %d: %v", i, e)
				}
				if e.TimeUnixMs != tc.wantTime {
					t.Errorf("event %d at %d ms, want %d (tick %d)", i, e.TimeUnixMs, tc.wantTime, t0.UnixMilli())
				}
			}
			if _, ev, _ = tick(t, s, t0.Add(time.Second)); len(ev) != 0 {
				t.Fatalf("second tick events %v", ev)
			}
		})
	}
}

// A driver whose nvmlEventSetWait_v3 leaves the UUID empty: that XID goes out without a GPU (and
// with its time), and from then on the old wait names the GPU.
func TestXIDv3WithoutUUID(t *testing.T) {
	n := newNode(t, dgxh100.New())
	n.v3NoUUID.Store(true)
	s := newSource(t, n, nil)
	at := t0.Add(-time.Second)
	n.xids <- xidEvent{gonvml.EventData{Device: n.devs[4], EventType: gonvml.EventTypeXidCriticalError, EventData: 79}, uint64(at.UnixMicro())}
	n.xids <- xidEvent{gonvml.EventData{Device: n.devs[6], EventType: gonvml.EventTypeXidCriticalError, EventData: 48}, uint64(at.UnixMicro())}
	_, ev, _ := tick(t, s, t0)
	if len(ev) != 2 {
		t.Fatalf("events %v, want 2 XIDs", ev)
	}
	if e := ev[0]; e.Code != 79 || e.GpuUuid != "" || e.GpuIndex != wire.NoGPU || e.TimeUnixMs != at.UnixMilli() {
		t.Errorf("first XID %v: want code 79, no GPU, at %d", e, at.UnixMilli())
	}
	if e := ev[1]; e.Code != 48 || e.GpuIndex != 6 || e.GpuUuid != n.devs[6].UUID || e.TimeUnixMs != t0.UnixMilli() {
		t.Errorf("second XID %v: want code 48 on GPU 6 at the tick (the old wait)", e)
	}
}

// Without XID support (the driver refuses the registration) sampling still works.
func TestNoXIDSupport(t *testing.T) {
	n := newNode(t, dgxh100.New())
	for _, d := range n.devs {
		d.RegisterEventsFunc = func(uint64, gonvml.EventSet) gonvml.Return { return gonvml.ERROR_NOT_SUPPORTED }
	}
	s := newSource(t, n, nil)
	if s.xid != nil {
		t.Fatal("XID watch set up although no GPU accepted it")
	}
	if _, _, got := tick(t, s, t0); len(got.TimeUnixMs) != 8 {
		t.Fatalf("%d rows", len(got.TimeUnixMs))
	}
}

func TestErrorKinds(t *testing.T) {
	for _, tc := range []struct {
		ret  gonvml.Return
		kind error
	}{
		{gonvml.ERROR_NOT_SUPPORTED, ErrNotSupported},
		{gonvml.ERROR_GPU_IS_LOST, ErrGPULost},
		{gonvml.ERROR_LIBRARY_NOT_FOUND, ErrLibraryNotFound},
		{gonvml.ERROR_UNKNOWN, nil},
	} {
		err := wrap("nvmlX", tc.ret)
		var e *Error
		if !errors.As(err, &e) || e.Code != int(tc.ret) || e.Op != "nvmlX" {
			t.Errorf("%v: %#v", tc.ret, err)
		}
		if tc.kind != nil && !errors.Is(err, tc.kind) {
			t.Errorf("%v does not match %v", err, tc.kind)
		}
		for _, k := range []error{ErrNotSupported, ErrGPULost, ErrLibraryNotFound} {
			if k != tc.kind && errors.Is(err, k) {
				t.Errorf("%v matches %v", err, k)
			}
		}
	}
	if wrap("nvmlX", gonvml.SUCCESS) != nil {
		t.Error("SUCCESS is an error")
	}
}

// On a machine without the NVIDIA driver, Open says the library is missing (and does not panic).
func TestOpenWithoutDriver(t *testing.T) {
	lib, closeFn, err := Open()
	if err == nil {
		closeFn()
		t.Skipf("NVML is installed here (%T); nothing to check", lib)
	}
	if !errors.Is(err, ErrLibraryNotFound) {
		t.Errorf("Open: %v, want ErrLibraryNotFound", err)
	}
}

// Processes lists each GPU's PIDs for cgroup attribution: compute and graphics merged, a GPU that
// answers one list still counted, one that answers neither left out and logged once, a lost GPU
// not asked again; and attribution.ProcCgroups turns them into Slurm jobs by UUID.
func TestProcessesToSlurmJobs(t *testing.T) {
	n := newNode(t, dgxh100.New())
	list := func(pids ...uint32) func() ([]gonvml.ProcessInfo, gonvml.Return) {
		return func() ([]gonvml.ProcessInfo, gonvml.Return) {
			var out []gonvml.ProcessInfo
			for _, p := range pids {
				out = append(out, gonvml.ProcessInfo{Pid: p, UsedGpuMemory: 1 << 30, GpuInstanceId: uint32(NoGPUInstance)})
			}
			return out, gonvml.SUCCESS
		}
	}
	fail := func(ret gonvml.Return) func() ([]gonvml.ProcessInfo, gonvml.Return) {
		return func() ([]gonvml.ProcessInfo, gonvml.Return) { return nil, ret }
	}
	for i, d := range n.devs {
		d.GetComputeRunningProcessesFunc, d.GetGraphicsRunningProcessesFunc = list(), list()
		switch i {
		case 0: // a training process and its data loader; the loader also drives graphics
			d.GetComputeRunningProcessesFunc, d.GetGraphicsRunningProcessesFunc = list(100, 101), list(101)
		case 1: // the same job's process spans GPUs 0 and 1
			d.GetComputeRunningProcessesFunc = list(100)
		case 2: // graphics list only
			d.GetComputeRunningProcessesFunc, d.GetGraphicsRunningProcessesFunc = fail(gonvml.ERROR_NOT_SUPPORTED), list(300)
		case 3: // neither list
			d.GetComputeRunningProcessesFunc, d.GetGraphicsRunningProcessesFunc = fail(gonvml.ERROR_UNKNOWN), fail(gonvml.ERROR_UNKNOWN)
		case 4: // a process outside Slurm
			d.GetComputeRunningProcessesFunc = list(400)
		case 5: // falls off the bus on the first tick
			d.GetPowerUsageFunc = func() (uint32, gonvml.Return) { return 0, gonvml.ERROR_GPU_IS_LOST }
			d.GetComputeRunningProcessesFunc = func() ([]gonvml.ProcessInfo, gonvml.Return) {
				t.Error("a lost GPU was asked for its processes")
				return nil, gonvml.ERROR_GPU_IS_LOST
			}
		}
	}
	rec := &logRecorder{}
	s := newSource(t, n, slog.New(rec))
	tick(t, s, t0)

	ctx := context.Background()
	got, err := s.Processes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	uuid := func(i int) string { return n.devs[i].UUID }
	want := map[string][]uint32{uuid(0): {100, 101}, uuid(1): {100}, uuid(2): {300}, uuid(4): {400}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Processes = %v, want %v", got, want)
	}
	if _, err := s.Processes(ctx); err != nil {
		t.Fatal(err)
	}
	if c := rec.count("msg", "cannot list the GPU's processes; its jobs are not attributed from cgroups"); c != 1 {
		t.Errorf("GPU 3's failure logged %d times over two calls, want once", c)
	}

	proc := t.TempDir()
	for pid, cg := range map[string]string{
		"100": "0::/system.slice/slurmstepd.scope/job_4242/step_0/user/task_0\n",
		"101": "0::/system.slice/slurmstepd.scope/job_4242/step_0/user/task_1\n",
		"300": "12:devices:/slurm/uid_1000/job_77/step_batch/task_0\n0::/\n",
		"400": "0::/kubepods.slice/kubepods-burstable.slice/cri-containerd-0a1b.scope\n",
	} {
		if err := os.MkdirAll(filepath.Join(proc, pid), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(proc, pid, "cgroup"), []byte(cg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a, err := attribution.ProcCgroups{Root: proc, Processes: s.Processes}.Assign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, job := range []string{"4242", "4242", "77", "", "", ""} {
		if g := a.Job(uint32(i), uuid(i)); g != job {
			t.Errorf("GPU %d job %q, want %q", i, g, job)
		}
	}
}

// MIG instances are rows of their own: identity (MIG UUID, the MIG device name, the parent's
// UUID, index 128 + 8 × parent + MIG device index), their memory share and their GPM metrics
// (taken through the GPU, by GPU instance id); everything else is the whole GPU's and absent on
// their rows, unlogged. They go with their GPU when it falls off the bus, and Close frees their
// GPM samples.
func TestMIGInstances(t *testing.T) {
	n := newNode(t, dgxh100.New())
	n.partition(2, 0, 3)
	n.partition(5, 1)
	var lost bool
	n.devs[5].GetPowerUsageFunc = func() (uint32, gonvml.Return) {
		if lost {
			return 0, gonvml.ERROR_GPU_IS_LOST
		}
		return 300_000, gonvml.SUCCESS
	}
	rec := &logRecorder{}
	s := newSource(t, n, slog.New(rec))
	type mig struct {
		parent, slot int
		row          int // position in the batch's GPUs and rows
	}
	migs := []mig{{2, 0, 8}, {2, 3, 9}, {5, 1, 10}}
	var got *wire.Samples
	for tk := range 2 {
		_, _, got = tick(t, s, t0.Add(time.Duration(tk)*time.Second))
	}
	if len(got.GPUs) != 11 || len(got.TimeUnixMs) != 11 {
		t.Fatalf("%d gpus, %d rows, want 8 GPUs and 3 MIG instances", len(got.GPUs), len(got.TimeUnixMs))
	}
	for _, m := range migs {
		p := n.devs[m.parent]
		want := wire.GPU{Index: uint32(128 + 8*m.parent + m.slot), UUID: fmt.Sprintf("MIG-%d-%d", m.parent, m.slot),
			Model: p.Config.Name + " MIG 1g.10gb", Serial: fmt.Sprintf("1654922%06d", m.parent), PCIBusID: p.PciBusID, ParentUUID: p.UUID}
		if g := got.GPUs[m.row]; g != want {
			t.Errorf("MIG %d/%d: %+v, want %+v", m.parent, m.slot, g, want)
		}
		if got.GPU[m.row] != uint32(m.row) {
			t.Errorf("row %d refers to gpu %d", m.row, got.GPU[m.row])
		}
		gi := 2*m.slot + 1
		for _, w := range []struct {
			id   gpumetric.ID
			want float64
		}{
			{gpumetric.FBTotal, 10 * 1024}, {gpumetric.FBUsed, float64(1024 * (m.slot + 1))}, {gpumetric.FBFree, float64(1024 * (9 - m.slot))},
			{gpumetric.SMActive, 60 + float64(m.parent+100+gi)}, {gpumetric.DRAMActive, 20 + float64(m.parent+100+gi)},
		} {
			if c := column(t, got, w.id); !c.Has(m.row) || c.Values[m.row] != w.want {
				t.Errorf("MIG %d/%d metric %d: present %v value %v, want %v", m.parent, m.slot, w.id, c.Has(m.row), c.Values[m.row], w.want)
			}
		}
		for _, id := range []gpumetric.ID{gpumetric.GPUUtil, gpumetric.Power, gpumetric.TempGPU, gpumetric.Energy, gpumetric.MIGMode} {
			if column(t, got, id).Has(m.row) {
				t.Errorf("MIG %d/%d has metric %d, which is the whole GPU's", m.parent, m.slot, id)
			}
		}
	}
	// The GPUs' own rows are unchanged: GPU 2's GPM is its own, not an instance's.
	if c := column(t, got, gpumetric.SMActive); c.Values[2] != 62 {
		t.Errorf("GPU 2 sm_active %v, want 62", c.Values[2])
	}
	if c := rec.count("level", "WARN"); c != 0 {
		t.Errorf("%d warnings; the instances' absent metrics are by design", c)
	}

	// Processes in MIG instances are listed under the instance too, by GPU instance id (slot 0's
	// is 1, slot 3's is 7), so cgroup attribution reaches the instance's row.
	n.devs[2].GetComputeRunningProcessesFunc = func() ([]gonvml.ProcessInfo, gonvml.Return) {
		return []gonvml.ProcessInfo{{Pid: 200, GpuInstanceId: 1}, {Pid: 201, GpuInstanceId: 7}, {Pid: 202, GpuInstanceId: 1}}, gonvml.SUCCESS
	}
	for i, d := range n.devs {
		if i != 2 {
			d.GetComputeRunningProcessesFunc = func() ([]gonvml.ProcessInfo, gonvml.Return) { return nil, gonvml.SUCCESS }
		}
		d.GetGraphicsRunningProcessesFunc = func() ([]gonvml.ProcessInfo, gonvml.Return) { return nil, gonvml.SUCCESS }
	}
	procs, err := s.Processes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string][]uint32{n.devs[2].UUID: {200, 201, 202}, "MIG-2-0": {200, 202}, "MIG-2-3": {201}}; !reflect.DeepEqual(procs, want) {
		t.Errorf("Processes = %v, want %v", procs, want)
	}

	lost = true
	_, _, got = tick(t, s, t0.Add(3*time.Second))
	if len(got.TimeUnixMs) != 9 {
		t.Fatalf("%d rows after GPU 5 fell off the bus, want 9 (7 GPUs, GPU 2's 2 instances)", len(got.TimeUnixMs))
	}
	for _, g := range got.GPU {
		if u := got.GPUs[g].UUID; u == n.devs[5].UUID || u == "MIG-5-1" {
			t.Errorf("a row of lost GPU 5 or its instance: %s", u)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for i, g := range n.gpmSamples {
		if !g.freed {
			t.Errorf("GPM sample %d not freed", i)
		}
	}
	if len(n.gpmSamples) != 2*(8+3) {
		t.Errorf("%d GPM samples allocated, want two per GPU and instance (22)", len(n.gpmSamples))
	}
}

// The failure data lands on its GPU's row as NVML answered it: the remap flags as 0/1, violation
// times in ns per policy, the power limits in W; a question a GPU cannot answer leaves that
// reading absent on its row only, never zero.
func TestFailureReadings(t *testing.T) {
	n := newNode(t, dgxh100.New())
	n.remapPending[1].Store(true)
	n.remapFailure[2].Store(true)
	for p := range policyNames {
		n.viol[3][p].Store(uint64(p+1) * 1_000_000_000)
	}
	n.devs[5].GetViolationStatusFunc = func(p gonvml.PerfPolicyType) (gonvml.ViolationTime, gonvml.Return) {
		if p == gonvml.PERF_POLICY_RELIABILITY {
			return gonvml.ViolationTime{}, gonvml.ERROR_NOT_SUPPORTED
		}
		return gonvml.ViolationTime{ViolationTime: 7}, gonvml.SUCCESS
	}
	n.devs[6].GetRemappedRowsFunc = func() (int, int, bool, bool, gonvml.Return) { return 0, 0, true, true, gonvml.ERROR_NOT_SUPPORTED }
	n.devs[7].GetEnforcedPowerLimitFunc = func() (uint32, gonvml.Return) { return 0, gonvml.ERROR_NOT_SUPPORTED }
	s := newSource(t, n, nil)
	_, _, got := tick(t, s, t0)

	gauge := func(id gpumetric.ID, r int) (float64, bool) {
		c := column(t, got, id)
		return c.Values[r], c.Has(r)
	}
	count := func(id gpumetric.ID, r int) (uint64, bool) {
		c := column(t, got, id)
		return c.Counts[r], c.Has(r)
	}
	for r := 0; r < 8; r++ {
		for _, w := range []struct {
			id      gpumetric.ID
			want    float64
			present bool
		}{
			{gpumetric.RemapPending, map[bool]float64{true: 1}[r == 1], r != 6},
			{gpumetric.RemapFailure, map[bool]float64{true: 1}[r == 2], r != 6},
			{gpumetric.PowerLimit, map[bool]float64{true: 700 - float64(r)}[r != 7], r != 7},
			{gpumetric.PowerMax, 700, true},
		} {
			if v, ok := gauge(w.id, r); ok != w.present || v != w.want {
				t.Errorf("row %d %s = %v (present %v), want %v (present %v)", r, gpumetric.All()[w.id-1].Column, v, ok, w.want, w.present)
			}
		}
		if v, ok := count(gpumetric.NVLinkCRCData, r); !ok || v != uint64(10*r) {
			t.Errorf("row %d nvlink_crc_data_errors = %d (present %v), want %d", r, v, ok, 10*r)
		}
		for _, vm := range violationMetrics {
			want, present := uint64(0), true
			switch r {
			case 3:
				want = uint64(vm.policy+1) * 1_000_000_000
			case 5:
				want, present = 7, vm.policy != PolicyReliability
				if !present {
					want = 0
				}
			}
			if v, ok := count(vm.id, r); ok != present || v != want {
				t.Errorf("row %d %s = %d (present %v), want %d (present %v)", r, gpumetric.All()[vm.id-1].Column, v, ok, want, present)
			}
		}
	}
}

// The old wait names a GPU by its handle. An Xid whose handle is another one for a GPU the agent
// reads is that GPU's, found by UUID; one for no GPU of the node goes out for the node
// (wire.NoGPU, no UUID, said in the message) — before, it went out as GPU 0's.
func TestXIDDeviceNotRead(t *testing.T) {
	n := newNode(t, dgxh100.New())
	n.noV3.Store(true)
	s := newSource(t, n, nil)
	uuidOf := func(uuid string) *mock.Device {
		return &mock.Device{GetUUIDFunc: func() (string, gonvml.Return) { return uuid, gonvml.SUCCESS }}
	}
	n.xids <- xidEvent{gonvml.EventData{Device: uuidOf(n.devs[5].UUID), EventType: gonvml.EventTypeXidCriticalError, EventData: 79}, 0}
	n.xids <- xidEvent{gonvml.EventData{Device: uuidOf("GPU-00000000-dead-beef-0000-000000000000"), EventType: gonvml.EventTypeXidCriticalError, EventData: 48}, 0}
	_, ev, _ := tick(t, s, t0)
	if len(ev) != 2 {
		t.Fatalf("events %v, want 2 XIDs", ev)
	}
	if e := ev[0]; e.Code != 79 || e.GpuIndex != 5 || e.GpuUuid != n.devs[5].UUID {
		t.Errorf("XID by another handle of GPU 5: %v", e)
	}
	if e := ev[1]; e.Code != 48 || e.GpuIndex != wire.NoGPU || e.GpuUuid != "" || e.Message != "Xid 48 (NVML named no GPU of this node)" {
		t.Errorf("XID of no GPU the agent reads: %v; want gpu %d, no uuid, the message saying so", e, wire.NoGPU)
	}
}
