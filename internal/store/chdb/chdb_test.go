package chdb_test

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
)

func TestInsertNativeAndQuery(t *testing.T) {
	s := testenv.CHDB(t)
	ctx := context.Background()
	tbl := store.Table(s.Database(), "t")
	if err := s.Exec(ctx, "CREATE TABLE "+tbl+` (time DateTime64(3, 'UTC'), node LowCardinality(String), gpu UInt8,
		seq UInt64, util Nullable(Float32), energy Nullable(UInt64)) ENGINE = MergeTree ORDER BY (node, gpu, time)
		SETTINGS non_replicated_deduplication_window = 100`); err != nil {
		t.Fatal(err)
	}
	tm := &store.ColDateTime64{ColName: "time"}
	node := &store.ColString{ColName: "node"}
	gpu := &store.ColUInt8{ColName: "gpu"}
	seq := &store.ColUInt64{ColName: "seq"}
	util := &store.ColNullFloat32{ColName: "util"}
	energy := &store.ColNullUInt64{ColName: "energy"}
	b := &store.Block{Columns: []store.Column{tm, node, gpu, seq, util, energy}}
	for i := 0; i < 1000; i++ {
		tm.V = append(tm.V, 1_700_000_000_000+int64(i))
		node.V = append(node.V, []string{"a", "b'c", "é"}[i%3])
		gpu.V = append(gpu.V, uint8(i%8))
		seq.V = append(seq.V, math.MaxUint64-uint64(i))
		util.Append(float32(i%100), i%10 == 0)
		energy.Append(uint64(i)*1000, i%7 == 0)
	}
	for range 2 { // the second insert carries the same token: deduplicated
		if err := s.Insert(ctx, "t", b, "tok-1"); err != nil {
			t.Fatal(err)
		}
	}
	r, err := s.Query(ctx, "SELECT count(), countIf(util IS NULL), sum(util), countIf(energy IS NULL), max(seq), "+
		"uniqExact(node), min(time), countIf(node = 'b\\'c') FROM "+tbl)
	if err != nil {
		t.Fatal(err)
	}
	// Expected values computed independently of the engine.
	var nulls, enulls, bc uint64
	var sum float64
	for i := 0; i < 1000; i++ {
		if i%10 == 0 {
			nulls++
		} else {
			sum += float64(i % 100)
		}
		if i%7 == 0 {
			enulls++
		}
		if i%3 == 1 {
			bc++
		}
	}
	want := []any{uint64(1000), nulls, sum, enulls, uint64(math.MaxUint64), uint64(3), "2023-11-14 22:13:20.000", bc}
	if len(r.Rows) != 1 {
		t.Fatalf("rows = %d", len(r.Rows))
	}
	for i, w := range want {
		if r.Rows[0][i] != w {
			t.Errorf("column %s = %#v, want %#v", r.Columns[i], r.Rows[0][i], w)
		}
	}
}

func TestQueryErrorIsReported(t *testing.T) {
	s := testenv.CHDB(t)
	_, err := s.Query(context.Background(), "SELECT no_such_column FROM system.one")
	if err == nil {
		t.Fatal("query of a missing column succeeded")
	}
}

// The engine installs crash handlers over Go's when it starts; Open puts Go's back, so a nil
// dereference in the process is still a recoverable panic rather than a hang inside the engine.
func TestGoPanicsSurviveEngineStart(t *testing.T) {
	s := testenv.CHDB(t)
	if _, err := s.Query(context.Background(), "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	var p *struct{ x int }
	recovered := func() (r any) {
		defer func() { r = recover() }()
		return p.x
	}()
	if _, ok := recovered.(error); !ok {
		t.Fatalf("nil dereference recovered %v, want a runtime error", recovered)
	}
}

// Dictionary-encoded strings reach LowCardinality and plain String columns intact, at every key
// width (1-byte keys up to 256 distinct values, 2-byte up to 65,536, 4-byte beyond).
func TestLowCardinalityStrings(t *testing.T) {
	s := testenv.CHDB(t)
	ctx := context.Background()
	tbl := store.Table(s.Database(), "lc")
	if err := s.Exec(ctx, "CREATE TABLE "+tbl+" (i UInt32, lc LowCardinality(String), plain String) ENGINE = MergeTree ORDER BY i"); err != nil {
		t.Fatal(err)
	}
	for _, distinct := range []int{1, 256, 257, 65_537} {
		if err := s.Exec(ctx, "TRUNCATE TABLE "+tbl); err != nil {
			t.Fatal(err)
		}
		i := &store.ColUInt32{ColName: "i"}
		lc := &store.ColLowCardString{ColName: "lc"}
		plain := &store.ColLowCardString{ColName: "plain"}
		rows := 2 * distinct
		for r := range rows {
			v := fmt.Sprintf("v%d'é", r%distinct)
			i.V = append(i.V, uint32(r))
			lc.Append(v)
			plain.AppendKey(plain.Key(v))
		}
		if err := s.Insert(ctx, "lc", &store.Block{Columns: []store.Column{i, lc, plain}}, ""); err != nil {
			t.Fatalf("%d distinct: %v", distinct, err)
		}
		r, err := s.Query(ctx, "SELECT count(), uniqExact(lc), countIf(lc = plain), countIf(lc = concat('v', toString(i % "+
			fmt.Sprint(distinct)+"), '''é')) FROM "+tbl)
		if err != nil {
			t.Fatal(err)
		}
		got := fmt.Sprint(r.Rows[0])
		if want := fmt.Sprintf("[%d %d %d %d]", rows, distinct, rows, rows); got != want {
			t.Errorf("%d distinct: count, distinct, equal, right = %s, want %s", distinct, got, want)
		}
	}
}

// The engine's scan statistics come back with the rows: what the query layer's benchmarks report.
func TestRowsReadReported(t *testing.T) {
	s := testenv.CHDB(t)
	r, err := s.Query(context.Background(), "SELECT sum(number) FROM numbers(12345)")
	if err != nil {
		t.Fatal(err)
	}
	if r.RowsRead != 12345 {
		t.Errorf("RowsRead = %d, want 12345", r.RowsRead)
	}
}

// Integers wider than 64 bits come back as their decimal text rather than failing the query.
func TestWideIntegersAsText(t *testing.T) {
	s := testenv.CHDB(t)
	r, err := s.Query(context.Background(), "SELECT toUInt128('340282366920938463463374607431768211455') AS u, toInt256(-5) AS i, sum(toUInt128(number)) FROM numbers(3)")
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(r.Rows[0]); got != "[340282366920938463463374607431768211455 -5 3]" {
		t.Errorf("wide integers: %s", got)
	}
}
