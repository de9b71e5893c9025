package query_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	fleetseed "github.com/gpufleet/gpufleet/internal/seed"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/query"
)

// BenchmarkFleetP99Trend seeds a simulated 1,024-GPU fleet (4 clusters, 3 GPU models) sampled
// every second, then asks for the fleet's p99 GPU utilisation at a 1-minute step over the whole
// window, from the raw table and from the rollup the query layer picks, and reports the time and
// rows read of each. The window defaults to 2 hours (GPUFLEET_BENCH_HOURS=24 for a day):
//
//	go test -run '^$' -bench FleetP99Trend -benchtime 10x ./query/
func BenchmarkFleetP99Trend(b *testing.B) {
	hours := 2
	if h, err := strconv.Atoi(os.Getenv("GPUFLEET_BENCH_HOURS")); err == nil && h > 0 {
		hours = h
	}
	st := testenv.CHDB(b)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		b.Fatal(err)
	}
	now := time.Now().UTC()
	to := now.Truncate(time.Minute)
	from := to.Add(-time.Duration(hours) * time.Hour)
	seedSimFleet(b, st, from, to)

	for _, src := range []query.Source{query.SourceRaw, query.SourceAuto} {
		name := map[query.Source]string{query.SourceRaw: "raw", query.SourceAuto: "rollup"}[src]
		b.Run(name, func(b *testing.B) {
			q := &query.Query{Metric: "gpu_util", Agg: query.P99, From: from, To: to, Step: time.Minute, Source: src}
			c, err := q.Compile(st.Database())
			if err != nil {
				b.Fatal(err)
			}
			var rowsRead uint64
			var points int
			for range b.N {
				r, err := st.QueryWith(ctx, c.SQL, c.Params)
				if err != nil {
					b.Fatal(err)
				}
				rowsRead, points = r.RowsRead, len(r.Rows)
			}
			if points != hours*60 {
				b.Fatalf("%d points from %s, want %d", points, c.Table, hours*60)
			}
			b.ReportMetric(float64(rowsRead), "rows_read")
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/query")
			b.Logf("%s reads %s: %d rows for %d points", name, c.Table, rowsRead, points)
		})
	}
}

// seedSimFleet writes 128 simulated 8-GPU nodes in 4 clusters sampled every second over [from, to).
func seedSimFleet(b *testing.B, st store.Store, from, to time.Time) {
	b.Helper()
	ctx := context.Background()
	if _, err := (fleetseed.Fleet{Seed: 9, Nodes: 128, GPUsPerNode: 8, Clusters: []string{"cl-0", "cl-1", "cl-2", "cl-3"},
		From: from, To: to, Step: time.Second}).Write(ctx, st); err != nil {
		b.Fatal(err)
	}
	for _, t := range []string{"gpu_samples", "fleet_1m", "gpu_1m", "gpu_1h"} {
		if err := st.Exec(ctx, "OPTIMIZE TABLE "+store.Table(st.Database(), t)+" FINAL"); err != nil {
			b.Fatal(err)
		}
	}
}
