//go:build cgo

// Package nvmlmock is NVIDIA's go-nvml mock of a DGX H100 (mock/dgxh100) with every reading the
// agent's NVML source asks for answered, and faults to inject: Xids, row remapping pending or
// failed, uncorrectable ECC, NVLink CRC errors, thermal violation time, and GPUs lost at start or
// while running. It is for tests that apply the health rules through the real NVML source
// (agent/nvml.FromNVML), in the agent and in `gpufleet health-check`.
package nvmlmock

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
)

// GPUs is how many GPUs the mock node has.
const GPUs = 8

// Node is a mock DGX H100. Its fault setters may be called while a source reads it.
type Node struct {
	Server *server.Server
	devs   []*server.Device
	xids   chan xidEvent

	remapPending, remapFailure, lost [GPUs]atomic.Bool
	dbe, crcFlit, thermalNs          [GPUs]atomic.Uint64
	lostAtStart, unopenable          [GPUs]bool
}

type xidEvent struct {
	dev  int
	code uint64
}

// UUID is GPU i's UUID on the mock (fixed, unlike dgxh100's random ones).
func UUID(i int) string { return fmt.Sprintf("GPU-%08x-0000-4000-8000-%012x", 0x5eed0000+i, i) }

// New returns a healthy node.
func New() *Node {
	n := &Node{Server: dgxh100.New(), xids: make(chan xidEvent, 64)}
	for i, d := range n.Server.Devices {
		dev := d.(*server.Device)
		n.devs = append(n.devs, dev)
		dev.UUID = UUID(i)
		dev.MemoryInfo.Used = uint64(1+i) << 30
		dev.MemoryInfo.Free = dev.MemoryInfo.Total - dev.MemoryInfo.Used
		lost := func() bool { return n.lost[i].Load() }
		dev.GetSerialFunc = func() (string, gonvml.Return) { return fmt.Sprintf("1654922%06d", i), gonvml.SUCCESS }
		dev.GetPciInfoFunc = func() (gonvml.PciInfo, gonvml.Return) {
			var p gonvml.PciInfo
			for j := 0; j < len(dev.PciBusID) && j < len(p.BusId)-1; j++ {
				p.BusId[j] = int8(dev.PciBusID[j])
			}
			return p, gonvml.SUCCESS
		}
		dev.GetUtilizationRatesFunc = func() (gonvml.Utilization, gonvml.Return) {
			if lost() {
				return gonvml.Utilization{}, gonvml.ERROR_GPU_IS_LOST
			}
			return gonvml.Utilization{Gpu: uint32(50 + i), Memory: uint32(20 + i)}, gonvml.SUCCESS
		}
		dev.GetPowerUsageFunc = func() (uint32, gonvml.Return) { return uint32(300_000 + 1500*i), gonvml.SUCCESS }
		dev.GetTemperatureFunc = func(gonvml.TemperatureSensors) (uint32, gonvml.Return) { return uint32(40 + i), gonvml.SUCCESS }
		dev.GetClockInfoFunc = func(c gonvml.ClockType) (uint32, gonvml.Return) {
			if c == gonvml.CLOCK_MEM {
				return 2619, gonvml.SUCCESS
			}
			return 1980, gonvml.SUCCESS
		}
		dev.GetCurrentClocksEventReasonsFunc = func() (uint64, gonvml.Return) { return 0, gonvml.SUCCESS }
		dev.GetPcieThroughputFunc = func(gonvml.PcieUtilCounter) (uint32, gonvml.Return) { return 1000, gonvml.SUCCESS }
		dev.GetFanSpeedFunc = func() (uint32, gonvml.Return) { return 0, gonvml.ERROR_NOT_SUPPORTED }
		dev.GetPerformanceStateFunc = func() (gonvml.Pstates, gonvml.Return) { return gonvml.PSTATE_0, gonvml.SUCCESS }
		dev.GetEncoderUtilizationFunc = func() (uint32, uint32, gonvml.Return) { return 0, 167_000, gonvml.SUCCESS }
		dev.GetDecoderUtilizationFunc = func() (uint32, uint32, gonvml.Return) { return 0, 167_000, gonvml.SUCCESS }
		dev.GetRemappedRowsFunc = func() (int, int, bool, bool, gonvml.Return) {
			return 0, 0, n.remapPending[i].Load(), n.remapFailure[i].Load(), gonvml.SUCCESS
		}
		dev.GetViolationStatusFunc = func(p gonvml.PerfPolicyType) (gonvml.ViolationTime, gonvml.Return) {
			if p == gonvml.PERF_POLICY_THERMAL {
				return gonvml.ViolationTime{ViolationTime: n.thermalNs[i].Load()}, gonvml.SUCCESS
			}
			return gonvml.ViolationTime{}, gonvml.SUCCESS
		}
		dev.GetEnforcedPowerLimitFunc = func() (uint32, gonvml.Return) { return 700_000, gonvml.SUCCESS }
		dev.GetPowerManagementLimitConstraintsFunc = func() (uint32, uint32, gonvml.Return) { return 200_000, 700_000, gonvml.SUCCESS }
		dev.GetFieldValuesFunc = func(vals []gonvml.FieldValue) gonvml.Return {
			for k := range vals {
				v := &vals[k]
				var u uint64
				ret := gonvml.SUCCESS
				switch v.FieldId {
				case gonvml.FI_DEV_MEMORY_TEMP:
					u = uint64(50 + i)
				case gonvml.FI_DEV_TOTAL_ENERGY_CONSUMPTION:
					u = 1_000_000 * uint64(1+i)
				case gonvml.FI_DEV_ECC_DBE_VOL_TOTAL, gonvml.FI_DEV_ECC_DBE_AGG_TOTAL:
					u = n.dbe[i].Load()
				case gonvml.FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL:
					u = n.crcFlit[i].Load()
				case gonvml.FI_DEV_PCIE_REPLAY_COUNTER, gonvml.FI_DEV_ECC_SBE_VOL_TOTAL, gonvml.FI_DEV_ECC_SBE_AGG_TOTAL,
					gonvml.FI_DEV_REMAPPED_COR, gonvml.FI_DEV_REMAPPED_UNC,
					gonvml.FI_DEV_NVLINK_THROUGHPUT_DATA_TX, gonvml.FI_DEV_NVLINK_THROUGHPUT_DATA_RX,
					gonvml.FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL, gonvml.FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL,
					gonvml.FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL:
				default: // Hopper remaps rows rather than retiring pages
					ret = gonvml.ERROR_NOT_SUPPORTED
				}
				v.NvmlReturn = uint32(ret)
				v.ValueType = uint32(gonvml.VALUE_TYPE_UNSIGNED_LONG_LONG)
				binary.LittleEndian.PutUint64(v.Value[:], u)
			}
			return gonvml.SUCCESS
		}
		dev.GetComputeRunningProcessesFunc = func() ([]gonvml.ProcessInfo, gonvml.Return) { return nil, gonvml.SUCCESS }
		dev.GetGraphicsRunningProcessesFunc = func() ([]gonvml.ProcessInfo, gonvml.Return) { return nil, gonvml.SUCCESS }
		dev.RegisterEventsFunc = func(uint64, gonvml.EventSet) gonvml.Return { return gonvml.SUCCESS }
		dev.GetMaxMigDeviceCountFunc = func() (int, gonvml.Return) { return 7, gonvml.SUCCESS }
		dev.GetMigDeviceHandleByIndexFunc = func(int) (gonvml.Device, gonvml.Return) { return nil, gonvml.ERROR_NOT_FOUND }
		dev.GpmQueryDeviceSupportFunc = func() (gonvml.GpmSupport, gonvml.Return) {
			return gonvml.GpmSupport{Version: gonvml.GPM_SUPPORT_VERSION}, gonvml.SUCCESS // no GPM: fewer calls to answer
		}
	}
	byIndex := n.Server.DeviceGetHandleByIndexFunc
	n.Server.DeviceGetHandleByIndexFunc = func(i int) (gonvml.Device, gonvml.Return) {
		if i >= 0 && i < GPUs && n.lostAtStart[i] {
			return nil, gonvml.ERROR_GPU_IS_LOST
		}
		if i >= 0 && i < GPUs && n.unopenable[i] {
			return nil, gonvml.ERROR_UNKNOWN
		}
		return byIndex(i)
	}
	n.Server.EventSetCreateFunc = func() (gonvml.EventSet, gonvml.Return) {
		return &mock.EventSet{
			WaitFunc: func(uint32) (gonvml.EventData, gonvml.Return) {
				select {
				case x := <-n.xids:
					return gonvml.EventData{Device: n.devs[x.dev], EventType: gonvml.EventTypeXidCriticalError, EventData: x.code}, gonvml.SUCCESS
				default:
					return gonvml.EventData{}, gonvml.ERROR_TIMEOUT
				}
			},
			Wait_v3Func: func(uint32) (gonvml.EventSetWaitData_v3, gonvml.Return) {
				select {
				case x := <-n.xids:
					e := gonvml.EventSetWaitData_v3{DataType: uint32(gonvml.EVENT_DATA_TYPE_NVML_EVENT),
						EventType: gonvml.EventTypeXidCriticalError, EventData: x.code}
					for j, c := range []byte(UUID(x.dev)) {
						e.Uuid[j] = int8(c)
					}
					return e, gonvml.SUCCESS
				default:
					return gonvml.EventSetWaitData_v3{}, gonvml.ERROR_TIMEOUT
				}
			},
			FreeFunc: func() gonvml.Return { return gonvml.SUCCESS },
		}, gonvml.SUCCESS
	}
	return n
}

// XID queues Xid code on GPU i: the next poll of the event set delivers it.
func (n *Node) XID(i int, code uint64) { n.xids <- xidEvent{i, code} }

// RemapPending sets whether GPU i has row remaps waiting for a reset.
func (n *Node) RemapPending(i int, on bool) { n.remapPending[i].Store(on) }

// RemapFailure sets whether a row remap failed on GPU i.
func (n *Node) RemapFailure(i int, on bool) { n.remapFailure[i].Store(on) }

// DBE sets GPU i's volatile (and aggregate) uncorrectable ECC count.
func (n *Node) DBE(i int, count uint64) { n.dbe[i].Store(count) }

// NVLinkCRC sets GPU i's NVLink flit CRC error total.
func (n *Node) NVLinkCRC(i int, count uint64) { n.crcFlit[i].Store(count) }

// Thermal sets GPU i's thermal violation time, in ns.
func (n *Node) Thermal(i int, ns uint64) { n.thermalNs[i].Store(ns) }

// Lose makes GPU i answer ERROR_GPU_IS_LOST from now on, as a GPU fallen off the bus does.
func (n *Node) Lose(i int) { n.lost[i].Store(true) }

// LostAtStart makes opening GPU i fail with ERROR_GPU_IS_LOST; call it before the source opens.
func (n *Node) LostAtStart(i int) { n.lostAtStart[i] = true }

// Unopenable makes opening GPU i fail with ERROR_UNKNOWN (counted by NVML, not lost, not usable);
// call it before the source opens.
func (n *Node) Unopenable(i int) { n.unopenable[i] = true }
