package migrate_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
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

// BenchmarkFleetPowerDay times a day of fleet power per second, four clusters of 256 GPUs at 1 Hz
// (the dashboards' panel), side by side over cluster_power_1s as 0024 made it (a GPU-set state a
// row, mean reading × GPUs) and as 0026 makes it (a plain sum a row). Each table is written as a
// day-old one looks once merged, one row per cluster and second, straight from numbers() rather
// than through gpu_samples (88 M rows, which the panel bench of deploy/ seeds in 20 minutes):
//
//	go test -run '^$' -bench FleetPowerDay -benchtime 5x ./internal/schema/migrate/
func BenchmarkFleetPowerDay(b *testing.B) {
	const clusters, gpus = 4, 256
	ctx := context.Background()
	end := time.Now().UTC().Truncate(time.Hour)
	start := end.Add(-24 * time.Hour)
	q := &query.PowerQuery{From: start, To: end, Step: time.Minute, Agg: query.Max}
	// One hour of every cluster's seconds per insert: a GPU-set state per row costs memory.
	write := func(st store.Store, cols, aggs string) {
		for h := range 24 {
			from := start.Add(time.Duration(h) * time.Hour).Unix()
			if err := st.Exec(ctx, fmt.Sprintf("INSERT INTO %s (t, cluster, samples, power_w_sum, power_w_n%s) "+
				"SELECT toDateTime(%d + intDiv(number, %d), 'UTC') AS t, concat('c', toString(intDiv(number %% %d, %d))) AS cluster, "+
				"count(), sum(p), count()%s FROM (SELECT number, toFloat64(300 + (number * 7919) %% 400) AS p, number %% %d AS g "+
				"FROM numbers(%d)) GROUP BY t, cluster", store.Table(st.Database(), schema.ClusterPower1s), cols,
				from, clusters*gpus, clusters*gpus, gpus, aggs, clusters*gpus, 3600*clusters*gpus)); err != nil {
				b.Fatal(err)
			}
		}
		if err := st.Exec(ctx, "OPTIMIZE TABLE "+store.Table(st.Database(), schema.ClusterPower1s)+" FINAL"); err != nil {
			b.Fatal(err)
		}
	}
	old := testenv.CHDB(b)
	if _, err := migrate.ApplyWith(ctx, old, nil, migrate.Options{Until: 25}); err != nil {
		b.Fatal(err)
	}
	write(old, ", power_gpus", ", uniqExactState(cityHash64(g))")
	st := testenv.CHDB(b)
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		b.Fatal(err)
	}
	write(st, ", power_w_total", ", sum(p)")

	c, err := q.Compile(old.Database())
	if err != nil {
		b.Fatal(err)
	}
	const formula0024 = "sum(power_w_sum) / nullIf(sum(power_w_n), 0) * uniqExactMerge(power_gpus)"
	oldSQL := strings.Replace(c.SQL, schema.PowerTotalSQL, formula0024, 1)
	run := func(s store.Store, sql string) (time.Duration, []any) {
		t0 := time.Now()
		r, err := s.QueryWith(ctx, sql, c.Params)
		if err != nil || len(r.Rows) != clusters*24*60 {
			b.Fatalf("%v rows, %v", len(r.Rows), err)
		}
		return time.Since(t0), r.Rows[0]
	}
	newSQL := strings.Replace(c.SQL, old.Database()+".", st.Database()+".", -1)
	var tOld, tNew time.Duration
	b.ResetTimer()
	for range b.N {
		d, a := run(old, oldSQL)
		tOld += d
		d, n := run(st, newSQL)
		tNew += d
		if fmt.Sprint(a[:2]) != fmt.Sprint(n[:2]) || math.Abs(toFloat(a[2])-toFloat(n[2])) > 1e-9*toFloat(n[2]) {
			b.Fatalf("first point differs: 0024 %v, 0026 %v", a, n)
		}
	}
	b.ReportMetric(float64(tOld.Milliseconds())/float64(b.N), "ms_0024")
	b.ReportMetric(float64(tNew.Milliseconds())/float64(b.N), "ms_0026")
	b.ReportMetric(float64(tOld)/float64(tNew), "speedup")
	b.ReportMetric(0, "ns/op")
}
