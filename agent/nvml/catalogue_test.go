//go:build cgo

package nvml

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"

	"github.com/gpufleet/gpufleet/internal/gpumetric"
)

// catalogueDevice is a go-nvml mock GPU that answers every field value and GPM metric with a value
// made of its own NVML id, and fails every other call: so a reading shows which field or GPM metric
// it came from, and a failed call's error names the call (Error.Op). Any NVML call it has no
// function for panics in the mock: a call the agent starts making must be added here. Fields in
// unsupported answer not supported. asked records the field values and GPM metrics requested.
func catalogueDevice(unsupported ...uint32) (d device, asked *catalogueAsk) {
	asked = &catalogueAsk{}
	const fail = gonvml.ERROR_UNKNOWN
	md := &mock.Device{
		GetUtilizationRatesFunc:          func() (gonvml.Utilization, gonvml.Return) { return gonvml.Utilization{}, fail },
		GetMemoryInfoFunc:                func() (gonvml.Memory, gonvml.Return) { return gonvml.Memory{}, fail },
		GetPowerUsageFunc:                func() (uint32, gonvml.Return) { return 0, fail },
		GetTemperatureFunc:               func(gonvml.TemperatureSensors) (uint32, gonvml.Return) { return 0, fail },
		GetClockInfoFunc:                 func(gonvml.ClockType) (uint32, gonvml.Return) { return 0, fail },
		GetCurrentClocksEventReasonsFunc: func() (uint64, gonvml.Return) { return 0, fail },
		GetPcieThroughputFunc:            func(gonvml.PcieUtilCounter) (uint32, gonvml.Return) { return 0, fail },
		GetFanSpeedFunc:                  func() (uint32, gonvml.Return) { return 0, fail },
		GetPerformanceStateFunc:          func() (gonvml.Pstates, gonvml.Return) { return 0, fail },
		GetEncoderUtilizationFunc:        func() (uint32, uint32, gonvml.Return) { return 0, 0, fail },
		GetDecoderUtilizationFunc:        func() (uint32, uint32, gonvml.Return) { return 0, 0, fail },
		GetMigModeFunc:                   func() (int, int, gonvml.Return) { return 0, 0, fail },
		GetRemappedRowsFunc:              func() (int, int, bool, bool, gonvml.Return) { return 0, 0, false, false, fail },
		GetViolationStatusFunc: func(gonvml.PerfPolicyType) (gonvml.ViolationTime, gonvml.Return) {
			return gonvml.ViolationTime{}, fail
		},
		GetEnforcedPowerLimitFunc:              func() (uint32, gonvml.Return) { return 0, fail },
		GetPowerManagementLimitConstraintsFunc: func() (uint32, uint32, gonvml.Return) { return 0, 0, fail },
		GetFieldValuesFunc: func(vals []gonvml.FieldValue) gonvml.Return {
			asked.fields = nil
			for k := range vals {
				v := &vals[k]
				asked.fields = append(asked.fields, Field{ID: v.FieldId, Scope: v.ScopeId})
				v.NvmlReturn, v.ValueType = uint32(gonvml.SUCCESS), uint32(gonvml.VALUE_TYPE_UNSIGNED_LONG_LONG)
				if slices.Contains(unsupported, v.FieldId) {
					v.NvmlReturn = uint32(gonvml.ERROR_NOT_SUPPORTED)
				}
				binary.LittleEndian.PutUint64(v.Value[:], fieldAnswer(v.FieldId, v.ScopeId == AllLinks))
			}
			return gonvml.SUCCESS
		},
		GpmQueryDeviceSupportFunc: func() (gonvml.GpmSupport, gonvml.Return) {
			return gonvml.GpmSupport{Version: gonvml.GPM_SUPPORT_VERSION, IsSupportedDevice: 1}, gonvml.SUCCESS
		},
	}
	lib := &mock.Interface{
		GpmSampleAllocFunc: func() (gonvml.GpmSample, gonvml.Return) { return &gpmSample{}, gonvml.SUCCESS },
		GpmMetricsGetFunc: func(mg *gonvml.GpmMetricsGetType) gonvml.Return {
			asked.gpm = nil
			for k := range mg.NumMetrics {
				m := &mg.Metrics[k]
				asked.gpm = append(asked.gpm, m.MetricId)
				m.Value, m.NvmlReturn = gpmAnswer(m.MetricId), uint32(gonvml.SUCCESS)
			}
			return gonvml.SUCCESS
		},
	}
	return newDevice(md, lib), asked
}

type catalogueAsk struct {
	fields []Field
	gpm    []uint32
}

// fieldAnswer is what catalogueDevice answers for a field value: its id, and whether it was asked
// summed over all NVLinks.
func fieldAnswer(id uint32, allLinks bool) uint64 {
	v := 1000 + uint64(id)
	if allLinks {
		v += 1_000_000
	}
	return v
}

func gpmAnswer(id uint32) float64 { return float64(id) + 0.5 }

func fieldSum(fs []gpumetric.Field, allLinks bool) uint64 {
	var sum uint64
	for _, f := range fs {
		sum += fieldAnswer(uint32(f), allLinks)
	}
	return sum
}

// Every catalogue metric is read, from exactly the NVML source its row names: a call whose error
// names the row's Call, the sum of the row's field values (asked over all links when the row says
// so), or the row's GPM metric. A metric the agent has no reading for, a reading from another call
// or field than the row names, and a field or GPM metric asked for that no row names all fail here.
// Pre-Ampere GPUs that retire pages and later ones that remap rows instead are both covered.
func TestCatalogueSourcesAreWhatTheAgentReads(t *testing.T) {
	for _, tc := range []struct {
		name        string
		unsupported []uint32
		retired     uint64                  // what retired_pages reads, unless in unread
		unread      map[gpumetric.ID]uint32 // metrics absent, and the field whose error they carry
	}{
		{"retires pages", nil,
			fieldSum([]gpumetric.Field{gpumetric.FieldRetiredSBE, gpumetric.FieldRetiredDBE}, false), nil},
		{"remaps rows", []uint32{gonvml.FI_DEV_RETIRED_SBE, gonvml.FI_DEV_RETIRED_DBE, gonvml.FI_DEV_RETIRED_PENDING},
			fieldSum([]gpumetric.Field{gpumetric.FieldRemappedCor, gpumetric.FieldRemappedUnc}, false),
			map[gpumetric.ID]uint32{gpumetric.RetiredSBE: gonvml.FI_DEV_RETIRED_SBE, gpumetric.RetiredDBE: gonvml.FI_DEV_RETIRED_DBE,
				gpumetric.RetiredPending: gonvml.FI_DEV_RETIRED_PENDING}},
		{"neither", []uint32{gonvml.FI_DEV_RETIRED_DBE, gonvml.FI_DEV_REMAPPED_UNC}, 0,
			map[gpumetric.ID]uint32{gpumetric.RetiredPages: gonvml.FI_DEV_RETIRED_DBE, gpumetric.RemappedUnc: gonvml.FI_DEV_REMAPPED_UNC,
				gpumetric.RetiredDBE: gonvml.FI_DEV_RETIRED_DBE}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, asked := catalogueDevice(tc.unsupported...)
			var r gpuReading
			sc := newScratch()
			r.read(d, sc) // the first GPM read has no interval to measure
			r = gpuReading{}
			r.read(d, sc)

			var wantFields []Field
			var wantGPM []uint32
			for _, m := range gpumetric.All() {
				src, id := m.Source, m.ID
				if !r.ok[id] && r.err[id] == nil {
					t.Errorf("%s: the agent has no reading for it (source %s)", m.Column, src)
					continue
				}
				for _, f := range append(slices.Clone(src.Fields), src.Else...) {
					fv := Field{ID: uint32(f)}
					if src.AllLinks {
						fv.Scope = AllLinks
					}
					if !slices.Contains(wantFields, fv) {
						wantFields = append(wantFields, fv)
					}
				}
				var e *Error
				switch {
				case src.Call != "":
					if !errors.As(r.err[id], &e) || e.Op != src.Call {
						t.Errorf("%s: read with %v (ok %v), want a failed %s: the catalogue names the call the agent makes", m.Column, r.err[id], r.ok[id], src.Call)
					}
				case src.GPM != 0:
					wantGPM = append(wantGPM, uint32(src.GPM))
					if !r.ok[id] || r.f[id] != gpmAnswer(uint32(src.GPM)) {
						t.Errorf("%s: read %v (err %v), want %s's answer %v", m.Column, r.f[id], r.err[id], src.GPM, gpmAnswer(uint32(src.GPM)))
					}
				case tc.unread[id] != 0:
					op := fmt.Sprintf("nvmlDeviceGetFieldValues(field %d)", tc.unread[id])
					if r.ok[id] || !errors.As(r.err[id], &e) || e.Op != op || !errors.Is(e, ErrNotSupported) {
						t.Errorf("%s: ok %v err %v, want not supported from %s", m.Column, r.ok[id], r.err[id], op)
					}
				default:
					want := fieldSum(src.Fields, src.AllLinks)
					if id == gpumetric.RetiredPages {
						want = tc.retired
					}
					if !r.ok[id] || r.u[id] != want {
						t.Errorf("%s: read %d (err %v), want %d from %s", m.Column, r.u[id], r.err[id], want, src)
					}
				}
			}
			if r.ok[0] || r.err[0] != nil {
				t.Errorf("slot 0, which is no metric, was read")
			}
			if !slices.Equal(asked.fields, wantFields) {
				t.Errorf("asked NVML for field values %v, want the catalogue's %v", asked.fields, wantFields)
			}
			if !slices.Equal(asked.gpm, wantGPM) {
				t.Errorf("asked NVML for GPM metrics %v, want the catalogue's %v", asked.gpm, wantGPM)
			}
		})
	}
}

// The catalogue's field value and GPM ids are nvml.h's, as go-nvml publishes them, under nvml.h's
// names (what docs/schema.md shows).
func TestCatalogueIDsAreNVMLs(t *testing.T) {
	fields := []struct {
		f    gpumetric.Field
		nvml uint32
		name string
	}{
		{gpumetric.FieldECCSbeVolTotal, gonvml.FI_DEV_ECC_SBE_VOL_TOTAL, "NVML_FI_DEV_ECC_SBE_VOL_TOTAL"},
		{gpumetric.FieldECCDbeVolTotal, gonvml.FI_DEV_ECC_DBE_VOL_TOTAL, "NVML_FI_DEV_ECC_DBE_VOL_TOTAL"},
		{gpumetric.FieldECCSbeAggTotal, gonvml.FI_DEV_ECC_SBE_AGG_TOTAL, "NVML_FI_DEV_ECC_SBE_AGG_TOTAL"},
		{gpumetric.FieldECCDbeAggTotal, gonvml.FI_DEV_ECC_DBE_AGG_TOTAL, "NVML_FI_DEV_ECC_DBE_AGG_TOTAL"},
		{gpumetric.FieldRetiredSBE, gonvml.FI_DEV_RETIRED_SBE, "NVML_FI_DEV_RETIRED_SBE"},
		{gpumetric.FieldRetiredDBE, gonvml.FI_DEV_RETIRED_DBE, "NVML_FI_DEV_RETIRED_DBE"},
		{gpumetric.FieldRetiredPending, gonvml.FI_DEV_RETIRED_PENDING, "NVML_FI_DEV_RETIRED_PENDING"},
		{gpumetric.FieldNVLinkCRCDataErrorTotal, gonvml.FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL, "NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL"},
		{gpumetric.FieldNVLinkCRCFlitErrorTotal, gonvml.FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL, "NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL"},
		{gpumetric.FieldNVLinkReplayErrorTotal, gonvml.FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL, "NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL"},
		{gpumetric.FieldNVLinkRecoveryErrorTotal, gonvml.FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL, "NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL"},
		{gpumetric.FieldMemoryTemp, gonvml.FI_DEV_MEMORY_TEMP, "NVML_FI_DEV_MEMORY_TEMP"},
		{gpumetric.FieldTotalEnergy, gonvml.FI_DEV_TOTAL_ENERGY_CONSUMPTION, "NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION"},
		{gpumetric.FieldPCIeReplayCounter, gonvml.FI_DEV_PCIE_REPLAY_COUNTER, "NVML_FI_DEV_PCIE_REPLAY_COUNTER"},
		{gpumetric.FieldNVLinkThroughputDataTx, gonvml.FI_DEV_NVLINK_THROUGHPUT_DATA_TX, "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX"},
		{gpumetric.FieldNVLinkThroughputDataRx, gonvml.FI_DEV_NVLINK_THROUGHPUT_DATA_RX, "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX"},
		{gpumetric.FieldRemappedCor, gonvml.FI_DEV_REMAPPED_COR, "NVML_FI_DEV_REMAPPED_COR"},
		{gpumetric.FieldRemappedUnc, gonvml.FI_DEV_REMAPPED_UNC, "NVML_FI_DEV_REMAPPED_UNC"},
	}
	gpms := []struct {
		g    gpumetric.GPMMetric
		nvml gonvml.GpmMetricId
		name string
	}{
		{gpumetric.GPMSMUtil, gonvml.GPM_METRIC_SM_UTIL, "NVML_GPM_METRIC_SM_UTIL"},
		{gpumetric.GPMSMOccupancy, gonvml.GPM_METRIC_SM_OCCUPANCY, "NVML_GPM_METRIC_SM_OCCUPANCY"},
		{gpumetric.GPMAnyTensorUtil, gonvml.GPM_METRIC_ANY_TENSOR_UTIL, "NVML_GPM_METRIC_ANY_TENSOR_UTIL"},
		{gpumetric.GPMDRAMBWUtil, gonvml.GPM_METRIC_DRAM_BW_UTIL, "NVML_GPM_METRIC_DRAM_BW_UTIL"},
	}
	for _, c := range fields {
		if uint32(c.f) != c.nvml || c.f.String() != c.name {
			t.Errorf("field %s (%d): nvml.h has %s = %d", c.f, uint32(c.f), c.name, c.nvml)
		}
	}
	for _, c := range gpms {
		if uint32(c.g) != uint32(c.nvml) || c.g.String() != c.name {
			t.Errorf("GPM metric %s (%d): nvml.h has %s = %d", c.g, uint32(c.g), c.name, c.nvml)
		}
	}
	// Every id a row names is checked above.
	for _, m := range gpumetric.All() {
		for _, f := range append(slices.Clone(m.Source.Fields), m.Source.Else...) {
			if !slices.ContainsFunc(fields, func(c struct {
				f    gpumetric.Field
				nvml uint32
				name string
			}) bool {
				return c.f == f
			}) {
				t.Errorf("%s: field %s is not checked against nvml.h here", m.Column, f)
			}
		}
		if g := m.Source.GPM; g != 0 && !slices.ContainsFunc(gpms, func(c struct {
			g    gpumetric.GPMMetric
			nvml gonvml.GpmMetricId
			name string
		}) bool {
			return c.g == g
		}) {
			t.Errorf("%s: GPM metric %s is not checked against nvml.h here", m.Column, g)
		}
	}
}

// PerfPolicy keeps nvml.h's numbering and names, and the adapter asks go-nvml for the same policy.
func TestPerfPoliciesAreNVMLs(t *testing.T) {
	for _, c := range []struct {
		p    PerfPolicy
		nvml gonvml.PerfPolicyType
		name string
	}{
		{PolicyPower, gonvml.PERF_POLICY_POWER, "POWER"},
		{PolicyThermal, gonvml.PERF_POLICY_THERMAL, "THERMAL"},
		{PolicySyncBoost, gonvml.PERF_POLICY_SYNC_BOOST, "SYNC_BOOST"},
		{PolicyBoardLimit, gonvml.PERF_POLICY_BOARD_LIMIT, "BOARD_LIMIT"},
		{PolicyLowUtilization, gonvml.PERF_POLICY_LOW_UTILIZATION, "LOW_UTILIZATION"},
		{PolicyReliability, gonvml.PERF_POLICY_RELIABILITY, "RELIABILITY"},
	} {
		if uint32(c.p) != uint32(c.nvml) || perfPolicies[c.p] != c.nvml || c.p.String() != c.name {
			t.Errorf("policy %s (%d): nvml.h has NVML_PERF_POLICY_%s = %d, adapter asks %d", c.p, uint32(c.p), c.name, c.nvml, perfPolicies[c.p])
		}
	}
}
