package migrate_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/seed"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
)

// BenchmarkBytesPerValue writes a simulated 1,024-GPU fleet sampled every second into the schema
// migrate creates, merges it (OPTIMIZE … FINAL) and reports the compressed bytes on disk per
// metric value of gpu_samples, overall and per column (-v logs the columns). The window defaults to
// one hour; GPUFLEET_BENCH_HOURS=24 runs the full simulated day. It also reports the bytes per row
// of the per-GPU rollups, and the part of them their t-digests take:
//
//	go test -run '^$' -bench BytesPerValue -benchtime 1x -v ./internal/schema/migrate/
func BenchmarkBytesPerValue(b *testing.B) {
	hours := 1
	if h, err := strconv.Atoi(os.Getenv("GPUFLEET_BENCH_HOURS")); err == nil && h > 0 {
		hours = h
	}
	const nodes, gpus = 128, 8
	st := testenv.CHDB(b)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		b.Fatal(err)
	}
	start := time.Now().Add(-time.Duration(hours) * time.Hour).Truncate(time.Hour)
	var rows uint64
	b.ResetTimer()
	for range b.N {
		n, err := (seed.Fleet{Seed: 5, Nodes: nodes, GPUsPerNode: gpus, Clusters: []string{"bench"}, Driver: "570.124.06",
			From: start, To: start.Add(time.Duration(hours) * time.Hour), Step: time.Second}).Write(ctx, st)
		if err != nil {
			b.Fatal(err)
		}
		rows += n
	}
	b.StopTimer()
	if err := st.Exec(ctx, "OPTIMIZE TABLE "+store.Table(st.Database(), "gpu_samples")+" FINAL"); err != nil {
		b.Fatal(err)
	}
	r, err := st.Query(ctx, fmt.Sprintf("SELECT column, sum(column_data_compressed_bytes), sum(column_data_uncompressed_bytes) "+
		"FROM system.parts_columns WHERE database = '%s' AND table = 'gpu_samples' AND active GROUP BY column", st.Database()))
	if err != nil {
		b.Fatal(err)
	}
	byCol := map[string][2]float64{}
	for _, row := range r.Rows {
		byCol[row[0].(string)] = [2]float64{toFloat(row[1]), toFloat(row[2])}
	}
	var metricBytes, allBytes float64
	for _, v := range byCol {
		allBytes += v[0]
	}
	perRow := float64(rows) / float64(b.N)
	// Values are readings present: a column a GPU does not have (no fan on SXM boards) is NULL and
	// costs almost nothing, and counting its NULLs as values would flatter the figure.
	var counts []string
	for _, m := range gpumetric.All() {
		counts = append(counts, "count("+m.Column+")")
	}
	cr, err := st.Query(ctx, "SELECT "+strings.Join(counts, ", ")+" FROM "+store.Table(st.Database(), "gpu_samples"))
	if err != nil {
		b.Fatal(err)
	}
	var values float64
	for i, m := range gpumetric.All() {
		v := byCol[m.Column]
		metricBytes += v[0]
		n := toFloat(cr.Rows[0][i])
		values += n
		if n == 0 {
			b.Logf("%-22s no values (%.0f bytes for the NULLs)", m.Column, v[0])
			continue
		}
		b.Logf("%-22s %6.3f bytes/value (%.1fx) over %.0f values", m.Column, v[0]/n, v[1]/max(v[0], 1), n)
	}
	b.ReportMetric(metricBytes/values, "bytes/value")
	b.ReportMetric(allBytes/perRow, "bytes/row")
	// The per-GPU rollups beside the raw table: what a GPU-minute of gpu_1m and a GPU-hour of
	// gpu_1h cost once merged, and the share of that in their t-digests (the _q columns).
	for _, level := range []struct{ table, unit string }{{"gpu_1m", "gpu_minute"}, {"gpu_1h", "gpu_hour"}} {
		tbl := store.Table(st.Database(), level.table)
		if err := st.Exec(ctx, "OPTIMIZE TABLE "+tbl+" FINAL"); err != nil {
			b.Fatal(err)
		}
		r, err := st.Query(ctx, fmt.Sprintf("SELECT sum(column_data_compressed_bytes), sumIf(column_data_compressed_bytes, endsWith(column, '_q')) "+
			"FROM system.parts_columns WHERE database = '%s' AND table = '%s' AND active", st.Database(), level.table))
		if err != nil {
			b.Fatal(err)
		}
		n, err := st.Query(ctx, "SELECT count() FROM "+tbl)
		if err != nil {
			b.Fatal(err)
		}
		rows := max(toFloat(n.Rows[0][0]), 1)
		b.ReportMetric(toFloat(r.Rows[0][0])/rows, level.table+"_bytes/"+level.unit)
		b.ReportMetric(toFloat(r.Rows[0][1])/rows, level.table+"_digest_bytes/"+level.unit)
	}
	b.ReportMetric(perRow, "rows")
	b.ReportMetric(0, "ns/op")
}

func toFloat(v any) float64 {
	switch x := v.(type) {
	case uint64:
		return float64(x)
	case int64:
		return float64(x)
	case float64:
		return x
	case *float64:
		if x != nil {
			return *x
		}
	case string:
		f, _ := strconv.ParseFloat(x, 64)
		return f
	}
	return 0
}
