package query_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	fleetseed "github.com/gpufleet/gpufleet/internal/seed"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/query"
)

// counterFrom is the start of the counter test's readings: whole hours, inside gpu_1m's TTL.
var counterFrom = time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)

// counterReading is one hand-made gpu_samples row; energy nil is a NULL reading.
type counterReading struct {
	at     time.Duration // after counterFrom
	uuid   string
	job    string
	energy *uint64
}

// oddGPUs are readings the simulated fleet never makes: resets inside a minute, at a minute's
// first reading and at a job change, a job changing within a minute (once with a NULL reading
// first), a gap, a GPU read every two minutes (one reading per minute, the first with nothing
// before it) and a GPU read once. Split into two inserts in the middle of a minute, so that the
// rollup holds two parts of one GPU-minute to merge.
func oddGPUs() (first, second []counterReading) {
	var rs []counterReading
	v := uint64(5_000)
	job := "job-a"
	for i := range 30 * 6 { // GPU-x-0: every 10 s for 30 minutes
		at := time.Duration(i) * 10 * time.Second
		var energy *uint64
		v += 100
		switch at {
		case 3*time.Minute + 30*time.Second: // job change within a minute
			job = "job-b"
		case 5*time.Minute + 40*time.Second: // reset within a minute
			v = 7
		case 8 * time.Minute: // reset at a minute's first reading
			v = 3
		case 10*time.Minute + 30*time.Second: // job change and reset at the same reading
			job, v = "job-a", 11
		case 12*time.Minute + 10*time.Second: // job change whose first reading is NULL
			job = "job-b"
		case 20 * time.Minute: // job change on a minute's edge
			job = "job-a"
		}
		if at >= 14*time.Minute && at < 16*time.Minute {
			continue // not read for two minutes
		}
		if at != 12*time.Minute+10*time.Second {
			energy = ptrU64(v)
		}
		rs = append(rs, counterReading{at: at, uuid: "GPU-x-0", job: job, energy: energy})
	}
	for i := range 15 { // GPU-x-1: every 2 minutes
		rs = append(rs, counterReading{at: time.Duration(i) * 2 * time.Minute, uuid: "GPU-x-1", job: "job-sparse",
			energy: ptrU64(1_000_000 + uint64(i)*4_000)})
	}
	rs = append(rs, counterReading{at: 7 * time.Minute, uuid: "GPU-x-2", job: "job-once", energy: ptrU64(42)})
	for _, r := range rs {
		if r.uuid == "GPU-x-0" && r.at < 5*time.Minute+25*time.Second {
			first = append(first, r)
		} else {
			second = append(second, r)
		}
	}
	return first, second
}

func ptrU64(v uint64) *uint64 { return &v }

func insertCounterReadings(t *testing.T, st store.Store, rs []counterReading) {
	t.Helper()
	tm := &store.ColDateTime64{ColName: "time"}
	cluster, node, uuid, job := &store.ColString{ColName: "cluster"}, &store.ColString{ColName: "node"},
		&store.ColString{ColName: "uuid"}, &store.ColString{ColName: "job_id"}
	model, pool := &store.ColString{ColName: "model"}, &store.ColString{ColName: "pool"}
	energy := &store.ColNullUInt64{ColName: "energy_mj"}
	for _, r := range rs {
		tm.V = append(tm.V, counterFrom.Add(r.at).UnixMilli())
		cluster.V, node.V, uuid.V, job.V = append(cluster.V, "cl-0"), append(node.V, "x-0"), append(uuid.V, r.uuid), append(job.V, r.job)
		model.V, pool.V = append(model.V, "H100"), append(pool.V, "train")
		if r.energy == nil {
			energy.Append(0, true)
		} else {
			energy.Append(*r.energy, false)
		}
	}
	b := &store.Block{Columns: []store.Column{tm, cluster, node, uuid, job, model, pool, energy}}
	if err := st.Insert(context.Background(), "gpu_samples", b, ""); err != nil {
		t.Fatal(err)
	}
}

// A counter's increase and rate from gpu_1m are the raw rows' answer — same series, same points,
// same values — on a simulated fleet (internal/seed) with GPUs whose counters reset and whose jobs
// change inside a bucket and inside a minute, for the dashboard's "Energy by job" (rate by job at
// 2 minutes), other steps and groups, a newest bucket still filling and a whole window. Before
// 0018 and the ordering by each row's first sample, a job change inside a minute paired the two
// jobs' rows in either order (a counter's whole value counted as an increase after a "reset"), and
// a GPU's lone first reading made a point of 0 the raw rows do not have. The same holds for rows
// written before 0020, whose plain first and last readings the table computes from the states, and
// for a minute split across the migration; and for rows written before 0025, whose readings the
// migration writes into the parts before it drops the states they were computed from.
func TestCounterRollupEqualsRaw(t *testing.T) {
	for _, schema := range []struct {
		name  string
		until int // the migration the first insert is written under; 0: the latest
	}{
		{"latest schema", 0},
		{"first half written before 0020", 19},
		{"first half written before 0025 (states dropped)", 24},
	} {
		t.Run(schema.name, func(t *testing.T) {
			st := testenv.CHDB(t)
			ctx := context.Background()
			if _, err := migrate.ApplyWith(ctx, st, nil, migrate.Options{Until: schema.until}); err != nil {
				t.Fatal(err)
			}
			if schema.until > 0 {
				rawColumnsAfter(t, st, schema.until)
			}
			if _, err := (fleetseed.Fleet{Seed: 3, Nodes: 4, GPUsPerNode: 2, Clusters: []string{"cl-0", "cl-1"},
				From: counterFrom, To: counterFrom.Add(30 * time.Minute), Step: 10 * time.Second}).Write(ctx, st); err != nil {
				t.Fatal(err)
			}
			first, second := oddGPUs()
			insertCounterReadings(t, st, first)
			if _, err := migrate.Apply(ctx, st, nil); err != nil {
				t.Fatal(err)
			}
			insertCounterReadings(t, st, second)
			checkCounterRollupEqualsRaw(t, st)
		})
	}
}

// rawColumnsAfter gives an older schema's gpu_samples the columns later migrations added to it
// (0022's failure metrics, 0026's interval_ms), and nothing else: ingest, and so the simulated
// fleet's writer, writes every column of the latest schema (and refuses to run on an older one).
func rawColumnsAfter(t *testing.T, st store.Store, until int) {
	t.Helper()
	ms, err := migrate.Load(st.Database())
	if err != nil {
		t.Fatal(err)
	}
	prefix := "ALTER TABLE " + store.Table(st.Database(), schema.GPUSamples)
	n := 0
	for _, m := range ms {
		if m.Version <= until {
			continue
		}
		for _, stmt := range m.Statements {
			if strings.HasPrefix(strings.TrimSpace(stmt), prefix) {
				if err := st.Exec(context.Background(), stmt); err != nil {
					t.Fatalf("%04d: %v", m.Version, err)
				}
				n++
			}
		}
	}
	if n == 0 {
		t.Fatalf("no migration after %04d adds columns to gpu_samples", until)
	}
}

func checkCounterRollupEqualsRaw(t *testing.T, st store.Store) {
	ctx := context.Background()

	job := []query.Dim{query.Job}
	for _, c := range []struct {
		name     string
		q        query.Query
		from, to time.Duration
	}{
		{"energy rate by job every 2 minutes (the dashboard panel)", query.Query{Metric: "energy_mj", Agg: query.Rate, GroupBy: job, Step: 2 * time.Minute}, 0, 30 * time.Minute},
		{"increase by job per minute", query.Query{Metric: "energy_mj", Agg: query.Increase, GroupBy: job, Step: time.Minute}, 0, 30 * time.Minute},
		{"window starting after the first readings", query.Query{Metric: "energy_mj", Agg: query.Increase, GroupBy: job, Step: 2 * time.Minute}, 3 * time.Minute, 29 * time.Minute},
		{"rate by job and GPU, filtered by cluster and pool", query.Query{Metric: "energy_mj", Agg: query.Rate,
			GroupBy: []query.Dim{query.Job, query.GPU}, Step: 2 * time.Minute,
			Filters: []query.Filter{{Dim: query.Cluster, Values: []string{"cl-0"}}, {Dim: query.Pool, Values: []string{"train"}}}}, 0, 30 * time.Minute},
		{"rate by cluster and node", query.Query{Metric: "energy_mj", Agg: query.Rate, GroupBy: []query.Dim{query.Cluster, query.Node},
			Step: 5 * time.Minute}, 0, 30 * time.Minute},
		{"fleet increase per hour", query.Query{Metric: "energy_mj", Agg: query.Increase, Step: time.Hour}, 0, 30 * time.Minute},
		{"newest 5-minute bucket 2 minutes in", query.Query{Metric: "energy_mj", Agg: query.Rate, GroupBy: job, Step: 5 * time.Minute}, 0, 17 * time.Minute},
		{"filled rate by job", query.Query{Metric: "energy_mj", Agg: query.Rate, GroupBy: job, Step: 2 * time.Minute, Fill: true}, 0, 30 * time.Minute},
		{"whole window by job (stat panels)", query.Query{Metric: "energy_mj", Agg: query.Rate, GroupBy: job, Whole: true}, 2 * time.Minute, 30 * time.Minute},
	} {
		t.Run(c.name, func(t *testing.T) {
			answers := map[query.Source][]query.Series{}
			for _, src := range []query.Source{query.SourceRaw, query.SourceAuto} {
				q := c.q
				q.From, q.To, q.Source = counterFrom.Add(c.from), counterFrom.Add(c.to), src
				compiled, err := q.Compile(st.Database())
				if err != nil {
					t.Fatal(err)
				}
				if want := map[query.Source]string{query.SourceRaw: "gpu_samples", query.SourceAuto: "gpu_1m"}[src]; compiled.Table != want {
					t.Fatalf("source %q reads %s, want %s", src, compiled.Table, want)
				}
				if answers[src], err = query.Run(ctx, st, &q); err != nil {
					t.Fatal(err)
				}
			}
			want, got := seriesByLabels(answers[query.SourceRaw]), seriesByLabels(answers[query.SourceAuto])
			if len(want) == 0 {
				t.Fatal("the raw rows answer nothing")
			}
			for k := range want {
				if _, ok := got[k]; !ok {
					t.Errorf("series %s: missing from gpu_1m's answer", k)
				}
			}
			for k, g := range got {
				w, ok := want[k]
				if !ok {
					t.Errorf("series %s: gpu_1m answers %d points the raw rows do not have: %s", k, len(g), pointsText(g))
					continue
				}
				if len(g) != len(w) {
					t.Errorf("series %s: %d points, raw %d\n gpu_1m: %s\n raw:    %s", k, len(g), len(w), pointsText(g), pointsText(w))
					continue
				}
				for i := range w {
					if !g[i].T.Equal(w[i].T) || !sameValue(g[i].Value, w[i].Value) {
						t.Errorf("series %s at %s: %s, raw %s at %s", k, g[i].T.Sub(counterFrom), valueText(g[i].Value),
							valueText(w[i].Value), w[i].T.Sub(counterFrom))
					}
				}
			}
		})
	}
}

// The CLI (gpufleet query) and the HTTP API (/api/v1/series) snap the window to the step as the
// plugin does and run query.Run: the dashboard's energy-by-job query over the last 24 h at 2 minutes
// reads gpu_1m from each, whatever the time of day.
func TestEnergyByJobReadsTheRollup(t *testing.T) {
	for _, now := range []time.Time{time.Date(2026, 12, 1, 23, 59, 59, 999e6, time.UTC), time.Date(2026, 12, 1, 0, 1, 7, 0, time.UTC)} {
		q := query.Query{Metric: "energy_mj", Agg: query.Rate, GroupBy: []query.Dim{query.Job}, Step: 2 * time.Minute,
			Filters: []query.Filter{{Dim: query.Cluster, Values: []string{"cl-0"}}, {Dim: query.Pool, Values: []string{"train"}}}}
		q.From, q.To = query.SnapWindow(now.Add(-24*time.Hour), now, q.Step)
		c, err := q.Compile("gpufleet")
		if err != nil {
			t.Fatal(err)
		}
		if c.Table != "gpu_1m" || !strings.Contains(c.SQL, "gpu_1m FINAL") {
			t.Errorf("at %s the query reads %s: %s", now.Format(time.TimeOnly), c.Table, c.SQL)
		}
	}
}

func seriesByLabels(ss []query.Series) map[string][]query.Point {
	out := map[string][]query.Point{}
	for _, s := range ss {
		var keys []string
		for k, v := range s.Labels {
			keys = append(keys, k+"="+v)
		}
		slices.Sort(keys)
		out["{"+strings.Join(keys, ",")+"}"] = s.Points
	}
	return out
}

func sameValue(a, b *float64) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return math.Abs(*a-*b) <= 1e-9*math.Max(1, math.Abs(*b))
}

func valueText(v *float64) string {
	if v == nil {
		return "null"
	}
	return fmt.Sprint(*v)
}

func pointsText(ps []query.Point) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "%s=%s ", p.T.Sub(counterFrom), valueText(p.Value))
	}
	return b.String()
}
