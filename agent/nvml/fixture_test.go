//go:build cgo

package nvml

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
)

// node is a mock DGX (NVIDIA's own go-nvml mocks) whose devices answer every question the source
// asks with readings that depend on the GPU, so tests can check each lands in the right row.
// The dgx* mocks answer identity and memory only; the rest is filled in here per device.
type node struct {
	srv  *server.Server
	devs []*server.Device
	// Per-GPU state tests change between ticks.
	reasons []atomic.Uint64
	sbe     []atomic.Uint64
	dbe     []atomic.Uint64
	xids    chan xidEvent
	// noV3 makes the library lack nvmlEventSetWait_v3 (drivers before it): set before New.
	noV3 atomic.Bool
	// v3NoUUID makes nvmlEventSetWait_v3 leave the GPU's UUID empty.
	v3NoUUID atomic.Bool
	// remapPending and remapFailure are what nvmlDeviceGetRemappedRows answers; viol each
	// policy's violation time in ns (by PerfPolicy).
	remapPending, remapFailure []atomic.Bool
	viol                       [][len(policyNames)]atomic.Uint64
	// noGPM marks GPUs that answer GPM is not supported (pre-Hopper boards).
	noGPM []atomic.Bool
	// gpmSamples are the GPM samples the source allocated.
	gpmSamples []*gpmSample
	// migs are each GPU's MIG instances by MIG device index (nil: an empty slot); see partition.
	migs [][]*mock.Device
}

// partition gives GPU i (its MigMode set) MIG instances at the MIG device indexes slots: instance
// at slot k has GPU instance id 2k+1, UUID MIG-<i>-<k>, a 10 GiB share of which k+1 GiB is used.
func (n *node) partition(i int, slots ...int) {
	n.devs[i].MigMode = 1
	n.migs[i] = make([]*mock.Device, 7)
	for _, k := range slots {
		n.migs[i][k] = &mock.Device{
			GetUUIDFunc: func() (string, gonvml.Return) { return fmt.Sprintf("MIG-%d-%d", i, k), gonvml.SUCCESS },
			GetNameFunc: func() (string, gonvml.Return) { return n.devs[i].Config.Name + " MIG 1g.10gb", gonvml.SUCCESS },
			GetMemoryInfoFunc: func() (gonvml.Memory, gonvml.Return) {
				return gonvml.Memory{Total: 10 << 30, Used: uint64(k+1) << 30, Free: uint64(9-k) << 30}, gonvml.SUCCESS
			},
			GetGpuInstanceIdFunc: func() (int, gonvml.Return) { return 2*k + 1, gonvml.SUCCESS },
		}
	}
}

// gpmSample is a GPM sample as the mock library hands them out: it remembers the GPU it was taken
// from, so GpmMetricsGet can answer for that GPU, and whether it was freed.
type gpmSample struct {
	dev   gonvml.Device
	gi    int // the GPU instance a MIG sample was taken of; -1 for the whole GPU
	freed bool
}

func (g *gpmSample) Get(d gonvml.Device) gonvml.Return { g.dev, g.gi = d, -1; return gonvml.SUCCESS }
func (g *gpmSample) MigGet(d gonvml.Device, gi int) gonvml.Return {
	g.dev, g.gi = d, gi
	return gonvml.SUCCESS
}
func (g *gpmSample) Free() gonvml.Return { g.freed = true; return gonvml.SUCCESS }

// gpmBase is what the mock answers for each GPM metric on GPU 0; GPU i answers base + i.
var gpmBase = map[uint32]float64{2: 60, 3: 30, 5: 40, 10: 20}

func newNode(t testing.TB, srv *server.Server) *node {
	t.Helper()
	n := &node{srv: srv, xids: make(chan xidEvent, 16)}
	n.remapPending = make([]atomic.Bool, len(srv.Devices))
	n.remapFailure = make([]atomic.Bool, len(srv.Devices))
	n.viol = make([][len(policyNames)]atomic.Uint64, len(srv.Devices))
	n.reasons = make([]atomic.Uint64, len(srv.Devices))
	n.sbe = make([]atomic.Uint64, len(srv.Devices))
	n.dbe = make([]atomic.Uint64, len(srv.Devices))
	n.noGPM = make([]atomic.Bool, len(srv.Devices))
	n.migs = make([][]*mock.Device, len(srv.Devices))
	for i, d := range srv.Devices {
		dev := d.(*server.Device)
		n.devs = append(n.devs, dev)
		dev.MemoryInfo.Used = uint64(1+i) << 30
		dev.MemoryInfo.Free = dev.MemoryInfo.Total - dev.MemoryInfo.Used
		dev.GetSerialFunc = func() (string, gonvml.Return) { return fmt.Sprintf("1654922%06d", i), gonvml.SUCCESS }
		dev.GetPciInfoFunc = func() (gonvml.PciInfo, gonvml.Return) {
			p := gonvml.PciInfo{PciDeviceId: dev.Config.PciDeviceId}
			for j := 0; j < len(dev.PciBusID) && j < len(p.BusId)-1; j++ {
				p.BusId[j] = int8(dev.PciBusID[j])
			}
			return p, gonvml.SUCCESS
		}
		dev.GetUtilizationRatesFunc = func() (gonvml.Utilization, gonvml.Return) {
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
		dev.GetCurrentClocksEventReasonsFunc = func() (uint64, gonvml.Return) { return n.reasons[i].Load(), gonvml.SUCCESS }
		dev.GetPcieThroughputFunc = func(c gonvml.PcieUtilCounter) (uint32, gonvml.Return) {
			if c == gonvml.PCIE_UTIL_TX_BYTES {
				return uint32(1000 + i), gonvml.SUCCESS
			}
			return uint32(2000 + i), gonvml.SUCCESS
		}
		// SXM boards have no fan, and the real driver says so.
		dev.GetFanSpeedFunc = func() (uint32, gonvml.Return) { return 0, gonvml.ERROR_NOT_SUPPORTED }
		dev.GetPerformanceStateFunc = func() (gonvml.Pstates, gonvml.Return) { return gonvml.PSTATE_0, gonvml.SUCCESS }
		dev.GetEncoderUtilizationFunc = func() (uint32, uint32, gonvml.Return) { return uint32(i), 167_000, gonvml.SUCCESS }
		dev.GetDecoderUtilizationFunc = func() (uint32, uint32, gonvml.Return) { return uint32(2 * i), 167_000, gonvml.SUCCESS }
		dev.GetRemappedRowsFunc = func() (int, int, bool, bool, gonvml.Return) {
			return i, 1, n.remapPending[i].Load(), n.remapFailure[i].Load(), gonvml.SUCCESS
		}
		dev.GetViolationStatusFunc = func(p gonvml.PerfPolicyType) (gonvml.ViolationTime, gonvml.Return) {
			if int(p) >= len(n.viol[i]) {
				return gonvml.ViolationTime{}, gonvml.ERROR_INVALID_ARGUMENT
			}
			return gonvml.ViolationTime{ReferenceTime: 1, ViolationTime: n.viol[i][p].Load()}, gonvml.SUCCESS
		}
		dev.GetEnforcedPowerLimitFunc = func() (uint32, gonvml.Return) { return uint32(700_000 - 1000*i), gonvml.SUCCESS }
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
				case gonvml.FI_DEV_PCIE_REPLAY_COUNTER:
					u = uint64(i)
				case gonvml.FI_DEV_ECC_SBE_VOL_TOTAL:
					u = n.sbe[i].Load()
				case gonvml.FI_DEV_ECC_DBE_VOL_TOTAL:
					u = n.dbe[i].Load()
				case gonvml.FI_DEV_ECC_SBE_AGG_TOTAL:
					u = 100 + n.sbe[i].Load()
				case gonvml.FI_DEV_ECC_DBE_AGG_TOTAL:
					u = n.dbe[i].Load()
				case gonvml.FI_DEV_REMAPPED_COR:
					u = uint64(i)
				case gonvml.FI_DEV_REMAPPED_UNC:
					u = 1
				case gonvml.FI_DEV_NVLINK_THROUGHPUT_DATA_TX, gonvml.FI_DEV_NVLINK_THROUGHPUT_DATA_RX:
					if v.ScopeId != AllLinks {
						ret = gonvml.ERROR_INVALID_ARGUMENT
					}
					u = 1 << 30
				case gonvml.FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL, gonvml.FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL, gonvml.FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL:
					u = 0
				case gonvml.FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL:
					u = uint64(10 * i)
				default: // Hopper remaps rows rather than retiring pages
					ret = gonvml.ERROR_NOT_SUPPORTED
				}
				v.NvmlReturn = uint32(ret)
				v.ValueType = uint32(gonvml.VALUE_TYPE_UNSIGNED_LONG_LONG)
				binary.LittleEndian.PutUint64(v.Value[:], u)
			}
			return gonvml.SUCCESS
		}
		dev.RegisterEventsFunc = func(uint64, gonvml.EventSet) gonvml.Return { return gonvml.SUCCESS }
		dev.GetMaxMigDeviceCountFunc = func() (int, gonvml.Return) { return 7, gonvml.SUCCESS }
		dev.GetMigDeviceHandleByIndexFunc = func(k int) (gonvml.Device, gonvml.Return) {
			if k < len(n.migs[i]) && n.migs[i][k] != nil {
				return n.migs[i][k], gonvml.SUCCESS
			}
			return nil, gonvml.ERROR_NOT_FOUND
		}
		dev.GpmQueryDeviceSupportFunc = func() (gonvml.GpmSupport, gonvml.Return) {
			if n.noGPM[i].Load() {
				return gonvml.GpmSupport{Version: gonvml.GPM_SUPPORT_VERSION}, gonvml.SUCCESS
			}
			return gonvml.GpmSupport{Version: gonvml.GPM_SUPPORT_VERSION, IsSupportedDevice: 1}, gonvml.SUCCESS
		}
	}
	srv.GpmSampleAllocFunc = func() (gonvml.GpmSample, gonvml.Return) {
		g := &gpmSample{}
		n.gpmSamples = append(n.gpmSamples, g)
		return g, gonvml.SUCCESS
	}
	srv.GpmMetricsGetFunc = func(mg *gonvml.GpmMetricsGetType) gonvml.Return {
		s1, s2 := mg.Sample1.(*gpmSample), mg.Sample2.(*gpmSample)
		if s1.dev == nil || s1.dev != s2.dev || s1.gi != s2.gi || mg.Version != gonvml.GPM_METRICS_GET_VERSION {
			return gonvml.ERROR_INVALID_ARGUMENT // two samples of one GPU or instance, as NVML requires
		}
		gpu := slices.IndexFunc(n.devs, func(d *server.Device) bool { return gonvml.Device(d) == s2.dev })
		for k := range mg.NumMetrics {
			m := &mg.Metrics[k]
			base, ok := gpmBase[m.MetricId]
			if !ok {
				m.NvmlReturn = uint32(gonvml.ERROR_NOT_SUPPORTED)
				continue
			}
			m.Value, m.NvmlReturn = base+float64(gpu), uint32(gonvml.SUCCESS)
			if s2.gi >= 0 { // a MIG instance: its own reading
				m.Value += float64(100 + s2.gi)
			}
		}
		return gonvml.SUCCESS
	}
	srv.LookupSymbolFunc = func(sym string) error {
		if sym == "nvmlEventSetWait_v3" && n.noV3.Load() {
			return fmt.Errorf("undefined symbol: %s", sym)
		}
		return nil
	}
	srv.EventSetCreateFunc = func() (gonvml.EventSet, gonvml.Return) {
		return &mock.EventSet{
			WaitFunc: func(uint32) (gonvml.EventData, gonvml.Return) {
				select {
				case e := <-n.xids:
					return e.EventData, gonvml.SUCCESS
				default:
					return gonvml.EventData{}, gonvml.ERROR_TIMEOUT
				}
			},
			// v3 names the GPU by UUID and dates the event.
			Wait_v3Func: func(uint32) (gonvml.EventSetWaitData_v3, gonvml.Return) {
				select {
				case e := <-n.xids:
					w := gonvml.EventSetWaitData_v3{DataType: uint32(gonvml.EVENT_DATA_TYPE_NVML_EVENT),
						EventType: e.EventType, EventData: e.EventData.EventData, TimestampUsec: e.usec}
					uuid := e.Device.(*server.Device).UUID
					if n.v3NoUUID.Load() {
						uuid = ""
					}
					for j := 0; j < len(uuid) && j < len(w.Uuid)-1; j++ {
						w.Uuid[j] = int8(uuid[j])
					}
					return w, gonvml.SUCCESS
				default:
					return gonvml.EventSetWaitData_v3{}, gonvml.ERROR_TIMEOUT
				}
			},
			FreeFunc: func() gonvml.Return { return gonvml.SUCCESS },
		}, gonvml.SUCCESS
	}
	return n
}

// xidEvent is an XID the mock delivers: v1 hands out EventData, v3 the same with usec, its
// timestamp in µs since the Unix epoch (0: none).
type xidEvent struct {
	gonvml.EventData
	usec uint64
}

// logRecorder is a slog.Handler that keeps every record, to count what was logged.
type logRecorder struct {
	mu   sync.Mutex
	recs []map[string]string
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logRecorder) WithGroup(string) slog.Handler            { return h }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	m := map[string]string{"msg": r.Message, "level": r.Level.String()}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.String(); return true })
	h.mu.Lock()
	h.recs = append(h.recs, m)
	h.mu.Unlock()
	return nil
}

// count returns how many records have every key=value in kv.
func (h *logRecorder) count(kv ...string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
outer:
	for _, r := range h.recs {
		for i := 0; i+1 < len(kv); i += 2 {
			if r[kv[i]] != kv[i+1] {
				continue outer
			}
		}
		n++
	}
	return n
}
