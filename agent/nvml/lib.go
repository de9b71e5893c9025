// Package nvml is the agent's real GPU source: it reads this node's NVIDIA GPUs through NVML
// (github.com/NVIDIA/go-nvml) and implements agent.Source.
//
// The source asks NVML only through the narrow Lib and Device interfaces below, one method per
// question with its unit in the doc comment. FromNVML adapts go-nvml's nvml.Interface to them (the
// real library, or NVIDIA's mocks in tests); it needs cgo, so a binary built with CGO_ENABLED=0
// gets an Open that says so instead (open_nocgo.go) and the rest of the package still builds.
//
// A reading NVML answers with ERROR_NOT_SUPPORTED (or any other per-call error) is absent in the
// batch, never zero, and is logged once per GPU and metric. A GPU that answers ERROR_GPU_IS_LOST
// raises one EVENT_KIND_FELL_OFF_BUS event and is then left out of every later batch (see Sample).
package nvml

import (
	"errors"
	"fmt"
	"time"
)

// Lib is what the source asks NVML about the node.
type Lib interface {
	// DeviceCount is the number of GPUs NVML sees.
	DeviceCount() (int, error)
	// Device returns the GPU at NVML index i (0 ≤ i < DeviceCount).
	Device(i int) (Device, error)
	// DriverVersion is the kernel driver's version, e.g. "550.54.15".
	DriverVersion() (string, error)
	// CUDADriverVersion is the newest CUDA version the driver supports, e.g. "12.4".
	CUDADriverVersion() (string, error)
	// WatchXID subscribes to XID (critical error) events of devs, which must have come from
	// Device. ErrNotSupported when no device can report them.
	WatchXID(devs []Device) (XIDWatch, error)
}

// XIDWatch yields XID events as they happen.
type XIDWatch interface {
	// Poll returns the XID events pending now without waiting; dev is the event's position in
	// the devs given to WatchXID, or -1 when NVML named a device not among them.
	Poll(max int) ([]XID, error)
	// Close releases the subscription.
	Close() error
}

// XID is one XID event: the GPU (position in WatchXID's devs), the XID number and when NVML
// says it happened (nvmlEventSetWait_v3's timestamp). Time is zero when the driver has no such
// call or gives no timestamp: the source then dates the event at the tick that polled it.
type XID struct {
	Dev  int
	Code uint64
	Time time.Time
}

// Device is what the source asks NVML about one GPU. Every method returns an error wrapping
// ErrNotSupported when the GPU cannot answer and ErrGPULost when it fell off the bus.
type Device interface {
	// UUID is the GPU's unique id, "GPU-…".
	UUID() (string, error)
	// Name is the product name, e.g. "NVIDIA H100 80GB HBM3".
	Name() (string, error)
	// Serial is the board serial number.
	Serial() (string, error)
	// PCIBusID is the PCI address, "DDDDDDDD:BB:DD.F".
	PCIBusID() (string, error)

	// Utilization is the percent of the last sample period a kernel ran (gpu) and device memory
	// was read or written (mem).
	Utilization() (gpu, mem uint32, err error)
	// Memory is framebuffer memory in bytes.
	Memory() (total, free, used uint64, err error)
	// Power is the board's power draw in milliwatts.
	Power() (uint32, error)
	// Temperature is the GPU die temperature in °C.
	Temperature() (uint32, error)
	// SMClock and MemClock are the current clocks in MHz.
	SMClock() (uint32, error)
	MemClock() (uint32, error)
	// ClockEventReasons is the NVML clock-event (throttle) reasons bitmask now active.
	ClockEventReasons() (uint64, error)
	// PCIeTx and PCIeRx are PCIe throughput over the last 20 ms in KiB/s.
	PCIeTx() (uint32, error)
	PCIeRx() (uint32, error)
	// FanSpeed is the intended fan speed in percent of maximum (may exceed 100).
	FanSpeed() (uint32, error)
	// MIGMode is 1 when MIG is enabled now (the current mode, not the pending one), else 0.
	MIGMode() (uint32, error)
	// PerformanceState is the P-state, 0 (max) to 15 (min); 32 means unknown.
	PerformanceState() (uint32, error)
	// EncoderUtilization and DecoderUtilization are NVENC/NVDEC busy percent.
	EncoderUtilization() (uint32, error)
	DecoderUtilization() (uint32, error)
	// RemappedRows says whether rows were remapped that only a GPU reset applies (pending) and
	// whether a row remap failed, so the GPU needs service (failure); Ampere and later.
	RemappedRows() (pending, failure bool, err error)
	// Violation is the time in nanoseconds the clocks were held below what was asked because of
	// policy p, since the driver loaded (nvmlDeviceGetViolationStatus's violationTime).
	Violation(p PerfPolicy) (uint64, error)
	// EnforcedPowerLimit is the power limit the GPU enforces now, in milliwatts.
	EnforcedPowerLimit() (uint32, error)
	// PowerLimitConstraints is the range of power-management limits the board accepts, in
	// milliwatts.
	PowerLimitConstraints() (min, max uint32, err error)
	// FieldValues reads several NVML field values (NVML_FI_*) in one call: out[i] answers
	// fields[i]. The returned error is for the call as a whole; each out[i].Err for its field.
	FieldValues(fields []Field, out []FieldValue) error
	// GPM reads GPM metrics (GPM_METRIC_* ids, percent) over the interval since the previous
	// call, into out[i].Float as FieldValues does; Hopper and later. The first call has no
	// interval: every out[i].Err is errNoInterval.
	GPM(ids []uint32, out []FieldValue) error
	// Processes is the compute and graphics processes running on the GPU now, each PID once.
	Processes() ([]Process, error)
	// MIGInstances lists the MIG instances of a GPU in MIG mode, by MIG device index. An
	// instance's Device answers UUID ("MIG-…"), Name (with the profile), Memory (its share) and
	// GPM (its SMs); the rest of what a GPU answers belongs to the whole GPU.
	MIGInstances() ([]MIGInstance, error)
	// Release frees what the device holds in NVML (its GPM samples); the source calls it once,
	// on Close.
	Release() error
}

// PerfPolicy is a cause the clocks are held down for (nvml.h nvmlPerfPolicyType_t, same values).
type PerfPolicy uint32

// The policies the source reads the violation time of.
const (
	PolicyPower PerfPolicy = iota
	PolicyThermal
	PolicySyncBoost
	PolicyBoardLimit
	PolicyLowUtilization
	PolicyReliability
)

var policyNames = [...]string{"POWER", "THERMAL", "SYNC_BOOST", "BOARD_LIMIT", "LOW_UTILIZATION", "RELIABILITY"}

// String is the nvml.h name without NVML_PERF_POLICY_, as the errors' Op shows it.
func (p PerfPolicy) String() string {
	if int(p) < len(policyNames) {
		return policyNames[p]
	}
	return fmt.Sprintf("PerfPolicy(%d)", uint32(p))
}

// Process is a process running on a GPU: its PID (host PID namespace) and, on a GPU in MIG mode,
// the GPU instance it runs in (NoGPUInstance otherwise).
type Process struct {
	PID         uint32
	GPUInstance uint32
}

// NoGPUInstance is Process.GPUInstance outside MIG mode (NVML's 0xFFFFFFFF).
const NoGPUInstance = ^uint32(0)

// MIGInstance is one MIG device of a GPU: its MIG device index (0 ≤ Index < the GPU's maximum
// MIG device count), its GPU instance id (what Process.GPUInstance names) and its handle.
type MIGInstance struct {
	Index       int
	GPUInstance uint32
	Device      Device
}

// Field names an NVML field value: its NVML_FI_* id and scope (NVLink id; AllLinks sums them).
type Field struct {
	ID, Scope uint32
}

// AllLinks is the scope that sums an NVLink field over every link.
const AllLinks = ^uint32(0)

// FieldValue is one field's reading: Uint for integer fields, Float for every field (integers
// converted), or Err.
type FieldValue struct {
	Uint  uint64
	Float float64
	Err   error
}

// Sentinels an NVML error wraps, so callers can decide without knowing NVML return codes.
var (
	// ErrNotSupported: the GPU or driver cannot report this; the reading is absent.
	ErrNotSupported = errors.New("not supported")
	// ErrGPULost: the GPU fell off the bus (NVML_ERROR_GPU_IS_LOST); it needs a reset or reboot.
	ErrGPULost = errors.New("GPU is lost")
	// ErrLibraryNotFound: libnvidia-ml.so.1 could not be loaded.
	ErrLibraryNotFound = errors.New("NVML library not found")
	// errNoInterval: a GPM metric's first read, which only takes the sample the next measures
	// from; absent, and not worth a log line.
	errNoInterval = errors.New("GPM: first sample, no interval yet")
	// errGPMUnsupported: a GPU before Hopper, or one whose GPM samples could not be allocated.
	errGPMUnsupported = &Error{Op: "nvmlGpmQueryDeviceSupport", Name: "GPM not supported by this GPU", Kind: ErrNotSupported}
)

// Error is a failed NVML call: what was asked and NVML's return code and name.
type Error struct {
	Op   string // the NVML function, e.g. "nvmlDeviceGetPowerUsage"
	Code int    // nvmlReturn_t
	Name string // e.g. "ERROR_NOT_SUPPORTED"
	Kind error  // ErrNotSupported, ErrGPULost, ErrLibraryNotFound or nil
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Op, e.Name) }

// Unwrap lets errors.Is match Kind.
func (e *Error) Unwrap() error { return e.Kind }
