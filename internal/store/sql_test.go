package store

import (
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestInsertSQL(t *testing.T) {
	b := &Block{Columns: []Column{
		&ColDateTime64{ColName: "time"},
		&ColString{ColName: "node"},
		&ColNullFloat32{ColName: "gpu_util"},
	}}
	one := &Block{Columns: []Column{&ColUInt64{ColName: "seq"}}}
	const mv = "deduplicate_blocks_in_dependent_materialized_views = 1"
	tests := []struct {
		name          string
		db, table     string
		block         *Block
		source, token string
		want          string
	}{
		{
			name: "plain", db: "gpufleet", table: "gpu_samples", block: b,
			want: "INSERT INTO gpufleet.gpu_samples (time, node, gpu_util) SETTINGS " + mv,
		},
		{
			name: "single column", db: "d", table: "t", block: one,
			want: "INSERT INTO d.t (seq) SETTINGS " + mv,
		},
		{
			name: "source", db: "gpufleet", table: "gpu_samples", block: b,
			source: "FROM INFILE '/tmp/x.native'",
			want:   "INSERT INTO gpufleet.gpu_samples (time, node, gpu_util) FROM INFILE '/tmp/x.native' SETTINGS " + mv,
		},
		{
			name: "dedup token", db: "gpufleet", table: "gpu_events", block: b,
			token: "agent-1:42",
			want:  "INSERT INTO gpufleet.gpu_events (time, node, gpu_util) SETTINGS insert_deduplication_token = 'agent-1:42', " + mv,
		},
		{
			name: "source and token, token quoted", db: "db1", table: "t", block: one,
			source: "FROM INFILE '/f'", token: `it's\`,
			want: `INSERT INTO db1.t (seq) FROM INFILE '/f' SETTINGS insert_deduplication_token = 'it\'s\\', ` + mv,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := InsertSQL(tt.db, tt.table, tt.block, tt.source, InsertSettings(tt.token)); got != tt.want {
				t.Errorf("InsertSQL = %q\nwant          %q", got, tt.want)
			}
		})
	}
	// The server transport sends no SETTINGS in the text (clickhouse-go keeps only the INSERT INTO
	// part) but the same settings with the query, raw.
	if got, want := InsertSQL("d", "t", one, "", nil), "INSERT INTO d.t (seq)"; got != want {
		t.Errorf("InsertSQL without settings = %q, want %q", got, want)
	}
	want := []InsertSetting{{Name: "insert_deduplication_token", Value: "it's", String: true},
		{Name: "deduplicate_blocks_in_dependent_materialized_views", Value: "1"}}
	if got := InsertSettings("it's"); !reflect.DeepEqual(got, want) {
		t.Errorf("InsertSettings = %+v, want %+v", got, want)
	}
}

func TestQuoteString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `''`},
		{"abc", `'abc'`},
		{"it's", `'it\'s'`},
		{`a\b`, `'a\\b'`},
		{`\'`, `'\\\''`},
		{`''`, `'\'\''`},
		{`\\`, `'\\\\'`},
		{"x'); DROP TABLE t; --", `'x\'); DROP TABLE t; --'`},
		{"é\"ü", `'é"ü'`}, // double quotes and non-ASCII pass through
		{"tab\there", "'tab\there'"},
	}
	for _, tt := range tests {
		if got := QuoteString(tt.in); got != tt.want {
			t.Errorf("QuoteString(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCheckIdent(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"gpufleet", true},
		{"gpu_samples", true},
		{"_private", true},
		{"A1_b2", true},
		{"x", true},
		{"t_TestFoo_deadbeef", true},
		{strings.Repeat("a", 64), true},
		{"", false},
		{"1abc", false},
		{"9", false},
		{"my-db", false},
		{"a;b", false},
		{"a b", false},
		{" a", false},
		{"a.b", false},
		{"a`b", false},
		{"abc\n", false},
		{strings.Repeat("a", 65), false},
		{"é", false},
		{"dbé", false},
		{"ｄｂ", false}, // full-width letters
	}
	for _, tt := range tests {
		err := CheckIdent("database", tt.name)
		if tt.ok && err != nil {
			t.Errorf("CheckIdent(%q) = %v, want ok", tt.name, err)
		}
		if !tt.ok {
			if err == nil {
				t.Errorf("CheckIdent(%q) accepted, want error", tt.name)
				continue
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "database ") || !strings.Contains(msg, "letters, digits and underscore") {
				t.Errorf("CheckIdent(%q) error %q does not name what and the rule", tt.name, msg)
			}
		}
	}
}

// nanValue marks an expected NaN (NaN != NaN, so it is compared with math.IsNaN).
type nanValue struct{}

func TestParseJSONCompact(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		want    *Result
		wantErr string
	}{
		{name: "empty input", doc: "", want: &Result{}},
		{name: "whitespace only", doc: " \n\t", want: &Result{}},
		{
			name: "no rows",
			doc:  `{"meta":[{"name":"c","type":"UInt64"}],"data":[],"rows":0}`,
			want: &Result{Columns: []string{"c"}, Rows: [][]any{}},
		},
		{
			name: "UInt64 quoted, UInt32 bare",
			doc: `{"meta":[{"name":"n","type":"UInt64"},{"name":"m","type":"UInt32"},{"name":"s","type":"UInt8"}],
				"data":[["18446744073709551615",4294967295,7],["0",0,0]],"rows":2}`,
			want: &Result{Columns: []string{"n", "m", "s"}, Rows: [][]any{
				{uint64(math.MaxUint64), uint64(math.MaxUint32), uint64(7)},
				{uint64(0), uint64(0), uint64(0)},
			}},
		},
		{
			name: "Int64 negative quoted, Int32 bare",
			doc: `{"meta":[{"name":"i","type":"Int64"},{"name":"j","type":"Int32"}],
				"data":[["-9223372036854775808",-5],["42",3]]}`,
			want: &Result{Columns: []string{"i", "j"}, Rows: [][]any{
				{int64(math.MinInt64), int64(-5)},
				{int64(42), int64(3)},
			}},
		},
		{
			name: "Float64 incl nan and inf",
			doc: `{"meta":[{"name":"f","type":"Float64"}],
				"data":[[1.5],[-0.25],["nan"],["inf"],["-inf"],["+inf"],[1e300]]}`,
			want: &Result{Columns: []string{"f"}, Rows: [][]any{
				{1.5}, {-0.25}, {nanValue{}}, {math.Inf(1)}, {math.Inf(-1)}, {math.Inf(1)}, {1e300},
			}},
		},
		{
			name: "Nullable null and values",
			doc: `{"meta":[{"name":"u","type":"Nullable(UInt64)"},{"name":"s","type":"Nullable(String)"},{"name":"f","type":"Nullable(Float64)"}],
				"data":[[null,null,null],["12","x",2.5]]}`,
			want: &Result{Columns: []string{"u", "s", "f"}, Rows: [][]any{
				{nil, nil, nil},
				{uint64(12), "x", 2.5},
			}},
		},
		{
			name: "LowCardinality(String)",
			doc: `{"meta":[{"name":"node","type":"LowCardinality(String)"},{"name":"n","type":"LowCardinality(Nullable(String))"}],
				"data":[["node-a","b'c"],["é\"\\\/\u00e9\n",null]]}`,
			want: &Result{Columns: []string{"node", "n"}, Rows: [][]any{
				{"node-a", "b'c"},
				{"é\"\\/é\n", nil},
			}},
		},
		{
			name: "LowCardinality numeric",
			doc:  `{"meta":[{"name":"g","type":"LowCardinality(UInt8)"}],"data":[[3]]}`,
			want: &Result{Columns: []string{"g"}, Rows: [][]any{{uint64(3)}}},
		},
		{
			name: "Nullable(Float32) numbers",
			doc: `{"meta":[{"name":"util","type":"Nullable(Float32)"}],
				"data":[[0.1],[99.5],[null],[0],["nan"]]}`,
			want: &Result{Columns: []string{"util"}, Rows: [][]any{
				{0.1}, {99.5}, {nil}, {0.0}, {nanValue{}},
			}},
		},
		{
			name: "DateTime64 and Date strings",
			doc: `{"meta":[{"name":"t","type":"DateTime64(3, 'UTC')"},{"name":"nt","type":"Nullable(DateTime64(3, 'UTC'))"},{"name":"d","type":"Date"}],
				"data":[["2023-11-14 22:13:20.000","2024-01-02 03:04:05.678","2024-01-02"],["1970-01-01 00:00:00.000",null,"1970-01-01"]]}`,
			want: &Result{Columns: []string{"t", "nt", "d"}, Rows: [][]any{
				{"2023-11-14 22:13:20.000", "2024-01-02 03:04:05.678", "2024-01-02"},
				{"1970-01-01 00:00:00.000", nil, "1970-01-01"},
			}},
		},
		{
			name: "arrays, tuples and maps kept as raw JSON",
			doc: `{"meta":[{"name":"a","type":"Array(UInt64)"},{"name":"s","type":"Array(String)"},{"name":"tp","type":"Tuple(UInt8, String)"},{"name":"m","type":"Map(String, UInt8)"},{"name":"b","type":"Bool"}],
				"data":[[["1","2"],["x","y"],[1,"a"],{"k":1},true],[[],[],[0,""],{},false]]}`,
			want: &Result{Columns: []string{"a", "s", "tp", "m", "b"}, Rows: [][]any{
				{`["1","2"]`, `["x","y"]`, `[1,"a"]`, `{"k":1}`, "true"},
				{`[]`, `[]`, `[0,""]`, `{}`, "false"},
			}},
		},
		{
			name: "statistics and extra keys ignored",
			doc: `{"meta":[{"name":"c","type":"UInt64"}],"data":[["3"]],"rows":1,
				"statistics":{"elapsed":0.001,"rows_read":3,"bytes_read":24}}`,
			want: &Result{Columns: []string{"c"}, Rows: [][]any{{uint64(3)}}},
		},
		{
			name:    "row shorter than meta",
			doc:     `{"meta":[{"name":"a","type":"UInt64"},{"name":"b","type":"String"}],"data":[["1","x"],["2"]]}`,
			wantErr: "row has 1 values for 2 columns",
		},
		{
			name:    "row longer than meta",
			doc:     `{"meta":[{"name":"a","type":"UInt64"}],"data":[["1","2"]]}`,
			wantErr: "row has 2 values for 1 columns",
		},
		{
			name:    "malformed JSON",
			doc:     `{"meta":[{"name":"a","type":"UInt64"}],"data":[["1"]`,
			wantErr: "parse query result",
		},
		{
			name:    "not JSON",
			doc:     "Code: 60. DB::Exception: Unknown table",
			wantErr: "parse query result",
		},
		{
			name:    "UInt64 not a number",
			doc:     `{"meta":[{"name":"n","type":"UInt64"}],"data":[["abc"]]}`,
			wantErr: "column n",
		},
		{
			name:    "negative for UInt64",
			doc:     `{"meta":[{"name":"n","type":"UInt64"}],"data":[["-1"]]}`,
			wantErr: "column n",
		},
		{
			name:    "Float64 garbage",
			doc:     `{"meta":[{"name":"f","type":"Float64"}],"data":[["x1"]]}`,
			wantErr: "column f",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseJSONCompact([]byte(tt.doc))
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseJSONCompact succeeded with %#v, want error containing %q", got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %q does not contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseJSONCompact: %v", err)
			}
			if !reflect.DeepEqual(got.Columns, tt.want.Columns) {
				t.Errorf("Columns = %#v, want %#v", got.Columns, tt.want.Columns)
			}
			if len(got.Rows) != len(tt.want.Rows) {
				t.Fatalf("%d rows, want %d: %#v", len(got.Rows), len(tt.want.Rows), got.Rows)
			}
			for i, row := range tt.want.Rows {
				if len(got.Rows[i]) != len(row) {
					t.Fatalf("row %d has %d values, want %d", i, len(got.Rows[i]), len(row))
				}
				for j, w := range row {
					g := got.Rows[i][j]
					if _, ok := w.(nanValue); ok {
						if f, isF := g.(float64); !isF || !math.IsNaN(f) {
							t.Errorf("row %d col %d = %#v, want float64 NaN", i, j, g)
						}
						continue
					}
					if g != w { // also compares dynamic types: uint64(1) != int64(1)
						t.Errorf("row %d col %d = %#v (%T), want %#v (%T)", i, j, g, g, w, w)
					}
				}
			}
		})
	}
}
