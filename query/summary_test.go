package query_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/query"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func TestSummarySQLGolden(t *testing.T) {
	from := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	to := from.Add(time.Hour)
	overall, hottest, events := query.SummarySQL("gpufleet", from, to, 5)
	got := []byte("-- overall\n" + overall + ";\n\n-- hottest\n" + hottest + ";\n\n-- events\n" + events + ";\n")
	path := filepath.Join("testdata", "summary.golden.sql")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./query -run Golden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("SummarySQL differs from %s (rerun with -update if intended)\n got:\n%s\nwant:\n%s", path, got, want)
	}
}

func TestSummarySQLParameters(t *testing.T) {
	tests := []struct {
		db       string
		from, to time.Time
		topK     int
		want     []string // in every statement unless prefixed "hottest:"
	}{
		{
			db:   "other_db",
			from: time.UnixMilli(1_700_000_000_123), to: time.UnixMilli(1_700_000_360_456), topK: 3,
			want: []string{
				"time >= fromUnixTimestamp64Milli(1700000000123) AND time < fromUnixTimestamp64Milli(1700000360456)",
				"hottest:LIMIT 3", "hottest:FROM other_db.gpu_samples",
			},
		},
		{
			// A zone other than UTC names the same instant.
			db:   "gpufleet",
			from: time.Date(2024, 5, 1, 2, 0, 0, 0, time.FixedZone("CEST", 2*3600)), to: time.Date(2024, 5, 1, 1, 0, 0, 0, time.UTC), topK: 10,
			want: []string{"fromUnixTimestamp64Milli(1714521600000)", "fromUnixTimestamp64Milli(1714525200000)", "hottest:LIMIT 10"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.db, func(t *testing.T) {
			overall, hottest, events := query.SummarySQL(tt.db, tt.from, tt.to, tt.topK)
			if !strings.Contains(overall, "FROM "+tt.db+".gpu_samples ") || !strings.Contains(events, "FROM "+tt.db+".gpu_events ") {
				t.Errorf("statements do not name database %s:\n%s\n%s", tt.db, overall, events)
			}
			for _, w := range tt.want {
				if h, ok := strings.CutPrefix(w, "hottest:"); ok {
					if !strings.Contains(hottest, h) {
						t.Errorf("hottest lacks %q:\n%s", h, hottest)
					}
					continue
				}
				for _, s := range []string{overall, hottest, events} {
					if !strings.Contains(s, w) {
						t.Errorf("statement lacks %q:\n%s", w, s)
					}
				}
			}
		})
	}
}

// sample is one seeded gpu_samples row; nil metrics are NULL.
type sample struct {
	ms        int64
	node      string
	gpu       uint8
	uuid      string
	model     string
	util      *float32
	temp      *float32
	agentID   string
	sequence  uint64
	jobID     string
	driverVer string
}

type event struct {
	ms   int64
	node string
	gpu  uint8
	uuid string
	kind string
	code uint64
}

func ptr(v float32) *float32 { return &v }

// seedFleet builds a deterministic fleet around the hour [base, base+1h).
func seedFleet(base time.Time) ([]sample, []event) {
	rng := rand.New(rand.NewPCG(7, 11))
	b := base.UnixMilli()
	hour := time.Hour.Milliseconds()
	models := map[string]string{"node-a": "NVIDIA H100 80GB HBM3", "node-b": "NVIDIA A100-SXM4-40GB", "node-c": "NVIDIA L4"}
	var samples []sample
	seq := uint64(0)
	add := func(ms int64, node string, gpu uint8, util, temp *float32) {
		seq++
		samples = append(samples, sample{ms: ms, node: node, gpu: gpu, uuid: fmt.Sprintf("GPU-%s-%d", node, gpu),
			model: models[node], util: util, temp: temp, agentID: "agent-" + node, sequence: seq, jobID: "job-1", driverVer: "550.54.15"})
	}
	for _, node := range []string{"node-a", "node-b", "node-c"} {
		for gpu := uint8(0); gpu < 3; gpu++ {
			for i := range 12 {
				ms := b + int64(i)*5*60*1000 // every 5 min: 0 .. 55 min, all inside
				var util, temp *float32
				if rng.IntN(5) != 0 && !(node == "node-c" && gpu == 1) { // node-c/1 never reports util
					util = ptr(float32(rng.IntN(101)))
				}
				if !(node == "node-b" && gpu == 2) { // node-b/2 never reports temperature
					temp = ptr(float32(40+rng.IntN(40)) + 0.5)
				}
				add(ms, node, gpu, util, temp)
			}
		}
	}
	// A tie on max temperature, broken by node then gpu: node-c/0 and node-a/2 both peak at 95.5.
	add(b+hour-1, "node-c", 0, ptr(10), ptr(95.5))
	add(b+30*60*1000+1, "node-a", 2, nil, ptr(95.5))
	add(b, "node-a", 1, ptr(100), ptr(93))
	// Just outside the window: must not count.
	add(b-1, "node-a", 0, ptr(100), ptr(120))
	add(b+hour, "node-b", 1, ptr(100), ptr(121))
	add(b-30*60*1000, "node-z", 0, ptr(3), ptr(119))
	add(b+90*60*1000, "node-z", 1, ptr(4), ptr(118))

	ev := func(ms int64, node string, gpu uint8, kind string, code uint64) event {
		return event{ms: ms, node: node, gpu: gpu, uuid: fmt.Sprintf("GPU-%s-%d", node, gpu), kind: kind, code: code}
	}
	events := []event{
		ev(b, "node-a", 0, "xid", 79),
		ev(b+10*60*1000, "node-b", 1, "xid", 48),
		ev(b+hour-1, "node-c", 2, "xid", 31),
		ev(b+5*60*1000, "node-a", 1, "throttle", 0x20),
		ev(b+6*60*1000, "node-a", 1, "throttle", 0),
		ev(b+7*60*1000, "node-b", 0, "ecc", 1), // neither kind
		ev(b-1, "node-a", 0, "xid", 79),        // outside
		ev(b+hour, "node-a", 0, "xid", 79),     // outside
		ev(b+2*hour, "node-c", 0, "throttle", 4),
	}
	return samples, events
}

func insertFleet(t *testing.T, st store.Store, samples []sample, events []event) {
	t.Helper()
	ctx := context.Background()
	tm := &store.ColDateTime64{ColName: "time"}
	cluster := &store.ColString{ColName: "cluster"}
	node := &store.ColString{ColName: "node"}
	gpu := &store.ColUInt8{ColName: "gpu"}
	uuid := &store.ColString{ColName: "uuid"}
	model := &store.ColString{ColName: "model"}
	job := &store.ColString{ColName: "job_id"}
	driver := &store.ColString{ColName: "driver_version"}
	agent := &store.ColString{ColName: "agent_id"}
	seq := &store.ColUInt64{ColName: "seq"}
	util := &store.ColNullFloat32{ColName: "gpu_util"}
	temp := &store.ColNullFloat32{ColName: "temp_gpu_c"}
	b := &store.Block{Columns: []store.Column{tm, cluster, node, gpu, uuid, model, job, driver, agent, seq, util, temp}}
	for _, s := range samples {
		tm.V = append(tm.V, s.ms)
		cluster.V = append(cluster.V, "test")
		node.V = append(node.V, s.node)
		gpu.V = append(gpu.V, s.gpu)
		uuid.V = append(uuid.V, s.uuid)
		model.V = append(model.V, s.model)
		job.V = append(job.V, s.jobID)
		driver.V = append(driver.V, s.driverVer)
		agent.V = append(agent.V, s.agentID)
		seq.V = append(seq.V, s.sequence)
		if s.util != nil {
			util.Append(*s.util, false)
		} else {
			util.Append(0, true)
		}
		if s.temp != nil {
			temp.Append(*s.temp, false)
		} else {
			temp.Append(0, true)
		}
	}
	if err := st.Insert(ctx, "gpu_samples", b, ""); err != nil {
		t.Fatal(err)
	}

	etm := &store.ColDateTime64{ColName: "time"}
	ecluster := &store.ColString{ColName: "cluster"}
	enode := &store.ColString{ColName: "node"}
	egpu := &store.ColUInt8{ColName: "gpu"}
	euuid := &store.ColString{ColName: "uuid"}
	kind := &store.ColString{ColName: "kind"}
	code := &store.ColUInt64{ColName: "code"}
	pid := &store.ColUInt32{ColName: "pid"}
	msg := &store.ColString{ColName: "message"}
	eagent := &store.ColString{ColName: "agent_id"}
	eseq := &store.ColUInt64{ColName: "seq"}
	eb := &store.Block{Columns: []store.Column{etm, ecluster, enode, egpu, euuid, kind, code, pid, msg, eagent, eseq}}
	for i, e := range events {
		etm.V = append(etm.V, e.ms)
		ecluster.V = append(ecluster.V, "test")
		enode.V = append(enode.V, e.node)
		egpu.V = append(egpu.V, e.gpu)
		euuid.V = append(euuid.V, e.uuid)
		kind.V = append(kind.V, e.kind)
		code.V = append(code.V, e.code)
		pid.V = append(pid.V, uint32(1000+i))
		msg.V = append(msg.V, fmt.Sprintf("%s %d", e.kind, e.code))
		eagent.V = append(eagent.V, "agent-"+e.node)
		eseq.V = append(eseq.V, uint64(i+1))
	}
	if err := st.Insert(ctx, "gpu_events", eb, ""); err != nil {
		t.Fatal(err)
	}
}

// expectation is the summary computed in Go from the seeded rows, independently of the engine.
type expectation struct {
	sum       query.Summary
	utils     []float64 // non-NULL gpu_util in the window, sorted
	wantEmpty bool
}

func expect(samples []sample, events []event, from, to time.Time, topK int) expectation {
	lo, hi := from.UnixMilli(), to.UnixMilli()
	in := func(ms int64) bool { return ms >= lo && ms < hi }
	e := expectation{sum: query.Summary{From: from.UTC(), To: to.UTC()}}
	gpus, nodes := map[string]bool{}, map[string]bool{}
	type key struct {
		node string
		gpu  uint8
		uuid string
	}
	type agg struct {
		model            string
		maxTemp, utilSum float64
		utilN            int
	}
	groups := map[key]*agg{}
	var utilSum float64
	for _, s := range samples {
		if !in(s.ms) {
			continue
		}
		e.sum.Samples++
		gpus[s.uuid], nodes[s.node] = true, true
		if s.util != nil {
			e.utils = append(e.utils, float64(*s.util))
			utilSum += float64(*s.util)
		}
		if s.temp == nil {
			continue
		}
		k := key{s.node, s.gpu, s.uuid}
		g := groups[k]
		if g == nil {
			g = &agg{model: s.model, maxTemp: math.Inf(-1)}
			groups[k] = g
		}
		g.maxTemp = math.Max(g.maxTemp, float64(*s.temp))
		if s.util != nil {
			g.utilSum += float64(*s.util)
			g.utilN++
		}
	}
	e.sum.GPUs, e.sum.Nodes = uint64(len(gpus)), uint64(len(nodes))
	sort.Float64s(e.utils)
	if len(e.utils) > 0 {
		e.sum.MeanUtil = utilSum / float64(len(e.utils))
	}
	for k, g := range groups {
		h := query.HotGPU{Node: k.node, GPU: uint64(k.gpu), UUID: k.uuid, Model: g.model, MaxTemp: g.maxTemp}
		if g.utilN > 0 { // avg of only NULLs is NULL, reported as 0
			h.MeanUtil = g.utilSum / float64(g.utilN)
		}
		e.sum.Hottest = append(e.sum.Hottest, h)
	}
	sort.Slice(e.sum.Hottest, func(i, j int) bool {
		a, b := e.sum.Hottest[i], e.sum.Hottest[j]
		if a.MaxTemp != b.MaxTemp {
			return a.MaxTemp > b.MaxTemp
		}
		if a.Node != b.Node {
			return a.Node < b.Node
		}
		return a.GPU < b.GPU
	})
	if len(e.sum.Hottest) > topK {
		e.sum.Hottest = e.sum.Hottest[:topK]
	}
	for _, ev := range events {
		if !in(ev.ms) {
			continue
		}
		switch ev.kind {
		case "xid":
			e.sum.XIDs++
		case "throttle":
			e.sum.Throttles++
		}
	}
	e.wantEmpty = e.sum.Samples == 0
	return e
}

// exactQuantile interpolates linearly between closest ranks of sorted values.
func exactQuantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	pos := q * float64(len(sorted)-1)
	i := int(pos)
	if i+1 >= len(sorted) {
		return sorted[len(sorted)-1]
	}
	return sorted[i] + (pos-float64(i))*(sorted[i+1]-sorted[i])
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

func TestFleetSummaryExactNumbers(t *testing.T) {
	st := testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	// Recent data: gpu_samples has a 30-day TTL.
	base := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
	samples, events := seedFleet(base)
	insertFleet(t, st, samples, events)

	tests := []struct {
		name     string
		from, to time.Time
		topK     int
		check    func(t *testing.T, e expectation) // extra checks of the seeded data itself
	}{
		{
			name: "the hour", from: base, to: base.Add(time.Hour), topK: 5,
			check: func(t *testing.T, e expectation) {
				if e.sum.Samples != 9*12+3 || e.sum.GPUs != 9 || e.sum.Nodes != 3 || e.sum.XIDs != 3 || e.sum.Throttles != 2 {
					t.Fatalf("seed expectation off: %+v", e.sum)
				}
				if h := e.sum.Hottest; h[0].Node != "node-a" || h[0].GPU != 2 || h[1].Node != "node-c" || h[1].GPU != 0 || h[0].MaxTemp != 95.5 {
					t.Fatalf("seed lacks the tie at the top: %+v", h[:2])
				}
			},
		},
		{name: "top 20 lists every GPU with a temperature", from: base, to: base.Add(time.Hour), topK: 20,
			check: func(t *testing.T, e expectation) {
				if len(e.sum.Hottest) != 8 {
					t.Fatalf("want 8 GPUs with temperature, have %d", len(e.sum.Hottest))
				}
			}},
		{name: "wide window includes the rows outside the hour", from: base.Add(-time.Hour), to: base.Add(3 * time.Hour), topK: 3,
			check: func(t *testing.T, e expectation) {
				if e.sum.Nodes != 4 || e.sum.Hottest[0].MaxTemp != 121 || e.sum.Throttles != 3 {
					t.Fatalf("seed expectation off: %+v", e.sum)
				}
			}},
		{name: "empty window", from: base.Add(5 * time.Hour), to: base.Add(6 * time.Hour), topK: 5,
			check: func(t *testing.T, e expectation) {
				if !e.wantEmpty {
					t.Fatal("window not empty")
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := expect(samples, events, tt.from, tt.to, tt.topK)
			tt.check(t, want)
			got, err := query.FleetSummary(ctx, st, tt.from, tt.to, tt.topK)
			if err != nil {
				t.Fatal(err)
			}
			if !got.From.Equal(tt.from) || !got.To.Equal(tt.to) || got.From.Location() != time.UTC || got.To.Location() != time.UTC {
				t.Errorf("window = %v .. %v, want %v .. %v in UTC", got.From, got.To, tt.from, tt.to)
			}
			if got.Samples != want.sum.Samples || got.GPUs != want.sum.GPUs || got.Nodes != want.sum.Nodes {
				t.Errorf("samples/gpus/nodes = %d/%d/%d, want %d/%d/%d", got.Samples, got.GPUs, got.Nodes,
					want.sum.Samples, want.sum.GPUs, want.sum.Nodes)
			}
			if !near(got.MeanUtil, want.sum.MeanUtil) {
				t.Errorf("MeanUtil = %v, want %v", got.MeanUtil, want.sum.MeanUtil)
			}
			if len(want.utils) == 0 {
				if got.P99Util != 0 {
					t.Errorf("P99Util = %v with no util values, want 0", got.P99Util)
				}
			} else {
				p98 := exactQuantile(want.utils, 0.98)
				p99 := exactQuantile(want.utils, 0.99)
				maxU := want.utils[len(want.utils)-1]
				if !(got.P99Util >= p98 && got.P99Util <= maxU) && math.Abs(got.P99Util-p99) > 1.0 {
					t.Errorf("P99Util = %v, want within [%v, %v] or 1.0 of %v", got.P99Util, p98, maxU, p99)
				}
			}
			if got.XIDs != want.sum.XIDs || got.Throttles != want.sum.Throttles {
				t.Errorf("xids/throttles = %d/%d, want %d/%d", got.XIDs, got.Throttles, want.sum.XIDs, want.sum.Throttles)
			}
			if len(got.Hottest) != len(want.sum.Hottest) {
				t.Fatalf("Hottest has %d rows, want %d:\n got %+v\nwant %+v", len(got.Hottest), len(want.sum.Hottest), got.Hottest, want.sum.Hottest)
			}
			for i, w := range want.sum.Hottest {
				g := got.Hottest[i]
				if g.Node != w.Node || g.GPU != w.GPU || g.UUID != w.UUID || g.Model != w.Model || g.MaxTemp != w.MaxTemp || !near(g.MeanUtil, w.MeanUtil) {
					t.Errorf("Hottest[%d] = %+v, want %+v", i, g, w)
				}
			}
			checkOutputs(t, got)
		})
	}
}

func checkOutputs(t *testing.T, got *query.Summary) {
	t.Helper()
	var text bytes.Buffer
	if err := got.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	wantText := []string{
		fmt.Sprintf("GPUs reporting  %d on %d nodes (%d samples)", got.GPUs, got.Nodes, got.Samples),
		fmt.Sprintf("%d XID, %d throttle transitions", got.XIDs, got.Throttles),
		fmt.Sprintf("mean %.1f%%  p99 %.1f%%", got.MeanUtil, got.P99Util),
		got.From.Format(time.RFC3339) + " .. " + got.To.Format(time.RFC3339),
	}
	for _, h := range got.Hottest {
		wantText = append(wantText, h.UUID, h.Model, fmt.Sprintf("%.0f", h.MaxTemp))
	}
	for _, w := range wantText {
		if !strings.Contains(text.String(), w) {
			t.Errorf("WriteText lacks %q:\n%s", w, text.String())
		}
	}
	if strings.Contains(text.String(), "hottest GPUs") != (len(got.Hottest) > 0) {
		t.Errorf("WriteText hottest section present = %v with %d hottest rows", !(len(got.Hottest) > 0), len(got.Hottest))
	}

	var js bytes.Buffer
	if err := got.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back query.Summary
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("WriteJSON output does not decode: %v\n%s", err, js.String())
	}
	if !back.From.Equal(got.From) || !back.To.Equal(got.To) {
		t.Errorf("JSON window = %v .. %v, want %v .. %v", back.From, back.To, got.From, got.To)
	}
	a, b := back, *got
	a.From, a.To, b.From, b.To = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if !reflect.DeepEqual(a, b) {
		t.Errorf("JSON round trip = %+v, want %+v", a, b)
	}
	for _, key := range []string{`"samples"`, `"gpus"`, `"nodes"`, `"mean_util_pct"`, `"p99_util_pct"`, `"xid_events"`, `"throttle_events"`, `"hottest"`} {
		if !strings.Contains(js.String(), key) {
			t.Errorf("WriteJSON lacks key %s", key)
		}
	}
}
