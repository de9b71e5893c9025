package otelcompare

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/query"
)

// loaded is a chDB database holding one fleet in both layouts.
type loaded struct {
	st       store.Store
	from, to time.Time
	blocks   []*store.Block
}

// load migrates a fresh database, creates the OTel table and writes the fleet into both, each
// through store.Insert, returning after the inserts (no merge forced).
func load(tb testing.TB, f fleet, otelRowsPerInsert int) *loaded {
	tb.Helper()
	st := testenv.CHDB(tb)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		tb.Fatal(err)
	}
	if err := st.Exec(ctx, otelDDL(st.Database())); err != nil {
		tb.Fatalf("create %s: %v", otelTable, err)
	}
	l := &loaded{st: st, from: f.from, to: f.to, blocks: f.blocks(tb)}
	for _, blk := range l.blocks {
		if err := st.Insert(ctx, schema.GPUSamples, blk, ""); err != nil {
			tb.Fatal(err)
		}
	}
	rows := newOTelRows()
	for _, blk := range l.blocks {
		rows.reset()
		if err := rows.add(blk); err != nil {
			tb.Fatal(err)
		}
		for lo := 0; lo < rows.len(); lo += otelRowsPerInsert {
			if err := st.Insert(ctx, otelTable, rows.block(lo, min(lo+otelRowsPerInsert, rows.len())), ""); err != nil {
				tb.Fatal(err)
			}
		}
	}
	return l
}

func smallFleet() fleet {
	to := time.Now().UTC().Truncate(time.Minute)
	return fleet{seed: 3, nodes: 4, gpus: 8, clusters: []string{"cl-a", "cl-b"}, from: to.Add(-10 * time.Minute), to: to,
		step: 10 * time.Second, rowsPerBlock: 500}
}

// TestSameValues holds the comparison to the same data: every metric has as many values in the OTel
// table as non-NULL cells in gpu_samples with the same sum, and sample cells read back from both
// by GPU, metric and instant are equal, labels included. A misaligned Map, a dropped NULL or a value
// under the wrong metric or GPU fails it.
func TestSameValues(t *testing.T) {
	l := load(t, smallFleet(), 1000) // several OTel inserts per gpu_samples block
	ctx := context.Background()
	db := l.st.Database()
	samples, otel := store.Table(db, schema.GPUSamples), store.Table(db, otelTable)

	var fleetValues, otelValues float64
	for _, m := range gpumetric.All() {
		g, err := l.st.Query(ctx, fmt.Sprintf("SELECT count(%[1]s), sum(toFloat64(%[1]s)) FROM %s", m.Column, samples))
		if err != nil {
			t.Fatal(err)
		}
		o, err := l.st.Query(ctx, fmt.Sprintf("SELECT count(), sum(Value) FROM %s WHERE MetricName = %s", otel, store.QuoteString(otelName(m.Column))))
		if err != nil {
			t.Fatal(err)
		}
		gn, gs, on, os := num(g.Rows[0][0]), num(g.Rows[0][1]), num(o.Rows[0][0]), num(o.Rows[0][1])
		if gn != on || math.Abs(gs-os) > 1e-9*math.Max(1, math.Abs(gs)) {
			t.Errorf("%s: gpu_samples %v values summing to %v, %s %v summing to %v", m.Column, gn, gs, otelTable, on, os)
		}
		fleetValues += gn
	}
	o, err := l.st.Query(ctx, "SELECT count() FROM "+otel)
	if err != nil {
		t.Fatal(err)
	}
	otelValues = num(o.Rows[0][0])
	if fleetValues == 0 || otelValues != fleetValues {
		t.Fatalf("%v values in gpu_samples, %v rows in %s", fleetValues, otelValues, otelTable)
	}

	// Sample cells: GPUs across nodes and clusters, instants at both ends and inside, a gauge, a
	// counter and a GPM metric.
	cells, err := l.st.Query(ctx, fmt.Sprintf(
		"SELECT uuid, node, cluster, model, toString(gpu), toUnixTimestamp64Milli(time), toFloat64(gpu_util), toFloat64(energy_mj), toFloat64(temp_gpu_c) "+
			"FROM %s WHERE gpu IN (0, 5) ORDER BY time, node, gpu LIMIT 7 BY node", samples))
	if err != nil {
		t.Fatal(err)
	}
	if len(cells.Rows) < 8 {
		t.Fatalf("%d sample cells", len(cells.Rows))
	}
	for _, c := range cells.Rows {
		for j, metric := range []string{"gpu_util", "energy_mj", "temp_gpu_c"} {
			want := c[6+j]
			r, err := l.st.Query(ctx, fmt.Sprintf("SELECT Value, Attributes['Hostname'], Attributes['cluster'], Attributes['modelName'], Attributes['gpu'], "+
				"ResourceAttributes['service.instance.id'], ServiceName FROM %s WHERE MetricName = %s AND Attributes['UUID'] = %s AND toUnixTimestamp64Milli(TimeUnix) = %v",
				otel, store.QuoteString(otelName(metric)), store.QuoteString(c[0].(string)), c[5]))
			if err != nil {
				t.Fatal(err)
			}
			if want == nil {
				if len(r.Rows) != 0 {
					t.Errorf("%s %s at %v: NULL in gpu_samples, %v in %s", c[0], metric, c[5], r.Rows, otelTable)
				}
				continue
			}
			got := []any{want, c[1], c[2], c[3], c[4], c[1].(string) + ":" + scrapePort, serviceName}
			if len(r.Rows) != 1 || fmt.Sprint(r.Rows[0]) != fmt.Sprint(got) {
				t.Errorf("%s %s at %v: %s has %v, want one row %v", c[0], metric, c[5], otelTable, r.Rows, got)
			}
		}
	}
}

// TestPanelQueriesAgree runs the fleet panel's query (p99 GPU utilisation by cluster per minute)
// as gpufleet compiles it, from the raw table and from the rollup it picks, and as SQL on the OTel
// table, and requires the same series and points, with values within the t-digest's error.
func TestPanelQueriesAgree(t *testing.T) {
	f := smallFleet()
	l := load(t, f, 100_000)
	ctx := context.Background()
	otelRes, err := l.st.Query(ctx, otelPanelSQL(l.st.Database(), f.from, f.to))
	if err != nil {
		t.Fatal(err)
	}
	if len(otelRes.Rows) != 2*10 {
		t.Fatalf("OTel panel query: %d points, want 2 clusters × 10 minutes", len(otelRes.Rows))
	}
	for _, src := range []query.Source{query.SourceRaw, query.SourceAuto} {
		c, err := panelQuery(f.from, f.to, src).Compile(l.st.Database())
		if err != nil {
			t.Fatal(err)
		}
		r, err := l.st.QueryWith(ctx, c.SQL, c.Params)
		if err != nil {
			t.Fatal(err)
		}
		got, want := points(t, r), points(t, otelRes)
		if len(got) != len(want) {
			t.Fatalf("%s (%s): %d points, OTel %d", src, c.Table, len(got), len(want))
		}
		for k, w := range want {
			if g, ok := got[k]; !ok || math.Abs(g-w) > 1 {
				t.Errorf("%s (%s) %s: %v, OTel %v", src, c.Table, k, g, w)
			}
		}
	}
}

// panelQuery is the gpu-fleet dashboard's "GPU utilisation p99 by cluster" panel at a 1-minute step.
func panelQuery(from, to time.Time, src query.Source) *query.Query {
	return &query.Query{Metric: "gpu_util", Agg: query.P99, GroupBy: []query.Dim{query.Cluster}, From: from, To: to, Step: time.Minute, Source: src}
}

// otelPanelSQL is that panel over the OTel table, as one would write it: the metric by name, the
// cluster from the attributes, the same quantile function, per minute.
func otelPanelSQL(db string, from, to time.Time) string {
	return fmt.Sprintf(`SELECT toStartOfInterval(TimeUnix, INTERVAL 60 SECOND) AS t, Attributes['cluster'] AS cluster, quantileTDigest(0.99)(Value) AS v
FROM %s
WHERE ServiceName = %s AND MetricName = %s AND TimeUnix >= fromUnixTimestamp64Milli(%d) AND TimeUnix < fromUnixTimestamp64Milli(%d)
GROUP BY t, cluster ORDER BY cluster, t`,
		store.Table(db, otelTable), store.QuoteString(serviceName), store.QuoteString(otelName("gpu_util")), from.UnixMilli(), to.UnixMilli())
}

// points keys a result's rows by everything but the last column (time and group), which must be
// the value.
func points(t *testing.T, r *store.Result) map[string]float64 {
	t.Helper()
	vi := len(r.Columns) - 1
	for i, c := range r.Columns {
		if c == "v" || c == "value" {
			vi = i
		}
	}
	out := map[string]float64{}
	for _, row := range r.Rows {
		var key []string
		for i, v := range row {
			if i != vi {
				key = append(key, normTime(fmt.Sprint(v)))
			}
		}
		out[strings.Join(key, " ")] = num(row[vi])
	}
	return out
}

// normTime cuts a DateTime64 text to whole seconds so that both layouts' bucket stamps compare.
func normTime(s string) string {
	if len(s) > 19 && s[4] == '-' && s[10] == ' ' {
		return s[:19]
	}
	return s
}

func num(v any) float64 {
	switch x := v.(type) {
	case uint64:
		return float64(x)
	case int64:
		return float64(x)
	case float64:
		return x
	case float32:
		return float64(x)
	}
	return math.NaN()
}
