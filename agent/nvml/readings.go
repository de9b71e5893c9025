package nvml

import (
	"errors"
	"fmt"
	"slices"

	"github.com/gpufleet/gpufleet/internal/gpumetric"
)

// The source's readings are keyed by catalogue metric id: what each is, its kind and its NVML
// source come from gpumetric's rows, and the field-value and GPM requests below are built from
// those rows. The metrics NVML answers by a call of their own are read in gpuReading.read, one call
// per catalogue Call; catalogue_test.go fails when a metric has no reading or a call is not the
// one its row names.

// fieldReader is where a metric's field values sit in the request: the metric is the sum of its
// Fields, or of its Else fields when not every one of Fields could be read.
type fieldReader struct {
	id             gpumetric.ID
	fields, orElse []int // indexes into fieldRequest
}

// fieldRequest is the one nvmlDeviceGetFieldValues request per GPU per tick: every field a
// catalogue row names, once, in catalogue order; fieldReaders say which metric each answers.
// gpmIDs are the GPM metrics read each tick, and gpmMetric where each answer goes.
var (
	fieldRequest, fieldReaders = fieldsFromCatalogue()
	gpmIDs, gpmMetric          = gpmFromCatalogue()
)

func fieldsFromCatalogue() ([]Field, []fieldReader) {
	var req []Field
	var out []fieldReader
	at := func(f gpumetric.Field, links bool) int {
		want := Field{ID: uint32(f)}
		if links {
			want.Scope = AllLinks
		}
		if i := slices.Index(req, want); i >= 0 {
			return i
		}
		req = append(req, want)
		return len(req) - 1
	}
	for _, m := range gpumetric.All() {
		s := m.Source
		if len(s.Fields) == 0 {
			continue
		}
		fr := fieldReader{id: m.ID}
		for _, f := range s.Fields {
			fr.fields = append(fr.fields, at(f, s.AllLinks))
		}
		for _, f := range s.Else {
			fr.orElse = append(fr.orElse, at(f, s.AllLinks))
		}
		out = append(out, fr)
	}
	return req, out
}

// maxGPM bounds the GPM metrics the catalogue may name, well within what one nvmlGpmMetricsGet
// request holds.
const maxGPM = 16

func gpmFromCatalogue() ([]uint32, []gpumetric.ID) {
	var ids []uint32
	var to []gpumetric.ID
	for _, m := range gpumetric.All() {
		if g := m.Source.GPM; g != 0 {
			ids, to = append(ids, uint32(g)), append(to, m.ID)
		}
	}
	if len(ids) > maxGPM {
		panic(fmt.Sprintf("nvml: the catalogue names %d GPM metrics, more than maxGPM (%d)", len(ids), maxGPM))
	}
	return ids, to
}

// gpuReading is one GPU's readings at one instant, by metric id (slot 0 is no metric): u for
// integer kinds, f for gauges, ok when read.
type gpuReading struct {
	u   [gpumetric.Count + 1]uint64
	f   [gpumetric.Count + 1]float64
	ok  [gpumetric.Count + 1]bool
	err [gpumetric.Count + 1]error
}

func (r *gpuReading) setF(id gpumetric.ID, v float64, err error) {
	r.f[id], r.ok[id], r.err[id] = v, err == nil, err
}

func (r *gpuReading) setU(id gpumetric.ID, v uint64, err error) {
	r.u[id], r.f[id], r.ok[id], r.err[id] = v, float64(v), err == nil, err
}

// setFields sets a metric from its field values: the only field's value as NVML typed it (a
// gauge keeps its fraction), or the sum of several.
func (r *gpuReading) setFields(id gpumetric.ID, buf []FieldValue, at []int) {
	if len(at) == 1 {
		v := buf[at[0]]
		r.u[id], r.f[id], r.ok[id], r.err[id] = v.Uint, v.Float, v.Err == nil, v.Err
		return
	}
	var sum uint64
	for _, i := range at {
		if err := buf[i].Err; err != nil {
			r.setU(id, 0, err)
			return
		}
		sum += buf[i].Uint
	}
	r.setU(id, sum, nil)
}

// lostErr returns the first error that says the GPU fell off the bus, or nil.
func (r *gpuReading) lostErr() error {
	for _, err := range r.err {
		if err != nil && errors.Is(err, ErrGPULost) {
			return err
		}
	}
	return nil
}

// violationMetrics is the catalogue metric of each policy's violation time.
var violationMetrics = [...]struct {
	policy PerfPolicy
	id     gpumetric.ID
}{
	{PolicyPower, gpumetric.ViolPower}, {PolicyThermal, gpumetric.ViolThermal},
	{PolicySyncBoost, gpumetric.ViolSyncBoost}, {PolicyBoardLimit, gpumetric.ViolBoardLimit},
	{PolicyLowUtilization, gpumetric.ViolLowUtil}, {PolicyReliability, gpumetric.ViolReliability},
}

func flag(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

var errPStateUnknown = &Error{Op: "nvmlDeviceGetPerformanceState", Code: 0, Name: "P-state unknown (32)", Kind: ErrNotSupported}

// scratch is the room a reading needs, kept by the source across ticks: fields answers
// fieldRequest, gpm gpmIDs.
type scratch struct {
	fields, gpm []FieldValue
}

func newScratch() scratch {
	return scratch{fields: make([]FieldValue, len(fieldRequest)), gpm: make([]FieldValue, len(gpmIDs))}
}

// readMIG reads what NVML answers per MIG instance: its memory and its GPM metrics. The rest
// (utilisation, power, clocks, temperatures, errors) is the whole GPU's, on the GPU's row, and is
// absent on the instance's without a call.
func (r *gpuReading) readMIG(d Device, sc scratch) {
	r.readMemory(d)
	r.readGPM(d, sc.gpm)
}

// readMemory reads the framebuffer in MiB; readGPM the GPM metrics since the previous read.
func (r *gpuReading) readMemory(d Device) {
	const mib = 1 << 20
	total, free, used, err := d.Memory()
	r.setF(gpumetric.FBTotal, float64(total/mib), err)
	r.setF(gpumetric.FBFree, float64(free/mib), err)
	r.setF(gpumetric.FBUsed, float64(used/mib), err)
}

func (r *gpuReading) readGPM(d Device, gpm []FieldValue) {
	gpm = gpm[:len(gpmIDs)]
	_ = d.GPM(gpmIDs, gpm) // per-metric errors are in gpm[i].Err
	for i, id := range gpmMetric {
		r.setF(id, gpm[i].Float, gpm[i].Err)
	}
}

// read asks d for every reading: one call per catalogue Call, then the field values and GPM metrics
// the catalogue names.
func (r *gpuReading) read(d Device, sc scratch) {
	gpu, mem, err := d.Utilization()
	r.setF(gpumetric.GPUUtil, float64(gpu), err)
	r.setF(gpumetric.MemUtil, float64(mem), err)
	if err != nil && errors.Is(err, ErrGPULost) {
		return // every other call would fail the same way, each after NVML's own timeout
	}
	r.readMemory(d)
	mw, err := d.Power()
	r.setF(gpumetric.Power, float64(mw)/1000, err)
	v, err := d.Temperature()
	r.setF(gpumetric.TempGPU, float64(v), err)
	v, err = d.SMClock()
	r.setF(gpumetric.ClockSM, float64(v), err)
	v, err = d.MemClock()
	r.setF(gpumetric.ClockMem, float64(v), err)
	reasons, err := d.ClockEventReasons()
	r.setU(gpumetric.ThrottleReasons, reasons, err)
	v, err = d.PCIeTx()
	r.setF(gpumetric.PCIeTx, float64(v), err)
	v, err = d.PCIeRx()
	r.setF(gpumetric.PCIeRx, float64(v), err)
	v, err = d.FanSpeed()
	r.setF(gpumetric.FanSpeed, float64(v), err)
	v, err = d.PerformanceState()
	if err == nil && v > 15 {
		err = errPStateUnknown
	}
	r.setF(gpumetric.PState, float64(v), err)
	v, err = d.EncoderUtilization()
	r.setF(gpumetric.EncUtil, float64(v), err)
	v, err = d.DecoderUtilization()
	r.setF(gpumetric.DecUtil, float64(v), err)
	v, err = d.MIGMode()
	r.setF(gpumetric.MIGMode, float64(v), err)
	pending, failure, err := d.RemappedRows()
	r.setF(gpumetric.RemapPending, flag(pending), err)
	r.setF(gpumetric.RemapFailure, flag(failure), err)
	for _, vm := range violationMetrics {
		ns, err := d.Violation(vm.policy)
		r.setU(vm.id, ns, err)
	}
	v, err = d.EnforcedPowerLimit()
	r.setF(gpumetric.PowerLimit, float64(v)/1000, err)
	_, v, err = d.PowerLimitConstraints()
	r.setF(gpumetric.PowerMax, float64(v)/1000, err)

	buf := sc.fields[:len(fieldRequest)]
	if err := d.FieldValues(fieldRequest, buf); err != nil {
		for i := range buf {
			buf[i] = FieldValue{Err: err}
		}
	}
	for _, fr := range fieldReaders {
		r.setFields(fr.id, buf, fr.fields)
		if !r.ok[fr.id] && len(fr.orElse) > 0 {
			first := r.err[fr.id]
			if r.setFields(fr.id, buf, fr.orElse); !r.ok[fr.id] {
				r.setU(fr.id, 0, first) // the error worth reporting is the one Fields gave
			}
		}
	}
	r.readGPM(d, sc.gpm)
}
