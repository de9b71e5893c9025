//go:build cgo

package dcgmcompat

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"

	agentnvml "github.com/gpufleet/gpufleet/agent/nvml"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// mockDGX is NVIDIA's go-nvml mock of a DGX H100, with the readings the dgxh100 mock leaves out
// answered per GPU (GPU i reads 50+i % utilisation, 300+1.5i W, …), and GPU 1 partitioned into two
// MIG 1g.10gb instances at MIG device indexes 0 and 3.
func mockDGX() *server.Server {
	srv := dgxh100.New()
	migs := map[int]map[int]*mock.Device{}
	for i, d := range srv.Devices {
		dev := d.(*server.Device)
		dev.UUID = fmt.Sprintf("GPU-%08x-0000-4000-8000-%012x", 0x5eed0000+i, i) // the mock draws random ones
		dev.MemoryInfo.Used = uint64(1+i) << 30
		dev.MemoryInfo.Free = dev.MemoryInfo.Total - dev.MemoryInfo.Used
		dev.GetSerialFunc = func() (string, gonvml.Return) { return fmt.Sprintf("1654922%06d", i), gonvml.SUCCESS }
		dev.GetPciInfoFunc = func() (gonvml.PciInfo, gonvml.Return) {
			var p gonvml.PciInfo
			for j := 0; j < len(dev.PciBusID) && j < len(p.BusId)-1; j++ {
				p.BusId[j] = int8(dev.PciBusID[j])
			}
			return p, gonvml.SUCCESS
		}
		dev.GetUtilizationRatesFunc = func() (gonvml.Utilization, gonvml.Return) {
			return gonvml.Utilization{Gpu: uint32(50 + i), Memory: uint32(20 + i)}, gonvml.SUCCESS
		}
		dev.GetPowerUsageFunc = func() (uint32, gonvml.Return) { return uint32(300_000 + 1500*i), gonvml.SUCCESS } // mW
		dev.GetTemperatureFunc = func(gonvml.TemperatureSensors) (uint32, gonvml.Return) { return uint32(40 + i), gonvml.SUCCESS }
		dev.GetClockInfoFunc = func(c gonvml.ClockType) (uint32, gonvml.Return) {
			if c == gonvml.CLOCK_MEM {
				return 2619, gonvml.SUCCESS
			}
			return 1980, gonvml.SUCCESS
		}
		dev.GetCurrentClocksEventReasonsFunc = func() (uint64, gonvml.Return) { return 0, gonvml.SUCCESS }
		dev.GetPcieThroughputFunc = func(c gonvml.PcieUtilCounter) (uint32, gonvml.Return) {
			if c == gonvml.PCIE_UTIL_TX_BYTES {
				return uint32(1000 + i), gonvml.SUCCESS
			}
			return uint32(2000 + i), gonvml.SUCCESS
		}
		dev.GetFanSpeedFunc = func() (uint32, gonvml.Return) { return 0, gonvml.ERROR_NOT_SUPPORTED }
		dev.GetPerformanceStateFunc = func() (gonvml.Pstates, gonvml.Return) { return gonvml.PSTATE_0, gonvml.SUCCESS }
		dev.GetEncoderUtilizationFunc = func() (uint32, uint32, gonvml.Return) { return uint32(i), 167_000, gonvml.SUCCESS }
		dev.GetDecoderUtilizationFunc = func() (uint32, uint32, gonvml.Return) { return uint32(2 * i), 167_000, gonvml.SUCCESS }
		// GPU 2 has rows waiting for a reset, GPU 3 a failed remap; GPU i was held down by power
		// for i s and by heat for i/2 s (NVML answers ns).
		dev.GetRemappedRowsFunc = func() (int, int, bool, bool, gonvml.Return) { return i, 1, i == 2, i == 3, gonvml.SUCCESS }
		dev.GetViolationStatusFunc = func(p gonvml.PerfPolicyType) (gonvml.ViolationTime, gonvml.Return) {
			switch p {
			case gonvml.PERF_POLICY_POWER:
				return gonvml.ViolationTime{ViolationTime: uint64(i) * 1_000_000_000}, gonvml.SUCCESS
			case gonvml.PERF_POLICY_THERMAL:
				return gonvml.ViolationTime{ViolationTime: uint64(i) * 500_000_000}, gonvml.SUCCESS
			}
			return gonvml.ViolationTime{}, gonvml.SUCCESS
		}
		dev.GetEnforcedPowerLimitFunc = func() (uint32, gonvml.Return) { return 700_000, gonvml.SUCCESS } // mW
		dev.GetPowerManagementLimitConstraintsFunc = func() (uint32, uint32, gonvml.Return) { return 200_000, 700_000, gonvml.SUCCESS }
		dev.GetFieldValuesFunc = func(vals []gonvml.FieldValue) gonvml.Return {
			for k := range vals {
				v := &vals[k]
				u, ret := uint64(0), gonvml.SUCCESS
				switch v.FieldId {
				case gonvml.FI_DEV_MEMORY_TEMP:
					u = uint64(50 + i)
				case gonvml.FI_DEV_TOTAL_ENERGY_CONSUMPTION: // mJ
					u = 1_000_000 * uint64(1+i)
				case gonvml.FI_DEV_PCIE_REPLAY_COUNTER, gonvml.FI_DEV_REMAPPED_COR:
					u = uint64(i)
				case gonvml.FI_DEV_ECC_SBE_AGG_TOTAL:
					u = 100
				case gonvml.FI_DEV_REMAPPED_UNC:
					u = 1
				case gonvml.FI_DEV_NVLINK_THROUGHPUT_DATA_TX, gonvml.FI_DEV_NVLINK_THROUGHPUT_DATA_RX:
					u = 1 << 30
				case gonvml.FI_DEV_ECC_SBE_VOL_TOTAL, gonvml.FI_DEV_ECC_DBE_VOL_TOTAL, gonvml.FI_DEV_ECC_DBE_AGG_TOTAL,
					gonvml.FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL, gonvml.FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL,
					gonvml.FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL, gonvml.FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL:
				default: // Hopper remaps rows rather than retiring pages
					ret = gonvml.ERROR_NOT_SUPPORTED
				}
				v.NvmlReturn, v.ValueType = uint32(ret), uint32(gonvml.VALUE_TYPE_UNSIGNED_LONG_LONG)
				binary.LittleEndian.PutUint64(v.Value[:], u)
			}
			return gonvml.SUCCESS
		}
		dev.RegisterEventsFunc = func(uint64, gonvml.EventSet) gonvml.Return { return gonvml.SUCCESS }
		dev.GetMaxMigDeviceCountFunc = func() (int, gonvml.Return) { return 7, gonvml.SUCCESS }
		dev.GetMigDeviceHandleByIndexFunc = func(k int) (gonvml.Device, gonvml.Return) {
			if m, ok := migs[i][k]; ok {
				return m, gonvml.SUCCESS
			}
			return nil, gonvml.ERROR_NOT_FOUND
		}
		dev.GpmQueryDeviceSupportFunc = func() (gonvml.GpmSupport, gonvml.Return) {
			return gonvml.GpmSupport{Version: gonvml.GPM_SUPPORT_VERSION, IsSupportedDevice: 1}, gonvml.SUCCESS
		}
	}
	parent := srv.Devices[1].(*server.Device)
	parent.MigMode = 1
	migs[1] = map[int]*mock.Device{}
	for _, k := range []int{0, 3} {
		migs[1][k] = &mock.Device{
			GetUUIDFunc: func() (string, gonvml.Return) { return fmt.Sprintf("MIG-%s-%d", parent.UUID[4:], k), gonvml.SUCCESS },
			GetNameFunc: func() (string, gonvml.Return) { return parent.Config.Name + " MIG 1g.10gb", gonvml.SUCCESS },
			GetMemoryInfoFunc: func() (gonvml.Memory, gonvml.Return) {
				return gonvml.Memory{Total: 10 << 30, Used: uint64(k+1) << 30, Free: uint64(9-k) << 30}, gonvml.SUCCESS
			},
			GetGpuInstanceIdFunc: func() (int, gonvml.Return) { return 2*k + 1, gonvml.SUCCESS },
		}
	}
	srv.GpmSampleAllocFunc = func() (gonvml.GpmSample, gonvml.Return) { return &gpmSample{}, gonvml.SUCCESS }
	srv.GpmMetricsGetFunc = func(mg *gonvml.GpmMetricsGetType) gonvml.Return {
		// SM activity 60 %, occupancy 30 %, any tensor 40 %, DRAM 20 %; a MIG instance half of each.
		base := map[uint32]float64{2: 60, 3: 30, 5: 40, 10: 20}
		for k := range mg.NumMetrics {
			m := &mg.Metrics[k]
			v, ok := base[m.MetricId]
			if !ok {
				m.NvmlReturn = uint32(gonvml.ERROR_NOT_SUPPORTED)
				continue
			}
			if mg.Sample2.(*gpmSample).mig {
				v /= 2
			}
			m.Value, m.NvmlReturn = v, uint32(gonvml.SUCCESS)
		}
		return gonvml.SUCCESS
	}
	srv.EventSetCreateFunc = func() (gonvml.EventSet, gonvml.Return) {
		return &mock.EventSet{
			WaitFunc: func(uint32) (gonvml.EventData, gonvml.Return) { return gonvml.EventData{}, gonvml.ERROR_TIMEOUT },
			Wait_v3Func: func(uint32) (gonvml.EventSetWaitData_v3, gonvml.Return) {
				return gonvml.EventSetWaitData_v3{}, gonvml.ERROR_TIMEOUT
			},
			FreeFunc: func() gonvml.Return { return gonvml.SUCCESS },
		}, gonvml.SUCCESS
	}
	return srv
}

// gpmSample is a GPM sample as the mock hands them out: whether it was taken of a MIG instance.
type gpmSample struct{ mig bool }

func (g *gpmSample) Get(gonvml.Device) gonvml.Return         { g.mig = false; return gonvml.SUCCESS }
func (g *gpmSample) MigGet(gonvml.Device, int) gonvml.Return { g.mig = true; return gonvml.SUCCESS }
func (g *gpmSample) Free() gonvml.Return                     { return gonvml.SUCCESS }

// TestNVMLExpositionGolden reads a mock DGX H100 (one GPU in MIG mode) through the agent's own
// NVML source, two samples (GPM needs a pair), and compares the scrape with testdata/dgxh100.golden:
// NVML's milliwatts and bytes served as DCGM's W and MiB, the MIG instances labelled with their
// GPU's index, UUID and model and their profile and MIG device index.
func TestNVMLExpositionGolden(t *testing.T) {
	src, err := agentnvml.New(agentnvml.FromNVML(mockDGX()), agentnvml.Options{Cluster: "c1", Node: "dgx-01"})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	c := New()
	b := &wirepb.SampleBatch{Node: "dgx-01"}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range 2 {
		before := len(b.TimeUnixMs)
		ev := src.Sample(t0.Add(time.Duration(i)*time.Second), b, nil)
		c.Observe(b, before, ev)
	}
	got := exposition(t, c)
	golden(t, "dgxh100.golden", got)
	if n := series(got, "DCGM_FI_DEV_GPU_UTIL"); n != 8 {
		t.Errorf("%d DCGM_FI_DEV_GPU_UTIL series, want 8 (MIG instances have no utilisation)", n)
	}
	if n := series(got, "DCGM_FI_DEV_FB_USED"); n != 10 {
		t.Errorf("%d DCGM_FI_DEV_FB_USED series, want 10 (8 GPUs, 2 MIG instances)", n)
	}
}
