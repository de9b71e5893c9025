package nvml

import (
	"errors"
)

// reading is one value the source reads from a GPU each tick. Readings are matched to registry
// metrics by column name when the source is built, so a registry without a reading's column simply
// does not carry it, and a registry metric without a reading is sent as absent on every row.
type reading int

const (
	rGPUUtil reading = iota
	rMemUtil
	rFBUsed
	rFBFree
	rFBTotal
	rPower
	rEnergy
	rTempGPU
	rTempMem
	rClockSM
	rClockMem
	rThrottle
	rPCIeTx
	rPCIeRx
	rPCIeReplays
	rECCSbeVol
	rECCDbeVol
	rECCSbeAgg
	rECCDbeAgg
	rRetired
	rFan
	rPState
	rEncUtil
	rDecUtil
	rNVLinkTx
	rNVLinkRx
	rRemapCor
	rRemapUnc
	rNVLinkCRC
	rNVLinkReplay
	rNVLinkRecovery
	rMIGMode
	rSMActive
	rSMOccupancy
	rTensorActive
	rDRAMActive
	nReadings
)

// readings names each reading's gpu_samples column, kind and NVML source.
var readings = [nReadings]struct {
	column  string
	counter bool
	source  string
}{
	rGPUUtil:        {"gpu_util", false, "nvmlDeviceGetUtilizationRates.gpu"},
	rMemUtil:        {"mem_util", false, "nvmlDeviceGetUtilizationRates.memory"},
	rFBUsed:         {"fb_used_mib", false, "nvmlDeviceGetMemoryInfo.used / 2^20"},
	rFBFree:         {"fb_free_mib", false, "nvmlDeviceGetMemoryInfo.free / 2^20"},
	rFBTotal:        {"fb_total_mib", false, "nvmlDeviceGetMemoryInfo.total / 2^20"},
	rPower:          {"power_w", false, "nvmlDeviceGetPowerUsage / 1000"},
	rEnergy:         {"energy_mj", true, "NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION"},
	rTempGPU:        {"temp_gpu_c", false, "nvmlDeviceGetTemperature(GPU)"},
	rTempMem:        {"temp_mem_c", false, "NVML_FI_DEV_MEMORY_TEMP"},
	rClockSM:        {"clock_sm_mhz", false, "nvmlDeviceGetClockInfo(SM)"},
	rClockMem:       {"clock_mem_mhz", false, "nvmlDeviceGetClockInfo(MEM)"},
	rThrottle:       {"throttle_reasons", true, "nvmlDeviceGetCurrentClocksEventReasons"},
	rPCIeTx:         {"pcie_tx_kibs", false, "nvmlDeviceGetPcieThroughput(TX)"},
	rPCIeRx:         {"pcie_rx_kibs", false, "nvmlDeviceGetPcieThroughput(RX)"},
	rPCIeReplays:    {"pcie_replays", true, "NVML_FI_DEV_PCIE_REPLAY_COUNTER"},
	rECCSbeVol:      {"ecc_sbe_volatile", true, "NVML_FI_DEV_ECC_SBE_VOL_TOTAL"},
	rECCDbeVol:      {"ecc_dbe_volatile", true, "NVML_FI_DEV_ECC_DBE_VOL_TOTAL"},
	rECCSbeAgg:      {"ecc_sbe_aggregate", true, "NVML_FI_DEV_ECC_SBE_AGG_TOTAL"},
	rECCDbeAgg:      {"ecc_dbe_aggregate", true, "NVML_FI_DEV_ECC_DBE_AGG_TOTAL"},
	rRetired:        {"retired_pages", true, "NVML_FI_DEV_RETIRED_SBE + _DBE, else NVML_FI_DEV_REMAPPED_COR + _UNC"},
	rFan:            {"fan_pct", false, "nvmlDeviceGetFanSpeed"},
	rPState:         {"pstate", false, "nvmlDeviceGetPerformanceState"},
	rEncUtil:        {"enc_util", false, "nvmlDeviceGetEncoderUtilization"},
	rDecUtil:        {"dec_util", false, "nvmlDeviceGetDecoderUtilization"},
	rNVLinkTx:       {"nvlink_tx_kib", true, "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, all links"},
	rNVLinkRx:       {"nvlink_rx_kib", true, "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, all links"},
	rRemapCor:       {"remapped_rows_cor", true, "NVML_FI_DEV_REMAPPED_COR"},
	rRemapUnc:       {"remapped_rows_unc", true, "NVML_FI_DEV_REMAPPED_UNC"},
	rNVLinkCRC:      {"nvlink_crc_flit_errors", true, "NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL"},
	rNVLinkReplay:   {"nvlink_replay_errors", true, "NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL"},
	rNVLinkRecovery: {"nvlink_recovery_errors", true, "NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL"},
	rMIGMode:        {"mig_mode", false, "nvmlDeviceGetMigMode (current)"},
	rSMActive:       {"sm_active", false, "GPM_METRIC_SM_UTIL"},
	rSMOccupancy:    {"sm_occupancy", false, "GPM_METRIC_SM_OCCUPANCY"},
	rTensorActive:   {"tensor_active", false, "GPM_METRIC_ANY_TENSOR_UTIL"},
	rDRAMActive:     {"dram_active", false, "GPM_METRIC_DRAM_BW_UTIL"},
}

// gpmIDs are the GPM metrics read each tick (nvml.h NVML_GPM_METRIC_*), and gpmReading where
// each answer goes.
var (
	gpmIDs     = [...]uint32{2, 3, 5, 10} // SM_UTIL, SM_OCCUPANCY, ANY_TENSOR_UTIL, DRAM_BW_UTIL
	gpmReading = [len(gpmIDs)]reading{rSMActive, rSMOccupancy, rTensorActive, rDRAMActive}
)

// NVML field ids (nvml.h NVML_FI_DEV_*), read in one nvmlDeviceGetFieldValues call per GPU per
// tick instead of a dozen separate calls.
const (
	fiECCSbeVolTotal        = 3
	fiECCDbeVolTotal        = 4
	fiECCSbeAggTotal        = 5
	fiECCDbeAggTotal        = 6
	fiRetiredSBE            = 29
	fiRetiredDBE            = 30
	fiNVLinkCRCFlitTotal    = 38
	fiNVLinkReplayTotal     = 52
	fiNVLinkRecoveryTotal   = 59
	fiMemoryTemp            = 82
	fiTotalEnergy           = 83
	fiPCIeReplayCounter     = 94
	fiNVLinkThroughputDataT = 138
	fiNVLinkThroughputDataR = 139
	fiRemappedCor           = 142
	fiRemappedUnc           = 143
)

// fields is the field-value request, and fieldReading where each answer goes (-1: combined below).
var fields = [...]Field{
	{ID: fiMemoryTemp}, {ID: fiTotalEnergy}, {ID: fiPCIeReplayCounter},
	{ID: fiECCSbeVolTotal}, {ID: fiECCDbeVolTotal}, {ID: fiECCSbeAggTotal}, {ID: fiECCDbeAggTotal},
	{ID: fiRetiredSBE}, {ID: fiRetiredDBE}, {ID: fiRemappedCor}, {ID: fiRemappedUnc},
	{ID: fiNVLinkThroughputDataT, Scope: AllLinks}, {ID: fiNVLinkThroughputDataR, Scope: AllLinks},
	{ID: fiNVLinkCRCFlitTotal}, {ID: fiNVLinkReplayTotal}, {ID: fiNVLinkRecoveryTotal},
}

const (
	fRetiredSBE = 7
	fRetiredDBE = 8
)

var fieldReading = [len(fields)]reading{
	rTempMem, rEnergy, rPCIeReplays,
	rECCSbeVol, rECCDbeVol, rECCSbeAgg, rECCDbeAgg,
	-1, -1, rRemapCor, rRemapUnc,
	rNVLinkTx, rNVLinkRx,
	rNVLinkCRC, rNVLinkReplay, rNVLinkRecovery,
}

// gpuReading is one GPU's readings at one instant: u for counters, f for gauges, ok when read.
type gpuReading struct {
	u   [nReadings]uint64
	f   [nReadings]float64
	ok  [nReadings]bool
	err [nReadings]error
}

func (r *gpuReading) setF(k reading, v float64, err error) {
	r.f[k], r.ok[k], r.err[k] = v, err == nil, err
}

func (r *gpuReading) setU(k reading, v uint64, err error) {
	r.u[k], r.f[k], r.ok[k], r.err[k] = v, float64(v), err == nil, err
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

var errPStateUnknown = &Error{Op: "nvmlDeviceGetPerformanceState", Code: 0, Name: "P-state unknown (32)", Kind: ErrNotSupported}

// read asks d for every reading; buf is scratch for the field values (len(fields)).
// readMIG reads what NVML answers per MIG instance: its memory and its GPM metrics. The rest
// (utilisation, power, clocks, temperatures, errors) is the whole GPU's, on the GPU's row, and is
// absent on the instance's without a call.
func (r *gpuReading) readMIG(d Device) {
	r.readMemory(d)
	r.readGPM(d)
}

// readMemory reads the framebuffer in MiB; readGPM the GPM metrics since the previous read.
func (r *gpuReading) readMemory(d Device) {
	const mib = 1 << 20
	total, free, used, err := d.Memory()
	r.setF(rFBTotal, float64(total/mib), err)
	r.setF(rFBFree, float64(free/mib), err)
	r.setF(rFBUsed, float64(used/mib), err)
}

func (r *gpuReading) readGPM(d Device) {
	var gpm [len(gpmIDs)]FieldValue
	_ = d.GPM(gpmIDs[:], gpm[:]) // per-metric errors are in gpm[i].Err
	for i, k := range gpmReading {
		r.setF(k, gpm[i].Float, gpm[i].Err)
	}
}

func (r *gpuReading) read(d Device, buf []FieldValue) {
	gpu, mem, err := d.Utilization()
	r.setF(rGPUUtil, float64(gpu), err)
	r.setF(rMemUtil, float64(mem), err)
	if err != nil && errors.Is(err, ErrGPULost) {
		return // every other call would fail the same way, each after NVML's own timeout
	}
	r.readMemory(d)
	mw, err := d.Power()
	r.setF(rPower, float64(mw)/1000, err)
	v, err := d.Temperature()
	r.setF(rTempGPU, float64(v), err)
	v, err = d.SMClock()
	r.setF(rClockSM, float64(v), err)
	v, err = d.MemClock()
	r.setF(rClockMem, float64(v), err)
	reasons, err := d.ClockEventReasons()
	r.setU(rThrottle, reasons, err)
	v, err = d.PCIeTx()
	r.setF(rPCIeTx, float64(v), err)
	v, err = d.PCIeRx()
	r.setF(rPCIeRx, float64(v), err)
	v, err = d.FanSpeed()
	r.setF(rFan, float64(v), err)
	v, err = d.PerformanceState()
	if err == nil && v > 15 {
		err = errPStateUnknown
	}
	r.setF(rPState, float64(v), err)
	v, err = d.EncoderUtilization()
	r.setF(rEncUtil, float64(v), err)
	v, err = d.DecoderUtilization()
	r.setF(rDecUtil, float64(v), err)
	v, err = d.MIGMode()
	r.setF(rMIGMode, float64(v), err)

	buf = buf[:len(fields)]
	if err := d.FieldValues(fields[:], buf); err != nil {
		for i := range buf {
			buf[i] = FieldValue{Err: err}
		}
	}
	for i, k := range fieldReading {
		if k >= 0 {
			r.setU(k, buf[i].Uint, buf[i].Err)
			if k == rTempMem { // a gauge: keep the exact float (setU stored the integer part)
				r.f[k] = buf[i].Float
			}
		}
	}
	r.readGPM(d)
	// Retired pages: pre-Ampere GPUs retire pages; Ampere and later remap rows instead and
	// answer not supported, so the column then carries the remapped rows (as the registry says).
	sbe, dbe := buf[fRetiredSBE], buf[fRetiredDBE]
	switch {
	case sbe.Err == nil && dbe.Err == nil:
		r.setU(rRetired, sbe.Uint+dbe.Uint, nil)
	case r.ok[rRemapCor] && r.ok[rRemapUnc]:
		r.setU(rRetired, r.u[rRemapCor]+r.u[rRemapUnc], nil)
	case sbe.Err != nil:
		r.setU(rRetired, 0, sbe.Err)
	default:
		r.setU(rRetired, 0, dbe.Err)
	}
}
