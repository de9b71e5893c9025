package migrate_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/seed"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/query"
)

// BenchmarkPowerRollup writes a simulated 1,024-GPU cluster sampled every second
// (GPUFLEET_BENCH_MINUTES, default 20), merges it, and reports what cluster_power_1s costs and
// saves: its compressed bytes per cluster-second beside gpu_samples' for the same second, and the
// rows the cluster's power over the window reads from it and from the raw rows:
//
//	go test -run '^$' -bench PowerRollup -benchtime 1x ./internal/schema/migrate/
func BenchmarkPowerRollup(b *testing.B) {
	minutes := 20
	if m, err := strconv.Atoi(os.Getenv("GPUFLEET_BENCH_MINUTES")); err == nil && m > 0 {
		minutes = m
	}
	st := testenv.CHDB(b)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		b.Fatal(err)
	}
	start := time.Now().UTC().Add(-time.Duration(minutes+1) * time.Minute).Truncate(time.Minute)
	end := start.Add(time.Duration(minutes) * time.Minute)
	b.ResetTimer()
	for range b.N {
		if _, err := (seed.Fleet{Seed: 5, Nodes: 128, GPUsPerNode: 8, Clusters: []string{"bench"}, From: start, To: end,
			Step: time.Second}).Write(ctx, st); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	db := st.Database()
	for _, t := range []string{schema.GPUSamples, schema.ClusterPower1s} {
		if err := st.Exec(ctx, "OPTIMIZE TABLE "+store.Table(db, t)+" FINAL"); err != nil {
			b.Fatal(err)
		}
	}
	r, err := st.Query(ctx, fmt.Sprintf("SELECT table, sum(data_compressed_bytes) FROM system.parts WHERE database = '%s' AND active "+
		"AND table IN ('%s', '%s') GROUP BY table ORDER BY table", db, schema.ClusterPower1s, schema.GPUSamples))
	if err != nil || len(r.Rows) != 2 {
		b.Fatal(r, err)
	}
	secs := float64(end.Sub(start) / time.Second)
	b.ReportMetric(toFloat(r.Rows[0][1])/secs, "rollup_bytes/cluster-s")
	b.ReportMetric(toFloat(r.Rows[1][1])/secs, "raw_bytes/cluster-s")
	for _, src := range []query.Source{query.SourceAuto, query.SourceRaw} {
		p, err := query.FleetPower(ctx, st, &query.PowerQuery{From: start, To: end, Source: src})
		if err != nil || len(p.Series) != 1 {
			b.Fatal(p, err)
		}
		b.ReportMetric(float64(p.RowsRead), p.Table+"_rows_read")
	}
	b.ReportMetric(0, "ns/op")
}
