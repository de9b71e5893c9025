// Package dcgmcompat serves the agent's latest GPU readings under dcgm-exporter's metric names and
// labels (DCGM_FI_DEV_GPU_UTIL{gpu, UUID, pci_bus_id, device, modelName, Hostname, …}), so that
// Grafana dashboard 12239 and Prometheus alerts written for dcgm-exporter keep working while a fleet
// moves to gpufleet. It is opt-in (gpufleet agent --dcgm-compat): the names duplicate gpufleet's own
// data, and a node that also runs dcgm-exporter would otherwise report every series twice.
//
// Metrics is the one table of what is served: a DCGM field name for a catalogue id
// (internal/gpumetric), with the factor that turns the catalogue's unit into DCGM's. docs/dcgm-compat.md
// is that table in prose, with what is not mapped and why.
package dcgmcompat

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// Metric is one DCGM field served from a catalogue metric.
type Metric struct {
	Name string       // dcgm-exporter's metric name, the DCGM field's
	ID   gpumetric.ID // the catalogue metric it is read from
	// Type is the type dcgm-exporter declares for the field (etc/default-counters.csv), even where
	// that is not what the value is: PCIe throughput is a rate it declares a counter.
	Type prometheus.ValueType
	// From is the catalogue's unit (a test holds it to the catalogue's), Unit DCGM's: the value
	// served is the catalogue's divided by Per.
	From, Unit string
	Per        float64
}

// Metrics is every DCGM field served, in the order of dcgm-exporter's default counters and then of
// the DCGM field ids. Types are those of dcgm-exporter's CSVs, the commented-out lines included.
var Metrics = []Metric{
	{"DCGM_FI_DEV_SM_CLOCK", gpumetric.ClockSM, prometheus.GaugeValue, "MHz", "MHz", 1},
	{"DCGM_FI_DEV_MEM_CLOCK", gpumetric.ClockMem, prometheus.GaugeValue, "MHz", "MHz", 1},
	{"DCGM_FI_DEV_MEMORY_TEMP", gpumetric.TempMem, prometheus.GaugeValue, "°C", "C", 1},
	{"DCGM_FI_DEV_GPU_TEMP", gpumetric.TempGPU, prometheus.GaugeValue, "°C", "C", 1},
	{"DCGM_FI_DEV_POWER_USAGE", gpumetric.Power, prometheus.GaugeValue, "W", "W", 1},
	{"DCGM_FI_DEV_ENFORCED_POWER_LIMIT", gpumetric.PowerLimit, prometheus.GaugeValue, "W", "W", 1},
	{"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", gpumetric.Energy, prometheus.CounterValue, "mJ", "mJ", 1},
	// Both read nvmlDeviceGetPcieThroughput: KB/s over NVML's last 20 ms, whatever the declared type.
	{"DCGM_FI_DEV_PCIE_TX_THROUGHPUT", gpumetric.PCIeTx, prometheus.CounterValue, "KiB/s", "KB/s", 1},
	{"DCGM_FI_DEV_PCIE_RX_THROUGHPUT", gpumetric.PCIeRx, prometheus.CounterValue, "KiB/s", "KB/s", 1},
	{"DCGM_FI_DEV_PCIE_REPLAY_COUNTER", gpumetric.PCIeReplays, prometheus.CounterValue, "count", "count", 1},
	{"DCGM_FI_DEV_GPU_UTIL", gpumetric.GPUUtil, prometheus.GaugeValue, "%", "%", 1},
	{"DCGM_FI_DEV_MEM_COPY_UTIL", gpumetric.MemUtil, prometheus.GaugeValue, "%", "%", 1},
	{"DCGM_FI_DEV_ENC_UTIL", gpumetric.EncUtil, prometheus.GaugeValue, "%", "%", 1},
	{"DCGM_FI_DEV_DEC_UTIL", gpumetric.DecUtil, prometheus.GaugeValue, "%", "%", 1},
	// DCGM keeps NVML's violation times in µs; the catalogue keeps NVML's ns. Whole µs, truncated
	// as DCGM's integer division does (value).
	{"DCGM_FI_DEV_POWER_VIOLATION", gpumetric.ViolPower, prometheus.CounterValue, "ns", "us", 1000},
	{"DCGM_FI_DEV_THERMAL_VIOLATION", gpumetric.ViolThermal, prometheus.CounterValue, "ns", "us", 1000},
	{"DCGM_FI_DEV_SYNC_BOOST_VIOLATION", gpumetric.ViolSyncBoost, prometheus.CounterValue, "ns", "us", 1000},
	{"DCGM_FI_DEV_BOARD_LIMIT_VIOLATION", gpumetric.ViolBoardLimit, prometheus.CounterValue, "ns", "us", 1000},
	{"DCGM_FI_DEV_LOW_UTIL_VIOLATION", gpumetric.ViolLowUtil, prometheus.CounterValue, "ns", "us", 1000},
	{"DCGM_FI_DEV_RELIABILITY_VIOLATION", gpumetric.ViolReliability, prometheus.CounterValue, "ns", "us", 1000},
	{"DCGM_FI_DEV_FB_FREE", gpumetric.FBFree, prometheus.GaugeValue, "MiB", "MiB", 1},
	{"DCGM_FI_DEV_FB_USED", gpumetric.FBUsed, prometheus.GaugeValue, "MiB", "MiB", 1},
	{"DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", gpumetric.ECCSingleVolatile, prometheus.CounterValue, "count", "count", 1},
	{"DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", gpumetric.ECCDoubleVolatile, prometheus.CounterValue, "count", "count", 1},
	{"DCGM_FI_DEV_ECC_SBE_AGG_TOTAL", gpumetric.ECCSingleAggregate, prometheus.CounterValue, "count", "count", 1},
	{"DCGM_FI_DEV_ECC_DBE_AGG_TOTAL", gpumetric.ECCDoubleAggregate, prometheus.CounterValue, "count", "count", 1},
	{"DCGM_FI_DEV_RETIRED_SBE", gpumetric.RetiredSBE, prometheus.CounterValue, "count", "count", 1},
	{"DCGM_FI_DEV_RETIRED_DBE", gpumetric.RetiredDBE, prometheus.CounterValue, "count", "count", 1},
	// A 0/1 flag (NVML_FI_DEV_RETIRED_PENDING) that dcgm-exporter declares a counter.
	{"DCGM_FI_DEV_RETIRED_PENDING", gpumetric.RetiredPending, prometheus.CounterValue, "bool", "bool", 1},
	{"DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", gpumetric.NVLinkCRCFlit, prometheus.CounterValue, "count", "count", 1},
	{"DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL", gpumetric.NVLinkCRCData, prometheus.CounterValue, "count", "count", 1},
	{"DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL", gpumetric.NVLinkReplay, prometheus.CounterValue, "count", "count", 1},
	{"DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL", gpumetric.NVLinkRecovery, prometheus.CounterValue, "count", "count", 1},
	{"DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", gpumetric.RemappedUnc, prometheus.CounterValue, "count", "count", 1},
	{"DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", gpumetric.RemappedCor, prometheus.CounterValue, "count", "count", 1},
	{"DCGM_FI_DEV_ROW_REMAP_FAILURE", gpumetric.RemapFailure, prometheus.GaugeValue, "bool", "bool", 1},
	{"DCGM_FI_DEV_ROW_REMAP_PENDING", gpumetric.RemapPending, prometheus.GaugeValue, "bool", "bool", 1},
	// The profiling (DCP) fields are ratios, 0..1; the catalogue's GPM metrics are percentages.
	{"DCGM_FI_PROF_SM_ACTIVE", gpumetric.SMActive, prometheus.GaugeValue, "%", "ratio", 100},
	{"DCGM_FI_PROF_SM_OCCUPANCY", gpumetric.SMOccupancy, prometheus.GaugeValue, "%", "ratio", 100},
	{"DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", gpumetric.TensorActive, prometheus.GaugeValue, "%", "ratio", 100},
	{"DCGM_FI_PROF_DRAM_ACTIVE", gpumetric.DRAMActive, prometheus.GaugeValue, "%", "ratio", 100},
	// An approximation, not the same counter: DCGM reads the graphics engine's busy cycles from its
	// profiling counters, NVML's utilisation is the share of its sample period a kernel ran. Served
	// because dashboard 12239's "GPU Utilization" panel plots this field and nothing else.
	{"DCGM_FI_PROF_GR_ENGINE_ACTIVE", gpumetric.GPUUtil, prometheus.GaugeValue, "%", "ratio", 100},
}

// value is a catalogue reading in DCGM's unit. A ratio is rounded to 1e-9, so that 65.6 % serves
// as 0.656 rather than the 0.6559999999999999 the division leaves; a counter (the violation times)
// is DCGM's whole units, truncated as its integer division truncates them.
func (m Metric) value(v float64) float64 {
	switch {
	case m.Per == 1:
		return v
	case m.Type == prometheus.CounterValue:
		return math.Floor(v / m.Per)
	}
	return math.Round(v/m.Per*1e9) / 1e9
}

// XIDName is the one field not read from the catalogue: the last XID a GPU raised, from the agent's
// XID events (0 until the first), as DCGM's DCGM_FI_DEV_XID_ERRORS holds it. A gauge, as dcgm-exporter
// declares it.
const XIDName = "DCGM_FI_DEV_XID_ERRORS"

// Collector is a prometheus.Collector of the latest reading of every GPU the agent samples, under
// dcgm-exporter's names. Hand Observe to agent.Config.Observe; a scrape reads what the last sample
// of each node left. Safe for concurrent use.
type Collector struct {
	mu    sync.Mutex
	nodes map[string]*node
	descs map[string]*prometheus.Desc // by metric name and label names
	help  map[string]string           // by metric name
}

// node is one source's latest readings.
type node struct {
	rows []row
	xid  map[uint32]uint64 // last XID by GPU index
}

// row is one GPU's (or MIG instance's) latest reading and its labels.
type row struct {
	names, values []string
	whole         bool   // a GPU, not a MIG instance: it carries the XID gauge
	index         uint32 // the GPU's NVML index
	has           [gpumetric.Count + 1]bool
	val           [gpumetric.Count + 1]float64
}

// New returns an empty Collector.
func New() *Collector {
	c := &Collector{nodes: map[string]*node{}, descs: map[string]*prometheus.Desc{}, help: map[string]string{}}
	for _, m := range Metrics {
		cm, _ := gpumetric.Lookup(m.ID)
		from := cm.Column
		if m.Per != 1 {
			from += " / " + strconv.FormatFloat(m.Per, 'g', -1, 64)
		}
		c.help[m.Name] = strings.TrimSuffix(cm.Help, ".") + " (gpufleet " + from + ", in " + m.Unit + ")."
	}
	c.help[XIDName] = "Value of the last XID the GPU raised, 0 if none since the agent started (gpufleet's XID events)."
	return c
}

// Observe takes the rows of b from first on as each GPU's latest reading, replacing what its node
// had, and the XIDs among events; it has agent.Config.Observe's signature and copies what it keeps.
func (c *Collector) Observe(b *wirepb.SampleBatch, first int, events []*wirepb.Event) {
	latest := map[uint32]int{} // by position in b.Gpus: its last row
	for r := first; r < len(b.Gpu); r++ {
		latest[b.Gpu[r]] = r
	}
	rows := make([]row, 0, len(latest))
	for pos, r := range latest {
		if int(pos) >= len(b.Gpus) {
			continue
		}
		rw := labels(b, b.Gpus[pos])
		for _, col := range b.Metrics {
			id := gpumetric.ID(col.Metric)
			if gpumetric.Index(id) < 0 || !wire.Present(col, r) {
				continue
			}
			switch {
			case r < len(col.Values):
				rw.val[id], rw.has[id] = col.Values[r], true
			case r < len(col.Counts):
				rw.val[id], rw.has[id] = float64(col.Counts[r]), true
			}
		}
		rows = append(rows, rw)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[b.Node]
	if n == nil {
		n = &node{xid: map[uint32]uint64{}}
		c.nodes[b.Node] = n
	}
	n.rows = rows
	for _, e := range events {
		if e.Kind == wirepb.EventKind_EVENT_KIND_XID {
			n.xid[e.GpuIndex] = e.Code
		}
	}
}

// labels are dcgm-exporter's for g: gpu, UUID, pci_bus_id, device, modelName, GPU_I_PROFILE and
// GPU_I_ID on a MIG instance, Hostname, DCGM_FI_DRIVER_VERSION, and the job: a "namespace/pod" from
// the kubelet as namespace and pod, a Slurm job id as hpc_job (dcgm-exporter's
// --hpc-job-mapping-dir label).
func labels(b *wirepb.SampleBatch, g *wirepb.GPU) row {
	rw := row{whole: g.ParentUuid == "", index: g.Index}
	add := func(name, value string) {
		if value != "" {
			rw.names, rw.values = append(rw.names, name), append(rw.values, value)
		}
	}
	index, uuid, model := g.Index, g.Uuid, g.Model
	profile, instance := "", ""
	if g.ParentUuid != "" {
		// dcgm-exporter labels a MIG instance with its GPU's index, UUID and model name and the
		// instance's profile and id. The agent's MIG row index is 128 + 8 × the GPU's index + the
		// instance's MIG device index (wirepb.GPU).
		index, uuid = (g.Index-128)/8, g.ParentUuid
		instance = strconv.Itoa(int((g.Index - 128) % 8))
		if i := strings.LastIndex(g.Model, " MIG "); i >= 0 {
			model, profile = g.Model[:i], g.Model[i+len(" MIG "):]
		}
		for _, p := range b.Gpus {
			if p.Uuid == g.ParentUuid {
				index, model = p.Index, p.Model
			}
		}
	}
	add("gpu", strconv.Itoa(int(index)))
	add("UUID", uuid)
	add("pci_bus_id", g.PciBusId)
	add("device", "nvidia"+strconv.Itoa(int(index)))
	add("modelName", model)
	if profile != "" {
		add("GPU_I_PROFILE", profile)
		add("GPU_I_ID", instance)
	}
	add("Hostname", b.Node)
	add("DCGM_FI_DRIVER_VERSION", b.DriverVersion)
	if ns, pod, ok := strings.Cut(g.JobId, "/"); ok {
		add("namespace", ns)
		add("pod", pod)
	} else {
		add("hpc_job", g.JobId)
	}
	return rw
}

// Describe sends nothing: the label names differ between series (MIG, jobs), which makes this an
// unchecked collector.
func (c *Collector) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	hosts := make([]string, 0, len(c.nodes))
	for h := range c.nodes {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	for _, m := range Metrics {
		for _, h := range hosts {
			for i := range c.nodes[h].rows {
				r := &c.nodes[h].rows[i]
				if r.has[m.ID] {
					ch <- prometheus.MustNewConstMetric(c.desc(m.Name, r.names), m.Type, m.value(r.val[m.ID]), r.values...)
				}
			}
		}
	}
	for _, h := range hosts {
		n := c.nodes[h]
		for i := range n.rows {
			if r := &n.rows[i]; r.whole {
				ch <- prometheus.MustNewConstMetric(c.desc(XIDName, r.names), prometheus.GaugeValue, float64(n.xid[r.index]), r.values...)
			}
		}
	}
}

// desc is the Desc of name with these label names, made once.
func (c *Collector) desc(name string, labels []string) *prometheus.Desc {
	key := name + "\xff" + strings.Join(labels, "\xff")
	d, ok := c.descs[key]
	if !ok {
		d = prometheus.NewDesc(name, c.help[name], labels, nil)
		c.descs[key] = d
	}
	return d
}
