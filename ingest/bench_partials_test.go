package ingest

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/store"
)

// BenchmarkRollupPartials measures, before it is built, the "pre-aggregate in ingest":
// gpu_1m's rows computed outside ClickHouse (every gpu_1m column is a plain sum, count, min or
// max, so ingest could fold a batch's readings per GPU-minute itself) and inserted into gpu_1m,
// with no view on gpu_samples writing it. The partial rows are what gpu_1m_mv writes for each block,
// made by the view's own SELECT before the clock starts, so the figures are ClickHouse's side
// only (folding 5 readings of 50 metrics per row in Go is small next to them, and is not measured
// here). Side by side in one run, on the same Native files (GPUs at 1 Hz, five readings per GPU per
// block as ingest cuts them at the default 5 s):
//
//   - views: the five views on gpu_samples, as shipped;
//   - raw: no views;
//   - block_partials: the four other views, and gpu_1m's rows of each block inserted after it;
//   - minute_partials: the four other views, and gpu_1m's rows once per GPU-minute, as an
//     ingest holding a minute of each GPU would insert them;
//   - minute_partials_no_1h: as minute_partials without gpu_1h_mv either — what is left if gpu_1h
//     were made outside the raw insert too.
//
// It reports each one's engine CPU per million samples and its ratio to raw, and checks that
// gpu_1m ends the same in every variant. Run:
//
//	go test -run '^$' -bench RollupPartials -benchtime 1x ./ingest/
//
// GPUFLEET_BENCH_FEED_GPUS sets the fleet (default 20,000; 3 minutes of it are written).
func BenchmarkRollupPartials(b *testing.B) {
	gpus := feedBenchGPUs()
	const minutes = 3
	samples := gpus * 60 * minutes
	files, names := rollupBenchFiles(b, gpus, samples, 5*gpus)
	ctx := context.Background()
	views := sampleViews()
	without := func(drop ...string) []string {
		return slices.DeleteFunc(slices.Clone(views), func(v string) bool { return slices.Contains(drop, v) })
	}
	stamp := time.Now().UnixNano()
	variants := []struct {
		name   string
		keep   []string
		minute bool // gpu_1m's rows per GPU-minute; false: per block; keep holding gpu_1m_mv: none
	}{
		{"views", views, false},
		{"raw", nil, false},
		{"block_partials", without(schema.GPU1mMV), false},
		{"minute_partials", without(schema.GPU1mMV), true},
		{"minute_partials_no_1h", without(schema.GPU1mMV, schema.GPU1hMV), true},
	}
	dbs := make([]store.Store, len(variants))
	for i, v := range variants {
		dbs[i] = migratedWith(b, fmt.Sprintf("bench_partials_%s_%d", v.name, stamp), v.keep)
	}
	blockParts, minuteParts, partNames := partialFiles(b, dbs[0], files, names)

	b.ResetTimer()
	cpu := make([]float64, len(variants))
	for range b.N {
		for i, v := range variants {
			c, _ := insertNative(b, dbs[i], files, names)
			cpu[i] += c
			if v.name == "views" || v.name == "raw" {
				continue
			}
			parts := blockParts
			if v.minute {
				parts = minuteParts
			}
			c0 := cpuSeconds()
			for _, f := range parts {
				if err := dbs[i].Exec(ctx, "INSERT INTO "+store.Table(dbs[i].Database(), schema.GPU1m)+" ("+partNames+
					") FROM INFILE "+store.QuoteString(f)+" FORMAT Native"); err != nil {
					b.Fatal(err)
				}
			}
			cpu[i] += cpuSeconds() - c0
		}
	}
	b.StopTimer()
	total := float64(samples * b.N)
	for i, v := range variants {
		b.ReportMetric(cpu[i]/total*1e6, v.name+"_cpu_s/Msample")
		if v.name != "raw" {
			b.ReportMetric(cpu[i]/cpu[1], v.name+"_cost_vs_raw")
		}
	}
	b.ReportMetric(float64(len(blockParts)), "block_partial_files")
	b.ReportMetric(0, "ns/op")

	// gpu_1m the same in every variant but raw, after its rows are merged.
	sig := func(s store.Store) string {
		r, err := s.Query(ctx, "SELECT count(), sum(samples), sum(gpu_util_n), max(gpu_util_max), round(sum(gpu_util_sum)), max(energy_mj_last_reading) FROM "+
			store.Table(s.Database(), schema.GPU1m)+" FINAL")
		if err != nil || len(r.Rows) != 1 {
			b.Fatal(r, err)
		}
		return fmt.Sprint(r.Rows[0])
	}
	want := sig(dbs[0])
	for i, v := range variants[2:] {
		if got := sig(dbs[i+2]); got != want {
			b.Errorf("%s: gpu_1m %s, want the view's %s", v.name, got, want)
		}
	}
}

// partialFiles writes, for each Native file of samples, the rows gpu_1m_mv makes of it (the view's
// SELECT, as views reads it), and those rows merged per GPU-minute; it returns both sets of
// Native files and their column list. A scratch database of views' schema without views holds
// each block while its rows are made.
func partialFiles(b *testing.B, views store.Store, files []string, names string) (block, minute []string, cols string) {
	b.Helper()
	ctx := context.Background()
	scratch := migratedWith(b, fmt.Sprintf("bench_partials_scratch_%d", time.Now().UnixNano()), nil)
	r, err := views.Query(ctx, "SELECT as_select FROM system.tables WHERE database = "+store.QuoteString(views.Database())+
		" AND name = "+store.QuoteString(schema.GPU1mMV))
	if err != nil || len(r.Rows) != 1 {
		b.Fatal(r, err)
	}
	sel := strings.ReplaceAll(r.Rows[0][0].(string), views.Database()+".", scratch.Database()+".")
	raw, merged := store.Table(scratch.Database(), schema.GPUSamples), store.Table(scratch.Database(), schema.GPU1m)
	if !strings.Contains(sel, "FROM "+raw) {
		b.Fatalf("gpu_1m_mv does not read %s:\n%s", raw, sel)
	}
	dir := b.TempDir()
	for i, f := range files {
		for _, q := range []string{
			"TRUNCATE TABLE " + raw,
			"INSERT INTO " + raw + " (" + names + ") FROM INFILE " + store.QuoteString(f) + " FORMAT Native",
		} {
			if err := scratch.Exec(ctx, q); err != nil {
				b.Fatal(err)
			}
		}
		out := filepath.Join(dir, fmt.Sprintf("block-%d.gpu_1m.native", i))
		if err := scratch.Exec(ctx, "INSERT INTO FUNCTION file("+store.QuoteString(out)+", Native) "+sel); err != nil {
			b.Fatal(err)
		}
		block = append(block, out)
	}
	r, err = scratch.Query(ctx, "SELECT * FROM file("+store.QuoteString(block[0])+", Native) LIMIT 0")
	if err != nil {
		b.Fatal(err)
	}
	names1m := r.Columns
	cols = strings.Join(names1m, ", ")
	for _, f := range block {
		if err := scratch.Exec(ctx, "INSERT INTO "+merged+" ("+cols+") FROM INFILE "+store.QuoteString(f)+" FORMAT Native"); err != nil {
			b.Fatal(err)
		}
	}
	r, err = scratch.Query(ctx, "SELECT DISTINCT toInt64(toUnixTimestamp(t)) AS m FROM "+merged+" ORDER BY m")
	if err != nil || len(r.Rows) == 0 {
		b.Fatal(r, err)
	}
	for i, row := range r.Rows {
		t := row[0]
		out := filepath.Join(dir, fmt.Sprintf("minute-%d.gpu_1m.native", i))
		if err := scratch.Exec(ctx, fmt.Sprintf("INSERT INTO FUNCTION file(%s, Native) SELECT %s FROM %s FINAL WHERE t = toDateTime(%d, 'UTC')",
			store.QuoteString(out), cols, merged, t)); err != nil {
			b.Fatal(err)
		}
		minute = append(minute, out)
	}
	return block, minute, cols
}
