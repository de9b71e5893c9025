package deploy_test

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"

	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/seed"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/plugin/pkg/plugin"
)

// BenchmarkDashboardPanels runs every gpufleet panel query of the shipped dashboards, warm,
// through the backend over 24 h of a 1,024-GPU fleet (128 nodes × 8 in 4 clusters; samples every
// GPUFLEET_BENCH_STEP, default 30s), the variables at All (a node or GPU variable at its first
// value), and reports per panel the whole QueryData time, the ClickHouse time of the SQL it
// compiles to (the compile resource's answer, run alone) and the cells answered:
//
//	go test -run '^$' -bench DashboardPanels -benchtime 3x ./deploy/
func BenchmarkDashboardPanels(b *testing.B) {
	step := 30 * time.Second
	if v := os.Getenv("GPUFLEET_BENCH_STEP"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatal(err)
		}
		step = d
	}
	st := testenv.CHDB(b)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		b.Fatal(err)
	}
	end := time.Now().UTC().Truncate(time.Minute)
	if _, err := (seed.Fleet{Seed: 4, Nodes: 128, GPUsPerNode: 8, Clusters: []string{"cl-0", "cl-1", "cl-2", "cl-3"},
		From: end.Add(-24 * time.Hour), To: end, Step: step}).Write(ctx, st); err != nil {
		b.Fatal(err)
	}
	for _, t := range []string{"gpu_samples", "fleet_1m", "gpu_1m", "gpu_1h"} {
		if err := st.Exec(ctx, "OPTIMIZE TABLE "+store.Table(st.Database(), t)+" FINAL"); err != nil {
			b.Fatal(err)
		}
	}
	ds := plugin.New(st, func() time.Time { return end })
	from := end.Add(-24 * time.Hour)
	type panelQuery struct {
		name string
		q    map[string]any
	}
	var panels []panelQuery
	for _, d := range dashboards(b) {
		vars := d.vars()
		values := map[string][]string{}
		for _, v := range d.Templating.List {
			values[v.Name] = labels(b, ds, v.Query.Dim)[:1] // a one-value variable (node, GPU) at its first
		}
		for _, p := range d.allPanels() {
			if p.Datasource.UID != "gpufleet" {
				continue
			}
			for _, q := range p.Targets {
				// Variables at All: no filter (a one-value variable's stays).
				if fs, ok := q["filters"].([]any); ok {
					q["filters"] = slices.DeleteFunc(fs, func(f any) bool {
						vs, _ := f.(map[string]any)["values"].([]any)
						return len(vs) == 1 && vars[strings.TrimPrefix(vs[0].(string), "$")].IncludeAll
					})
				}
				interpolate(q, vars, values, true, st.Database())
				panels = append(panels, panelQuery{strings.TrimSuffix(d.file, ".json") + "/" + p.Title + "/" + q["refId"].(string), q})
			}
		}
	}
	for _, pq := range panels {
		q := pq.q
		body, _ := json.Marshal(q)
		dq := backend.DataQuery{RefID: "A", JSON: body, TimeRange: backend.TimeRange{From: from, To: end},
			Interval: 2 * time.Minute, MaxDataPoints: 1000}
		b.Run(strings.ReplaceAll(pq.name, " ", "_"), func(b *testing.B) {
			compiled := compile(b, ds, q, from, end)
			var chTime, total time.Duration
			var cells int
			for range b.N {
				t0 := time.Now()
				if _, err := st.QueryWith(ctx, compiled.SQL, compiled.Params); err != nil {
					b.Fatalf("%s: %v", compiled.SQL, err)
				}
				chTime += time.Since(t0)
				t0 = time.Now()
				resp, err := ds.QueryData(ctx, &backend.QueryDataRequest{Queries: []backend.DataQuery{dq}})
				total += time.Since(t0)
				if err != nil || resp.Responses["A"].Error != nil {
					b.Fatal(err, resp.Responses["A"].Error)
				}
				cells = 0
				for _, f := range resp.Responses["A"].Frames {
					cells += f.Rows() * len(f.Fields)
				}
			}
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "backend_ms")
			b.ReportMetric(float64(chTime.Microseconds())/1000/float64(b.N), "clickhouse_ms")
			b.ReportMetric(float64(cells), "cells")
			b.ReportMetric(0, "ns/op")
		})
	}
}

type compiled struct {
	SQL    string       `json:"sql"`
	Params store.Params `json:"params"`
}

// compile asks the backend's compile resource for the SQL a panel query runs.
func compile(b *testing.B, ds *plugin.Datasource, q map[string]any, from, to time.Time) compiled {
	b.Helper()
	req := map[string]any{}
	for k, v := range q {
		req[k] = v
	}
	req["from"], req["to"], req["intervalMs"], req["maxDataPoints"] = from.UnixMilli(), to.UnixMilli(), 120000, 1000
	body, _ := json.Marshal(req)
	var c compiled
	err := ds.CallResource(context.Background(), &backend.CallResourceRequest{Method: "POST", Path: "compile",
		URL: "/compile", Body: body}, backend.CallResourceResponseSenderFunc(func(r *backend.CallResourceResponse) error {
		if r.Status != 200 {
			b.Fatalf("compile: %d %s", r.Status, r.Body)
		}
		return json.Unmarshal(r.Body, &c)
	}))
	if err != nil {
		b.Fatal(err)
	}
	return c
}
