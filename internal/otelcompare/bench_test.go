package otelcompare

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/query"
)

// BenchmarkOTelVsGpufleet loads one simulated fleet (GPUFLEET_BENCH_GPUS, default 256, 8 per
// node in 4 clusters; GPUFLEET_BENCH_MINUTES, default 60, sampled every 10 s) into gpufleet's
// schema as ingest writes it (100,000-row blocks into gpu_samples, the rollup views filling the
// rest) and into the OpenTelemetry exporter's otel_metrics_gauge, one row per value, in the same
// chDB, and reports for each layout and as the ratio OTel / gpufleet:
//
//   - bytes on disk per value after merging (system.parts bytes_on_disk, marks, primary index,
//     skip indexes and statistics included, ÷ values), gpufleet's raw table alone and with its
//     rollups; and the compressed column data alone (data_compressed_bytes);
//   - insert CPU per million values: this process's CPU time (chDB runs in it) across the insert
//     calls, the Native encoding included; and the merge CPU of OPTIMIZE … FINAL after them;
//   - the fleet panel's query time ("GPU utilisation p99 by cluster", 1-minute step, the whole
//     window), median of 15 warm runs: gpufleet's as the panel runs it (the rollup it picks) and
//     from the raw table, and the equivalent SQL on the OTel table.
//
// Run it once; on a shared 2-core machine it takes two to three minutes (GPUFLEET_BENCH_GPUS=1024
// about four times as long):
//
//	go test -run '^$' -bench OTelVsGpufleet -benchtime 1x ./internal/otelcompare/
func BenchmarkOTelVsGpufleet(b *testing.B) {
	gpus, minutes := envInt(b, "GPUFLEET_BENCH_GPUS", 256), envInt(b, "GPUFLEET_BENCH_MINUTES", 60)
	to := time.Now().UTC().Truncate(time.Hour)
	f := fleet{seed: 11, nodes: max(gpus/8, 1), gpus: 8, clusters: []string{"cl-0", "cl-1", "cl-2", "cl-3"},
		from: to.Add(-time.Duration(minutes) * time.Minute), to: to, step: 10 * time.Second, rowsPerBlock: 100_000}
	const otelRowsPerInsert = 100_000

	st := testenv.CHDB(b)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		b.Fatal(err)
	}
	db := st.Database()
	if err := st.Exec(ctx, otelDDL(db)); err != nil {
		b.Fatalf("create %s: %v", otelTable, err)
	}
	blocks := f.blocks(b)
	var values, sampleRows float64
	rows := newOTelRows()
	for _, blk := range blocks {
		rows.reset()
		if err := rows.add(blk); err != nil {
			b.Fatal(err)
		}
		values += float64(rows.len())
		sampleRows += float64(blk.Rows())
	}
	b.ResetTimer()

	// gpufleet: the blocks as ingest inserts them, then every table's merges.
	runtime.GC()
	var fleetInsert float64
	for _, blk := range blocks {
		c0 := cpuSeconds()
		if err := st.Insert(ctx, schema.GPUSamples, blk, ""); err != nil {
			b.Fatal(err)
		}
		fleetInsert += cpuSeconds() - c0
	}
	fleetTables := []string{schema.GPUSamples, schema.Fleet1m, schema.GPU1m, schema.GPU1h, schema.ClusterPower1s, schema.Jobs}
	fleetMerge := optimize(b, st, fleetTables...)

	// OTel: the same values, converted outside the measured calls, inserted in blocks of as many
	// rows as ingest's.
	runtime.GC()
	var otelInsert float64
	var otelInserts int
	for _, blk := range blocks {
		rows.reset()
		if err := rows.add(blk); err != nil {
			b.Fatal(err)
		}
		for lo := 0; lo < rows.len(); lo += otelRowsPerInsert {
			ob := rows.block(lo, min(lo+otelRowsPerInsert, rows.len()))
			c0 := cpuSeconds()
			if err := st.Insert(ctx, otelTable, ob, ""); err != nil {
				b.Fatal(err)
			}
			otelInsert += cpuSeconds() - c0
			otelInserts++
		}
	}
	otelMerge := optimize(b, st, otelTable)
	b.StopTimer()

	if n := count(b, st, "SELECT count() FROM "+store.Table(db, otelTable)); n != values {
		b.Fatalf("%s holds %v rows, want %v values", otelTable, n, values)
	}
	var nonNull []string
	for _, m := range gpumetric.All() {
		nonNull = append(nonNull, "count("+m.Column+")")
	}
	if n := count(b, st, "SELECT "+joinPlus(nonNull)+" FROM "+store.Table(db, schema.GPUSamples)); n != values {
		b.Fatalf("gpu_samples holds %v values, want %v", n, values)
	}

	rawBytes, rawData := diskBytes(b, st, schema.GPUSamples)
	allBytes, _ := diskBytes(b, st, fleetTables...)
	otelBytes, otelData := diskBytes(b, st, otelTable)
	b.Logf("%.0f GPUs × %d min every %s: %.0f gpu_samples rows, %.0f values; %d gpufleet inserts, %d OTel inserts",
		float64(f.nodes*f.gpus), minutes, f.step, sampleRows, values, len(blocks), otelInserts)
	for _, t := range []string{schema.GPUSamples, otelTable} {
		b.Logf("%s on disk: %s", t, partsSummary(b, st, t, values))
	}
	b.Logf("%s by column, bytes/value: %s", otelTable, byColumn(b, st, otelTable, values))
	b.Logf("merge CPU (OPTIMIZE FINAL): gpufleet %.2f s, OTel %.2f s", fleetMerge, otelMerge)

	// The panel query, warm, alternating so that load on the machine falls on all three alike.
	auto, raw := compile(b, db, f, query.SourceAuto), compile(b, db, f, query.SourceRaw)
	otelSQL := otelPanelSQL(db, f.from, f.to)
	type run struct {
		name     string
		do       func() (*store.Result, error)
		ms       []float64
		rowsRead uint64
	}
	runs := []*run{
		{name: "gpufleet (" + auto.Table + ")", do: func() (*store.Result, error) { return st.QueryWith(ctx, auto.SQL, auto.Params) }},
		{name: "gpufleet raw (" + raw.Table + ")", do: func() (*store.Result, error) { return st.QueryWith(ctx, raw.SQL, raw.Params) }},
		{name: otelTable, do: func() (*store.Result, error) { return st.Query(ctx, otelSQL) }},
	}
	want := 4 * minutes
	for i := range 16 {
		for _, r := range runs {
			t0 := time.Now()
			res, err := r.do()
			if err != nil {
				b.Fatalf("%s: %v", r.name, err)
			}
			if len(res.Rows) != want {
				b.Fatalf("%s: %d points, want %d", r.name, len(res.Rows), want)
			}
			if i > 0 { // the first run warms caches
				r.ms = append(r.ms, float64(time.Since(t0).Microseconds())/1000)
			}
			r.rowsRead = res.RowsRead
		}
	}
	for _, r := range runs {
		b.Logf("panel query on %s: median %.1f ms, %d rows read", r.name, median(r.ms), r.rowsRead)
	}
	qAuto, qRaw, qOTel := median(runs[0].ms), median(runs[1].ms), median(runs[2].ms)

	perM := 1e6 / values
	b.ReportMetric(values, "values")
	b.ReportMetric(rawBytes/values, "gpufleet_bytes/value")
	b.ReportMetric(allBytes/values, "gpufleet_with_rollups_bytes/value")
	b.ReportMetric(otelBytes/values, "otel_bytes/value")
	b.ReportMetric(otelBytes/rawBytes, "bytes_ratio")
	b.ReportMetric(otelBytes/allBytes, "bytes_ratio_vs_with_rollups")
	// Column data alone: a part's statistics and metadata files barely grow with its rows, so in
	// the hour measured they weigh more on the narrower table than they would over days.
	b.ReportMetric(rawData/values, "gpufleet_data_bytes/value")
	b.ReportMetric(otelData/values, "otel_data_bytes/value")
	b.ReportMetric(otelData/rawData, "data_bytes_ratio")
	b.ReportMetric(fleetInsert*perM, "gpufleet_insert_cpu_s/Mvalue")
	b.ReportMetric(otelInsert*perM, "otel_insert_cpu_s/Mvalue")
	b.ReportMetric(otelInsert/fleetInsert, "insert_cpu_ratio")
	b.ReportMetric(fleetMerge*perM, "gpufleet_merge_cpu_s/Mvalue")
	b.ReportMetric(otelMerge*perM, "otel_merge_cpu_s/Mvalue")
	// Background merges run while later blocks are inserted, so where the merge work lands between
	// the two windows varies from run to run; their sum does not.
	b.ReportMetric((otelInsert+otelMerge)/(fleetInsert+fleetMerge), "insert_merge_cpu_ratio")
	b.ReportMetric(qAuto, "gpufleet_query_ms")
	b.ReportMetric(qRaw, "gpufleet_raw_query_ms")
	b.ReportMetric(qOTel, "otel_query_ms")
	b.ReportMetric(qOTel/qAuto, "query_ratio")
	b.ReportMetric(qOTel/qRaw, "query_ratio_vs_raw")
	b.ReportMetric(0, "ns/op")
}

func compile(b *testing.B, db string, f fleet, src query.Source) *query.Compiled {
	b.Helper()
	c, err := panelQuery(f.from, f.to, src).Compile(db)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// optimize merges each table to one part per partition and returns the CPU seconds it took.
func optimize(b *testing.B, st store.Store, tables ...string) float64 {
	b.Helper()
	c0 := cpuSeconds()
	for _, t := range tables {
		if err := st.Exec(context.Background(), "OPTIMIZE TABLE "+store.Table(st.Database(), t)+" FINAL"); err != nil {
			b.Fatalf("optimize %s: %v", t, err)
		}
	}
	return cpuSeconds() - c0
}

// diskBytes is what the tables' active parts take on disk (column data, marks, primary and skip
// indexes, the column statistics and metadata files) and the compressed column data alone.
func diskBytes(b *testing.B, st store.Store, tables ...string) (disk, data float64) {
	b.Helper()
	r, err := st.Query(context.Background(), fmt.Sprintf("SELECT sum(bytes_on_disk), sum(data_compressed_bytes) FROM system.parts "+
		"WHERE active AND database = %s AND has(%s, table)", store.QuoteString(st.Database()), store.FormatArray(tables)))
	if err != nil {
		b.Fatalf("parts of %v: %v", tables, err)
	}
	return num(r.Rows[0][0]), num(r.Rows[0][1])
}

// partsSummary says what a table's active parts hold, per value: the compressed column data, the
// marks, the skip indexes and the rest (primary index, checksums, metadata), and the part types.
func partsSummary(b *testing.B, st store.Store, table string, values float64) string {
	b.Helper()
	r, err := st.Query(context.Background(), fmt.Sprintf("SELECT count(), groupUniqArray(part_type), sum(data_compressed_bytes), sum(marks_bytes), "+
		"sum(secondary_indices_compressed_bytes + secondary_indices_marks_bytes), sum(bytes_on_disk) FROM system.parts WHERE active AND database = %s AND table = %s",
		store.QuoteString(st.Database()), store.QuoteString(table)))
	if err != nil {
		b.Fatalf("parts of %s: %v", table, err)
	}
	row := r.Rows[0]
	data, marks, skip, disk := num(row[2]), num(row[3]), num(row[4]), num(row[5])
	return fmt.Sprintf("%v parts %v; bytes/value: data %.3f, marks %.3f, skip indexes %.3f, rest (statistics, primary index, metadata) %.3f",
		row[0], row[1], data/values, marks/values, skip/values, (disk-data-marks-skip)/values)
}

// byColumn lists a table's columns by compressed bytes per value, the largest first.
func byColumn(b *testing.B, st store.Store, table string, values float64) string {
	b.Helper()
	r, err := st.Query(context.Background(), fmt.Sprintf("SELECT column, sum(column_data_compressed_bytes) AS c FROM system.parts_columns "+
		"WHERE active AND database = %s AND table = %s GROUP BY column HAVING c > 0 ORDER BY c DESC",
		store.QuoteString(st.Database()), store.QuoteString(table)))
	if err != nil {
		b.Fatalf("columns of %s: %v", table, err)
	}
	var out []string
	for _, row := range r.Rows {
		out = append(out, fmt.Sprintf("%s %.3f", row[0], num(row[1])/values))
	}
	return strings.Join(out, ", ")
}

func count(b *testing.B, st store.Store, sql string) float64 {
	b.Helper()
	r, err := st.Query(context.Background(), sql)
	if err != nil {
		b.Fatalf("%s: %v", sql, err)
	}
	return num(r.Rows[0][0])
}

func joinPlus(xs []string) string {
	out := xs[0]
	for _, x := range xs[1:] {
		out += " + " + x
	}
	return out
}

// cpuSeconds is the CPU time this process has used, user and system; chDB runs in-process, so it
// includes the engine's.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}
