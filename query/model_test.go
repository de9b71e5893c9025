package query_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	fleetseed "github.com/gpufleet/gpufleet/internal/seed"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/store/chdb"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/query"
)

var modelFrom = time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)

// seedFrom is recent: gpu_samples' TTL removes rows older than 30 days, at the engine's leisure.
var seedFrom = time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)

// The SQL of each query shape, with its bound parameters, is pinned in testdata/model.golden.sql.
func TestModelSQLGolden(t *testing.T) {
	shapes := []struct {
		name string
		q    query.Query
	}{
		{"fleet p99 utilisation", query.Query{Metric: "gpu_util", Agg: query.P99, Step: time.Minute}},
		{"avg temperature by cluster and model, filtered", query.Query{Metric: "temp_gpu_c", Agg: query.Avg,
			GroupBy: []query.Dim{query.Cluster, query.Model},
			Filters: []query.Filter{{Dim: query.Node, Values: []string{"node-1", "it's"}}}, Step: 5 * time.Minute}},
		{"max power per GPU, gaps filled", query.Query{Metric: "power_w", Agg: query.Max, GroupBy: []query.Dim{query.GPU},
			Step: time.Minute, Fill: true}},
		{"energy increase by job", query.Query{Metric: "energy_mj", Agg: query.Increase, GroupBy: []query.Dim{query.Job}, Step: time.Hour}},
		{"PCIe replay rate per GPU", query.Query{Metric: "pcie_replays", Agg: query.Rate, GroupBy: []query.Dim{query.GPU}, Step: time.Minute}},
		{"fleet p99 utilisation, raw forced", query.Query{Metric: "gpu_util", Agg: query.P99, Step: time.Minute, Source: query.SourceRaw}},
		{"energy increase by job, raw forced", query.Query{Metric: "energy_mj", Agg: query.Increase, GroupBy: []query.Dim{query.Job},
			Step: time.Hour, Source: query.SourceRaw}},
		{"last temperature per GPU per hour (gpu_1h keeps last readings)", query.Query{Metric: "temp_gpu_c", Agg: query.Last,
			GroupBy: []query.Dim{query.GPU}, Step: time.Hour}},
		{"whole window: one mean per cluster (stat panels, alerts)", query.Query{Metric: "gpu_util", Agg: query.Avg,
			GroupBy: []query.Dim{query.Cluster}, Whole: true}},
		{"misaligned window reads raw", query.Query{Metric: "gpu_util", Agg: query.Avg, Step: time.Minute}},
		{"p99 temperature per GPU per hour (gpu_1h keeps digests since 0015)", query.Query{Metric: "temp_gpu_c", Agg: query.P99,
			GroupBy: []query.Dim{query.GPU}, Step: time.Hour}},
		{"p99 temperature per GPU per minute reads raw (gpu_1m keeps no digests)", query.Query{Metric: "temp_gpu_c", Agg: query.P99,
			GroupBy: []query.Dim{query.GPU}, Step: time.Minute}},
		{"p95 SM activity by job per hour (a GPM metric, in the rollups since 0014)", query.Query{Metric: "sm_active", Agg: query.P95,
			GroupBy: []query.Dim{query.Job}, Step: time.Hour}},
		{"NVLink rate per GPU (a metric 0008 added to the rollups)", query.Query{Metric: "nvlink_tx_kib", Agg: query.Rate, GroupBy: []query.Dim{query.GPU}, Step: time.Minute}},
		{"fleet power by cluster: each GPU's mean, summed (gpu_1m: fleet_1m keeps no uuid)", query.Query{Metric: "power_w", Agg: query.Sum,
			GroupBy: []query.Dim{query.Cluster}, Step: time.Minute}},
		{"fleet power by cluster, raw forced", query.Query{Metric: "power_w", Agg: query.Sum, GroupBy: []query.Dim{query.Cluster},
			Step: time.Minute, Source: query.SourceRaw}},
		{"whole window: energy rate per job over the window", query.Query{Metric: "energy_mj", Agg: query.Rate,
			GroupBy: []query.Dim{query.Job}, Whole: true}},
	}
	var got bytes.Buffer
	for _, s := range shapes {
		s.q.From, s.q.To = modelFrom, modelFrom.Add(time.Hour)
		if strings.HasPrefix(s.name, "misaligned") {
			s.q.From = s.q.From.Add(30 * time.Second)
		}
		c, err := s.q.Compile("gpufleet")
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		fmt.Fprintf(&got, "-- %s (reads %s)\n%s;\n", s.name, c.Table, c.SQL)
		for _, n := range c.Params.Names() {
			fmt.Fprintf(&got, "-- param %s = %s\n", n, c.Params[n])
		}
		got.WriteString("\n")
	}
	path := filepath.Join("testdata", "model.golden.sql")
	if *update {
		if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./query -run Golden -update to create it)", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("compiled SQL differs from %s (rerun with -update if intended)\n got:\n%s", path, got.Bytes())
	}
	// No filter value reaches the SQL text.
	for _, line := range strings.Split(got.String(), "\n") {
		if !strings.HasPrefix(line, "--") && (strings.Contains(line, "node-1") || strings.Contains(line, "it\\'s")) {
			t.Errorf("a filter value was pasted into the SQL instead of bound: %s", line)
		}
	}
}

func TestModelValidate(t *testing.T) {
	ok := query.Query{Metric: "gpu_util", Agg: query.Avg, From: modelFrom, To: modelFrom.Add(time.Hour), Step: time.Minute}
	cases := map[string]struct {
		mutate func(q *query.Query)
		field  string
	}{
		"unknown metric":        {func(q *query.Query) { q.Metric = "gpu_util; DROP TABLE x" }, "metric"},
		"rate of a gauge":       {func(q *query.Query) { q.Agg = query.Rate }, "agg"},
		"avg of a counter":      {func(q *query.Query) { q.Metric, q.Agg = "energy_mj", query.Avg }, "agg"},
		"avg of a bitmask":      {func(q *query.Query) { q.Metric, q.Agg = "throttle_reasons", query.Avg }, "agg"},
		"increase of a bitmask": {func(q *query.Query) { q.Metric, q.Agg = "throttle_reasons", query.Increase }, "agg"},
		"unknown dimension":     {func(q *query.Query) { q.GroupBy = []query.Dim{"hostname"} }, "group_by"},
		"filter no values":      {func(q *query.Query) { q.Filters = []query.Filter{{Dim: query.Node}} }, "filters"},
		"filter unknown dim":    {func(q *query.Query) { q.Filters = []query.Filter{{Dim: "x", Values: []string{"a"}}} }, "filters"},
		"empty range":           {func(q *query.Query) { q.To = q.From }, "to"},
		"sub-second step":       {func(q *query.Query) { q.Step = 500 * time.Millisecond }, "step"},
		"too many points":       {func(q *query.Query) { q.To, q.Step = q.From.Add(400*24*time.Hour), time.Second }, "step"},
	}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid query rejected: %v", err)
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			q := ok
			c.mutate(&q)
			err := q.Validate()
			if !errors.Is(err, query.ErrInvalid) || !strings.Contains(err.Error(), c.field+":") {
				t.Fatalf("Validate() = %v, want ErrInvalid naming %q", err, c.field)
			}
		})
	}
}

// seeded is a small fleet written straight into gpu_samples: 2 clusters × 2 nodes × 2 GPUs, one
// reading every 10 s for 10 minutes, with values computed by formula so the test can compute every
// answer itself. GPU 1 of node b-1 skips minute 3 entirely; its energy counter resets at minute 6.
type reading struct {
	t                   time.Time
	cluster, node, uuid string
	job, model          string
	util                float64
	energy              uint64
}

func seed(t *testing.T) (store.Store, []reading) {
	t.Helper()
	st := testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	var rs []reading
	for _, cl := range []string{"a", "b"} {
		for n := range 2 {
			node := fmt.Sprintf("%s-%d", cl, n)
			for g := range 2 {
				uuid := fmt.Sprintf("GPU-%s-%d", node, g)
				var energy uint64 = 1000
				for i := range 60 {
					ts := seedFrom.Add(time.Duration(i) * 10 * time.Second)
					if node == "b-1" && g == 1 && ts.Sub(seedFrom) >= 3*time.Minute && ts.Sub(seedFrom) < 4*time.Minute {
						continue
					}
					energy += uint64(100 + 10*g + i)
					if node == "b-1" && g == 1 && i == 36 {
						energy = 7 // driver reload: the counter starts again
					}
					rs = append(rs, reading{t: ts, cluster: cl, node: node, uuid: uuid, job: "job-" + cl,
						model: map[string]string{"a": "H100", "b": "A100"}[cl], util: float64((i*7+g*13+n*29)%101) + 0.25})
					rs[len(rs)-1].energy = energy
				}
			}
		}
	}
	// A straggler: a third GPU of job-a on a-0 that barely works.
	for i := range 60 {
		rs = append(rs, reading{t: seedFrom.Add(time.Duration(i) * 10 * time.Second), cluster: "a", node: "a-0",
			uuid: "GPU-a-0-slow", job: "job-a", model: "H100", util: 2.25, energy: 500 + uint64(i)})
	}
	sort.SliceStable(rs, func(i, j int) bool { return rs[i].uuid < rs[j].uuid }) // per GPU, in time order
	tm := &store.ColDateTime64{ColName: "time"}
	cluster, node, uuid, job := &store.ColString{ColName: "cluster"}, &store.ColString{ColName: "node"},
		&store.ColString{ColName: "uuid"}, &store.ColString{ColName: "job_id"}
	model := &store.ColString{ColName: "model"}
	util := &store.ColNullFloat32{ColName: "gpu_util"}
	energy := &store.ColNullUInt64{ColName: "energy_mj"}
	for _, r := range rs {
		tm.V = append(tm.V, r.t.UnixMilli())
		cluster.V, node.V, uuid.V, job.V = append(cluster.V, r.cluster), append(node.V, r.node), append(uuid.V, r.uuid), append(job.V, r.job)
		model.V = append(model.V, r.model)
		util.Append(float32(r.util), false)
		energy.Append(r.energy, false)
	}
	b := &store.Block{Columns: []store.Column{tm, cluster, node, uuid, job, model, util, energy}}
	if err := st.Insert(ctx, "gpu_samples", b, ""); err != nil {
		t.Fatal(err)
	}
	return st, rs
}

// The query layer's answers on chDB equal what the test computes from the readings themselves.
func TestModelAnswersOnCHDB(t *testing.T) {
	st, rs := seed(t)
	for _, src := range []query.Source{query.SourceRaw, query.SourceAuto} {
		t.Run("source="+map[query.Source]string{query.SourceRaw: "raw", query.SourceAuto: "rollup"}[src], func(t *testing.T) {
			checkAnswers(t, st, rs, src)
		})
	}
}

func checkAnswers(t *testing.T, st store.Store, rs []reading, src query.Source) {
	ctx := context.Background()
	to := seedFrom.Add(10 * time.Minute)
	run := func(q *query.Query) ([]query.Series, error) {
		q.Source = src
		c, err := q.Compile(st.Database())
		if err != nil {
			return nil, err
		}
		if rolled := c.Table != "gpu_samples"; rolled != (src == query.SourceAuto) {
			t.Errorf("%s %s reads %s with source %q", q.Agg, q.Metric, c.Table, src)
		}
		return query.Run(ctx, st, q)
	}

	t.Run("avg util by cluster per minute", func(t *testing.T) {
		got, err := run(&query.Query{Metric: "gpu_util", Agg: query.Avg, GroupBy: []query.Dim{query.Cluster},
			From: seedFrom, To: to, Step: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]map[time.Time][]float64{}
		for _, r := range rs {
			m := r.t.Truncate(time.Minute)
			if want[r.cluster] == nil {
				want[r.cluster] = map[time.Time][]float64{}
			}
			want[r.cluster][m] = append(want[r.cluster][m], float64(float32(r.util)))
		}
		if len(got) != 2 {
			t.Fatalf("%d series, want 2", len(got))
		}
		for _, s := range got {
			w := want[s.Labels["cluster"]]
			if len(s.Points) != 10 {
				t.Fatalf("cluster %s: %d points, want 10", s.Labels["cluster"], len(s.Points))
			}
			for _, p := range s.Points {
				var sum float64
				for _, v := range w[p.T] {
					sum += v
				}
				if exp := sum / float64(len(w[p.T])); p.Value == nil || math.Abs(*p.Value-exp) > 1e-6 {
					t.Errorf("cluster %s at %s: %v, want %v", s.Labels["cluster"], p.T.Format(time.TimeOnly), p.Value, exp)
				}
			}
		}
	})

	t.Run("filtered max with gaps filled", func(t *testing.T) {
		got, err := run(&query.Query{Metric: "gpu_util", Agg: query.Max, GroupBy: []query.Dim{query.GPU},
			Filters: []query.Filter{{Dim: query.Node, Values: []string{"b-1", "no-such-node'); DROP TABLE x; --"}}},
			From:    seedFrom, To: to, Step: time.Minute, Fill: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 {
			t.Fatalf("%d series, want the 2 GPUs of b-1", len(got))
		}
		for _, s := range got {
			if len(s.Points) != 10 {
				t.Fatalf("%s: %d points, want 10 with the gap filled", s.Labels["gpu"], len(s.Points))
			}
			gap := s.Points[3].Value == nil
			if want := s.Labels["gpu"] == "GPU-b-1-1"; gap != want {
				t.Errorf("%s minute 3 is NULL=%v, want %v", s.Labels["gpu"], gap, want)
			}
			for _, p := range s.Points {
				if p.Value == nil {
					continue
				}
				exp := math.Inf(-1)
				for _, r := range rs {
					if r.uuid == s.Labels["gpu"] && r.t.Truncate(time.Minute).Equal(p.T) {
						exp = math.Max(exp, float64(float32(r.util)))
					}
				}
				if *p.Value != exp {
					t.Errorf("%s at %s: %v, want %v", s.Labels["gpu"], p.T.Format(time.TimeOnly), *p.Value, exp)
				}
			}
		}
	})

	t.Run("p90 util, whole fleet", func(t *testing.T) {
		got, err := run(&query.Query{Metric: "gpu_util", Agg: query.P90, From: seedFrom, To: to, Step: 10 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		var vs []float64
		for _, r := range rs {
			vs = append(vs, float64(float32(r.util)))
		}
		sort.Float64s(vs)
		// A t-digest estimate lies between the order statistics around the 90th percentile rank.
		lo, hi := vs[int(0.9*float64(len(vs)-1))-2], vs[int(0.9*float64(len(vs)-1))+2]
		if len(got) != 1 || len(got[0].Points) != 1 || *got[0].Points[0].Value < lo || *got[0].Points[0].Value > hi {
			t.Fatalf("p90 = %+v, want within [%v, %v]", got, lo, hi)
		}
	})

	// Per-GPU and per-job percentiles: from gpu_1h's digests (0015), merged across a job's GPUs,
	// or from raw rows. Each estimate must lie between the order statistics one rank
	// either side of the exact percentile's.
	for _, c := range []struct {
		name string
		q    query.Query
		key  func(reading) string
		dim  string
	}{
		{"p99 util per GPU per hour", query.Query{Metric: "gpu_util", Agg: query.P99, GroupBy: []query.Dim{query.GPU},
			From: seedFrom, To: seedFrom.Add(time.Hour), Step: time.Hour}, func(r reading) string { return r.uuid }, "gpu"},
		{"p50 util by job per hour", query.Query{Metric: "gpu_util", Agg: query.P50, GroupBy: []query.Dim{query.Job},
			From: seedFrom, To: seedFrom.Add(time.Hour), Step: time.Hour}, func(r reading) string { return r.job }, "job"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := run(&c.q)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]map[time.Time][]float64{}
			for _, r := range rs {
				k, b := c.key(r), r.t.Truncate(c.q.Step)
				if want[k] == nil {
					want[k] = map[time.Time][]float64{}
				}
				want[k][b] = append(want[k][b], float64(float32(r.util)))
			}
			if len(got) != len(want) {
				t.Fatalf("%d series, want %d", len(got), len(want))
			}
			q := map[query.Agg]float64{query.P50: 0.5, query.P99: 0.99}[c.q.Agg]
			points := 0
			for _, s := range got {
				for _, p := range s.Points {
					vs := want[s.Labels[c.dim]][p.T]
					lo, hi := rankBounds(vs, q)
					if p.Value == nil || *p.Value < lo || *p.Value > hi {
						t.Errorf("%s at %s: %v, want within [%v, %v] (%d readings)", s.Labels[c.dim], p.T.Format(time.TimeOnly), p.Value, lo, hi, len(vs))
					}
					points++
				}
			}
			if points == 0 {
				t.Fatal("no points")
			}
		})
	}

	t.Run("energy increase by job, reset-aware", func(t *testing.T) {
		got, err := run(&query.Query{Metric: "energy_mj", Agg: query.Increase, GroupBy: []query.Dim{query.Job},
			From: seedFrom, To: to, Step: 5 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]map[time.Time]float64{}
		last := map[string]reading{}
		for _, r := range rs { // rs is in time order per GPU
			prev, seen := last[r.uuid]
			last[r.uuid] = r
			if !seen {
				continue
			}
			d := float64(r.energy) - float64(prev.energy)
			if r.energy < prev.energy {
				d = float64(r.energy)
			}
			if want[r.job] == nil {
				want[r.job] = map[time.Time]float64{}
			}
			want[r.job][r.t.Truncate(5*time.Minute)] += d
		}
		if len(got) != 2 {
			t.Fatalf("%d series, want 2 jobs", len(got))
		}
		for _, s := range got {
			for _, p := range s.Points {
				if exp := want[s.Labels["job"]][p.T]; p.Value == nil || *p.Value != exp {
					t.Errorf("%s at %s: increase %v, want %v", s.Labels["job"], p.T.Format(time.TimeOnly), p.Value, exp)
				}
			}
		}
	})

	t.Run("last util per GPU per minute", func(t *testing.T) {
		got, err := run(&query.Query{Metric: "gpu_util", Agg: query.Last, GroupBy: []query.Dim{query.GPU},
			From: seedFrom, To: to, Step: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		last := map[string]map[time.Time]reading{}
		for _, r := range rs {
			m := r.t.Truncate(time.Minute)
			if last[r.uuid] == nil {
				last[r.uuid] = map[time.Time]reading{}
			}
			if prev, ok := last[r.uuid][m]; !ok || r.t.After(prev.t) {
				last[r.uuid][m] = r
			}
		}
		if len(got) != len(last) {
			t.Fatalf("%d series, want one per GPU (%d)", len(got), len(last))
		}
		for _, s := range got {
			w := last[s.Labels["gpu"]]
			if len(s.Points) != len(w) {
				t.Fatalf("%s: %d points, want %d", s.Labels["gpu"], len(s.Points), len(w))
			}
			for _, p := range s.Points {
				if exp := float64(float32(w[p.T].util)); p.Value == nil || *p.Value != exp {
					t.Errorf("%s at %s: last %v, want %v", s.Labels["gpu"], p.T.Format(time.TimeOnly), p.Value, exp)
				}
			}
		}
	})

	t.Run("last util per GPU per hour (gpu_1h, merged from gpu_1m's states)", func(t *testing.T) {
		got, err := run(&query.Query{Metric: "gpu_util", Agg: query.Last, GroupBy: []query.Dim{query.GPU},
			From: seedFrom, To: seedFrom.Add(time.Hour), Step: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		last := map[string]reading{}
		for _, r := range rs {
			if prev, ok := last[r.uuid]; !ok || r.t.After(prev.t) {
				last[r.uuid] = r
			}
		}
		if len(got) != len(last) {
			t.Fatalf("%d series, want %d", len(got), len(last))
		}
		for _, s := range got {
			if exp := float64(float32(last[s.Labels["gpu"]].util)); len(s.Points) != 1 || *s.Points[0].Value != exp {
				t.Errorf("%s: %+v, want one point of %v", s.Labels["gpu"], s.Points, exp)
			}
		}
	})

	// A 7-minute window is not a multiple of 7 minutes from the epoch: bucketed by its length it
	// would split in two; Whole keeps it one number per group, as stat panels and alerts need.
	t.Run("whole window: one mean and one increase per job", func(t *testing.T) {
		from, to := seedFrom.Add(3*time.Minute), seedFrom.Add(10*time.Minute)
		avg, err := run(&query.Query{Metric: "gpu_util", Agg: query.Avg, GroupBy: []query.Dim{query.Job}, From: from, To: to, Whole: true})
		if err != nil {
			t.Fatal(err)
		}
		inc, err := run(&query.Query{Metric: "energy_mj", Agg: query.Increase, GroupBy: []query.Dim{query.Job}, From: from, To: to, Whole: true})
		if err != nil {
			t.Fatal(err)
		}
		sum, n, wantInc := map[string]float64{}, map[string]float64{}, map[string]float64{}
		last := map[string]reading{}
		for _, r := range rs {
			if r.t.Before(from) || !r.t.Before(to) {
				continue
			}
			sum[r.job] += float64(float32(r.util))
			n[r.job]++
			prev, seen := last[r.uuid]
			last[r.uuid] = r
			if !seen {
				continue
			}
			if r.energy < prev.energy {
				wantInc[r.job] += float64(r.energy)
			} else {
				wantInc[r.job] += float64(r.energy - prev.energy)
			}
		}
		if len(avg) != 2 || len(inc) != 2 {
			t.Fatalf("%d mean and %d increase series, want 2 jobs each", len(avg), len(inc))
		}
		for i := range 2 {
			job := avg[i].Labels["job"]
			if len(avg[i].Points) != 1 || !avg[i].Points[0].T.Equal(from) || math.Abs(*avg[i].Points[0].Value-sum[job]/n[job]) > 1e-6 {
				t.Errorf("%s whole-window mean %+v, want one point at %s of %v", job, avg[i].Points, from.Format(time.TimeOnly), sum[job]/n[job])
			}
			job = inc[i].Labels["job"]
			if len(inc[i].Points) != 1 || *inc[i].Points[0].Value != wantInc[job] {
				t.Errorf("%s whole-window increase %+v, want one point of %v", job, inc[i].Points, wantInc[job])
			}
		}
	})

	t.Run("hourly energy (from gpu_1m) and mean utilisation (gpu_1h, fed from gpu_1m) per job", func(t *testing.T) {
		hour := seedFrom.Add(time.Hour)
		inc, err := run(&query.Query{Metric: "energy_mj", Agg: query.Increase, GroupBy: []query.Dim{query.Job},
			From: seedFrom, To: hour, Step: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		avg, err := run(&query.Query{Metric: "gpu_util", Agg: query.Avg, GroupBy: []query.Dim{query.Job},
			From: seedFrom, To: hour, Step: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		wantInc, sum, n := map[string]float64{}, map[string]float64{}, map[string]float64{}
		last := map[string]reading{}
		for _, r := range rs {
			sum[r.job] += float64(float32(r.util))
			n[r.job]++
			prev, seen := last[r.uuid]
			last[r.uuid] = r
			if !seen {
				continue
			}
			if r.energy < prev.energy {
				wantInc[r.job] += float64(r.energy)
			} else {
				wantInc[r.job] += float64(r.energy - prev.energy)
			}
		}
		if len(inc) != 2 || len(avg) != 2 {
			t.Fatalf("%d increase and %d mean series, want 2 jobs each", len(inc), len(avg))
		}
		for i := range 2 {
			job := inc[i].Labels["job"]
			if v := inc[i].Points[0].Value; len(inc[i].Points) != 1 || *v != wantInc[job] {
				t.Errorf("%s hourly increase %v, want %v", job, *v, wantInc[job])
			}
			job = avg[i].Labels["job"]
			if v := avg[i].Points[0].Value; len(avg[i].Points) != 1 || math.Abs(*v-sum[job]/n[job]) > 1e-6 {
				t.Errorf("%s hourly mean %v, want %v", job, *v, sum[job]/n[job])
			}
		}
	})
}

// The metrics migrations 0008 and 0023 added to the rollups answer from gpu_1m exactly as from raw
// samples.
func TestAddedMetricsRollupEqualsRaw(t *testing.T) {
	st := testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	to := time.Now().UTC().Truncate(time.Minute)
	from := to.Add(-10 * time.Minute)
	if _, err := (fleetseed.Fleet{Seed: 6, Nodes: 3, GPUsPerNode: 4, From: from, To: to, Step: 5 * time.Second}).Write(ctx, st); err != nil {
		t.Fatal(err)
	}
	for _, q := range []query.Query{
		{Metric: "nvlink_tx_kib", Agg: query.Increase, GroupBy: []query.Dim{query.Node}},
		{Metric: "enc_util", Agg: query.Max, GroupBy: []query.Dim{query.GPU}},
		// 0023's: a violation time and a power limit.
		{Metric: "viol_thermal_ns", Agg: query.Increase, GroupBy: []query.Dim{query.Node}},
		{Metric: "power_limit_w", Agg: query.Max, GroupBy: []query.Dim{query.GPU}},
	} {
		q.From, q.To, q.Step = from, to, time.Minute
		raw, roll := q, q
		raw.Source = query.SourceRaw
		c, err := roll.Compile(st.Database())
		if err != nil || c.Table != "gpu_1m" {
			t.Fatalf("%s: reads %v (%v), want gpu_1m", q.Metric, c, err)
		}
		a, err := query.Run(ctx, st, &raw)
		if err != nil {
			t.Fatal(err)
		}
		b, err := query.Run(ctx, st, &roll)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(seriesValues(a)) != fmt.Sprint(seriesValues(b)) || len(a) == 0 {
			t.Errorf("%s: raw %v\nrollup %v", q.Metric, seriesValues(a), seriesValues(b))
		}
	}
}

func seriesValues(ss []query.Series) [][]float64 {
	var out [][]float64
	for _, s := range ss {
		var vs []float64
		for _, p := range s.Points {
			vs = append(vs, *p.Value)
		}
		out = append(out, vs)
	}
	return out
}

// Rack and pool (migrations 0009 and 0010) group the rollups as they group raw rows: the simulated
// fleet puts 8 nodes in a rack and every fourth rack in pool infer.
func TestPlacementRollupEqualsRaw(t *testing.T) {
	st := testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	to := time.Now().UTC().Truncate(time.Minute)
	from := to.Add(-5 * time.Minute)
	if _, err := (fleetseed.Fleet{Seed: 8, Nodes: 40, GPUsPerNode: 2, From: from, To: to, Step: 10 * time.Second}).Write(ctx, st); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		q      query.Query
		table  string
		groups []string
	}{
		{query.Query{Metric: "gpu_util", Agg: query.Avg, GroupBy: []query.Dim{query.Pool}}, "fleet_1m", []string{"infer", "train"}},
		{query.Query{Metric: "temp_gpu_c", Agg: query.Max, GroupBy: []query.Dim{query.Rack},
			Filters: []query.Filter{{Dim: query.Pool, Values: []string{"train"}}}}, "gpu_1m", []string{"rack-000", "rack-001", "rack-002", "rack-004"}},
		{query.Query{Metric: "energy_mj", Agg: query.Increase, GroupBy: []query.Dim{query.Pool}}, "gpu_1m", []string{"infer", "train"}},
	} {
		q := c.q
		q.From, q.To, q.Step = from, to, time.Minute
		raw, roll := q, q
		raw.Source = query.SourceRaw
		compiled, err := roll.Compile(st.Database())
		if err != nil || compiled.Table != c.table {
			t.Fatalf("%s %s by %v: reads %v (%v), want %s", q.Agg, q.Metric, q.GroupBy, compiled, err, c.table)
		}
		a, err := query.Run(ctx, st, &raw)
		if err != nil {
			t.Fatal(err)
		}
		b, err := query.Run(ctx, st, &roll)
		if err != nil {
			t.Fatal(err)
		}
		var groups []string
		for _, s := range b {
			groups = append(groups, s.Labels[q.GroupBy[0].Name()])
		}
		if fmt.Sprint(groups) != fmt.Sprint(c.groups) || len(a) != len(b) {
			t.Fatalf("%s %s: rollup groups %v (raw %d series), want %v", q.Agg, q.Metric, groups, len(a), c.groups)
		}
		av, bv := seriesValues(a), seriesValues(b)
		for i := range av {
			if len(av[i]) != 5 || len(bv[i]) != 5 {
				t.Fatalf("%s %s %s: %d raw and %d rollup points, want 5", q.Agg, q.Metric, groups[i], len(av[i]), len(bv[i]))
			}
			for j := range av[i] {
				if math.Abs(av[i][j]-bv[i][j]) > 1e-9*math.Max(1, math.Abs(av[i][j])) {
					t.Errorf("%s %s %s minute %d: raw %v, rollup %v", q.Agg, q.Metric, groups[i], j, av[i][j], bv[i][j])
				}
			}
		}
	}
}

// rankBounds are the order statistics one rank below and above quantile q's rank in vs: where a
// t-digest's estimate must fall.
func rankBounds(vs []float64, q float64) (lo, hi float64) {
	if len(vs) == 0 {
		return math.NaN(), math.NaN()
	}
	s := slices.Sorted(slices.Values(vs))
	r := q * float64(len(s)-1)
	return s[max(0, int(math.Floor(r))-1)], s[min(len(s)-1, int(math.Ceil(r))+1)]
}

// A database upgraded across 0015: hours written before it have no per-GPU digests. Their
// percentiles are no value (not NaN, which JSON cannot carry), top-K by a percentile leaves out
// GPUs with none, and hours written after answer within the sketch's bounds.
func TestDigestsAcrossUpgrade(t *testing.T) {
	st := testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.ApplyWith(ctx, st, nil, migrate.Options{Until: 14}); err != nil {
		t.Fatal(err)
	}
	old := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
	// Ten minutes of two GPUs every 10 s, written with the columns every schema version has.
	write := func(from time.Time) {
		t.Helper()
		if err := st.Exec(ctx, fmt.Sprintf("INSERT INTO %s (time, cluster, node, gpu, uuid, model, temp_gpu_c) "+
			"SELECT fromUnixTimestamp64Milli(toInt64(%d + intDiv(number, 2) * 10000)), 'c', 'n', number %% 2, "+
			"concat('GPU-', toString(number %% 2)), 'H100', 40 + (number * 7) %% 23 FROM numbers(120)",
			store.Table(st.Database(), "gpu_samples"), from.UnixMilli())); err != nil {
			t.Fatal(err)
		}
	}
	write(old)
	if applied, err := migrate.Apply(ctx, st, nil); err != nil || !slices.Contains(applied, 15) {
		t.Fatalf("applied %v, %v; want the rest from 15 on", applied, err)
	}
	write(old.Add(time.Hour))

	q := &query.Query{Metric: "temp_gpu_c", Agg: query.P99, GroupBy: []query.Dim{query.GPU}, From: old, To: old.Add(2 * time.Hour), Step: time.Hour}
	got, err := query.Run(ctx, st, q)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := q.Compile(st.Database()); c.Table != "gpu_1h" {
		t.Fatalf("read %s, want gpu_1h", c.Table)
	}
	if len(got) != 2 {
		t.Fatalf("%d series, want 2 GPUs", len(got))
	}
	raw := *q
	raw.Source = query.SourceRaw
	exact, err := query.Run(ctx, st, &raw)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range got {
		byT := map[time.Time]*float64{}
		for _, p := range s.Points {
			byT[p.T] = p.Value
		}
		if v, ok := byT[old]; ok && v != nil {
			t.Errorf("%s: the hour before 0015 has p99 %v, want no value", s.Labels["gpu"], *v)
		}
		v := byT[old.Add(time.Hour)]
		var want *float64
		for _, p := range exact[i].Points {
			if p.T.Equal(old.Add(time.Hour)) {
				want = p.Value
			}
		}
		// 60 readings a GPU-hour, spread over 40–62 °C: a digest of so few keeps every one, so its
		// p99 lies within a reading's spacing of the raw quantile's.
		if v == nil || want == nil || math.Abs(*v-*want) > 2 {
			t.Errorf("%s: p99 after 0015 = %v, raw %v", s.Labels["gpu"], v, want)
		}
	}
	if _, err := json.Marshal(got); err != nil {
		t.Errorf("series do not encode as JSON: %v", err)
	}
	top, err := query.TopGPUs(ctx, st, "temp_gpu_c", "p99", false, 10, old, old.Add(10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(top) != 0 {
		t.Errorf("top by p99 over the hour before 0015: %+v, want none", top)
	}
	top, err = query.TopGPUs(ctx, st, "temp_gpu_c", "p99", false, 10, old, old.Add(2*time.Hour))
	if err != nil || len(top) != 2 {
		t.Errorf("top by p99 over both hours: %+v, %v; want both GPUs, ranked by the later hour", top, err)
	}
}

var sources = []struct {
	name string
	src  query.Source
}{{"raw", query.SourceRaw}, {"rollup", query.SourceAuto}}

// Fill leaves null, never 0, in every step without readings, for every aggregation and from every
// table: here the two minutes before the readings start, and the minute GPU-b-1-1 skipped.
func TestFillNullEveryAgg(t *testing.T) {
	st, rs := seed(t)
	from, to := seedFrom.Add(-2*time.Minute), seedFrom.Add(10*time.Minute)
	for _, g := range []struct {
		name    string
		by      query.Dim
		filters []query.Filter
		key     func(reading) string
		series  int
	}{
		// Per GPU reads gpu_1m or gpu_samples; per cluster fleet_1m (gauges) or gpu_1m (counters).
		{"per gpu of b-1", query.GPU, []query.Filter{{Dim: query.Node, Values: []string{"b-1"}}}, func(r reading) string { return r.uuid }, 2},
		{"per cluster", query.Cluster, nil, func(r reading) string { return r.cluster }, 2},
	} {
		has := map[string]bool{} // group and minute with a reading
		for _, r := range rs {
			has[g.key(r)+r.t.Truncate(time.Minute).String()] = true
		}
		for _, c := range []struct {
			metric string
			agg    query.Agg
		}{
			{"gpu_util", query.Avg}, {"gpu_util", query.Min}, {"gpu_util", query.Max}, {"gpu_util", query.Sum},
			{"gpu_util", query.Count}, {"gpu_util", query.P50}, {"gpu_util", query.P90}, {"gpu_util", query.P95},
			{"gpu_util", query.P99}, {"gpu_util", query.Last}, {"energy_mj", query.Increase}, {"energy_mj", query.Rate},
		} {
			for _, src := range sources {
				t.Run(fmt.Sprintf("%s %s %s %s", g.name, c.agg, c.metric, src.name), func(t *testing.T) {
					got, err := query.Run(context.Background(), st, &query.Query{Metric: c.metric, Agg: c.agg, GroupBy: []query.Dim{g.by},
						Filters: g.filters, From: from, To: to, Step: time.Minute, Fill: true, Source: src.src})
					if err != nil {
						t.Fatal(err)
					}
					if len(got) != g.series {
						t.Fatalf("%d series, want %d", len(got), g.series)
					}
					label := g.by.Name()
					for _, s := range got {
						if len(s.Points) != 12 {
							t.Fatalf("%v: %d points, want 12", s.Labels, len(s.Points))
						}
						for i, p := range s.Points {
							if want := from.Add(time.Duration(i) * time.Minute); !p.T.Equal(want) {
								t.Fatalf("%v point %d at %s, want %s", s.Labels, i, p.T, want)
							}
							if read := has[s.Labels[label]+p.T.String()]; read != (p.Value != nil) {
								v := "null"
								if p.Value != nil {
									v = fmt.Sprint(*p.Value)
								}
								t.Errorf("%s at %s: %s, with readings %v", s.Labels[label], p.T.Format(time.TimeOnly), v, read)
							}
						}
					}
				})
			}
		}
	}
}

// A window without readings answers no series, filled or not: WITH FILL alone would invent one
// labelled with empty strings.
func TestFillEmptyWindow(t *testing.T) {
	st, _ := seed(t)
	early := query.Query{From: seedFrom.Add(-2 * time.Hour), To: seedFrom.Add(-time.Hour), Step: time.Minute, Fill: true}
	for _, c := range []struct {
		name string
		edit func(q *query.Query)
	}{
		{"fleet avg", func(q *query.Query) { q.Metric, q.Agg = "gpu_util", query.Avg }},
		{"avg by cluster", func(q *query.Query) { q.Metric, q.Agg, q.GroupBy = "gpu_util", query.Avg, []query.Dim{query.Cluster} }},
		{"count by gpu", func(q *query.Query) { q.Metric, q.Agg, q.GroupBy = "gpu_util", query.Count, []query.Dim{query.GPU} }},
		{"sum by job", func(q *query.Query) { q.Metric, q.Agg, q.GroupBy = "gpu_util", query.Sum, []query.Dim{query.Job} }},
		{"rate by gpu", func(q *query.Query) { q.Metric, q.Agg, q.GroupBy = "energy_mj", query.Rate, []query.Dim{query.GPU} }},
		{"a filter nothing matches, over the readings", func(q *query.Query) {
			q.Metric, q.Agg, q.GroupBy = "gpu_util", query.Avg, []query.Dim{query.Node}
			q.From, q.To = seedFrom, seedFrom.Add(10*time.Minute)
			q.Filters = []query.Filter{{Dim: query.Node, Values: []string{"no-such-node"}}}
		}},
	} {
		for _, src := range sources {
			t.Run(c.name+" "+src.name, func(t *testing.T) {
				q := early
				q.Source = src.src
				c.edit(&q)
				got, err := query.Run(context.Background(), st, &q)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != 0 {
					t.Errorf("%d series (first labelled %v, %d points), want none", len(got), got[0].Labels, len(got[0].Points))
				}
			})
		}
	}
}

// increases is each key's reset-aware counter increase per bucket over [from, to), computed from
// the readings as the query layer defines it: a reading adds its difference from the GPU's
// previous reading in the window to its own bucket, from zero after a reset.
func increases(rs []reading, from, to time.Time, key func(reading) string, bucket func(time.Time) time.Time) map[string]map[time.Time]float64 {
	out := map[string]map[time.Time]float64{}
	last := map[string]reading{}
	for _, r := range rs { // in time order per GPU
		if r.t.Before(from) || !r.t.Before(to) {
			continue
		}
		prev, seen := last[r.uuid]
		last[r.uuid] = r
		if !seen {
			continue
		}
		d := float64(r.energy) - float64(prev.energy)
		if r.energy < prev.energy {
			d = float64(r.energy)
		}
		k := key(r)
		if out[k] == nil {
			out[k] = map[time.Time]float64{}
		}
		out[k][bucket(r.t)] += d
	}
	return out
}

// A rate is the increase over the time its bucket covers inside the window: the newest bucket of a
// live window is still filling, and its increase so far over the whole step read low.
func TestRateOfUnfinishedBucket(t *testing.T) {
	st, rs := seed(t)
	job := func(r reading) string { return r.job }
	for _, c := range []struct {
		name     string
		from, to time.Time
		step     time.Duration
		whole    bool
		srcs     []query.Source
	}{
		{"newest 5-minute bucket 2 minutes in", seedFrom, seedFrom.Add(7 * time.Minute), 5 * time.Minute, false,
			[]query.Source{query.SourceRaw, query.SourceAuto}},
		{"newest bucket ends mid-minute", seedFrom, seedFrom.Add(7*time.Minute + 30*time.Second), 5 * time.Minute, false,
			[]query.Source{query.SourceRaw}},
		{"oldest bucket starts mid-bucket", seedFrom.Add(2 * time.Minute), seedFrom.Add(10 * time.Minute), 5 * time.Minute, false,
			[]query.Source{query.SourceRaw, query.SourceAuto}},
		{"whole window divides by the window", seedFrom.Add(3 * time.Minute), seedFrom.Add(10 * time.Minute), 0, true,
			[]query.Source{query.SourceRaw, query.SourceAuto}},
	} {
		for _, src := range c.srcs {
			t.Run(fmt.Sprintf("%s source %q", c.name, src), func(t *testing.T) {
				q := &query.Query{Metric: "energy_mj", Agg: query.Rate, GroupBy: []query.Dim{query.Job}, From: c.from, To: c.to,
					Step: c.step, Whole: c.whole, Source: src}
				bucket := func(ts time.Time) time.Time { return ts.Truncate(c.step) }
				if c.whole {
					bucket = func(time.Time) time.Time { return c.from }
				}
				want := increases(rs, c.from, c.to, job, bucket)
				got, err := query.Run(context.Background(), st, q)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(want) {
					t.Fatalf("%d series, want %d jobs", len(got), len(want))
				}
				points := 0
				for _, s := range got {
					for _, p := range s.Points {
						start, end := p.T, p.T.Add(c.step)
						if c.whole {
							end = c.to
						}
						covered := (min(end.UnixMilli(), c.to.UnixMilli()) - max(start.UnixMilli(), c.from.UnixMilli()))
						exp := want[s.Labels["job"]][p.T] * 1000 / float64(covered)
						if p.Value == nil || math.Abs(*p.Value-exp) > 1e-9*exp {
							t.Errorf("%s at %s: rate %v, want %v (over %d ms)", s.Labels["job"], p.T.Format(time.TimeOnly), p.Value, exp, covered)
						}
						points++
					}
				}
				if points == 0 {
					t.Fatal("no points")
				}
			})
		}
	}
}

// Sum is over GPUs: each GPU's mean in the step, added up — a fleet's power in W, not its
// readings added (which grows with the sampling rate). From rollups, only the per-GPU levels can
// answer it.
func TestSumOverGPUs(t *testing.T) {
	st, rs := seed(t)
	to := seedFrom.Add(10 * time.Minute)
	for _, c := range []struct {
		name  string
		by    []query.Dim
		key   func(reading) string
		label string
		step  time.Duration
		whole bool
	}{
		{"fleet per minute", nil, func(reading) string { return "" }, "", time.Minute, false},
		{"by cluster per minute", []query.Dim{query.Cluster}, func(r reading) string { return r.cluster }, "cluster", time.Minute, false},
		{"by job per 5 minutes", []query.Dim{query.Job}, func(r reading) string { return r.job }, "job", 5 * time.Minute, false},
		{"by gpu per minute: each GPU's mean", []query.Dim{query.GPU}, func(r reading) string { return r.uuid }, "gpu", time.Minute, false},
		{"by cluster, whole window", []query.Dim{query.Cluster}, func(r reading) string { return r.cluster }, "cluster", 0, true},
	} {
		// key → bucket → uuid → readings
		sum, n := map[string]map[time.Time]map[string]float64{}, map[string]map[time.Time]map[string]float64{}
		for _, r := range rs {
			k, b := c.key(r), r.t.Truncate(max(c.step, time.Nanosecond))
			if c.whole {
				b = seedFrom
			}
			if sum[k] == nil {
				sum[k], n[k] = map[time.Time]map[string]float64{}, map[time.Time]map[string]float64{}
			}
			if sum[k][b] == nil {
				sum[k][b], n[k][b] = map[string]float64{}, map[string]float64{}
			}
			sum[k][b][r.uuid] += float64(float32(r.util))
			n[k][b][r.uuid]++
		}
		for _, src := range sources {
			t.Run(c.name+" "+src.name, func(t *testing.T) {
				q := &query.Query{Metric: "gpu_util", Agg: query.Sum, GroupBy: c.by, From: seedFrom, To: to, Step: c.step, Whole: c.whole, Source: src.src}
				compiled, err := q.Compile(st.Database())
				if err != nil {
					t.Fatal(err)
				}
				if wantTable := map[query.Source]string{query.SourceRaw: "gpu_samples", query.SourceAuto: "gpu_1m"}[src.src]; compiled.Table != wantTable {
					t.Errorf("reads %s, want %s (a level that keeps uuid)", compiled.Table, wantTable)
				}
				got, err := query.Run(context.Background(), st, q)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(sum) {
					t.Fatalf("%d series, want %d", len(got), len(sum))
				}
				points := 0
				for _, s := range got {
					k := s.Labels[c.label]
					if len(s.Points) != len(sum[k]) {
						t.Errorf("%q: %d points, want %d", k, len(s.Points), len(sum[k]))
					}
					for _, p := range s.Points {
						var exp float64
						for uuid, v := range sum[k][p.T] {
							exp += v / n[k][p.T][uuid]
						}
						if p.Value == nil || math.Abs(*p.Value-exp) > 1e-9*exp {
							t.Errorf("%q at %s: sum %v, want %v over %d GPUs", k, p.T.Format(time.TimeOnly), p.Value, exp, len(sum[k][p.T]))
						}
						points++
					}
				}
				if points == 0 {
					t.Fatal("no points")
				}
			})
		}
	}
}

// Series are labelled by the dimensions' names, as the user grouped by them (gpu, not uuid; job,
// not job_id), and the CLI's tables head their columns so.
func TestLabelsNamedAsDims(t *testing.T) {
	st, rs := seed(t)
	for _, c := range []struct {
		dim  query.Dim
		name string
		of   func(reading) string
	}{
		{query.Cluster, "cluster", func(r reading) string { return r.cluster }},
		{query.Node, "node", func(r reading) string { return r.node }},
		{query.GPU, "gpu", func(r reading) string { return r.uuid }},
		{query.Model, "model", func(r reading) string { return r.model }},
		{query.Job, "job", func(r reading) string { return r.job }},
		{query.Rack, "rack", func(reading) string { return "" }},
		{query.Pool, "pool", func(reading) string { return "" }},
	} {
		t.Run(c.name, func(t *testing.T) {
			if d, ok := query.DimByName(c.dim.Name()); c.dim.Name() != c.name || !ok || d != c.dim {
				t.Fatalf("%s.Name() = %q (DimByName: %v %v), want %q", c.dim, c.dim.Name(), d, ok, c.name)
			}
			q := &query.Query{Metric: "gpu_util", Agg: query.Max, GroupBy: []query.Dim{c.dim}, From: seedFrom, To: seedFrom.Add(10 * time.Minute), Whole: true}
			got, err := query.Run(context.Background(), st, q)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]bool{}
			for _, r := range rs {
				want[c.of(r)] = true
			}
			seen := map[string]bool{}
			for _, s := range got {
				v, ok := s.Labels[c.name]
				if !ok || len(s.Labels) != 1 || !want[v] {
					t.Errorf("series labelled %v, want one label %s among %v", s.Labels, c.name, want)
				}
				seen[v] = true
			}
			if len(seen) != len(want) {
				t.Errorf("labels %v, want %v", seen, want)
			}
			for format, head := range map[string]string{"csv": "t," + c.name + ",value", "text": "TIME " + strings.ToUpper(c.name) + " VALUE"} {
				var b bytes.Buffer
				if err := query.WriteSeries(&b, format, q.GroupBy, got); err != nil {
					t.Fatal(err)
				}
				if first, _, _ := strings.Cut(b.String(), "\n"); strings.Join(strings.Fields(first), " ") != head {
					t.Errorf("%s header %q, want %q", format, first, head)
				}
				if c.dim == query.GPU && !strings.Contains(b.String(), "GPU-a-0-slow") {
					t.Errorf("%s: no row for GPU-a-0-slow:\n%s", format, b.String())
				}
			}
		})
	}
}

// limitedReader is a read-only store on st's database whose answers hold at most rows rows.
func limitedReader(t *testing.T, st store.Store, rows uint64) store.Store {
	t.Helper()
	r, err := chdb.OpenReader(testenv.DataDir(t), st.Database(), testenv.LibCHDB(t), store.Limits{MaxResultRows: rows})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// An answer over the reader's max_result_rows is a bad request that says what to ask for instead:
// up front when a filled series alone has more buckets, else when the engine refuses it. Within
// the limit, answers are whole.
func TestAnswerCap(t *testing.T) {
	st, _ := seed(t)
	rd := limitedReader(t, st, 5)
	ctx := context.Background()
	from, to := seedFrom, seedFrom.Add(10*time.Minute)
	series := func(q query.Query) func() (int, error) {
		return func() (int, error) {
			q.From, q.To = from, to
			got, err := query.Run(ctx, rd, &q)
			n := 0
			for _, s := range got {
				n += len(s.Points)
			}
			return n, err
		}
	}
	for _, c := range []struct {
		name   string
		run    func() (int, error)
		points int      // when it answers
		says   []string // when it refuses
	}{
		{"filled, 10 buckets a series, refused before it runs",
			series(query.Query{Metric: "gpu_util", Agg: query.Avg, Step: time.Minute, Fill: true}),
			0, []string{"step:", "1m0s over the window", "10 points per series", "at most 5", "widen the step or shorten the window"}},
		{"filled, 5 buckets a series, 2 clusters",
			series(query.Query{Metric: "gpu_util", Agg: query.Avg, GroupBy: []query.Dim{query.Cluster}, Step: 2 * time.Minute, Fill: true}),
			0, []string{"more than 5 points", "coarser step, a shorter window or fewer groups"}},
		{"by gpu per minute",
			series(query.Query{Metric: "gpu_util", Agg: query.Max, GroupBy: []query.Dim{query.GPU}, Step: time.Minute}),
			0, []string{"query max gpu_util", "more than 5 points"}},
		{"stat by gpu",
			series(query.Query{Metric: "energy_mj", Agg: query.Increase, GroupBy: []query.Dim{query.GPU}, Whole: true}),
			0, []string{"query increase energy_mj", "more than 5 points"}},
		{"top 10 gpus", func() (int, error) {
			top, err := query.TopGPUs(ctx, rd, "gpu_util", "avg", false, 10, from, to)
			return len(top), err
		}, 0, []string{"top gpus", "more than 5 points"}},
		{"stat by cluster answers", series(query.Query{Metric: "gpu_util", Agg: query.Avg, GroupBy: []query.Dim{query.Cluster}, Whole: true}), 2, nil},
		{"top 5 gpus answers", func() (int, error) {
			top, err := query.TopGPUs(ctx, rd, "gpu_util", "avg", false, 5, from, to)
			return len(top), err
		}, 5, nil},
		{"filled, 5 buckets, fleet, answers",
			series(query.Query{Metric: "gpu_util", Agg: query.Avg, Step: 2 * time.Minute, Fill: true}), 5, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			n, err := c.run()
			if c.says == nil {
				if err != nil || n != c.points {
					t.Fatalf("%d points, %v; want %d", n, err, c.points)
				}
				return
			}
			if !errors.Is(err, query.ErrInvalid) {
				t.Fatalf("%d points, error %v; want ErrInvalid", n, err)
			}
			for _, s := range c.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
}

// An answer the engine refuses is never built in this process: a filled query of 9 GPUs at 1 s
// over 2 hours is 64,800 points (several MB as rows and series), refused for a reader that allows
// 10,000, allocating next to nothing.
func TestAnswerCapBuildsNothing(t *testing.T) {
	st, _ := seed(t)
	rd := limitedReader(t, st, 10_000)
	ctx := context.Background()
	q := query.Query{Metric: "gpu_util", Agg: query.Avg, GroupBy: []query.Dim{query.GPU}, Step: time.Second, Fill: true,
		From: seedFrom.Add(-time.Hour), To: seedFrom.Add(time.Hour)}
	alloc := func(s store.Store) (uint64, int, error) {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		got, err := query.Run(ctx, s, &q)
		runtime.ReadMemStats(&after)
		n := 0
		for _, s := range got {
			n += len(s.Points)
		}
		return after.TotalAlloc - before.TotalAlloc, n, err
	}
	whole, n, err := alloc(st) // the writer has no result limit
	if err != nil || n != 9*7200 {
		t.Fatalf("unlimited: %d points, %v; want 64800", n, err)
	}
	refused, n, err := alloc(rd)
	if !errors.Is(err, query.ErrInvalid) || n != 0 {
		t.Fatalf("limited: %d points, %v; want ErrInvalid", n, err)
	}
	t.Logf("allocated %d bytes for the whole answer, %d for the refusal", whole, refused)
	if refused > whole/20 || refused > 1<<20 {
		t.Errorf("the refusal allocated %d bytes, the whole answer %d: the answer was built before it was refused", refused, whole)
	}
}

// A bitmask answers its last reading, from gpu_1m (its counter-shaped columns) as from the raw
// rows, and its count of readings from the raw rows; gauges' and counters' aggregations are
// refused (TestModelValidate).
func TestBitmaskLastAndCount(t *testing.T) {
	st := testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	// One GPU, six readings a minute for three minutes; the flags change within each minute.
	var rows []string
	for i := range 18 {
		ts := seedFrom.Add(time.Duration(i) * 10 * time.Second)
		rows = append(rows, fmt.Sprintf("(fromUnixTimestamp64Milli(%d), 'a', 'a-0', 'GPU-a', 'H100', %d)", ts.UnixMilli(), 1<<(i%6)))
	}
	if err := st.Exec(ctx, "INSERT INTO "+store.Table(st.Database(), "gpu_samples")+
		" (time, cluster, node, uuid, model, throttle_reasons) VALUES "+strings.Join(rows, ", ")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		agg   query.Agg
		src   query.Source
		table string
		want  float64
	}{
		{query.Last, query.SourceAuto, "gpu_1m", 32},
		{query.Last, query.SourceRaw, "gpu_samples", 32},
		{query.Count, query.SourceAuto, "gpu_samples", 6},
	} {
		t.Run(fmt.Sprintf("%s %s", c.agg, c.table), func(t *testing.T) {
			q := &query.Query{Metric: "throttle_reasons", Agg: c.agg, GroupBy: []query.Dim{query.GPU}, From: seedFrom,
				To: seedFrom.Add(3 * time.Minute), Step: time.Minute, Source: c.src}
			comp, err := q.Compile(st.Database())
			if err != nil {
				t.Fatal(err)
			}
			if comp.Table != c.table {
				t.Errorf("reads %s, want %s", comp.Table, c.table)
			}
			got, err := query.Run(ctx, st, q)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || len(got[0].Points) != 3 {
				t.Fatalf("%+v: want one series of 3 points", got)
			}
			for _, p := range got[0].Points {
				if p.Value == nil || *p.Value != c.want {
					t.Errorf("%s: %v, want %v", p.T, p.Value, c.want)
				}
			}
		})
	}
}

// A bitmask's share of one reason is the percent of readings in the bucket with that bit set,
// read raw (the rollups keep no per-bit states); a reason not in the list, a share of a gauge and
// a reason without share are refused.
func TestBitmaskShare(t *testing.T) {
	st := testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	// One GPU, six readings a minute for two minutes.
	minute := []int{0x20, 0x20 | 0x4, 0x4, 0, 0x20, 0}
	var rows []string
	for i := range 12 {
		ts := seedFrom.Add(time.Duration(i) * 10 * time.Second)
		rows = append(rows, fmt.Sprintf("(fromUnixTimestamp64Milli(%d), 'a', 'a-0', 'GPU-a', 'H100', %d)", ts.UnixMilli(), minute[i%6]))
	}
	if err := st.Exec(ctx, "INSERT INTO "+store.Table(st.Database(), "gpu_samples")+
		" (time, cluster, node, uuid, model, throttle_reasons) VALUES "+strings.Join(rows, ", ")); err != nil {
		t.Fatal(err)
	}
	for reason, want := range map[string]float64{"sw_thermal": 50, "sw_power_cap": 100.0 / 3, "hw_slowdown": 0} {
		q := &query.Query{Metric: "throttle_reasons", Agg: query.Share, Reason: reason, GroupBy: []query.Dim{query.GPU},
			From: seedFrom, To: seedFrom.Add(2 * time.Minute), Step: time.Minute}
		comp, err := q.Compile(st.Database())
		if err != nil {
			t.Fatal(err)
		}
		if comp.Table != "gpu_samples" {
			t.Errorf("%s: reads %s, want gpu_samples", reason, comp.Table)
		}
		got, err := query.Run(ctx, st, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || len(got[0].Points) != 2 {
			t.Fatalf("%s: %+v, want one series of 2 points", reason, got)
		}
		for _, p := range got[0].Points {
			if p.Value == nil || math.Abs(*p.Value-want) > 1e-9 {
				t.Errorf("%s at %s: %v, want %v", reason, p.T, p.Value, want)
			}
		}
	}
	for _, q := range []query.Query{
		{Metric: "throttle_reasons", Agg: query.Share, Reason: "too_hot"},
		{Metric: "throttle_reasons", Agg: query.Share},
		{Metric: "throttle_reasons", Agg: query.Last, Reason: "sw_thermal"},
		{Metric: "temp_gpu_c", Agg: query.Share, Reason: "sw_thermal"},
		{Metric: "energy_mj", Agg: query.Share, Reason: "sw_thermal"},
	} {
		q.From, q.To, q.Step = seedFrom, seedFrom.Add(time.Minute), time.Minute
		if _, err := q.Compile(st.Database()); !errors.Is(err, query.ErrInvalid) {
			t.Errorf("%s %s reason %q: %v, want ErrInvalid", q.Metric, q.Agg, q.Reason, err)
		}
	}
}

// A database upgraded across 0025, which packs each gauge's last reading into a plain column and
// drops the argMax states: the last reading per GPU per minute (gpu_1m) and per hour (gpu_1h) is
// the raw rows' answer for minutes written before, after and across the migration, with NULL
// readings among them, and so is throttle_reasons' last bitmask (gpu_1m's counter readings).
func TestLastAcrossPackUpgrade(t *testing.T) {
	st := testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.ApplyWith(ctx, st, nil, migrate.Options{Until: 24}); err != nil {
		t.Fatal(err)
	}
	hour := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
	// Two GPUs every 7 s over [from, from+n·7 s): a NULL temperature every fifth reading, and a
	// temperature that falls as well as rises, so the last is not the highest.
	write := func(from time.Time, n int) {
		t.Helper()
		if err := st.Exec(ctx, fmt.Sprintf("INSERT INTO %s (time, cluster, node, gpu, uuid, model, temp_gpu_c, throttle_reasons) "+
			"SELECT fromUnixTimestamp64Milli(toInt64(%d + intDiv(number, 2) * 7000)), 'c', 'n', number %% 2, "+
			"concat('GPU-', toString(number %% 2)), 'H100', if(number %% 5 = 4, NULL, toFloat32(40 + (number * 13) %% 23 - 0.25)), "+
			"toUInt64(bitShiftLeft(1, (number * 3) %% 9)) FROM numbers(%d)",
			store.Table(st.Database(), "gpu_samples"), from.UnixMilli(), 2*n)); err != nil {
			t.Fatal(err)
		}
	}
	write(hour, 30)                   // minutes 0–3, before
	write(hour.Add(5*time.Minute), 4) // minute 5, first 28 s before …
	if applied, err := migrate.Apply(ctx, st, nil); err != nil || !slices.Contains(applied, 25) {
		t.Fatalf("applied %v, %v; want the rest from 25 on", applied, err)
	}
	write(hour.Add(5*time.Minute+28*time.Second), 4) // … the rest after
	write(hour.Add(8*time.Minute), 30)               // minutes 8–11, after

	for _, c := range []struct {
		name   string
		q      query.Query
		table  string
		points int
	}{
		{"temperature per GPU per minute", query.Query{Metric: "temp_gpu_c", Agg: query.Last, GroupBy: []query.Dim{query.GPU},
			From: hour, To: hour.Add(15 * time.Minute), Step: time.Minute}, "gpu_1m", 2 * 9},
		{"temperature per GPU per hour", query.Query{Metric: "temp_gpu_c", Agg: query.Last, GroupBy: []query.Dim{query.GPU},
			From: hour, To: hour.Add(time.Hour), Step: time.Hour}, "gpu_1h", 2},
		{"throttle reasons per GPU per minute", query.Query{Metric: "throttle_reasons", Agg: query.Last, GroupBy: []query.Dim{query.GPU},
			From: hour, To: hour.Add(15 * time.Minute), Step: time.Minute}, "gpu_1m", 2 * 9},
	} {
		t.Run(c.name, func(t *testing.T) {
			if compiled, err := c.q.Compile(st.Database()); err != nil || compiled.Table != c.table {
				t.Fatalf("reads %v (%v), want %s", compiled.Table, err, c.table)
			}
			got, err := query.Run(ctx, st, &c.q)
			if err != nil {
				t.Fatal(err)
			}
			raw := c.q
			raw.Source = query.SourceRaw
			want, err := query.Run(ctx, st, &raw)
			if err != nil {
				t.Fatal(err)
			}
			points := 0
			for _, s := range want {
				points += len(s.Points)
			}
			if points != c.points {
				t.Fatalf("raw answer has %d points, want %d", points, c.points)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("rollup answer\n%s\nwant the raw rows'\n%s", seriesText(got), seriesText(want))
			}
		})
	}
}

func seriesText(ss []query.Series) string {
	var b strings.Builder
	for _, s := range ss {
		fmt.Fprintf(&b, "%v:", s.Labels)
		for _, p := range s.Points {
			if p.Value == nil {
				fmt.Fprintf(&b, " %s=null", p.T.Format(time.TimeOnly))
			} else {
				fmt.Fprintf(&b, " %s=%v", p.T.Format(time.TimeOnly), *p.Value)
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}
