package httpapi

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/query"
)

func fp(f float64) *float64 { return &f }

// The streamed series answer is the encoder's, byte for byte, whatever the values.
func TestReplySeriesAsEncoder(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 11, 0, 0, 0, time.UTC)
	var floats []query.Point
	for i, f := range []float64{0, math.Copysign(0, -1), 1, -1, 0.1, 1.0 / 3, 99.5, 1e-6, 9.99e-7, 1e-7, -2.5e-9, 1e20, 1e21, 1.5e21, -1e300,
		math.MaxFloat64, math.SmallestNonzeroFloat64, 123456789012345678, 5e-324, 1e-10} {
		floats = append(floats, query.Point{T: t0.Add(time.Duration(i) * time.Second), Value: fp(f)})
	}
	zone := time.FixedZone("x", 5*3600+1800)
	cases := map[string][]query.Series{
		"none":  {},
		"nil":   nil,
		"empty": {{}},
		"floats and nulls": {{Labels: map[string]string{"gpu": "GPU-1"}, Points: append(floats, query.Point{T: t0.Add(time.Hour)})},
			{Labels: map[string]string{}, Points: []query.Point{}}},
		"labels to escape": {{Labels: map[string]string{"z": "<a&b>", "a": "é\"\\\n\u2028", "": "\x01"}, Points: floats[:2]}},
		"times": {{Points: []query.Point{{T: t0.Add(123456789 * time.Nanosecond)}, {T: t0.In(zone)}, {T: time.Time{}},
			{T: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), Value: fp(2)}}}},
		"NaN falls back to the encoder's refusal": {{Points: []query.Point{{T: t0, Value: fp(math.NaN())}}}},
		"Inf":  {{Points: []query.Point{{T: t0, Value: fp(math.Inf(-1))}}}},
		"year": {{Points: []query.Point{{T: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}}}},
	}
	a := &api{}
	for name, series := range cases {
		t.Run(name, func(t *testing.T) {
			var want bytes.Buffer
			_ = json.NewEncoder(&want).Encode(series)
			w := httptest.NewRecorder()
			a.replySeries(w, series)
			if got := w.Body.String(); got != want.String() {
				t.Fatalf("streamed\n%q\nencoder\n%q", got, want.String())
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}

// The streamed raw SQL answer is the encoder's, byte for byte, whatever the values.
func TestReplyRowsAsEncoder(t *testing.T) {
	cases := map[string]*store.Result{
		"empty":   {},
		"no rows": {Columns: []string{"a"}, Rows: [][]any{}},
		"values": {Columns: []string{"n", "<s>", "é"}, RowsRead: 12, Rows: [][]any{
			{int64(-3), uint64(math.MaxUint64), 1.5}, {nil, "<a&b>\u2028\x01\"\\é", "\xff\xfe"}, {}, nil,
			{math.Copysign(0, -1), 1e21, 1e-7}, {"", int64(math.MinInt64), 123456789.125}}},
		"NaN falls back": {Columns: []string{"f"}, Rows: [][]any{{math.NaN()}}},
		"Inf falls back": {Columns: []string{"f"}, Rows: [][]any{{math.Inf(1)}}},
		"other type":     {Columns: []string{"b"}, Rows: [][]any{{true}, {[]int{1}}}},
	}
	a := &api{}
	for name, res := range cases {
		t.Run(name, func(t *testing.T) {
			var want bytes.Buffer
			_ = json.NewEncoder(&want).Encode(map[string]any{"columns": res.Columns, "rows": res.Rows, "rows_read": res.RowsRead})
			w := httptest.NewRecorder()
			a.replyRows(w, res)
			if got := w.Body.String(); got != want.String() {
				t.Fatalf("streamed\n%q\nencoder\n%q", got, want.String())
			}
		})
	}
}
