package chserver

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/store"
)

func f32(v float32) *float32 { return &v }
func u64(v uint64) *uint64   { return &v }

func TestColumnValues(t *testing.T) {
	util := &store.ColNullFloat32{ColName: "util"}
	util.Append(12.5, false)
	util.Append(99, true)
	util.Append(-0.25, false)
	energy := &store.ColNullUInt64{ColName: "energy"}
	energy.Append(5, true)
	energy.Append(math.MaxUint64, false)
	energy.Append(0, false)

	tests := []struct {
		name string
		col  store.Column
		want any
	}{
		{
			name: "DateTime64 as UTC time.Time from ms",
			col:  &store.ColDateTime64{ColName: "time", V: []int64{0, 1_700_000_000_123, -1}},
			want: []time.Time{
				time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC),
				time.Date(2023, 11, 14, 22, 13, 20, 123_000_000, time.UTC),
				time.Date(1969, 12, 31, 23, 59, 59, 999_000_000, time.UTC),
			},
		},
		{name: "String", col: &store.ColString{ColName: "node", V: []string{"a", "", "é"}}, want: []string{"a", "", "é"}},
		{name: "UInt8", col: &store.ColUInt8{ColName: "gpu", V: []uint8{0, 7, 255}}, want: []uint8{0, 7, 255}},
		{name: "UInt32", col: &store.ColUInt32{ColName: "pid", V: []uint32{1, math.MaxUint32}}, want: []uint32{1, math.MaxUint32}},
		{name: "UInt64", col: &store.ColUInt64{ColName: "seq", V: []uint64{1, math.MaxUint64}}, want: []uint64{1, math.MaxUint64}},
		{name: "Int64", col: &store.ColInt64{ColName: "code", V: []int64{math.MinInt64, -1, 3}}, want: []int64{math.MinInt64, -1, 3}},
		{name: "Nullable(Float32)", col: util, want: []*float32{f32(12.5), nil, f32(-0.25)}},
		{name: "Nullable(UInt64)", col: energy, want: []*uint64{nil, u64(math.MaxUint64), u64(0)}},
		{name: "empty String", col: &store.ColString{ColName: "s"}, want: []string(nil)},
		{name: "LowCardinality(String)", col: &store.ColLowCardString{ColName: "node", Dict: []string{"a", "é"}, Keys: []uint32{1, 0, 1}},
			want: []string{"é", "a", "é"}},
		{name: "empty Nullable(Float32)", col: &store.ColNullFloat32{ColName: "u"}, want: []*float32{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := columnValues(tt.col)
			if reflect.TypeOf(got) != reflect.TypeOf(tt.want) {
				t.Fatalf("columnValues type = %T, want %T", got, tt.want)
			}
			if rv := reflect.ValueOf(got); rv.Len() != tt.col.Len() {
				t.Fatalf("columnValues length = %d, want %d", rv.Len(), tt.col.Len())
			}
			if ts, ok := got.([]time.Time); ok {
				for i, tm := range ts {
					w := tt.want.([]time.Time)[i]
					if !tm.Equal(w) || tm.Location() != time.UTC {
						t.Errorf("time[%d] = %v (%v), want %v in UTC", i, tm, tm.Location(), w)
					}
				}
				return
			}
			// reflect.DeepEqual follows pointers, so nil vs non-nil and the values are both checked.
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("columnValues = %s, want %s", show(got), show(tt.want))
			}
		})
	}
}

// show prints a slice of pointers by their pointees.
func show(v any) string {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Slice || rv.Type().Elem().Kind() != reflect.Pointer {
		return fmt.Sprintf("%v", v)
	}
	var parts []string
	for i := 0; i < rv.Len(); i++ {
		if rv.Index(i).IsNil() {
			parts = append(parts, "nil")
		} else {
			parts = append(parts, fmt.Sprint(rv.Index(i).Elem().Interface()))
		}
	}
	return "[" + strings.Join(parts, " ") + "]"
}

type unknownColumn struct{}

func (unknownColumn) Name() string                 { return "x" }
func (unknownColumn) Type() string                 { return "UUID" }
func (unknownColumn) Len() int                     { return 0 }
func (unknownColumn) Reset()                       {}
func (unknownColumn) AppendNative(b []byte) []byte { return b }

func TestColumnValuesUnknownTypePanics(t *testing.T) {
	defer func() {
		r := recover()
		if r == nil {
			t.Fatal("columnValues of an unknown column type did not panic")
		}
		if msg, _ := r.(string); !strings.Contains(msg, "unknownColumn") {
			t.Errorf("panic %v does not name the column type", r)
		}
	}()
	columnValues(unknownColumn{})
}

func TestNormalize(t *testing.T) {
	type myInt int16 // named kinds normalise by kind
	var nilF32 *float32
	var nilPP **string
	s := "x"
	ps := &s
	i64 := int64(-42)
	loc := time.FixedZone("UTC+2", 2*3600)
	tm := time.Date(2024, 1, 2, 5, 4, 5, 678_900_000, loc) // 03:04:05.6789 UTC

	tests := []struct {
		name string
		in   any // normalize gets reflect.ValueOf(in)
		want any
	}{
		{"int", int(-7), int64(-7)},
		{"int8", int8(-128), int64(-128)},
		{"int16 named", myInt(300), int64(300)},
		{"int32", int32(math.MinInt32), int64(math.MinInt32)},
		{"int64", int64(math.MaxInt64), int64(math.MaxInt64)},
		{"uint", uint(7), uint64(7)},
		{"uint8", uint8(255), uint64(255)},
		{"uint16", uint16(65535), uint64(65535)},
		{"uint32", uint32(math.MaxUint32), uint64(math.MaxUint32)},
		{"uint64", uint64(math.MaxUint64), uint64(math.MaxUint64)},
		{"float32", float32(1.5), 1.5},
		{"float32 widened exactly", float32(0.1), float64(float32(0.1))},
		{"float64", 2.25, 2.25},
		{"float64 inf", math.Inf(-1), math.Inf(-1)},
		{"string", "node-a", "node-a"},
		{"empty string", "", ""},
		{"time in another zone", tm, "2024-01-02 03:04:05.678"},
		{"time UTC", time.UnixMilli(1_700_000_000_000).UTC(), "2023-11-14 22:13:20.000"},
		{"pointer to int64", &i64, int64(-42)},
		{"pointer to pointer to string", &ps, "x"},
		{"pointer to time", &tm, "2024-01-02 03:04:05.678"},
		{"nil pointer", nilF32, nil},
		{"nil pointer to pointer", nilPP, nil},
		{"pointer to nil pointer", &nilF32, nil},
		{"bool falls back to text", true, "true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := normalize(reflect.ValueOf(tt.in))
			if got != tt.want {
				t.Errorf("normalize(%#v) = %#v (%T), want %#v (%T)", tt.in, got, got, tt.want, tt.want)
			}
		})
	}
}

// Query scans into reflect.New(scanType) and normalises the pointee: a NULL of a Nullable column
// leaves a nil pointer there, which must come out as nil.
func TestNormalizeScanTargets(t *testing.T) {
	nullable := reflect.New(reflect.TypeOf((*float32)(nil))) // **float32, as for Nullable(Float32)
	if got := normalize(nullable.Elem()); got != nil {
		t.Errorf("unscanned Nullable = %#v, want nil", got)
	}
	nullable.Elem().Set(reflect.ValueOf(f32(37.5)))
	if got := normalize(nullable.Elem()); got != 37.5 {
		t.Errorf("scanned Nullable = %#v, want 37.5", got)
	}
	plain := reflect.New(reflect.TypeOf(uint64(0))) // *uint64, as for UInt64
	plain.Elem().SetUint(9)
	if got := normalize(plain.Elem()); got != uint64(9) {
		t.Errorf("scanned UInt64 = %#v, want uint64(9)", got)
	}
}
