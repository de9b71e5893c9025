//go:build cgo

package nvml

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
)

// Open loads libnvidia-ml.so.1 and initialises NVML. The returned close shuts NVML down. An error
// wraps ErrLibraryNotFound when the library is not installed (no NVIDIA driver on this host).
func Open() (Lib, func() error, error) {
	lib := gonvml.New()
	if ret := lib.Init(); ret != gonvml.SUCCESS {
		return nil, nil, wrap("nvmlInit", ret)
	}
	closeFn := func() error {
		if ret := lib.Shutdown(); ret != gonvml.SUCCESS {
			return wrap("nvmlShutdown", ret)
		}
		return nil
	}
	return FromNVML(lib), closeFn, nil
}

// FromNVML adapts go-nvml's interface (the real library after Init, or a mock such as
// github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100) to Lib.
func FromNVML(lib gonvml.Interface) Lib { return adapter{lib} }

type adapter struct{ lib gonvml.Interface }

type device struct {
	d   gonvml.Device
	lib gonvml.Interface
	gpm *gpmState // shared by copies of the device
	// A MIG instance's handle also holds its GPU and GPU instance id: NVML takes GPM samples of
	// an instance through the GPU (nvmlGpmMigSampleGet).
	parent gonvml.Device
	gi     int
	// vals is FieldValues' request, reused: NVML writes the answers into it, so on the stack it
	// would escape to the heap on every call.
	vals *[]gonvml.FieldValue
}

func newDevice(d gonvml.Device, lib gonvml.Interface) device {
	return device{d: d, lib: lib, gpm: &gpmState{}, vals: new([]gonvml.FieldValue)}
}

// gpmState is a GPU's two GPM samples: each read takes one and measures from the other.
type gpmState struct {
	checked, supported bool
	prev, cur          gonvml.GpmSample
	primed             bool // prev holds a sample
	// get is the request, reused: it holds room for every GPM metric (tens of KiB), too much to
	// allocate per GPU per tick.
	get *gonvml.GpmMetricsGetType
}

// wrap turns a non-success return into an *Error naming op; nil for SUCCESS. The error is shared
// by every call that fails the same way: a GPU answers not supported for the same readings on
// every tick, and building an error (and asking NVML for its name, a cgo call) each time was most
// of a tick's garbage.
func wrap(op string, ret gonvml.Return) error {
	if ret == gonvml.SUCCESS {
		return nil
	}
	return cachedError(errKey{op: op, ret: ret})
}

// wrapField is wrap for one field of nvmlDeviceGetFieldValues: the error names the field.
func wrapField(id uint32, ret gonvml.Return) error {
	if ret == gonvml.SUCCESS {
		return nil
	}
	return cachedError(errKey{op: fieldValuesOp, field: id, isField: true, ret: ret})
}

const fieldValuesOp = "nvmlDeviceGetFieldValues"

// errKey is what an *Error says: the call (and field), and NVML's return code.
type errKey struct {
	op      string
	field   uint32
	isField bool
	ret     gonvml.Return
}

// errCache holds the errors wrap has built. Ops are the constants of this file and return codes
// nvml.h's few dozen, so it stays small; maxErrs bounds it should a driver answer codes of its own.
var errCache = struct {
	sync.RWMutex
	m map[errKey]*Error
}{m: map[errKey]*Error{}}

const maxErrs = 1024

func cachedError(k errKey) *Error {
	errCache.RLock()
	e := errCache.m[k]
	errCache.RUnlock()
	if e != nil {
		return e
	}
	op := k.op
	if k.isField {
		op = fmt.Sprintf("%s(field %d)", k.op, k.field)
	}
	e = &Error{Op: op, Code: int(k.ret), Name: k.ret.Error()}
	switch k.ret {
	case gonvml.ERROR_NOT_SUPPORTED:
		e.Kind = ErrNotSupported
	case gonvml.ERROR_GPU_IS_LOST:
		e.Kind = ErrGPULost
	case gonvml.ERROR_LIBRARY_NOT_FOUND:
		e.Kind = ErrLibraryNotFound
	}
	errCache.Lock()
	defer errCache.Unlock()
	if old := errCache.m[k]; old != nil {
		return old
	}
	if len(errCache.m) < maxErrs {
		errCache.m[k] = e
	}
	return e
}

func (a adapter) DeviceCount() (int, error) {
	n, ret := a.lib.DeviceGetCount()
	return n, wrap("nvmlDeviceGetCount", ret)
}

func (a adapter) Device(i int) (Device, error) {
	d, ret := a.lib.DeviceGetHandleByIndex(i)
	if err := wrap("nvmlDeviceGetHandleByIndex", ret); err != nil {
		return nil, err
	}
	return newDevice(d, a.lib), nil
}

func (a adapter) DriverVersion() (string, error) {
	v, ret := a.lib.SystemGetDriverVersion()
	return v, wrap("nvmlSystemGetDriverVersion", ret)
}

func (a adapter) CUDADriverVersion() (string, error) {
	v, ret := a.lib.SystemGetCudaDriverVersion()
	if err := wrap("nvmlSystemGetCudaDriverVersion", ret); err != nil {
		return "", err
	}
	// NVML encodes 12.4 as 12040 (major*1000 + minor*10).
	return fmt.Sprintf("%d.%d", v/1000, v%1000/10), nil
}

func (a adapter) WatchXID(devs []Device) (XIDWatch, error) {
	set, ret := a.lib.EventSetCreate()
	if err := wrap("nvmlEventSetCreate", ret); err != nil {
		return nil, err
	}
	w := &xidWatch{set: set, pos: map[gonvml.Device]int{}, byUUID: map[string]int{}}
	// nvmlEventSetWait_v3 dates each event; a driver without it would crash the process when
	// called, so it is used only when the library has the symbol.
	if ext := a.lib.Extensions(); ext != nil && ext.LookupSymbol("nvmlEventSetWait_v3") == nil {
		w.v3 = true
	}
	var firstErr error
	for i, d := range devs {
		dd, ok := d.(device)
		if !ok {
			continue
		}
		// Registered per device: a GPU that cannot report XIDs must not stop the others.
		if err := wrap("nvmlDeviceRegisterEvents", dd.d.RegisterEvents(gonvml.EventTypeXidCriticalError, set)); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		w.pos[dd.d] = i
		// v3 names the GPU by UUID rather than by handle.
		if uuid, ret := dd.d.GetUUID(); ret == gonvml.SUCCESS {
			w.byUUID[uuid] = i
		}
	}
	if len(w.pos) == 0 {
		set.Free()
		if firstErr == nil {
			firstErr = &Error{Op: "nvmlDeviceRegisterEvents", Name: "no devices", Kind: ErrNotSupported}
		}
		return nil, firstErr
	}
	return w, nil
}

type xidWatch struct {
	set    gonvml.EventSet
	pos    map[gonvml.Device]int
	byUUID map[string]int
	v3     bool // nvmlEventSetWait_v3 is there and answers
}

func (w *xidWatch) Poll(max int) ([]XID, error) {
	var out []XID
	for len(out) < max {
		if w.v3 {
			ev, ret := w.set.Wait_v3(0)
			if ret == gonvml.ERROR_FUNCTION_NOT_FOUND || ret == gonvml.ERROR_NOT_SUPPORTED {
				w.v3 = false // the symbol is there but this driver does not serve it: v1 from now on
				continue
			}
			if ret == gonvml.ERROR_TIMEOUT {
				return out, nil
			}
			if err := wrap("nvmlEventSetWait_v3", ret); err != nil {
				return out, err
			}
			if ev.DataType != uint32(gonvml.EVENT_DATA_TYPE_NVML_EVENT) || ev.EventType&gonvml.EventTypeXidCriticalError == 0 {
				continue
			}
			uuid := cString(ev.Uuid[:])
			i, ok := w.byUUID[uuid]
			if !ok {
				i = -1
			}
			if uuid == "" {
				// A driver whose v3 does not name the GPU would leave every XID without one: this
				// event goes out so, and the old wait, which names it by handle, is used from now on.
				w.v3 = false
			}
			x := XID{Dev: i, Code: ev.EventData}
			if ev.TimestampUsec != 0 {
				x.Time = time.UnixMicro(int64(ev.TimestampUsec))
			}
			out = append(out, x)
			continue
		}
		// A zero timeout returns at once: the agent polls once per interval rather than keeping
		// a goroutine blocked in NVML.
		ev, ret := w.set.Wait(0)
		if ret == gonvml.ERROR_TIMEOUT {
			return out, nil
		}
		if err := wrap("nvmlEventSetWait", ret); err != nil {
			return out, err
		}
		if ev.EventType&gonvml.EventTypeXidCriticalError == 0 {
			continue
		}
		i, ok := w.pos[ev.Device]
		if !ok && ev.Device != nil {
			// Another handle for a device the agent reads: the same GPU by its UUID.
			if uuid, ret := ev.Device.GetUUID(); ret == gonvml.SUCCESS {
				i, ok = w.byUUID[uuid]
			}
		}
		if !ok {
			i = -1
		}
		out = append(out, XID{Dev: i, Code: ev.EventData})
	}
	return out, nil
}

func (w *xidWatch) Close() error { return wrap("nvmlEventSetFree", w.set.Free()) }

func (d device) UUID() (string, error) {
	v, ret := d.d.GetUUID()
	return v, wrap("nvmlDeviceGetUUID", ret)
}

func (d device) Name() (string, error) {
	v, ret := d.d.GetName()
	return v, wrap("nvmlDeviceGetName", ret)
}

func (d device) Serial() (string, error) {
	v, ret := d.d.GetSerial()
	return v, wrap("nvmlDeviceGetSerial", ret)
}

func (d device) PCIBusID() (string, error) {
	p, ret := d.d.GetPciInfo()
	if err := wrap("nvmlDeviceGetPciInfo", ret); err != nil {
		return "", err
	}
	return cString(p.BusId[:]), nil
}

// cString converts NVML's NUL-terminated char array.
func cString(b []int8) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		out = append(out, byte(c))
	}
	return string(out)
}

func (d device) Utilization() (uint32, uint32, error) {
	u, ret := d.d.GetUtilizationRates()
	return u.Gpu, u.Memory, wrap("nvmlDeviceGetUtilizationRates", ret)
}

func (d device) Memory() (uint64, uint64, uint64, error) {
	m, ret := d.d.GetMemoryInfo()
	return m.Total, m.Free, m.Used, wrap("nvmlDeviceGetMemoryInfo", ret)
}

func (d device) Power() (uint32, error) {
	v, ret := d.d.GetPowerUsage()
	return v, wrap("nvmlDeviceGetPowerUsage", ret)
}

func (d device) Temperature() (uint32, error) {
	v, ret := d.d.GetTemperature(gonvml.TEMPERATURE_GPU)
	return v, wrap("nvmlDeviceGetTemperature", ret)
}

func (d device) SMClock() (uint32, error) {
	v, ret := d.d.GetClockInfo(gonvml.CLOCK_SM)
	return v, wrap("nvmlDeviceGetClockInfo(SM)", ret)
}

func (d device) MemClock() (uint32, error) {
	v, ret := d.d.GetClockInfo(gonvml.CLOCK_MEM)
	return v, wrap("nvmlDeviceGetClockInfo(MEM)", ret)
}

func (d device) ClockEventReasons() (uint64, error) {
	v, ret := d.d.GetCurrentClocksEventReasons()
	return v, wrap("nvmlDeviceGetCurrentClocksEventReasons", ret)
}

func (d device) PCIeTx() (uint32, error) {
	v, ret := d.d.GetPcieThroughput(gonvml.PCIE_UTIL_TX_BYTES)
	return v, wrap("nvmlDeviceGetPcieThroughput(TX)", ret)
}

func (d device) PCIeRx() (uint32, error) {
	v, ret := d.d.GetPcieThroughput(gonvml.PCIE_UTIL_RX_BYTES)
	return v, wrap("nvmlDeviceGetPcieThroughput(RX)", ret)
}

func (d device) FanSpeed() (uint32, error) {
	v, ret := d.d.GetFanSpeed()
	return v, wrap("nvmlDeviceGetFanSpeed", ret)
}

func (d device) MIGMode() (uint32, error) {
	current, _, ret := d.d.GetMigMode()
	return uint32(current), wrap("nvmlDeviceGetMigMode", ret)
}

func (d device) Processes() ([]Process, error) {
	// A GPU can answer one list and not the other (graphics on a compute-only board): either
	// list is worth having.
	compute, r1 := d.d.GetComputeRunningProcesses()
	graphics, r2 := d.d.GetGraphicsRunningProcesses()
	e1, e2 := wrap("nvmlDeviceGetComputeRunningProcesses", r1), wrap("nvmlDeviceGetGraphicsRunningProcesses", r2)
	if e1 != nil && e2 != nil {
		return nil, e1
	}
	var out []Process
	for _, list := range [][]gonvml.ProcessInfo{compute, graphics} {
		for _, p := range list {
			if !slices.ContainsFunc(out, func(q Process) bool { return q.PID == p.Pid }) {
				out = append(out, Process{PID: p.Pid, GPUInstance: p.GpuInstanceId})
			}
		}
	}
	return out, nil
}

func (d device) MIGInstances() ([]MIGInstance, error) {
	n, ret := d.d.GetMaxMigDeviceCount()
	if err := wrap("nvmlDeviceGetMaxMigDeviceCount", ret); err != nil {
		return nil, err
	}
	var out []MIGInstance
	for k := range n {
		m, ret := d.d.GetMigDeviceHandleByIndex(k)
		if ret == gonvml.ERROR_NOT_FOUND {
			continue // a slot no instance fills
		}
		if err := wrap("nvmlDeviceGetMigDeviceHandleByIndex", ret); err != nil {
			return nil, err
		}
		gi, ret := m.GetGpuInstanceId()
		if err := wrap("nvmlDeviceGetGpuInstanceId", ret); err != nil {
			return nil, err
		}
		md := newDevice(m, d.lib)
		md.parent, md.gi = d.d, gi
		out = append(out, MIGInstance{Index: k, GPUInstance: uint32(gi), Device: md})
	}
	return out, nil
}

// GPM reads GPM metrics (GPM_METRIC_* ids) over the interval since the previous call. GPUs before
// Hopper answer not supported; the first call on a GPU has no interval and answers errNoInterval.
func (d device) GPM(ids []uint32, out []FieldValue) error {
	g := d.gpm
	fail := func(err error) error {
		for i := range out {
			out[i] = FieldValue{Err: err}
		}
		return err
	}
	if !g.checked {
		g.checked = true
		sup, ret := cmp.Or(d.parent, d.d).GpmQueryDeviceSupport()
		if err := wrap("nvmlGpmQueryDeviceSupport", ret); err != nil {
			return fail(err)
		}
		if sup.IsSupportedDevice == 0 {
			return fail(errGPMUnsupported)
		}
		var r1, r2 gonvml.Return
		g.prev, r1 = d.lib.GpmSampleAlloc()
		g.cur, r2 = d.lib.GpmSampleAlloc()
		if err := errors.Join(wrap("nvmlGpmSampleAlloc", r1), wrap("nvmlGpmSampleAlloc", r2)); err != nil {
			return fail(err)
		}
		g.supported = true
	}
	if !g.supported {
		return fail(errGPMUnsupported)
	}
	if d.parent != nil {
		if err := wrap("nvmlGpmMigSampleGet", g.cur.MigGet(d.parent, d.gi)); err != nil {
			return fail(err)
		}
	} else if err := wrap("nvmlGpmSampleGet", g.cur.Get(d.d)); err != nil {
		return fail(err)
	}
	if !g.primed {
		g.primed = true
		g.prev, g.cur = g.cur, g.prev
		return fail(errNoInterval)
	}
	if g.get == nil {
		g.get = new(gonvml.GpmMetricsGetType)
	}
	mg := g.get
	mg.Version, mg.NumMetrics, mg.Sample1, mg.Sample2 = gonvml.GPM_METRICS_GET_VERSION, uint32(len(ids)), g.prev, g.cur
	for i, id := range ids {
		mg.Metrics[i] = gonvml.GpmMetric{MetricId: id}
	}
	g.prev, g.cur = g.cur, g.prev
	if err := wrap("nvmlGpmMetricsGet", d.lib.GpmMetricsGet(mg)); err != nil {
		return fail(err)
	}
	for i := range ids {
		m := mg.Metrics[i]
		if err := wrap("nvmlGpmMetricsGet", gonvml.Return(m.NvmlReturn)); err != nil {
			out[i] = FieldValue{Err: err}
			continue
		}
		out[i] = FieldValue{Float: m.Value}
	}
	return nil
}

func (d device) Release() error {
	g := d.gpm
	if !g.supported {
		return nil
	}
	g.supported, g.checked = false, true
	return errors.Join(wrap("nvmlGpmSampleFree", g.prev.Free()), wrap("nvmlGpmSampleFree", g.cur.Free()))
}

func (d device) PerformanceState() (uint32, error) {
	v, ret := d.d.GetPerformanceState()
	return uint32(v), wrap("nvmlDeviceGetPerformanceState", ret)
}

func (d device) EncoderUtilization() (uint32, error) {
	v, _, ret := d.d.GetEncoderUtilization()
	return v, wrap("nvmlDeviceGetEncoderUtilization", ret)
}

func (d device) DecoderUtilization() (uint32, error) {
	v, _, ret := d.d.GetDecoderUtilization()
	return v, wrap("nvmlDeviceGetDecoderUtilization", ret)
}

func (d device) RemappedRows() (bool, bool, error) {
	_, _, pending, failure, ret := d.d.GetRemappedRows()
	return pending, failure, wrap("nvmlDeviceGetRemappedRows", ret)
}

// perfPolicies maps PerfPolicy to go-nvml's constants; lib.go keeps nvml.h's numbering, which
// TestPerfPoliciesAreNVMLs holds.
var perfPolicies = [...]gonvml.PerfPolicyType{
	PolicyPower: gonvml.PERF_POLICY_POWER, PolicyThermal: gonvml.PERF_POLICY_THERMAL,
	PolicySyncBoost: gonvml.PERF_POLICY_SYNC_BOOST, PolicyBoardLimit: gonvml.PERF_POLICY_BOARD_LIMIT,
	PolicyLowUtilization: gonvml.PERF_POLICY_LOW_UTILIZATION, PolicyReliability: gonvml.PERF_POLICY_RELIABILITY,
}

// violationOps are Violation's op names by policy, built once rather than per call.
var violationOps = func() (ops [len(perfPolicies)]string) {
	for p := range ops {
		ops[p] = "nvmlDeviceGetViolationStatus(" + PerfPolicy(p).String() + ")"
	}
	return ops
}()

func (d device) Violation(p PerfPolicy) (uint64, error) {
	if int(p) >= len(perfPolicies) {
		return 0, &Error{Op: "nvmlDeviceGetViolationStatus(" + p.String() + ")", Name: "unknown policy", Kind: ErrNotSupported}
	}
	v, ret := d.d.GetViolationStatus(perfPolicies[p])
	return v.ViolationTime, wrap(violationOps[p], ret)
}

func (d device) EnforcedPowerLimit() (uint32, error) {
	v, ret := d.d.GetEnforcedPowerLimit()
	return v, wrap("nvmlDeviceGetEnforcedPowerLimit", ret)
}

func (d device) PowerLimitConstraints() (uint32, uint32, error) {
	lo, hi, ret := d.d.GetPowerManagementLimitConstraints()
	return lo, hi, wrap("nvmlDeviceGetPowerManagementLimitConstraints", ret)
}

func (d device) FieldValues(fields []Field, out []FieldValue) error {
	if len(fields) == 0 {
		return nil
	}
	if len(out) < len(fields) {
		return errors.New("FieldValues: out is shorter than fields")
	}
	vals := (*d.vals)[:0]
	for _, f := range fields {
		vals = append(vals, gonvml.FieldValue{FieldId: f.ID, ScopeId: f.Scope})
	}
	*d.vals = vals
	if err := wrap(fieldValuesOp, d.d.GetFieldValues(vals)); err != nil {
		return err
	}
	for i := range vals {
		out[i] = decodeField(&vals[i])
	}
	return nil
}

// decodeField reads a field value's union by its type (nvmlValueType_t).
func decodeField(v *gonvml.FieldValue) FieldValue {
	if err := wrapField(v.FieldId, gonvml.Return(v.NvmlReturn)); err != nil {
		return FieldValue{Err: err}
	}
	raw := binary.LittleEndian.Uint64(v.Value[:])
	switch gonvml.ValueType(v.ValueType) {
	case gonvml.VALUE_TYPE_DOUBLE:
		f := math.Float64frombits(raw)
		u := uint64(0)
		if f > 0 {
			u = uint64(f)
		}
		return FieldValue{Uint: u, Float: f}
	case gonvml.VALUE_TYPE_UNSIGNED_INT:
		u := uint64(uint32(raw))
		return FieldValue{Uint: u, Float: float64(u)}
	case gonvml.VALUE_TYPE_UNSIGNED_SHORT:
		u := uint64(uint16(raw))
		return FieldValue{Uint: u, Float: float64(u)}
	case gonvml.VALUE_TYPE_SIGNED_INT:
		s := int64(int32(uint32(raw)))
		return FieldValue{Uint: uint64(max(s, 0)), Float: float64(s)}
	case gonvml.VALUE_TYPE_SIGNED_LONG_LONG:
		s := int64(raw)
		return FieldValue{Uint: uint64(max(s, 0)), Float: float64(s)}
	default: // unsigned long, unsigned long long (64-bit on Linux)
		return FieldValue{Uint: raw, Float: float64(raw)}
	}
}
