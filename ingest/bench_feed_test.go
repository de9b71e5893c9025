package ingest

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/store"
)

// BenchmarkRollupFeed measures the design docs/rollups.md proposes for the rollups' cost before it
// is built: gpu_samples keeps no views, and each closed minute is inserted once more, whole, into a
// Null table that carries the five views, so that a view's block holds a minute of every GPU rather
// than the readings of one ingest cut. Side by side in one run, on the same Native files (GPUs at
// 1 Hz, blocks as ingest cuts them at the default 5 s: five readings per GPU):
//
//   - on_insert: the views on gpu_samples, as shipped;
//   - feed: the raw insert with no views, then INSERT INTO the feed SELECT each minute of the raw
//     rows (by time here; a feeder would select by the server's ingested_at stamp), the read back
//     included in its cost.
//
// It reports each one's engine CPU per million samples and its ratio to the raw insert alone
// (feed_cost_vs_raw is what insert_cost_vs_raw would be with the feed), and checks that both leave
// the same rollup rows. Run:
//
//	go test -run '^$' -bench RollupFeed -benchtime 1x ./ingest/
//
// GPUFLEET_BENCH_FEED_GPUS sets the fleet (default 20,000; 3 minutes of it are written).
func BenchmarkRollupFeed(b *testing.B) {
	gpus := feedBenchGPUs()
	const minutes = 3
	samples := gpus * 60 * minutes
	files, names := rollupBenchFiles(b, gpus, samples, 5*gpus)
	ctx := context.Background()
	views := sampleViews()
	onInsert := migratedWith(b, fmt.Sprintf("bench_feed_views_%d", time.Now().UnixNano()), views)
	raw := migratedWith(b, fmt.Sprintf("bench_feed_raw_%d", time.Now().UnixNano()), nil)
	fed := migratedWith(b, fmt.Sprintf("bench_feed_fed_%d", time.Now().UnixNano()), nil)
	feed := store.Table(fed.Database(), "rollup_feed")
	if err := fed.Exec(ctx, "CREATE TABLE "+feed+" AS "+store.Table(fed.Database(), schema.GPUSamples)+" ENGINE = Null"); err != nil {
		b.Fatal(err)
	}
	// The shipped views, made again on the feed: the same SELECT, reading the Null table.
	for _, v := range views {
		r, err := onInsert.Query(ctx, fmt.Sprintf("SELECT create_table_query FROM system.tables WHERE database = '%s' AND name = '%s'", onInsert.Database(), v))
		if err != nil || len(r.Rows) != 1 {
			b.Fatal(r, err)
		}
		ddl := strings.ReplaceAll(r.Rows[0][0].(string), onInsert.Database()+".", fed.Database()+".")
		from := "FROM " + store.Table(fed.Database(), schema.GPUSamples)
		if !strings.Contains(ddl, from) {
			b.Fatalf("view %s does not read %s:\n%s", v, from, ddl)
		}
		if err := fed.Exec(ctx, strings.Replace(ddl, from, "FROM "+feed, 1)); err != nil {
			b.Fatalf("view %s on the feed: %v", v, err)
		}
	}
	r, err := fed.Query(ctx, "SELECT toInt64(toUnixTimestamp(min(time))), toInt64(toUnixTimestamp(max(time))) FROM file("+store.QuoteString(files[0])+", Native)")
	if err != nil || len(r.Rows) != 1 {
		b.Fatal(r, err)
	}
	first := time.Unix(r.Rows[0][0].(int64), 0).UTC().Truncate(time.Minute)

	b.ResetTimer()
	var cpuViews, cpuRaw, cpuFed, cpuFeed float64
	for range b.N {
		c, _ := insertNative(b, onInsert, files, names)
		cpuViews += c
		c, _ = insertNative(b, raw, files, names)
		cpuRaw += c
		c, _ = insertNative(b, fed, files, names)
		cpuFed += c
		c0 := cpuSeconds()
		for m := range minutes + 1 {
			from := first.Add(time.Duration(m) * time.Minute)
			if err := fed.Exec(ctx, fmt.Sprintf("INSERT INTO %s SELECT * FROM %s WHERE time >= fromUnixTimestamp64Milli(%d) AND time < fromUnixTimestamp64Milli(%d)",
				feed, store.Table(fed.Database(), schema.GPUSamples), from.UnixMilli(), from.Add(time.Minute).UnixMilli())); err != nil {
				b.Fatal(err)
			}
		}
		cpuFeed += cpuSeconds() - c0
	}
	b.StopTimer()
	total := float64(samples * b.N)
	b.ReportMetric(cpuRaw/total*1e6, "raw_cpu_s/Msample")
	b.ReportMetric(cpuViews/total*1e6, "on_insert_cpu_s/Msample")
	b.ReportMetric((cpuFed+cpuFeed)/total*1e6, "feed_cpu_s/Msample")
	b.ReportMetric(cpuFeed/total*1e6, "feed_only_cpu_s/Msample")
	b.ReportMetric(cpuViews/cpuRaw, "on_insert_cost_vs_raw")
	b.ReportMetric((cpuFed+cpuFeed)/cpuRaw, "feed_cost_vs_raw")
	b.ReportMetric(0, "ns/op")

	// The same rollups either way (before merges a table may hold more rows; the sums are the same).
	for _, t := range schema.SampleViews() {
		q := func(s store.Store) string {
			r, err := s.Query(ctx, "SELECT sum(samples) FROM "+store.Table(s.Database(), t))
			if err != nil || len(r.Rows) != 1 {
				b.Fatal(r, err)
			}
			return fmt.Sprint(r.Rows[0][0])
		}
		if a, f := q(onInsert), q(fed); a != f || a == "0" {
			b.Errorf("%s: %s samples from the views on insert, %s from the feed", t, a, f)
		}
	}
}

// feedBenchGPUs is the fleet of the benchmarks on BenchmarkRollupFeed's files:
// GPUFLEET_BENCH_FEED_GPUS, default 20,000.
func feedBenchGPUs() int {
	if n, err := strconv.Atoi(os.Getenv("GPUFLEET_BENCH_FEED_GPUS")); err == nil && n > 0 {
		return n
	}
	return 20_000
}
