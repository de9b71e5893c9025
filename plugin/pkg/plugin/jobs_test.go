package plugin_test

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"

	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/seed"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/store/chdb"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/plugin/pkg/plugin"
	"github.com/gpufleet/gpufleet/query"
)

// The jobs query type answers query.JobUsages — the CLI's and the API's jobs report — as a table,
// with kWh per GPU-hour beside it, the panel's filters applied, and a filter with no values
// (a variable with no options) as no rows rather than an error.
func TestJobsQueryType(t *testing.T) {
	w := testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, w, nil); err != nil {
		t.Fatal(err)
	}
	end := time.Now().UTC().Truncate(time.Minute)
	from := end.Add(-30 * time.Minute)
	if _, err := (seed.Fleet{Seed: 3, Nodes: 6, GPUsPerNode: 4, Clusters: []string{"east", "west"}, From: from, To: end,
		Step: 10 * time.Second}).Write(ctx, w); err != nil {
		t.Fatal(err)
	}
	rd, err := chdb.OpenReader(testenv.DataDir(t), w.Database(), testenv.LibCHDB(t), store.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	ds := plugin.New(rd, func() time.Time { return end })
	east := []query.Filter{{Dim: query.Cluster, Values: []string{"east"}}}
	for _, tc := range []struct {
		name    string
		filters []map[string]any
		want    []query.Filter
		none    bool
	}{
		{name: "all"},
		{name: "east", filters: []map[string]any{{"dim": "cluster", "values": []string{"east"}}}, want: east},
		{name: "no options", filters: []map[string]any{{"dim": "job", "values": []string{}}}, none: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := map[string]any{"queryType": "jobs"}
			if tc.filters != nil {
				q["filters"] = tc.filters
			}
			resp, err := ds.QueryData(ctx, &backend.QueryDataRequest{Queries: []backend.DataQuery{dataQuery("A", from, end, q)}})
			if err != nil {
				t.Fatal(err)
			}
			r := resp.Responses["A"]
			if r.Error != nil || len(r.Frames) != 1 {
				t.Fatalf("error %v, %d frames", r.Error, len(r.Frames))
			}
			var got []string
			f := r.Frames[0]
			for i := range f.Rows() {
				line := ""
				for j, fl := range f.Fields {
					v, ok := fl.ConcreteAt(i)
					if !ok {
						v = "<nil>"
					}
					if j > 0 {
						line += " "
					}
					line += fmt.Sprint(v)
				}
				got = append(got, line)
			}
			var want []string
			if !tc.none {
				usage, err := query.JobUsages(ctx, rd, from, end, tc.want...)
				if err != nil {
					t.Fatal(err)
				}
				if len(usage) == 0 {
					t.Fatal("the seeded fleet has no jobs")
				}
				for _, u := range usage {
					per := "<nil>"
					if u.GPUHours > 0 {
						per = fmt.Sprint(u.EnergyKWh / u.GPUHours)
					}
					if u.EnergyKWh <= 0 || math.IsNaN(u.EnergyKWh) {
						t.Errorf("job %s used %v kWh", u.Job, u.EnergyKWh)
					}
					want = append(want, fmt.Sprintf("%s %d %v %v %v %s", u.Job, u.GPUs, u.GPUHours, u.MeanUtil, u.EnergyKWh, per))
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("rows\n%q\nwant\n%q", got, want)
			}
			if f := r.Frames[0].Fields; len(f) != 6 || f[4].Config == nil || f[4].Config.Unit != "kwatth" {
				t.Errorf("fields %v", r.Frames[0].Fields)
			}
		})
	}
}

// Filter values of a jobs query are data, bound as parameters: every hostile statement of the
// raw-SQL corpus, given as a cluster and a job value, matches no job, and the database's tables,
// the canary files and the package directory are as they were.
func TestJobsFilterHostile(t *testing.T) {
	w := testenv.CHDB(t)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, w, nil); err != nil {
		t.Fatal(err)
	}
	rd, err := chdb.OpenReader(testenv.DataDir(t), w.Database(), testenv.LibCHDB(t), store.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	end := time.Now().UTC().Truncate(time.Minute)
	ds := plugin.New(rd, func() time.Time { return end })
	dir := testenv.CanaryDir(t)
	before := testenv.Snapshot(t, w, dir, ".", testenv.DataDir(t))
	for _, c := range testenv.HostileSQL(t, w.Database(), dir) {
		q := map[string]any{"queryType": "jobs", "filters": []map[string]any{
			{"dim": "cluster", "values": []string{c.SQL}}, {"dim": "job", "values": []string{c.SQL, "job-1"}}}}
		resp, err := ds.QueryData(ctx, &backend.QueryDataRequest{Queries: []backend.DataQuery{dataQuery("A", end.Add(-time.Hour), end, q)}})
		if err != nil {
			t.Fatal(err)
		}
		if r := resp.Responses["A"]; r.Error != nil || len(r.Frames) != 1 || r.Frames[0].Rows() != 0 {
			t.Errorf("filter %q: error %v, frames %d", c.SQL, r.Error, len(r.Frames))
		}
		if after := testenv.Snapshot(t, w, dir, ".", testenv.DataDir(t)); after != before {
			t.Fatalf("after %q:\n%s\nwas\n%s", c.SQL, after, before)
		}
	}
}
