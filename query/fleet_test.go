package query_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/query"
)

// The fleet reports, on the seeded fleet, against answers computed from the readings.
func TestFleetReports(t *testing.T) {
	st, rs := seed(t)
	ctx := context.Background()
	from, to := seedFrom, seedFrom.Add(10*time.Minute)

	type agg struct{ sum, n, max float64 }
	perGPU := map[string]*agg{}
	for _, r := range rs {
		a := perGPU[r.uuid]
		if a == nil {
			a = &agg{max: math.Inf(-1)}
			perGPU[r.uuid] = a
		}
		u := float64(float32(r.util))
		a.sum, a.n, a.max = a.sum+u, a.n+1, math.Max(a.max, u)
	}

	t.Run("least utilised GPUs", func(t *testing.T) {
		got, err := query.TopGPUs(ctx, st, "gpu_util", "avg", true, 3, from, to)
		if err != nil {
			t.Fatal(err)
		}
		var uuids []string
		for u := range perGPU {
			uuids = append(uuids, u)
		}
		// Ranked as the SQL ranks: by mean (equal to a millionth counts as a tie), then node, then uuid.
		mean := func(u string) float64 { return math.Round(perGPU[u].sum/perGPU[u].n*1e6) / 1e6 }
		node := func(u string) string { return u[4:strings.LastIndexByte(u, '-')] }
		sort.Slice(uuids, func(i, j int) bool {
			if mi, mj := mean(uuids[i]), mean(uuids[j]); mi != mj {
				return mi < mj
			}
			if node(uuids[i]) != node(uuids[j]) {
				return node(uuids[i]) < node(uuids[j])
			}
			return uuids[i] < uuids[j]
		})
		if len(got) != 3 {
			t.Fatalf("%d GPUs, want 3", len(got))
		}
		for i, g := range got {
			want := perGPU[uuids[i]].sum / perGPU[uuids[i]].n
			if g.UUID != uuids[i] || math.Abs(g.Value-want) > 1e-6 {
				t.Errorf("rank %d: %s %.4f, want %s %.4f", i, g.UUID, g.Value, uuids[i], want)
			}
		}
		if got[0].UUID != "GPU-a-0-slow" || got[0].Model != "H100" || got[0].Job != "job-a" {
			t.Errorf("least utilised is %+v, want the slow H100 of job-a", got[0])
		}
	})

	t.Run("hottest by peak", func(t *testing.T) {
		got, err := query.TopGPUs(ctx, st, "gpu_util", "max", false, 1, from, to)
		if err != nil {
			t.Fatal(err)
		}
		best := math.Inf(-1)
		for _, a := range perGPU {
			best = math.Max(best, a.max)
		}
		if len(got) != 1 || got[0].Value != best {
			t.Errorf("top peak %+v, want %v", got, best)
		}
	})

	t.Run("ranked by p90", func(t *testing.T) {
		got, err := query.TopGPUs(ctx, st, "gpu_util", "p90", false, len(perGPU), from, to)
		if err != nil {
			t.Fatal(err)
		}
		vs := map[string][]float64{}
		for _, r := range rs {
			vs[r.uuid] = append(vs[r.uuid], float64(float32(r.util)))
		}
		if len(got) != len(perGPU) {
			t.Fatalf("%d GPUs, want %d", len(got), len(perGPU))
		}
		for i, g := range got {
			if lo, hi := rankBounds(vs[g.UUID], 0.9); g.Value < lo || g.Value > hi {
				t.Errorf("%s p90 %v, want within [%v, %v]", g.UUID, g.Value, lo, hi)
			}
			if i > 0 && g.Value > got[i-1].Value {
				t.Errorf("rank %d (%s, %v) above rank %d (%v)", i, g.UUID, g.Value, i-1, got[i-1].Value)
			}
		}
		if last := got[len(got)-1]; last.UUID != "GPU-a-0-slow" {
			t.Errorf("lowest p90 is %s, want the straggler GPU-a-0-slow", last.UUID)
		}
	})

	t.Run("stopped reporting", func(t *testing.T) {
		// At minute 4, with a 1-minute silence threshold, only the GPU that skipped minute 3 is silent.
		got, err := query.StoppedReporting(ctx, st, seedFrom.Add(4*time.Minute), time.Hour, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].UUID != "GPU-b-1-1" || !got[0].LastSeen.Equal(seedFrom.Add(2*time.Minute)) {
			t.Errorf("silent GPUs %+v, want GPU-b-1-1 last seen at minute 2", got)
		}
		// Five minutes after the data ends, every GPU is silent.
		got, err = query.StoppedReporting(ctx, st, to.Add(5*time.Minute), time.Hour, 2*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(perGPU) {
			t.Errorf("%d silent GPUs after the data ends, want %d", len(got), len(perGPU))
		}
	})

	t.Run("stragglers", func(t *testing.T) {
		got, err := query.Stragglers(ctx, st, from, to, 0.5)
		if err != nil {
			t.Fatal(err)
		}
		var jobA []float64
		for u, a := range perGPU {
			if u[4] == 'a' {
				jobA = append(jobA, a.sum/a.n)
			}
		}
		sort.Float64s(jobA)
		if len(got) != 1 || got[0].UUID != "GPU-a-0-slow" || got[0].JobGPUs != 5 {
			t.Fatalf("stragglers %+v, want only GPU-a-0-slow in a 5-GPU job", got)
		}
		// ClickHouse's median() is approximate; the job median lies between the middle readings.
		if m := got[0].JobMedian; m < jobA[1] || m > jobA[3] {
			t.Errorf("job median %v, want within [%v, %v]", m, jobA[1], jobA[3])
		}
	})

	t.Run("event counts by node and model", func(t *testing.T) {
		tm := &store.ColDateTime64{ColName: "time"}
		node, uuid, kind := &store.ColString{ColName: "node"}, &store.ColString{ColName: "uuid"}, &store.ColString{ColName: "kind"}
		code := &store.ColUInt64{ColName: "code"}
		add := func(n, u, k string, c uint64, at time.Duration) {
			tm.V = append(tm.V, seedFrom.Add(at).UnixMilli())
			node.V, uuid.V, kind.V, code.V = append(node.V, n), append(uuid.V, u), append(kind.V, k), append(code.V, c)
		}
		add("a-0", "GPU-a-0-0", "xid", 79, time.Minute)
		add("a-0", "GPU-a-0-0", "xid", 79, 2*time.Minute) // a repeated XID is two events
		add("a-0", "GPU-a-0-1", "xid", 48, 3*time.Minute)
		add("b-1", "GPU-b-1-1", "throttle", 0, 5*time.Minute)
		add("b-1", "GPU-b-1-1", "xid", 13, time.Hour) // outside the window
		if err := st.Insert(ctx, "gpu_events", &store.Block{Columns: []store.Column{tm, node, uuid, kind, code}}, ""); err != nil {
			t.Fatal(err)
		}
		byNode, err := query.EventCounts(ctx, st, "node", from, to)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := fmt.Sprint(byNode), "[{xid a-0 2 3} {throttle b-1 1 1}]"; got != want {
			t.Errorf("by node %s, want %s", got, want)
		}
		byModel, err := query.EventCounts(ctx, st, "model", from, to)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := fmt.Sprint(byModel), "[{xid H100 2 3} {throttle A100 1 1}]"; got != want {
			t.Errorf("by model %s, want %s", got, want)
		}
	})

	t.Run("job usage", func(t *testing.T) {
		got, err := query.JobUsages(ctx, st, from, to)
		if err != nil {
			t.Fatal(err)
		}
		type want struct {
			gpus    map[string]bool
			minutes map[string]bool
			sum, n  float64
			mj      float64
		}
		w := map[string]*want{}
		last := map[string]reading{}
		for _, r := range rs {
			x := w[r.job]
			if x == nil {
				x = &want{gpus: map[string]bool{}, minutes: map[string]bool{}}
				w[r.job] = x
			}
			x.gpus[r.uuid] = true
			x.minutes[r.uuid+r.t.Truncate(time.Minute).String()] = true
			x.sum, x.n = x.sum+float64(float32(r.util)), x.n+1
			if p, ok := last[r.uuid]; ok {
				if r.energy < p.energy {
					x.mj += float64(r.energy)
				} else {
					x.mj += float64(r.energy - p.energy)
				}
			}
			last[r.uuid] = r
		}
		if len(got) != 2 {
			t.Fatalf("%d jobs, want 2", len(got))
		}
		for _, j := range got {
			x := w[j.Job]
			if j.GPUs != uint64(len(x.gpus)) || math.Abs(j.GPUHours-float64(len(x.minutes))/60) > 1e-9 ||
				math.Abs(j.MeanUtil-x.sum/x.n) > 1e-6 || math.Abs(j.EnergyKWh-x.mj/3.6e9) > 1e-12 {
				t.Errorf("%s: %+v, want gpus %d, gpu-hours %.4f, util %.4f, kWh %.9f", j.Job, j, len(x.gpus),
					float64(len(x.minutes))/60, x.sum/x.n, x.mj/3.6e9)
			}
		}
	})
}

// The reports' SQL is pinned in testdata/fleet.golden.sql; values are parameters.
func TestFleetSQLGolden(t *testing.T) {
	top, _, err := query.TopGPUsSQL("gpufleet", "temp_gpu_c", "max", false, 10)
	if err != nil {
		t.Fatal(err)
	}
	topPool, topParams, err := query.TopGPUsSQL("gpufleet", "gpu_util", "avg", true, 5,
		query.Filter{Dim: query.Pool, Values: []string{"train"}}, query.Filter{Dim: query.Cluster, Values: []string{"east", "it's"}})
	if err != nil {
		t.Fatal(err)
	}
	topP99, _, err := query.TopGPUsSQL("gpufleet", "temp_gpu_c", "p99", false, 10)
	if err != nil {
		t.Fatal(err)
	}
	byModel, err := query.EventCountsSQL("gpufleet", "model")
	if err != nil {
		t.Fatal(err)
	}
	got := "-- hottest GPUs\n" + top + ";\n\n-- least utilised in pool train of two clusters\n" + topPool +
		";\n-- params " + fmt.Sprint(topParams) + "\n\n-- hottest GPUs by p99 (gpu_1h digests)\n" + topP99 +
		";\n\n-- stopped reporting\n" + query.StoppedReportingSQL("gpufleet") +
		";\n\n-- stragglers\n" + query.StragglersSQL("gpufleet") + ";\n\n-- events by model\n" + byModel +
		";\n\n-- job usage\n" + jobUsageSQL() + ";\n"
	path := filepath.Join("testdata", "fleet.golden.sql")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./query -run Golden -update writes it)", err)
	}
	if got != string(want) {
		t.Errorf("fleet report SQL differs from %s (rerun with -update if intended)\n%s", path, got)
	}
	for _, bad := range []func() error{
		func() error { _, _, err := query.TopGPUsSQL("gpufleet", "energy_mj", "max", false, 10); return err },
		func() error { _, _, err := query.TopGPUsSQL("gpufleet", "gpu_util", "p42", false, 10); return err },
		func() error { _, _, err := query.TopGPUsSQL("gpufleet", "gpu_util", "last", false, 10); return err },
		func() error { _, _, err := query.TopGPUsSQL("gpufleet", "gpu_util", "avg", false, 0); return err },
		func() error { _, err := query.EventCountsSQL("gpufleet", "datacenter"); return err },
		func() error {
			_, _, err := query.TopGPUsSQL("gpufleet", "gpu_util", "avg", false, 3, query.Filter{Dim: "datacenter", Values: []string{"x"}})
			return err
		},
		func() error {
			_, _, err := query.TopGPUsSQL("gpufleet", "gpu_util", "avg", false, 3, query.Filter{Dim: query.Pool})
			return err
		},
	} {
		if err := bad(); !errors.Is(err, query.ErrInvalid) {
			t.Errorf("got %v, want ErrInvalid", err)
		}
	}
}

// The jobs dimension knows every job's span and size from the samples alone.
func TestJobsDimension(t *testing.T) {
	st, rs := seed(t)
	r, err := st.Query(context.Background(), "SELECT job_id, min(first_seen), max(last_seen), uniqMerge(gpus), uniqMerge(nodes), sum(samples) FROM "+
		store.Table(st.Database(), "jobs")+" GROUP BY job_id ORDER BY job_id")
	if err != nil {
		t.Fatal(err)
	}
	type span struct {
		first, last time.Time
		gpus, nodes map[string]bool
		n           int
	}
	want := map[string]*span{}
	for _, x := range rs {
		s := want[x.job]
		if s == nil {
			s = &span{first: x.t, last: x.t, gpus: map[string]bool{}, nodes: map[string]bool{}}
			want[x.job] = s
		}
		if x.t.Before(s.first) {
			s.first = x.t
		}
		if x.t.After(s.last) {
			s.last = x.t
		}
		s.gpus[x.uuid], s.nodes[x.node] = true, true
		s.n++
	}
	if len(r.Rows) != len(want) {
		t.Fatalf("%d jobs, want %d", len(r.Rows), len(want))
	}
	for _, row := range r.Rows {
		w := want[row[0].(string)]
		got := fmt.Sprint(row[1:])
		exp := fmt.Sprint([]any{w.first.Format("2006-01-02 15:04:05.000"), w.last.Format("2006-01-02 15:04:05.000"),
			uint64(len(w.gpus)), uint64(len(w.nodes)), uint64(w.n)})
		if got != exp {
			t.Errorf("%s: %s, want %s", row[0], got, exp)
		}
	}
}

func jobUsageSQL() string {
	sql, _ := query.JobUsageSQL("gpufleet")
	return sql
}
