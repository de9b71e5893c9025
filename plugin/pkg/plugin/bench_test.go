package plugin_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"

	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/seed"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/plugin/pkg/plugin"
	"github.com/gpufleet/gpufleet/query"
)

// BenchmarkQueryDataOverhead asks for a 24 h trend at a 1-minute step (1,440 points per series,
// gaps filled) over a 1,024-GPU fleet in 4 clusters, grouped by cluster (the fleet panel) and by
// node (128 series), and reports the ClickHouse query's own time next to what QueryData adds on top
// (compiling, splitting series, building the wide frame). Run:
//
//	go test -run '^$' -bench QueryDataOverhead -benchtime 20x ./plugin/pkg/plugin/
func BenchmarkQueryDataOverhead(b *testing.B) {
	st := testenv.CHDB(b)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		b.Fatal(err)
	}
	to := time.Now().UTC().Truncate(time.Minute)
	if _, err := (seed.Fleet{Seed: 2, Nodes: 128, GPUsPerNode: 8, Clusters: []string{"cl-0", "cl-1", "cl-2", "cl-3"},
		From: to.Add(-time.Hour), To: to, Step: 10 * time.Second}).Write(ctx, st); err != nil {
		b.Fatal(err)
	}
	ds := plugin.New(st, time.Now)
	from := to.Add(-24 * time.Hour)
	for _, by := range []string{"cluster", "node"} {
		b.Run("by_"+by, func(b *testing.B) {
			raw, _ := json.Marshal(map[string]any{"metric": "gpu_util", "agg": "avg", "groupBy": []string{by}, "fill": true})
			req := &backend.QueryDataRequest{Queries: []backend.DataQuery{{RefID: "A", JSON: raw,
				TimeRange: backend.TimeRange{From: from, To: to}, Interval: time.Minute, MaxDataPoints: 1440}}}
			d, _ := query.DimByName(by)
			c, err := (&query.Query{Metric: "gpu_util", Agg: query.Avg, GroupBy: []query.Dim{d}, From: from, To: to,
				Step: time.Minute, Fill: true}).Compile(st.Database())
			if err != nil {
				b.Fatal(err)
			}
			var chTime, total time.Duration
			var points int
			for range b.N {
				t0 := time.Now()
				if _, err := st.QueryWith(ctx, c.SQL, c.Params); err != nil {
					b.Fatal(err)
				}
				chTime += time.Since(t0)
				t0 = time.Now()
				resp, err := ds.QueryData(ctx, req)
				total += time.Since(t0)
				if err != nil || resp.Responses["A"].Error != nil {
					b.Fatal(err, resp.Responses["A"].Error)
				}
				f := resp.Responses["A"].Frames[0]
				points = f.Rows() * (len(f.Fields) - 1)
			}
			b.ReportMetric(float64(chTime.Microseconds())/1000/float64(b.N), "clickhouse_ms")
			b.ReportMetric(float64((total-chTime).Microseconds())/1000/float64(b.N), "plugin_overhead_ms")
			b.ReportMetric(float64(points), "points")
			b.ReportMetric(0, "ns/op")
		})
	}
}
