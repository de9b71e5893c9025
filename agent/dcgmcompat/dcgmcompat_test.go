package dcgmcompat

import (
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gpufleet/gpufleet/agent/sim"
	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the collector's output")

// exposition is what a Prometheus scrape of a registry holding only c reads (the text format).
func exposition(t *testing.T, c *Collector) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}).
		ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: HTTP %d: %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

// series counts the samples of the metric in an exposition.
func series(text, name string) int {
	n := 0
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, name+"{") {
			n++
		}
	}
	return n
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (write it with -update)", err)
	}
	if got == string(want) {
		return
	}
	g, w := strings.Split(got, "\n"), strings.Split(string(want), "\n")
	for i := range max(len(g), len(w)) {
		if i >= len(g) || i >= len(w) || g[i] != w[i] {
			t.Errorf("exposition differs from %s at line %d (rewrite with -update if the change is meant):\ngot  %q\nwant %q",
				path, i+1, strings.Join(g[i:min(i+1, len(g))], ""), strings.Join(w[i:min(i+1, len(w))], ""))
			return
		}
	}
}

// TestExpositionGolden drives the collector with two seeded simulated nodes, two samples each
// (the second is what is served), and compares the scrape with testdata/sim.golden.
func TestExpositionGolden(t *testing.T) {
	c := New()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for idx := range 2 {
		n := sim.NewNode(7, "sim", idx, 2)
		b := &wirepb.SampleBatch{}
		var ev []*wirepb.Event
		for i := range 2 {
			_, node := n.Identity()
			b.Node = node
			before := len(b.TimeUnixMs)
			evBefore := len(ev)
			ev = n.Sample(t0.Add(time.Duration(i)*time.Second), b, ev)
			c.Observe(b, before, ev[evBefore:])
		}
	}
	got := exposition(t, c)
	golden(t, "sim.golden", got)
	for _, want := range []string{"# TYPE DCGM_FI_DEV_GPU_UTIL gauge", "# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter",
		"# TYPE DCGM_FI_DEV_XID_ERRORS gauge", `gpu="1"`, `device="nvidia1"`, `Hostname="`} {
		if !strings.Contains(got, want) {
			t.Errorf("exposition lacks %s", want)
		}
	}
}

// TestUnitsMatchCatalogue holds every mapping to the catalogue: the metric exists, its unit is the
// one the conversion assumes, and a DCGM counter is read from a catalogue counter unless
// dcgm-exporter declares a rate (PCIe throughput) or a flag (pages pending retirement) one.
func TestUnitsMatchCatalogue(t *testing.T) {
	seen := map[string]bool{}
	rates := map[string]bool{"DCGM_FI_DEV_PCIE_TX_THROUGHPUT": true, "DCGM_FI_DEV_PCIE_RX_THROUGHPUT": true, "DCGM_FI_DEV_RETIRED_PENDING": true}
	for _, m := range Metrics {
		cm, ok := gpumetric.Lookup(m.ID)
		switch {
		case !ok:
			t.Errorf("%s: catalogue id %d unknown", m.Name, m.ID)
		case seen[m.Name]:
			t.Errorf("%s mapped twice", m.Name)
		case cm.Unit != m.From:
			t.Errorf("%s: %s is in %q, the mapping converts from %q", m.Name, cm.Column, cm.Unit, m.From)
		case m.Per <= 0:
			t.Errorf("%s: Per %v", m.Name, m.Per)
		case (m.Type == prometheus.CounterValue) != (cm.Kind == gpumetric.Counter) && !rates[m.Name]:
			t.Errorf("%s is a %v in dcgm-exporter, %s a %v", m.Name, m.Type, cm.Column, cm.Kind)
		}
		if !regexp.MustCompile(`^DCGM_FI_(DEV|PROF)_[A-Z0-9_]+$`).MatchString(m.Name) {
			t.Errorf("%q is not a DCGM field name", m.Name)
		}
		seen[m.Name] = true
	}
}

// TestLabels checks the labels of a whole GPU, a MIG instance and the two kinds of job, as the
// agent's NVML source lays out a MIG instance's identity (wirepb.GPU: index 128 + 8 × the GPU's
// index + the MIG device index, the MIG device name, the parent's UUID).
func TestLabels(t *testing.T) {
	gpu := &wirepb.GPU{Index: 1, Uuid: "GPU-b", Model: "NVIDIA H100 80GB HBM3", PciBusId: "00000000:19:00.0", JobId: "team-a/train-0"}
	mig := &wirepb.GPU{Index: 128 + 8*1 + 3, Uuid: "MIG-b-3", Model: "NVIDIA H100 80GB HBM3 MIG 1g.10gb", PciBusId: gpu.PciBusId,
		ParentUuid: "GPU-b", JobId: "4242"}
	b := &wirepb.SampleBatch{Node: "gpu-0001", DriverVersion: "550.54.15", Gpus: []*wirepb.GPU{gpu, mig},
		TimeUnixMs: []int64{1, 1}, Gpu: []uint32{0, 1},
		Metrics: []*wirepb.MetricColumn{{Metric: uint32(gpumetric.FBUsed), Values: []float64{1024, 2048}},
			{Metric: uint32(gpumetric.SMActive), Values: []float64{50, 25}, Present: []byte{0b10}}}}
	c := New()
	c.Observe(b, 0, []*wirepb.Event{{GpuIndex: 1, Kind: wirepb.EventKind_EVENT_KIND_XID, Code: 79}})
	got := exposition(t, c)
	for _, want := range []string{
		`DCGM_FI_DEV_FB_USED{DCGM_FI_DRIVER_VERSION="550.54.15",Hostname="gpu-0001",UUID="GPU-b",device="nvidia1",gpu="1",modelName="NVIDIA H100 80GB HBM3",namespace="team-a",pci_bus_id="00000000:19:00.0",pod="train-0"} 1024`,
		`DCGM_FI_DEV_FB_USED{DCGM_FI_DRIVER_VERSION="550.54.15",GPU_I_ID="3",GPU_I_PROFILE="1g.10gb",Hostname="gpu-0001",UUID="GPU-b",device="nvidia1",gpu="1",hpc_job="4242",modelName="NVIDIA H100 80GB HBM3",pci_bus_id="00000000:19:00.0"} 2048`,
		`DCGM_FI_PROF_SM_ACTIVE{DCGM_FI_DRIVER_VERSION="550.54.15",GPU_I_ID="3",GPU_I_PROFILE="1g.10gb",Hostname="gpu-0001",UUID="GPU-b",device="nvidia1",gpu="1",hpc_job="4242",modelName="NVIDIA H100 80GB HBM3",pci_bus_id="00000000:19:00.0"} 0.25`,
		`DCGM_FI_DEV_XID_ERRORS{DCGM_FI_DRIVER_VERSION="550.54.15",Hostname="gpu-0001",UUID="GPU-b",device="nvidia1",gpu="1",modelName="NVIDIA H100 80GB HBM3",namespace="team-a",pci_bus_id="00000000:19:00.0",pod="train-0"} 79`,
	} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("exposition lacks\n%s\ngot:\n%s", want, got)
		}
	}
	// Absent readings are absent series, never zeros: the whole GPU has no SM_ACTIVE reading.
	if n := series(exposition(t, c), "DCGM_FI_PROF_SM_ACTIVE"); n != 1 {
		t.Errorf("%d DCGM_FI_PROF_SM_ACTIVE series, want 1 (the GPU's reading is absent)", n)
	}
	// A later sample replaces the node's readings: a GPU gone from it is no longer served.
	b.Gpu, b.TimeUnixMs = append(b.Gpu, 0), append(b.TimeUnixMs, 2)
	for _, m := range b.Metrics {
		m.Values = append(m.Values, 4096)
		m.Present = nil
	}
	c.Observe(b, 2, nil)
	if n := series(exposition(t, c), "DCGM_FI_DEV_FB_USED"); n != 1 {
		t.Errorf("%d DCGM_FI_DEV_FB_USED series after a sample of one GPU, want 1", n)
	}
}

// TestDocsListEveryMetric holds docs/dcgm-compat.md's table to Metrics: a row per DCGM name with
// its type, its unit and the column it is read from, and no metric row for a name not served.
func TestDocsListEveryMetric(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "dcgm-compat.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(DCGM_FI_[A-Z0-9_]+)` \\|( (?:gauge|counter) \\|.*)$").FindAllStringSubmatch(string(doc), -1) {
		rows[m[1]] = m[2]
	}
	for _, m := range Metrics {
		cm, _ := gpumetric.Lookup(m.ID)
		typ := map[prometheus.ValueType]string{prometheus.GaugeValue: "gauge", prometheus.CounterValue: "counter"}[m.Type]
		row, ok := rows[m.Name]
		switch {
		case !ok:
			t.Errorf("docs/dcgm-compat.md has no row for %s", m.Name)
		case !strings.HasPrefix(row, " "+typ+" | "+m.Unit) || !strings.Contains(row, "`"+cm.Column+"`"):
			t.Errorf("docs/dcgm-compat.md: %s is a %s in %s read from %s, the row says %q", m.Name, typ, m.Unit, cm.Column, row)
		}
		delete(rows, m.Name)
	}
	delete(rows, XIDName)
	for name := range rows {
		t.Errorf("docs/dcgm-compat.md lists %s, which is not served", name)
	}
}

// BenchmarkCollector is the cost --dcgm-compat adds for an 8-GPU node: observe, per sample (every
// --interval); collect, per scrape.
func BenchmarkCollector(b *testing.B) {
	n := sim.NewNode(1, "sim", 0, 8)
	batch := &wirepb.SampleBatch{Node: "node-00000"}
	ev := n.Sample(time.Unix(1_700_000_000, 0), batch, nil)
	c := New()
	c.Observe(batch, 0, ev)
	b.Run("observe", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.Observe(batch, 0, ev)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/8, "ns/gpu")
	})
	b.Run("collect", func(b *testing.B) {
		ch := make(chan prometheus.Metric, 1024)
		b.ReportAllocs()
		for b.Loop() {
			c.Collect(ch)
			for len(ch) > 0 {
				<-ch
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/8, "ns/gpu")
	})
}

// Violation times are served in DCGM's whole µs from the catalogue's ns, truncated; the remap flags
// and the power limit as they are.
func TestFailureFieldUnits(t *testing.T) {
	b := &wirepb.SampleBatch{Node: "gpu-0001", Gpus: []*wirepb.GPU{{Index: 0, Uuid: "GPU-a", Model: "NVIDIA H100 80GB HBM3"}},
		TimeUnixMs: []int64{1}, Gpu: []uint32{0},
		Metrics: []*wirepb.MetricColumn{
			{Metric: uint32(gpumetric.ViolPower), Counts: []uint64{2_500_001_999}},
			{Metric: uint32(gpumetric.ViolThermal), Counts: []uint64{999}},
			{Metric: uint32(gpumetric.RemapPending), Values: []float64{1}},
			{Metric: uint32(gpumetric.PowerLimit), Values: []float64{650}},
		}}
	c := New()
	c.Observe(b, 0, nil)
	got := exposition(t, c)
	for name, want := range map[string]string{
		"DCGM_FI_DEV_POWER_VIOLATION": "2.500001e+06", "DCGM_FI_DEV_THERMAL_VIOLATION": "0",
		"DCGM_FI_DEV_ROW_REMAP_PENDING": "1", "DCGM_FI_DEV_ENFORCED_POWER_LIMIT": "650",
	} {
		re := regexp.MustCompile("(?m)^" + name + `\{[^}]*\} (\S+)$`)
		m := re.FindStringSubmatch(got)
		if m == nil || m[1] != want {
			t.Errorf("%s: served %v, want %s", name, m, want)
		}
	}
	if n := series(got, "DCGM_FI_DEV_ROW_REMAP_FAILURE"); n != 0 {
		t.Errorf("%d DCGM_FI_DEV_ROW_REMAP_FAILURE series for a GPU with no reading, want none", n)
	}
}
