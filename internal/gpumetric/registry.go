// Package gpumetric is the catalogue of per-GPU metrics: the id each has on the wire, the ClickHouse
// column it lands in, its unit and where it comes from. Agents, ingest, the schema and the query
// layer all read this one list, so a metric is added in exactly one place.
package gpumetric

// ID is a metric's number on the wire. Ids are assigned once and never reused.
type ID uint32

// Kind says how a metric behaves over time.
type Kind uint8

const (
	// Gauge is a level read at the sample instant (utilisation, temperature); carried as float64.
	Gauge Kind = iota + 1
	// Counter only grows until the GPU or driver resets it (energy, ECC counts); carried as uint64.
	Counter
)

// Metric describes one per-GPU metric.
type Metric struct {
	ID     ID
	Column string // ClickHouse column in gpu_samples
	Kind   Kind
	Unit   string
	// Source names the NVML call or field the agent reads it from.
	Source string
	Help   string
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
)

var all = []Metric{
	{GPUUtil, "gpu_util", Gauge, "%", "nvmlDeviceGetUtilizationRates.gpu", "Percent of time a kernel was running on the GPU."},
	{MemUtil, "mem_util", Gauge, "%", "nvmlDeviceGetUtilizationRates.memory", "Percent of time device memory was read or written."},
	{FBUsed, "fb_used_mib", Gauge, "MiB", "nvmlDeviceGetMemoryInfo.used", "Framebuffer memory in use."},
	{FBFree, "fb_free_mib", Gauge, "MiB", "nvmlDeviceGetMemoryInfo.free", "Framebuffer memory free."},
	{FBTotal, "fb_total_mib", Gauge, "MiB", "nvmlDeviceGetMemoryInfo.total", "Framebuffer memory installed."},
	{Power, "power_w", Gauge, "W", "nvmlDeviceGetPowerUsage", "Board power draw."},
	{Energy, "energy_mj", Counter, "mJ", "nvmlDeviceGetTotalEnergyConsumption", "Energy used since the driver loaded."},
	{TempGPU, "temp_gpu_c", Gauge, "°C", "nvmlDeviceGetTemperature(GPU)", "GPU die temperature."},
	{TempMem, "temp_mem_c", Gauge, "°C", "NVML_FI_DEV_MEMORY_TEMP", "HBM temperature."},
	{ClockSM, "clock_sm_mhz", Gauge, "MHz", "nvmlDeviceGetClockInfo(SM)", "SM clock."},
	{ClockMem, "clock_mem_mhz", Gauge, "MHz", "nvmlDeviceGetClockInfo(MEM)", "Memory clock."},
	{ThrottleReasons, "throttle_reasons", Counter, "bitmask", "nvmlDeviceGetCurrentClocksEventReasons", "Active clock-event (throttle) reasons, NVML bitmask; not a counter, carried as uint64."},
	{PCIeTx, "pcie_tx_kibs", Gauge, "KiB/s", "nvmlDeviceGetPcieThroughput(TX)", "PCIe transmit throughput."},
	{PCIeRx, "pcie_rx_kibs", Gauge, "KiB/s", "nvmlDeviceGetPcieThroughput(RX)", "PCIe receive throughput."},
	{PCIeReplays, "pcie_replays", Counter, "count", "nvmlDeviceGetPcieReplayCounter", "PCIe replay counter."},
	{ECCSingleVolatile, "ecc_sbe_volatile", Counter, "count", "nvmlDeviceGetTotalEccErrors(CORRECTED, VOLATILE)", "Corrected ECC errors since the driver loaded."},
	{ECCDoubleVolatile, "ecc_dbe_volatile", Counter, "count", "nvmlDeviceGetTotalEccErrors(UNCORRECTED, VOLATILE)", "Uncorrected ECC errors since the driver loaded."},
	{ECCSingleAggregate, "ecc_sbe_aggregate", Counter, "count", "nvmlDeviceGetTotalEccErrors(CORRECTED, AGGREGATE)", "Corrected ECC errors over the GPU's life."},
	{ECCDoubleAggregate, "ecc_dbe_aggregate", Counter, "count", "nvmlDeviceGetTotalEccErrors(UNCORRECTED, AGGREGATE)", "Uncorrected ECC errors over the GPU's life."},
	{RetiredPages, "retired_pages", Counter, "count", "nvmlDeviceGetRetiredPages", "Memory pages retired (pre-Ampere) or rows remapped."},
	{FanSpeed, "fan_pct", Gauge, "%", "nvmlDeviceGetFanSpeed", "Fan speed, absent on passively cooled boards."},
	{PState, "pstate", Gauge, "P-state", "nvmlDeviceGetPerformanceState", "Performance state, 0 (max) to 15 (min)."},
	{EncUtil, "enc_util", Gauge, "%", "nvmlDeviceGetEncoderUtilization", "Percent of time the video encoder (NVENC) was busy."},
	{DecUtil, "dec_util", Gauge, "%", "nvmlDeviceGetDecoderUtilization", "Percent of time the video decoder (NVDEC) was busy."},
	{NVLinkTx, "nvlink_tx_kib", Counter, "KiB", "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX (all links)", "NVLink data sent, all links, since the driver loaded."},
	{NVLinkRx, "nvlink_rx_kib", Counter, "KiB", "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX (all links)", "NVLink data received, all links, since the driver loaded."},
	{RemappedCor, "remapped_rows_cor", Counter, "count", "NVML_FI_DEV_REMAPPED_COR", "Memory rows remapped after correctable errors (Ampere and later)."},
	{RemappedUnc, "remapped_rows_unc", Counter, "count", "NVML_FI_DEV_REMAPPED_UNC", "Memory rows remapped after uncorrectable errors (Ampere and later)."},
	{NVLinkCRCFlit, "nvlink_crc_flit_errors", Counter, "count", "NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", "NVLink flow-control CRC errors, all links."},
	{NVLinkReplay, "nvlink_replay_errors", Counter, "count", "NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL", "NVLink replays, all links."},
	{NVLinkRecovery, "nvlink_recovery_errors", Counter, "count", "NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL", "NVLink recoveries, all links."},
	{MIGMode, "mig_mode", Gauge, "bool", "nvmlDeviceGetMigMode (current)", "1 when the GPU is partitioned into MIG instances, 0 when not; absent on GPUs without MIG."},
	{SMActive, "sm_active", Gauge, "%", "GPM_METRIC_SM_UTIL (Hopper and later)", "Percent of time the SMs had work resident, averaged over SMs: how busy the GPU really is, unlike gpu_util."},
	{SMOccupancy, "sm_occupancy", Gauge, "%", "GPM_METRIC_SM_OCCUPANCY (Hopper and later)", "Resident warps as a percent of what the SMs can hold."},
	{TensorActive, "tensor_active", Gauge, "%", "GPM_METRIC_ANY_TENSOR_UTIL (Hopper and later)", "Percent of time any tensor-core pipe was busy."},
	{DRAMActive, "dram_active", Gauge, "%", "GPM_METRIC_DRAM_BW_UTIL (Hopper and later)", "Device memory bandwidth in use, percent of peak."},
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

// IndexOfColumn returns the position in All of the metric stored in column, or -1.
func IndexOfColumn(column string) int {
	for i, m := range all {
		if m.Column == column {
			return i
		}
	}
	return -1
}

// plausible holds the range a real reading of each gauge falls in, by position in All. A value
// outside it (a sensor glitch, a driver returning a sentinel, a corrupted agent) is stored as NULL
// rather than as a reading that would wreck every average it lands in.
var plausible = [...][2]float64{
	GPUUtil - 1:      {0, 100},
	MemUtil - 1:      {0, 100},
	FBUsed - 1:       {0, 1 << 24}, // 16 TiB
	FBFree - 1:       {0, 1 << 24},
	FBTotal - 1:      {0, 1 << 24},
	Power - 1:        {0, 10_000},
	TempGPU - 1:      {-40, 200},
	TempMem - 1:      {-40, 200},
	ClockSM - 1:      {0, 20_000},
	ClockMem - 1:     {0, 50_000},
	PCIeTx - 1:       {0, 1 << 30}, // 1 TiB/s
	PCIeRx - 1:       {0, 1 << 30},
	FanSpeed - 1:     {0, 200}, // NVML reports the intended speed, which some boards put above 100
	PState - 1:       {0, 15},  // 32 is NVML's "unknown"
	EncUtil - 1:      {0, 100},
	DecUtil - 1:      {0, 100},
	MIGMode - 1:      {0, 1},
	SMActive - 1:     {0, 100},
	SMOccupancy - 1:  {0, 100},
	TensorActive - 1: {0, 100},
	DRAMActive - 1:   {0, 100},
}

// Plausible returns the range of real readings of the gauge at position i of All; ok is false
// for counters.
func Plausible(i int) (lo, hi float64, ok bool) {
	if i < 0 || i >= len(all) || all[i].Kind != Gauge {
		return 0, 0, false
	}
	r := plausible[i]
	return r[0], r[1], true
}
