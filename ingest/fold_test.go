package ingest

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/agent/sim"
	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// foldMessages is sample messages for the fold: a simulated fleet's minutes (the workload model's
// jobs, idle GPUs, counters), and an edge batch: readings of one minute out of time order, a GPU
// whose gauges are NULL all minute, NULL and zero counters, a job that changes within the minute,
// a MIG instance, and a reading on the minute's last millisecond.
func foldMessages(t *testing.T, start time.Time) [][]byte {
	t.Helper()
	var out [][]byte
	add := func(b *wirepb.SampleBatch) {
		data, err := wire.EncodeSamples(b)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, data)
	}
	nodes := []*sim.Node{sim.NewNode(5, "fold", 0, 8), sim.NewNode(5, "fold", 1, 8), sim.NewNode(5, "fold", 2, 4)}
	for s := range 150 { // two and a half minutes, so minutes span blocks and folds
		for _, n := range nodes {
			b := &wirepb.SampleBatch{AgentId: n.Name, Seq: uint64(s + 1), Cluster: "fold", Node: n.Name, Rack: "r1", Pool: "train"}
			n.Sample(start.Add(time.Duration(s)*time.Second), b, nil)
			add(b)
		}
	}
	m := start.Add(time.Minute).UnixMilli() // a minute the fleet also reports in
	add(&wirepb.SampleBatch{AgentId: "edge", Seq: 1, Cluster: "fold", Node: "edge",
		Gpus: []*wirepb.GPU{{Index: 0, Uuid: "GPU-E0", JobId: "j1"}, {Index: 1, Uuid: "GPU-E1", JobId: "j1"},
			{Index: 128, Uuid: "MIG-E0-0", ParentUuid: "GPU-E0", JobId: "j1"}},
		TimeUnixMs: []int64{m + 59_999, m + 59_999, m + 59_999, m + 10, m + 10, m + 10, m + 30_000, m + 30_000, m + 30_000},
		Gpu:        []uint32{0, 1, 2, 0, 1, 2, 0, 1, 2},
		Metrics: []*wirepb.MetricColumn{
			// GPU-E1 (rows 1, 4, 7) has no utilisation all minute.
			{Metric: uint32(gpumetric.GPUUtil), Present: []byte{0b01101101, 1}, Values: []float64{40, 0, 7.5, 90, 0, 0, 0, 0, 12}},
			{Metric: uint32(gpumetric.Power), Present: []byte{0xff, 1}, Values: []float64{301.25, 80, 0, 299.5, 81, 0, 350, 82.125, 1}},
			{Metric: uint32(gpumetric.Energy), Present: []byte{0b10011011, 1}, Counts: []uint64{9_000, 0, 0, 8_000, 5, 0, 0, 7, 3}},
		}})
	// The same GPUs later in the minute under another job: a row per job in the minute.
	add(&wirepb.SampleBatch{AgentId: "edge", Seq: 2, Cluster: "fold", Node: "edge",
		Gpus:       []*wirepb.GPU{{Index: 0, Uuid: "GPU-E0", JobId: "j2"}, {Index: 1, Uuid: "GPU-E1", JobId: "j2"}},
		TimeUnixMs: []int64{m + 45_000, m + 45_000},
		Gpu:        []uint32{0, 1},
		Metrics: []*wirepb.MetricColumn{
			{Metric: uint32(gpumetric.GPUUtil), Present: []byte{0b01}, Values: []float64{100, 0}},
			{Metric: uint32(gpumetric.Energy), Present: []byte{0b11}, Counts: []uint64{9_500, 8}},
		}})
	return out
}

// rollupSQL selects a rollup table's rows merged per key, every column as text, in key order: the
// table's columns from system.columns, each SimpleAggregateFunction(f, T) merged with f.
func rollupSQL(t *testing.T, st store.Store, table string) (string, []string) {
	t.Helper()
	r, err := st.Query(context.Background(), fmt.Sprintf("SELECT name, type FROM system.columns WHERE database = %s AND table = %s ORDER BY position",
		store.QuoteString(st.Database()), store.QuoteString(table)))
	if err != nil {
		t.Fatal(err)
	}
	agg := regexp.MustCompile(`^SimpleAggregateFunction\((\w+), `)
	var keys, vals, defs []string
	for _, row := range r.Rows {
		name, typ := row[0].(string), row[1].(string)
		defs = append(defs, name+" "+typ)
		if m := agg.FindStringSubmatch(typ); m != nil {
			vals = append(vals, fmt.Sprintf("toString(%s(%s))", m[1], name))
		} else if strings.HasPrefix(typ, "AggregateFunction(quantilesTDigest") {
			vals = append(vals, fmt.Sprintf("hex(%s(%s))", schema.QuantileFunc("MergeState"), name))
		} else {
			keys = append(keys, name)
		}
	}
	sql := fmt.Sprintf("SELECT %s, %s FROM %s GROUP BY %s ORDER BY %s", strings.Join(keys, ", "), strings.Join(vals, ", "),
		store.Table(st.Database(), table), strings.Join(keys, ", "), strings.Join(keys, ", "))
	return sql, defs
}

func rowsText(t *testing.T, st store.Store, sql string) []string {
	t.Helper()
	r, err := st.Query(context.Background(), sql)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, row := range r.Rows {
		out = append(out, fmt.Sprint(row...))
	}
	return out
}

// The folds make what the views make from the same rows: gpu_1m's and gpu_1h's rows merged per
// key, every column equal, whether the rows are folded in one insert or in several (partial rows
// of a bucket in two folds merge as the views' rows of two blocks do); gpu_1h's t-digests too, byte
// for byte once merged (fewer than 200 readings per GPU-hour, so the engine merges no centroids
// and a merged state is the sorted readings, whichever rows made it). Each fold's block has
// exactly the columns of the table it is inserted into, each as that table types it. The raw rows
// marked folded (0027) are left out by the views (0028, 0029): in the fold's database each level
// holds the fold's rows only, not twice as many.
func TestLevelFoldsEqualTheViews(t *testing.T) {
	viewDB, foldDB := testenv.CHDBPair(t, "_fold")
	ctx := context.Background()
	for _, st := range []store.Store{viewDB, foldDB} {
		if _, err := migrate.Apply(ctx, st, nil); err != nil {
			t.Fatal(err)
		}
	}
	levels := foldLevels()
	if len(levels) != 2 || levels[0].Table != schema.GPU1m || levels[1].Table != schema.GPU1h {
		t.Fatalf("folded levels %v: the test covers gpu_1m and gpu_1h", levels)
	}
	for _, l := range levels {
		if err := foldable(l); err != nil {
			t.Fatal(err)
		}
	}
	msgs := foldMessages(t, time.Now().Add(-10*time.Minute).Truncate(time.Minute))
	// Blocks of 7 messages (about 5 s of the fleet), folds of 9 blocks: neither lines up with a minute.
	const blockMsgs, foldBlocks = 7, 9
	fold := newFoldSet()
	// One block of columns for both databases: the views skip its rows in foldDB only, where
	// they are marked folded (in viewDB the column takes its default, 0).
	cols := newSampleColumns()
	cols.foldRows(foldMask())
	var dec wire.SampleDecoder
	blocks, folds := 0, 0
	flushFold := func() {
		if fold.Rows() == 0 {
			return
		}
		for _, lf := range fold.levels {
			if err := foldDB.Insert(ctx, lf.table(), lf.block(), fmt.Sprintf("fold/%s/%d", lf.level.Table, folds)); err != nil {
				t.Fatalf("insert the fold's %s rows: %v", lf.level.Table, err)
			}
		}
		folds++
		fold.reset()
	}
	flushBlock := func() {
		if cols.block.Rows() == 0 {
			return
		}
		if err := foldDB.Insert(ctx, schema.GPUSamples, &cols.block, fmt.Sprintf("b/%d", blocks)); err != nil {
			t.Fatal(err)
		}
		unmarked := &store.Block{Columns: slices.DeleteFunc(slices.Clone(cols.block.Columns), func(c store.Column) bool { return c == store.Column(cols.folded) })}
		if err := viewDB.Insert(ctx, schema.GPUSamples, unmarked, fmt.Sprintf("b/%d", blocks)); err != nil {
			t.Fatal(err)
		}
		fold.add(cols)
		cols.block.Reset()
		if blocks++; blocks%foldBlocks == 0 {
			flushFold()
		}
	}
	for i, data := range msgs {
		sb, err := dec.Decode(data)
		if err != nil {
			t.Fatal(err)
		}
		cols.appendBatch(sb)
		if (i+1)%blockMsgs == 0 {
			flushBlock()
		}
	}
	flushBlock()
	flushFold()
	if folds < 3 {
		t.Fatalf("only %d folds: the test must merge partial rows of several", folds)
	}

	for _, tc := range []struct {
		table   string
		minRows int
	}{{schema.GPU1m, 60}, {schema.GPU1h, 20}} {
		sql, _ := rollupSQL(t, viewDB, tc.table)
		foldSQL, _ := rollupSQL(t, foldDB, tc.table)
		want, got := rowsText(t, viewDB, sql), rowsText(t, foldDB, foldSQL)
		if len(want) < tc.minRows {
			t.Fatalf("the view made %d %s rows; the test data is too thin", len(want), tc.table)
		}
		bad := 0
		for i := range max(len(want), len(got)) {
			var w, g string
			if i < len(want) {
				w = want[i]
			}
			if i < len(got) {
				g = got[i]
			}
			if w != g {
				if bad++; bad <= 3 {
					t.Errorf("%s row %d:\n view %.3000s\n fold %.3000s", tc.table, i, w, g)
				}
			}
		}
		if bad > 0 || len(want) != len(got) {
			t.Errorf("%s: %d of %d rows differ (view %d rows, fold %d)", tc.table, bad, len(want), len(want), len(got))
		}
	}

	for _, lf := range newFoldSet().levels {
		r, err := foldDB.Query(ctx, fmt.Sprintf("SELECT name, type FROM system.columns WHERE database = %s AND table = %s",
			store.QuoteString(foldDB.Database()), store.QuoteString(lf.table())))
		if err != nil {
			t.Fatal(err)
		}
		var tableDefs, foldDefs []string
		for _, row := range r.Rows {
			tableDefs = append(tableDefs, row[0].(string)+" "+row[1].(string))
		}
		for _, c := range lf.block().Columns {
			foldDefs = append(foldDefs, c.Name()+" "+c.Type())
		}
		slices.Sort(tableDefs)
		slices.Sort(foldDefs)
		if len(tableDefs) < 100 || !slices.Equal(tableDefs, foldDefs) {
			for _, d := range tableDefs {
				if !slices.Contains(foldDefs, d) {
					t.Errorf("%s has %s; the fold's block does not", lf.table(), d)
				}
			}
			for _, d := range foldDefs {
				if !slices.Contains(tableDefs, d) {
					t.Errorf("the fold's block has %s; %s does not", d, lf.table())
				}
			}
		}
	}
}

// BenchmarkMinuteFold is the folds' own cost in ingest: 2,000 simulated GPUs' readings in batches
// of five per GPU, each folded and every six batches (a 30-s fold) made into gpu_1m's and gpu_1h's
// blocks (the digests' states included). Run:
//
//	go test -run '^$' -bench MinuteFold -benchmem ./ingest/
func BenchmarkMinuteFold(b *testing.B) {
	const gpus, perNode, readings = 2000, 8, 5
	start := time.Now().Add(-time.Hour).Truncate(time.Minute)
	nodes := make([]*sim.Node, gpus/perNode)
	for n := range nodes {
		nodes[n] = sim.NewNode(9, "bench", n, perNode)
	}
	var dec wire.SampleDecoder
	var batches []*sampleColumns
	for k := range 6 {
		cols := newSampleColumns()
		cols.foldRows(foldMask())
		for i := range readings {
			for _, n := range nodes {
				sb := &wirepb.SampleBatch{AgentId: n.Name, Seq: uint64(k*readings + i + 1), Cluster: "bench", Node: n.Name}
				n.Sample(start.Add(time.Duration(k*readings+i)*time.Second), sb, nil)
				data, err := wire.EncodeSamples(sb)
				if err != nil {
					b.Fatal(err)
				}
				s, err := dec.Decode(data)
				if err != nil {
					b.Fatal(err)
				}
				cols.appendBatch(s)
			}
		}
		batches = append(batches, cols)
	}
	f := newFoldSet()
	rows := 0
	b.ResetTimer()
	for range b.N {
		for _, c := range batches {
			f.add(c)
			rows += c.block.Rows()
		}
		for _, lf := range f.levels {
			_ = lf.block()
		}
		f.reset()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(rows), "ns/sample")
}
