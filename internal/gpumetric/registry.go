// Package gpumetric is the catalogue of per-GPU metrics: for each, the id it has on the wire, the
// ClickHouse column it lands in, how it behaves over time, its unit, the range a real reading falls
// in and the NVML call or field value the agent reads it from. Agents, ingest, the schema, the query
// layer and docs/schema.md all read this one list, so a metric is added in exactly one place.
package gpumetric

import "strconv"

// ID is a metric's number on the wire. Ids are assigned once and never reused.
type ID uint32

// Kind says how a metric behaves over time, which decides what can be asked of it.
type Kind uint8

const (
	// Gauge is a level read at the sample instant (utilisation, temperature); carried as float64.
	Gauge Kind = iota + 1
	// Counter only grows until the GPU or driver resets it (energy, ECC counts); carried as uint64.
	Counter
	// Bitmask is a set of flags read at the sample instant (the active throttle reasons): neither
	// a level to average nor a count to difference. Carried as uint64, and stored in the rollups
	// with a counter's columns (first, last, min, max): throttle_reasons was typed a counter when
	// they were made.
	Bitmask
)

// Integer reports whether the kind's readings are carried as uint64 on the wire
// (MetricColumn.counts) and stored as Nullable(UInt64); a gauge's are float64 and Nullable(Float32).
func (k Kind) Integer() bool { return k == Counter || k == Bitmask }

// ColumnType is the ClickHouse type of a gpu_samples column of the kind.
func (k Kind) ColumnType() string {
	if k.Integer() {
		return "Nullable(UInt64)"
	}
	return "Nullable(Float32)"
}

func (k Kind) String() string {
	switch k {
	case Gauge:
		return "gauge"
	case Counter:
		return "counter"
	case Bitmask:
		return "bitmask"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Range is the span a real reading of a gauge falls in, bounds included. A value outside it (a
// sensor glitch, a driver returning a sentinel, a corrupted agent) is stored as NULL rather than as
// a reading that would wreck every average it lands in. Counters and bitmasks have none (zero).
type Range struct{ Lo, Hi float64 }

// Metric describes one per-GPU metric.
type Metric struct {
	ID        ID
	Column    string // ClickHouse column in gpu_samples
	Kind      Kind
	Unit      string
	Plausible Range  // gauges only
	Source    Source // what the agent asks NVML (source.go)
	Help      string
}

// Wire ids of the metrics gpufleet knows. Append only.
const (
	GPUUtil ID = iota + 1
	MemUtil
	FBUsed
	FBFree
	FBTotal
	Power
	Energy
	TempGPU
	TempMem
	ClockSM
	ClockMem
	ThrottleReasons
	PCIeTx
	PCIeRx
	PCIeReplays
	ECCSingleVolatile
	ECCDoubleVolatile
	ECCSingleAggregate
	ECCDoubleAggregate
	RetiredPages
	FanSpeed
	PState
	EncUtil
	DecUtil
	NVLinkTx
	NVLinkRx
	RemappedCor
	RemappedUnc
	NVLinkCRCFlit
	NVLinkReplay
	NVLinkRecovery
	MIGMode
	SMActive
	SMOccupancy
	TensorActive
	DRAMActive
	RemapPending
	RemapFailure
	RetiredSBE
	RetiredDBE
	RetiredPending
	ViolPower
	ViolThermal
	ViolSyncBoost
	ViolBoardLimit
	ViolLowUtil
	ViolReliability
	PowerLimit
	PowerMax
	NVLinkCRCData
	// endIDs is one past the last id: Count follows it, so appending an id cannot leave Count behind.
	endIDs
)

// Count is how many metrics this build knows. Ids are dense from 1, so it is also the highest id:
// an array of [Count + 1] is indexed by id.
const Count = int(endIDs) - 1

// pct is the range of a percentage.
var pct = Range{0, 100}

var all = []Metric{
	{GPUUtil, "gpu_util", Gauge, "%", pct, call("nvmlDeviceGetUtilizationRates", ".gpu"), "Percent of time a kernel was running on the GPU."},
	{MemUtil, "mem_util", Gauge, "%", pct, call("nvmlDeviceGetUtilizationRates", ".memory"), "Percent of time device memory was read or written."},
	{FBUsed, "fb_used_mib", Gauge, "MiB", Range{0, 1 << 24}, call("nvmlDeviceGetMemoryInfo", ".used / 2^20"), "Framebuffer memory in use."}, // 16 TiB
	{FBFree, "fb_free_mib", Gauge, "MiB", Range{0, 1 << 24}, call("nvmlDeviceGetMemoryInfo", ".free / 2^20"), "Framebuffer memory free."},
	{FBTotal, "fb_total_mib", Gauge, "MiB", Range{0, 1 << 24}, call("nvmlDeviceGetMemoryInfo", ".total / 2^20"), "Framebuffer memory installed."},
	{Power, "power_w", Gauge, "W", Range{0, 10_000}, call("nvmlDeviceGetPowerUsage", " / 1000"), "Board power draw."},
	{Energy, "energy_mj", Counter, "mJ", Range{}, fields(FieldTotalEnergy), "Energy used since the driver loaded."},
	{TempGPU, "temp_gpu_c", Gauge, "°C", Range{-40, 200}, call("nvmlDeviceGetTemperature", "(GPU)"), "GPU die temperature."},
	{TempMem, "temp_mem_c", Gauge, "°C", Range{-40, 200}, fields(FieldMemoryTemp), "HBM temperature."},
	{ClockSM, "clock_sm_mhz", Gauge, "MHz", Range{0, 20_000}, call("nvmlDeviceGetClockInfo(SM)", ""), "SM clock."},
	{ClockMem, "clock_mem_mhz", Gauge, "MHz", Range{0, 50_000}, call("nvmlDeviceGetClockInfo(MEM)", ""), "Memory clock."},
	{ThrottleReasons, "throttle_reasons", Bitmask, "bitmask", Range{}, call("nvmlDeviceGetCurrentClocksEventReasons", ""), "Active clock-event (throttle) reasons, the nvmlClocksEventReason* bits."},
	{PCIeTx, "pcie_tx_kibs", Gauge, "KiB/s", Range{0, 1 << 30}, call("nvmlDeviceGetPcieThroughput(TX)", ""), "PCIe transmit throughput."}, // 1 TiB/s
	{PCIeRx, "pcie_rx_kibs", Gauge, "KiB/s", Range{0, 1 << 30}, call("nvmlDeviceGetPcieThroughput(RX)", ""), "PCIe receive throughput."},
	{PCIeReplays, "pcie_replays", Counter, "count", Range{}, fields(FieldPCIeReplayCounter), "PCIe replay counter."},
	{ECCSingleVolatile, "ecc_sbe_volatile", Counter, "count", Range{}, fields(FieldECCSbeVolTotal), "Corrected ECC errors since the driver loaded."},
	{ECCDoubleVolatile, "ecc_dbe_volatile", Counter, "count", Range{}, fields(FieldECCDbeVolTotal), "Uncorrected ECC errors since the driver loaded."},
	{ECCSingleAggregate, "ecc_sbe_aggregate", Counter, "count", Range{}, fields(FieldECCSbeAggTotal), "Corrected ECC errors over the GPU's life."},
	{ECCDoubleAggregate, "ecc_dbe_aggregate", Counter, "count", Range{}, fields(FieldECCDbeAggTotal), "Uncorrected ECC errors over the GPU's life."},
	// Pre-Ampere GPUs retire pages; Ampere and later remap rows instead and answer not supported,
	// so the column then carries the remapped rows.
	{RetiredPages, "retired_pages", Counter, "count", Range{}, Source{Fields: []Field{FieldRetiredSBE, FieldRetiredDBE}, Else: []Field{FieldRemappedCor, FieldRemappedUnc}},
		"Memory pages retired (pre-Ampere) or rows remapped."},
	{FanSpeed, "fan_pct", Gauge, "%", Range{0, 200}, call("nvmlDeviceGetFanSpeed", ""), "Fan speed, absent on passively cooled boards."}, // NVML reports the intended speed, which some boards put above 100
	{PState, "pstate", Gauge, "P-state", Range{0, 15}, call("nvmlDeviceGetPerformanceState", " (32, unknown, is absent)"), "Performance state, 0 (max) to 15 (min)."},
	{EncUtil, "enc_util", Gauge, "%", pct, call("nvmlDeviceGetEncoderUtilization", ""), "Percent of time the video encoder (NVENC) was busy."},
	{DecUtil, "dec_util", Gauge, "%", pct, call("nvmlDeviceGetDecoderUtilization", ""), "Percent of time the video decoder (NVDEC) was busy."},
	{NVLinkTx, "nvlink_tx_kib", Counter, "KiB", Range{}, Source{Fields: []Field{FieldNVLinkThroughputDataTx}, AllLinks: true}, "NVLink data sent, all links, since the driver loaded."},
	{NVLinkRx, "nvlink_rx_kib", Counter, "KiB", Range{}, Source{Fields: []Field{FieldNVLinkThroughputDataRx}, AllLinks: true}, "NVLink data received, all links, since the driver loaded."},
	{RemappedCor, "remapped_rows_cor", Counter, "count", Range{}, fields(FieldRemappedCor), "Memory rows remapped after correctable errors (Ampere and later)."},
	{RemappedUnc, "remapped_rows_unc", Counter, "count", Range{}, fields(FieldRemappedUnc), "Memory rows remapped after uncorrectable errors (Ampere and later)."},
	{NVLinkCRCFlit, "nvlink_crc_flit_errors", Counter, "count", Range{}, fields(FieldNVLinkCRCFlitErrorTotal), "NVLink flow-control CRC errors, all links."},
	{NVLinkReplay, "nvlink_replay_errors", Counter, "count", Range{}, fields(FieldNVLinkReplayErrorTotal), "NVLink replays, all links."},
	{NVLinkRecovery, "nvlink_recovery_errors", Counter, "count", Range{}, fields(FieldNVLinkRecoveryErrorTotal), "NVLink recoveries, all links."},
	{MIGMode, "mig_mode", Gauge, "bool", Range{0, 1}, call("nvmlDeviceGetMigMode", " (current)"), "1 when the GPU is partitioned into MIG instances, 0 when not; absent on GPUs without MIG."},
	{SMActive, "sm_active", Gauge, "%", pct, gpm(GPMSMUtil), "Percent of time the SMs had work resident, averaged over SMs: how busy the GPU really is, unlike gpu_util."},
	{SMOccupancy, "sm_occupancy", Gauge, "%", pct, gpm(GPMSMOccupancy), "Resident warps as a percent of what the SMs can hold."},
	{TensorActive, "tensor_active", Gauge, "%", pct, gpm(GPMAnyTensorUtil), "Percent of time any tensor-core pipe was busy."},
	{DRAMActive, "dram_active", Gauge, "%", pct, gpm(GPMDRAMBWUtil), "Device memory bandwidth in use, percent of peak."},
	// The row-remapping and page-retirement state that decides whether a GPU needs a reset or
	// service. retired_pages above keeps its old meaning (retired pages, else remapped rows) for
	// the queries written against it; these columns keep each cause apart.
	{RemapPending, "remap_pending", Gauge, "bool", Range{0, 1}, call("nvmlDeviceGetRemappedRows", ".isPending"), "1 when rows were remapped that only a GPU reset applies (Ampere and later)."},
	{RemapFailure, "remap_failure", Gauge, "bool", Range{0, 1}, call("nvmlDeviceGetRemappedRows", ".failureOccurred"), "1 when a row remap failed: the GPU needs service (Ampere and later)."},
	{RetiredSBE, "retired_pages_sbe", Counter, "count", Range{}, fields(FieldRetiredSBE), "Memory pages retired after multiple single-bit ECC errors (pre-Ampere)."},
	{RetiredDBE, "retired_pages_dbe", Counter, "count", Range{}, fields(FieldRetiredDBE), "Memory pages retired after a double-bit ECC error (pre-Ampere)."},
	{RetiredPending, "retired_pages_pending", Gauge, "bool", Range{0, 1}, fields(FieldRetiredPending), "1 when pages are waiting to be retired at the next driver reload or GPU reset (pre-Ampere)."},
	// Violation times: how long the clocks were held below what was asked, per cause, since the
	// driver loaded. Their increase over an interval is the time lost to that cause in it.
	{ViolPower, "viol_power_ns", Counter, "ns", Range{}, call("nvmlDeviceGetViolationStatus(POWER)", ".violationTime"), "Time the clocks were held down by the power limit."},
	{ViolThermal, "viol_thermal_ns", Counter, "ns", Range{}, call("nvmlDeviceGetViolationStatus(THERMAL)", ".violationTime"), "Time the clocks were held down by a thermal limit."},
	{ViolSyncBoost, "viol_sync_boost_ns", Counter, "ns", Range{}, call("nvmlDeviceGetViolationStatus(SYNC_BOOST)", ".violationTime"), "Time the clocks were held down to stay in step with a sync-boost group."},
	{ViolBoardLimit, "viol_board_limit_ns", Counter, "ns", Range{}, call("nvmlDeviceGetViolationStatus(BOARD_LIMIT)", ".violationTime"), "Time the clocks were held down by a board limit."},
	{ViolLowUtil, "viol_low_util_ns", Counter, "ns", Range{}, call("nvmlDeviceGetViolationStatus(LOW_UTILIZATION)", ".violationTime"), "Time the clocks were held down because the GPU was barely used."},
	{ViolReliability, "viol_reliability_ns", Counter, "ns", Range{}, call("nvmlDeviceGetViolationStatus(RELIABILITY)", ".violationTime"), "Time the clocks were held down by a board reliability limit."},
	{PowerLimit, "power_limit_w", Gauge, "W", Range{0, 10_000}, call("nvmlDeviceGetEnforcedPowerLimit", " / 1000"), "Power limit the GPU enforces now: the lowest of the management, application and board limits."},
	{PowerMax, "power_max_w", Gauge, "W", Range{0, 10_000}, call("nvmlDeviceGetPowerManagementLimitConstraints", ".max / 1000"), "Highest power limit the board accepts."},
	{NVLinkCRCData, "nvlink_crc_data_errors", Counter, "count", Range{}, fields(FieldNVLinkCRCDataErrorTotal), "NVLink data CRC errors, all links."},
}

// All returns every known metric in column order. The slice is shared: do not modify it.
func All() []Metric { return all }

// Index returns the metric's position in All, or -1 for an id this build does not know
// (a newer agent); ingest drops unknown metrics rather than the whole batch.
// Ids are dense from 1, so the position is the id minus one (registry_test.go holds that).
func Index(id ID) int {
	if id == 0 || int(id) > len(all) {
		return -1
	}
	return int(id) - 1
}

// Lookup returns the metric with id; ok is false for an id this build does not know.
func Lookup(id ID) (m Metric, ok bool) {
	if i := Index(id); i >= 0 {
		return all[i], true
	}
	return Metric{}, false
}

// IndexOfColumn returns the position in All of the metric stored in column, or -1.
func IndexOfColumn(column string) int {
	for i, m := range all {
		if m.Column == column {
			return i
		}
	}
	return -1
}

// Plausible returns the range of real readings of the gauge at position i of All; ok is false
// for counters and bitmasks.
func Plausible(i int) (lo, hi float64, ok bool) {
	if i < 0 || i >= len(all) || all[i].Kind != Gauge {
		return 0, 0, false
	}
	r := all[i].Plausible
	return r.Lo, r.Hi, true
}
