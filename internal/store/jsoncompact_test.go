package store

import (
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
)

// sameResult says how a differs from b, "" when they hold the same values of the same types.
func sameResult(a, b *Result) string {
	if fmt.Sprint(a.Columns, a.Types, a.RowsRead) != fmt.Sprint(b.Columns, b.Types, b.RowsRead) {
		return fmt.Sprintf("header %v %v %d, want %v %v %d", a.Columns, a.Types, a.RowsRead, b.Columns, b.Types, b.RowsRead)
	}
	if len(a.Rows) != len(b.Rows) || (a.Rows == nil) != (b.Rows == nil) {
		return fmt.Sprintf("%d rows (nil %t), want %d (nil %t)", len(a.Rows), a.Rows == nil, len(b.Rows), b.Rows == nil)
	}
	for i := range a.Rows {
		if len(a.Rows[i]) != len(b.Rows[i]) || (a.Rows[i] == nil) != (b.Rows[i] == nil) {
			return fmt.Sprintf("row %d: %d values, want %d", i, len(a.Rows[i]), len(b.Rows[i]))
		}
		for j, v := range a.Rows[i] {
			w := b.Rows[i][j]
			if f, ok := v.(float64); ok && math.IsNaN(f) {
				if g, ok := w.(float64); ok && math.IsNaN(g) {
					continue
				}
			}
			if v != w {
				return fmt.Sprintf("row %d col %d: %#v (%T), want %#v (%T)", i, j, v, v, w, w)
			}
		}
	}
	return ""
}

// jsonCompactDocs are outputs the scanner takes and inputs it must hand to encoding/json.
var jsonCompactDocs = []string{
	`{"meta":[{"name":"t","type":"DateTime"},{"name":"uuid","type":"String"},{"name":"v","type":"Nullable(Float64)"},{"name":"p","type":"UInt8"}],
	 "data":[["2026-11-30 11:00:00","GPU-a",1.5,1],["2026-11-30 11:00:00","GPU-b",null,0],["2026-11-30 11:00:04","GPU-a",-2e-7,1]],
	 "rows":3,"rows_before_limit_at_least":3,"statistics":{"elapsed":0.1,"rows_read":9,"bytes_read":80}}`,
	`{"meta":[{"name":"s","type":"String"}],"data":[["a\"b"],["\u00e9\t"],["\/"],["\xff"],["ÿ"],["` + "\xff\xfe" + `"]]}`,
	`{"meta":[{"name":"s","type":"String"}],"data":[["a` + "\n" + `b"]]}`,
	`{"meta":[{"name":"n","type":"UInt64"}],"data":[[01]]}`,
	`{"meta":[{"name":"n","type":"Float64"}],"data":[[1.],[.5]]}`,
	`{"meta":[{"name":"n","type":"Float64"}],"data":[[1e5],[1E+5],[-0],[0.0e-0]]}`,
	`{"meta":[{"name":"n","type":"Float64"}],"data":[["1e5"],["Infinity"],["0x1p3"],["nan"]]}`,
	`{"meta":[{"name":"b","type":"Bool"},{"name":"a","type":"Array(String)"}],"data":[[true,["x",[1,{"k":"]"}]]],[false,[]]]}`,
	`{"meta":[{"name":"b","type":"UInt8"}],"data":[[true]]}`,
	`{"meta":[{"name":"b","type":"UInt8"}],"data":[[nul]]}`,
	`{"meta":[{"name":"b","type":"UInt8"}],"data":[[1,]]}`,
	`{"meta":[{"name":"b","type":"UInt8"}],"data":[[1]],}`,
	`{"meta":[{"name":"b","type":"UInt8"}],"data":[[1]]} x`,
	`{"data":[[1]],"meta":[{"name":"b","type":"UInt8"}]}`,
	`{"Meta":[{"name":"b","type":"UInt8"}],"data":[[1]]}`,
	`{"meta":[{"name":"b","type":"UInt8"}],"meta":[],"data":[]}`,
	`{"meta":[{"name":"b","type":"UInt8"}],"data":null}`,
	`{"meta":null,"data":[[]]}`,
	`{"meta":[],"data":[[],[]]}`,
	`{}`,
	`{"m\u0065ta":[{"name":"b","type":"UInt8"}],"data":[]}`,
	`{"meta":[{"name":"w","type":"UInt128"},{"name":"i","type":"LowCardinality(Nullable(Int32))"}],"data":[["340282366920938463463374607431768211455",-3],[12,"7"]]}`,
	`{"meta":[{"name":"i","type":"Int8"}],"data":[[1],[2]],"rows":"x","statistics":{"rows_read":"many"}}`,
	`{"meta":[{"name":"i","type":"Int8"}],"data":[[1] [2]]}`,
	`[]`,
	`null`,
}

// The scanner gives what encoding/json gives, value for value, or the same error.
func TestParseJSONCompactAsEncodingJSON(t *testing.T) {
	for i, doc := range jsonCompactDocs {
		t.Run(fmt.Sprint(i), func(t *testing.T) { checkAsStd(t, []byte(doc)) })
	}
}

func checkAsStd(t *testing.T, doc []byte) {
	got, err := ParseJSONCompact(doc)
	want, werr := parseJSONCompactStd(doc)
	if fmt.Sprint(err) != fmt.Sprint(werr) {
		t.Fatalf("%q: error %v, want %v", doc, err, werr)
	}
	if err != nil {
		return
	}
	if d := sameResult(got, want); d != "" {
		t.Fatalf("%q: %s", doc, d)
	}
}

func FuzzParseJSONCompact(f *testing.F) {
	for _, d := range jsonCompactDocs {
		f.Add([]byte(d))
	}
	f.Fuzz(func(t *testing.T, doc []byte) { checkAsStd(t, doc) })
}

// seriesDoc is JSONCompact as the engine writes a by-GPU series: gpus × buckets rows of bucket
// time, GPU, value and presence.
func seriesDoc(gpus, buckets int) []byte {
	var b strings.Builder
	b.WriteString(`{"meta":[{"name":"t","type":"DateTime('UTC')"},{"name":"uuid","type":"String"},{"name":"v","type":"Nullable(Float64)"},{"name":"present","type":"UInt8"}],"data":[`)
	for k := range buckets {
		for g := range gpus {
			if k+g > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `["2026-11-30 %02d:%02d:%02d","GPU-%08x-1111-2222-3333-444455556666",%g,1]`, k/3600%24, k/60%60, k%60, g, float64(k*g%997)/7)
		}
	}
	fmt.Fprintf(&b, `],"rows":%d,"statistics":{"rows_read":%d}}`, gpus*buckets, gpus*buckets)
	return []byte(b.String())
}

// retained is the heap a parsed Result holds, per cell: the heap with it, less the heap once it
// is dropped (what was live before the parse would count what an earlier parse left behind).
func retained(parse func([]byte) (*Result, error), doc []byte) (float64, error) {
	r, err := parse(doc)
	if err != nil {
		return 0, err
	}
	var with, without runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&with)
	cells := len(r.Rows) * len(r.Columns)
	runtime.KeepAlive(r)
	runtime.GC()
	runtime.ReadMemStats(&without)
	return (float64(with.HeapAlloc) - float64(without.HeapAlloc)) / float64(cells), nil
}

// BenchmarkParseJSONCompact decodes a 100,000-row by-GPU series both ways, side by side:
// encoding/json (the old path, kept as the fallback) and the scanner. Run:
//
//	go test -run '^$' -bench ParseJSONCompact -benchmem ./store/
func BenchmarkParseJSONCompact(b *testing.B) {
	doc := seriesDoc(100, 1000)
	for _, c := range []struct {
		name  string
		parse func([]byte) (*Result, error)
	}{{"encoding_json", parseJSONCompactStd}, {"scanner", ParseJSONCompact}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(doc)))
			for range b.N {
				if _, err := c.parse(doc); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			kept, err := c.parse(doc)
			if err != nil {
				b.Fatal(err)
			}
			per, _ := retained(c.parse, doc)
			b.ReportMetric(per, "retained_B/cell")
			runtime.KeepAlive(kept)
		})
	}
}

// The scanner's Result of a large series is what encoding/json's is, and holds less than half
// as much heap.
func TestParseJSONCompactRetains(t *testing.T) {
	doc := seriesDoc(64, 200)
	checkAsStd(t, doc)
	scan, err := retained(ParseJSONCompact, doc)
	if err != nil {
		t.Fatal(err)
	}
	std, err := retained(parseJSONCompactStd, doc)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("retained per cell: encoding/json %.1f B, scanner %.1f B", std, scan)
	if scan > std/2 {
		t.Errorf("the scanner's Result holds %.1f B a cell, encoding/json's %.1f B: want under half", scan, std)
	}
}
