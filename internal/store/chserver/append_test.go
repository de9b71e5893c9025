package chserver

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
	chproto "github.com/ClickHouse/clickhouse-go/v2/lib/proto"

	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// batchColumns makes the driver's columns the way PrepareBatch does from the server's header
// block: one column.Interface per table column, by its type name, empty.
func batchColumns(t testing.TB, b *store.Block, tableTypes map[string]string) []column.Interface {
	t.Helper()
	sc := &column.ServerContext{Timezone: time.UTC}
	out := make([]column.Interface, len(b.Columns))
	for i, c := range b.Columns {
		typ := c.Type()
		if tt, ok := tableTypes[c.Name()]; ok {
			typ = tt
		}
		col, err := column.Type(typ).Column(c.Name(), sc)
		if err != nil {
			t.Fatalf("driver column %s %s: %v", c.Name(), typ, err)
		}
		out[i] = col
	}
	return out
}

// expected is row i of a block column as the driver's Row gives it back: nil for NULL.
func expected(c store.Column, i int) any {
	switch c := c.(type) {
	case store.As:
		return expected(c.Column, i)
	case *store.ColFloat64:
		return c.V[i]
	case *store.ColDateTime:
		return time.Unix(int64(c.V[i]), 0).UTC()
	case *store.ColUInt128:
		return new(big.Int).Or(new(big.Int).Lsh(new(big.Int).SetUint64(c.V[i].Hi), 64), new(big.Int).SetUint64(c.V[i].Lo)).String()
	case *store.ColDateTime64:
		return time.UnixMilli(c.V[i]).UTC()
	case *store.ColString:
		return c.V[i]
	case *store.ColLowCardString:
		return c.Value(i)
	case *store.ColUInt8:
		return c.V[i]
	case *store.ColUInt32:
		return c.V[i]
	case *store.ColUInt64:
		return c.V[i]
	case *store.ColInt64:
		return c.V[i]
	case *store.ColNullFloat32:
		if c.Null[i] == 1 {
			return nil
		}
		return c.V[i]
	case *store.ColNullUInt64:
		if c.Null[i] == 1 {
			return nil
		}
		return c.V[i]
	}
	panic(fmt.Sprintf("no expectation for %T", c))
}

// rowValue is the driver column's row i, pointers followed (Nullable rows come as *T or nil).
func rowValue(c column.Interface, i int) any {
	v := c.Row(i, false)
	if v == nil {
		return nil
	}
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return nil
		}
		rv = rv.Elem()
	}
	return rv.Interface()
}

// same compares floats by their bits (NaN, -0) and times as instants in UTC.
func same(got, want any) bool {
	switch w := want.(type) {
	case string:
		if g, ok := got.(big.Int); ok {
			return g.String() == w
		}
	case float64:
		g, ok := got.(float64)
		return ok && math.Float64bits(g) == math.Float64bits(w)
	case float32:
		g, ok := got.(float32)
		return ok && math.Float32bits(g) == math.Float32bits(w)
	case time.Time:
		g, ok := got.(time.Time)
		return ok && g.Equal(w) && g.Location().String() == "UTC"
	}
	return got == want
}

// checkColumns compares every row of every driver column with the block's.
func checkColumns(t *testing.T, what string, got []column.Interface, b *store.Block) {
	t.Helper()
	for j, c := range b.Columns {
		if got[j].Rows() != c.Len() {
			t.Errorf("%s: column %s has %d rows, the block %d", what, c.Name(), got[j].Rows(), c.Len())
			continue
		}
		bad := 0
		for i := range c.Len() {
			g, w := rowValue(got[j], i), expected(c, i)
			if !same(g, w) {
				if bad++; bad <= 3 {
					t.Errorf("%s: column %s (%s) row %d = %#v, want %#v", what, c.Name(), got[j].Type(), i, g, w)
				}
			}
		}
		if bad > 3 {
			t.Errorf("%s: column %s: %d rows differ in all", what, c.Name(), bad)
		}
	}
}

// wire encodes the driver's columns as the batch sends them (revision 0: plain Native, as chDB
// reads it) and decodes the bytes back with the driver's own block decoder, as a reader of what
// was sent.
func wire(t *testing.T, cols []column.Interface) ([]byte, []column.Interface) {
	t.Helper()
	var buf proto.Buffer
	if err := (&chproto.Block{Columns: cols}).Encode(&buf, 0); err != nil {
		t.Fatalf("driver encode: %v", err)
	}
	back := chproto.NewBlock()
	back.ServerContext.Timezone = time.UTC
	if err := back.Decode(proto.NewReader(bytes.NewReader(buf.Buf)), 0); err != nil {
		t.Fatalf("driver decode of its own encoding: %v", err)
	}
	return buf.Buf, back.Columns
}

// edgeBlock has a column of each type the schema's tables take (0001 to 0024: DateTime64(3,
// 'UTC'), LowCardinality(String), String, UInt8, UInt32, UInt64, Int64, Nullable(Float32),
// Nullable(UInt64); the failure metrics of 0022 add no other), holding NULLs, empty strings,
// unicode, a NUL byte and each type's extremes.
func edgeBlock() *store.Block {
	tm := &store.ColDateTime64{ColName: "time", V: []int64{
		0, -1, 1_700_000_000_123,
		time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli(),           // DateTime64's lowest
		time.Date(2262, 4, 11, 23, 47, 16, 854, time.UTC).UnixMilli() - 1, // time.Time's UnixNano range ends here
		1_764_633_600_000, 1_764_633_600_001,
	}}
	n := len(tm.V)
	cluster := &store.ColLowCardString{ColName: "cluster"}
	for _, s := range []string{"", "c1", "ß-集群-🚀", "", "c1", strings.Repeat("x", 300), "a\x00b"} {
		cluster.Append(s)
	}
	message := &store.ColString{ColName: "message", V: []string{"", "é", "XID 79: GPU has fallen off the bus", "\x00", strings.Repeat("長", 1000), "\xff\xfe", "x"}}
	gpu := &store.ColUInt8{ColName: "gpu", V: []uint8{0, 255, 7, 1, 128, 254, 3}}
	pid := &store.ColUInt32{ColName: "pid", V: []uint32{0, math.MaxUint32, 1, 1 << 31, 42, math.MaxUint32 - 1, 7}}
	seq := &store.ColUInt64{ColName: "seq", V: []uint64{0, math.MaxUint64, 1, 1 << 63, 9, math.MaxUint64 - 1, 2}}
	off := &store.ColInt64{ColName: "first_offset", V: []int64{math.MinInt64, math.MaxInt64, -1, 0, 1, -2, 3}}
	util := &store.ColNullFloat32{ColName: "gpu_util"}
	for _, v := range []float32{0, float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.Copysign(0, -1)), math.MaxFloat32, math.SmallestNonzeroFloat32} {
		util.Append(v, false)
	}
	util.Null[1], util.V[1] = 1, 123 // a NULL whose value slot holds something: the value must not show
	power := &store.ColNullFloat32{ColName: "power_w"}
	power.AppendNulls(n) // a metric the GPU does not answer: all NULL
	energy := &store.ColNullUInt64{ColName: "energy_mj"}
	for i, v := range []uint64{math.MaxUint64, 0, 1, 5, 1 << 40, 0, 77} {
		energy.Append(v, i%3 == 1)
	}
	remap := &store.ColNullUInt64{ColName: "retired_pages_sbe"}
	remap.AppendNulls(n - 1)
	remap.Append(math.MaxUint64, false)
	return &store.Block{Columns: []store.Column{tm, cluster, message, gpu, pid, seq, off, util, power, energy, remap}}
}

// rollupBlock has the column types a rollup row is inserted with (ingest's folded gpu_1m and gpu_1h
// rows): DateTime('UTC') and SimpleAggregateFunction columns over Float64, UInt64, UInt128,
// DateTime64 and Nullable(Float32), sent as their table types (store.As), and a digest's state
// as a String of bytes.
func rollupBlock() *store.Block {
	agg := func(f string, c store.Column) store.Column {
		return store.As{Column: c, TypeName: "SimpleAggregateFunction(" + f + ", " + c.Type() + ")"}
	}
	return &store.Block{Columns: []store.Column{
		&store.ColDateTime{ColName: "t", V: []uint32{0, 60, math.MaxUint32, 1_764_000_000}},
		agg("sum", &store.ColUInt64{ColName: "samples", V: []uint64{1, 60, math.MaxUint64, 0}}),
		agg("min", &store.ColDateTime64{ColName: "first_sample", V: []int64{0, 60_001, 1_764_000_000_123, 1}}),
		agg("sum", &store.ColFloat64{ColName: "gpu_util_sum", V: []float64{0, 5940.5, math.MaxFloat64, math.Copysign(0, -1)}}),
		agg("min", &store.ColNullFloat32{ColName: "gpu_util_min", V: []float32{0, 1.5, -3, 0}, Null: []uint8{1, 0, 0, 1}}),
		agg("max", &store.ColUInt128{ColName: "gpu_util_last_reading", V: []store.UInt128{{}, {Hi: 1 << 63, Lo: 1}, {Hi: math.MaxUint64, Lo: math.MaxUint64}, {Hi: 1_764_000_000_123, Lo: 1 << 40}}}),
		agg("min", &store.ColNullUInt64{ColName: "energy_mj_min", V: []uint64{0, 7, math.MaxInt64, 0}, Null: []uint8{0, 0, 0, 1}}),
		// A t-digest's state as bytes, as ingest sends gpu_1h's to its feed: the empty state, one
		// centroid (1.0, 1.0), no bytes, and a NUL-laden one.
		&store.ColString{ColName: "gpu_util_q", V: []string{"\x01\x00", "\x01\x01\x00\x00\x80\x3f\x00\x00\x80\x3f", "", "\x01\x02\x00\x00\x00\x00\x00\x00\x80\x3f\x00\x00\x00\x00\x00\x00\x80\x3f"}},
	}}
}

// manyKeys is a LowCardinality column with more distinct values than its narrowest key width holds.
func manyKeys(distinct, rows int) *store.Block {
	c := &store.ColLowCardString{ColName: "uuid"}
	for i := range rows {
		c.Append(fmt.Sprintf("GPU-%08x", i%distinct))
	}
	return &store.Block{Columns: []store.Column{c}}
}

func TestAppendBlockColumnsEqualTheBlock(t *testing.T) {
	tests := []struct {
		name  string
		block *store.Block
		// table types where the table's column is not of the block column's type; the rest match
		table map[string]string
	}{
		{name: "every schema type, with NULLs, unicode and extremes", block: edgeBlock()},
		{name: "LowCardinality with UInt16 keys", block: manyKeys(300, 1000)},
		{name: "rollup row types, as their table types", block: rollupBlock()},
		{name: "rollup row types, into their plain types", block: rollupBlock(), table: map[string]string{
			"samples": "UInt64", "first_sample": "DateTime64(3, 'UTC')", "gpu_util_sum": "Float64", "gpu_util_min": "Nullable(Float32)",
			"gpu_util_last_reading": "UInt128", "energy_mj_min": "Nullable(UInt64)",
		}},
		{name: "LowCardinality with UInt32 keys", block: manyKeys(70_000, 70_001)},
		{name: "one row", block: &store.Block{Columns: []store.Column{
			&store.ColDateTime64{ColName: "time", V: []int64{1}},
			&store.ColNullFloat32{ColName: "gpu_util", V: []float32{1}, Null: []uint8{1}},
		}}},
		{
			// The events and intents blocks carry String columns that the tables type
			// LowCardinality(String); a column whose table type differs goes through Append.
			name:  "table types that differ from the block's",
			block: edgeBlock(),
			table: map[string]string{
				"cluster": "String",
				"message": "LowCardinality(String)",
				"time":    "DateTime64(6, 'UTC')",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cols := batchColumns(t, tt.block, tt.table)
			var scratch []byte
			if err := appendBlock(cols, tt.block, &scratch); err != nil {
				t.Fatalf("appendBlock: %v", err)
			}
			// Encoding first: a LowCardinality column filled by Append builds its keys only then.
			sent, back := wire(t, cols)
			checkColumns(t, "driver columns", cols, tt.block)
			checkColumns(t, "driver's encoding read back", back, tt.block)
			// Where every table type is the block's, the server gets byte for byte the Native
			// data chDB inserts for the block (DateTime64 values past 2262 included, which the
			// driver's time.Time conversion cannot carry).
			if len(tt.table) == 0 {
				if native := tt.block.AppendNative(nil); !bytes.Equal(sent, native) {
					t.Errorf("driver sends %d bytes that differ from the block's Native encoding (%d bytes)", len(sent), len(native))
				}
			}
		})
	}
}

// The block's Native encoding goes to the wire unchanged, so a time the driver's time.Time path
// (UnixNano) cannot represent still arrives as the block's milliseconds.
func TestAppendBlockTimeBeyondUnixNano(t *testing.T) {
	ms := time.Date(2299, 12, 31, 23, 59, 59, 999e6, time.UTC).UnixMilli() // DateTime64(3)'s highest
	b := &store.Block{Columns: []store.Column{&store.ColDateTime64{ColName: "time", V: []int64{ms}}}}
	cols := batchColumns(t, b, nil)
	var scratch []byte
	if err := appendBlock(cols, b, &scratch); err != nil {
		t.Fatalf("appendBlock: %v", err)
	}
	sent, _ := wire(t, cols)
	if native := b.AppendNative(nil); !bytes.Equal(sent, native) {
		t.Errorf("driver sends %x, want the block's %x", sent, native)
	}
}

func TestAppendBlockRefuses(t *testing.T) {
	block := func() *store.Block {
		return &store.Block{Columns: []store.Column{
			&store.ColUInt8{ColName: "gpu", V: []uint8{1}},
			&store.ColNullFloat32{ColName: "gpu_util", V: []float32{1}, Null: []uint8{0}},
		}}
	}
	sc := &column.ServerContext{Timezone: time.UTC}
	mk := func(name, typ string) column.Interface {
		c, err := column.Type(typ).Column(name, sc)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tests := []struct {
		name string
		cols []column.Interface
		want string
	}{
		{"fewer batch columns", []column.Interface{mk("gpu", "UInt8")}, "the batch has 1 columns, the block 2"},
		{"columns in another order", []column.Interface{mk("gpu_util", "Nullable(Float32)"), mk("gpu", "UInt8")}, "column 0: the batch's is gpu_util, the block's gpu"},
		{"a type Append does not convert to", []column.Interface{mk("gpu", "UInt8"), mk("gpu_util", "String")}, "column gpu_util (Nullable(Float32) into String)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var scratch []byte
			err := appendBlock(tt.cols, block(), &scratch)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("appendBlock error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// engineExpr is a SELECT expression that renders a column exactly as text (floats by their bits,
// strings in hex, times as their milliseconds), and engineText the same for the block's row i.
func engineExpr(c store.Column) string {
	n := c.Name()
	switch c := c.(type) {
	case store.As:
		return engineExpr(c.Column)
	case *store.ColFloat64:
		return "toString(reinterpretAsUInt64(" + n + "))"
	case *store.ColDateTime:
		return "toString(toUnixTimestamp(" + n + ") * 1000)"
	case *store.ColDateTime64:
		return "toString(toUnixTimestamp64Milli(" + n + "))"
	case *store.ColString, *store.ColLowCardString:
		return "hex(" + n + ")"
	case *store.ColNullFloat32:
		return "ifNull(toString(reinterpretAsUInt32(" + n + ")), 'NULL')"
	case *store.ColNullUInt64:
		return "ifNull(toString(" + n + "), 'NULL')"
	}
	return "toString(" + n + ")"
}

func engineText(c store.Column, i int) string {
	if a, ok := c.(store.As); ok {
		c = a.Column
	}
	if _, ok := c.(*store.ColUInt128); ok {
		return expected(c, i).(string) // decimal, as toString writes it
	}
	switch v := expected(c, i).(type) {
	case nil:
		return "NULL"
	case time.Time:
		return fmt.Sprint(v.UnixMilli())
	case string:
		return strings.ToUpper(fmt.Sprintf("%x", v))
	case float32:
		return fmt.Sprint(math.Float32bits(v))
	case float64:
		return fmt.Sprint(math.Float64bits(v))
	default:
		return fmt.Sprint(v)
	}
}

// What the server transport sends is read by the ClickHouse engine itself (chDB) as the block,
// through both the decode path and Append's conversions: the driver's encoding of the batch
// columns goes into a table of the batch's types as Native data, the way the server reads a
// client's data block, and every row is selected back exactly.
func TestDriverEncodingReadByClickHouse(t *testing.T) {
	s := testenv.CHDB(t)
	ctx := context.Background()
	tests := []struct {
		name  string
		block *store.Block
		table map[string]string
	}{
		{name: "every schema type", block: edgeBlock()},
		{name: "LowCardinality with UInt16 keys", block: manyKeys(300, 1000)},
		{name: "rollup row types", block: rollupBlock()},
		{name: "table types that differ from the block's", block: edgeBlock(), table: map[string]string{
			"cluster": "String",
			"message": "LowCardinality(String)",
			"time":    "DateTime64(6, 'UTC')",
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cols := batchColumns(t, tt.block, tt.table)
			var scratch []byte
			if err := appendBlock(cols, tt.block, &scratch); err != nil {
				t.Fatalf("appendBlock: %v", err)
			}
			sent, _ := wire(t, cols)
			tbl := store.Table(s.Database(), fmt.Sprintf("t%d", i))
			var defs, exprs []string
			for j, c := range tt.block.Columns {
				defs = append(defs, c.Name()+" "+string(cols[j].Type()))
				exprs = append(exprs, engineExpr(c))
			}
			// Memory keeps the one block in the order it came.
			if err := s.Exec(ctx, "CREATE TABLE "+tbl+" ("+strings.Join(defs, ", ")+") ENGINE = Memory"); err != nil {
				t.Fatal(err)
			}
			f := filepath.Join(testenv.DataDir(t), fmt.Sprintf(".sent-%d.native", i))
			if err := os.WriteFile(f, sent, 0o600); err != nil {
				t.Fatal(err)
			}
			defer os.Remove(f)
			if err := s.Exec(ctx, "INSERT INTO "+tbl+" FROM INFILE "+store.QuoteString(f)+" FORMAT Native"); err != nil {
				t.Fatalf("the engine refused the driver's encoding: %v", err)
			}
			r, err := s.Query(ctx, "SELECT "+strings.Join(exprs, ", ")+" FROM "+tbl)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Rows) != tt.block.Rows() {
				t.Fatalf("the engine read %d rows, the block has %d", len(r.Rows), tt.block.Rows())
			}
			bad := 0
			for row := range r.Rows {
				for j, c := range tt.block.Columns {
					if got, want := r.Rows[row][j], engineText(c, row); got != want {
						if bad++; bad <= 5 {
							t.Errorf("column %s (%s) row %d: the engine read %v, want %v", c.Name(), cols[j].Type(), row, got, want)
						}
					}
				}
			}
		})
	}
}
