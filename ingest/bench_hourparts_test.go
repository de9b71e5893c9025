package ingest

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/store"
)

// BenchmarkRollupHourParts splits gpu_1h_mv, the largest cost of the rollups at the default block
// shape (docs/rollups.md), into its t-digests and the rest, to say which one a cheaper design has
// to move: the same Native files as BenchmarkRollupFeed inserted into databases whose only view is
// gpu_1h_mv as shipped, gpu_1h_mv without its quantilesTDigest states (they keep the column's
// empty default), and gpu_1h_mv with only them. It reports each one's engine CPU per million
// samples above the raw insert's, in the same run. Run:
//
//	go test -run '^$' -bench RollupHourParts -benchtime 1x ./ingest/
//
// GPUFLEET_BENCH_FEED_GPUS sets the fleet (default 20,000; 3 minutes of it are written).
func BenchmarkRollupHourParts(b *testing.B) {
	gpus := feedBenchGPUs()
	samples := gpus * 60 * 3
	files, names := rollupBenchFiles(b, gpus, samples, 5*gpus)
	ctx := context.Background()
	stamp := time.Now().UnixNano()
	raw := migratedWith(b, fmt.Sprintf("bench_hour_raw_%d", stamp), nil)
	shipped := migratedWith(b, fmt.Sprintf("bench_hour_shipped_%d", stamp), []string{schema.GPU1hMV})
	r, err := shipped.Query(ctx, "SELECT as_select FROM system.tables WHERE database = "+store.QuoteString(shipped.Database())+
		" AND name = "+store.QuoteString(schema.GPU1hMV))
	if err != nil || len(r.Rows) != 1 {
		b.Fatal(r, err)
	}
	sel := r.Rows[0][0].(string)
	// The SELECT list is one aggregate per line as the engine formats it: split it at the top-level
	// commas between FROM's left and SELECT's right.
	head, rest, ok := strings.Cut(sel, "SELECT ")
	body, tail, ok2 := strings.Cut(rest, " FROM ")
	if !ok || !ok2 || head != "" {
		b.Fatalf("unexpected view text:\n%s", sel)
	}
	items := splitTop(body)
	digest := regexp.MustCompile(`^quantilesTDigestState\(`)
	var noDigest, onlyDigest []string
	for _, it := range items {
		it = strings.TrimSpace(it)
		isDims := !strings.Contains(it, "(") || strings.HasPrefix(it, "toStartOfHour(")
		switch {
		case digest.MatchString(it):
			onlyDigest = append(onlyDigest, it)
		case isDims:
			noDigest, onlyDigest = append(noDigest, it), append(onlyDigest, it)
		default:
			noDigest = append(noDigest, it)
		}
	}
	if len(onlyDigest) == len(items) || len(noDigest) == len(items) {
		b.Fatalf("no digests told apart in %d items", len(items))
	}
	variant := func(name string, list []string) store.Store {
		db := migratedWith(b, fmt.Sprintf("bench_hour_%s_%d", name, stamp), nil)
		q := "SELECT " + strings.Join(list, ", ") + " FROM " + tail
		q = strings.ReplaceAll(q, shipped.Database()+".", db.Database()+".")
		if err := db.Exec(ctx, "CREATE MATERIALIZED VIEW "+store.Table(db.Database(), schema.GPU1hMV)+" TO "+
			store.Table(db.Database(), schema.GPU1h)+" AS "+q); err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		return db
	}
	dbs := []store.Store{raw, shipped, variant("no_digests", noDigest), variant("digests_only", onlyDigest)}
	labels := []string{"raw", "shipped", "no_digests", "digests_only"}
	b.ResetTimer()
	cpu := make([]float64, len(dbs))
	for range b.N {
		for i, db := range dbs {
			c, _ := insertNative(b, db, files, names)
			cpu[i] += c
		}
	}
	b.StopTimer()
	total := float64(samples * b.N)
	b.ReportMetric(cpu[0]/total*1e6, "raw_cpu_s/Msample")
	for i := 1; i < len(dbs); i++ {
		b.ReportMetric((cpu[i]-cpu[0])/total*1e6, labels[i]+"_above_raw_cpu_s/Msample")
	}
	b.ReportMetric(float64(len(onlyDigest)-(len(items)-len(noDigest))), "dim_items")
	b.ReportMetric(float64(len(items)-len(noDigest)), "digests")
	b.ReportMetric(0, "ns/op")
}

// splitTop splits a SELECT list at the commas outside parentheses and quotes.
func splitTop(s string) []string {
	var out []string
	depth, start := 0, 0
	inQuote := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'' && (i == 0 || s[i-1] != '\\'):
			inQuote = !inQuote
		case inQuote:
		case c == '(':
			depth++
		case c == ')':
			depth--
		case c == ',' && depth == 0:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}
