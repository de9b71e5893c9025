package ingest

import (
	"context"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/testenv"
)

// The digest ingest makes of a run of readings is the engine's own state of the same readings in
// the same order, byte for byte: short runs (no centroid merges: fewer than 200 readings), runs
// long enough to merge, past the 2048 unmerged additions that compress on the way, and past 2048
// distinct centroids; repeated readings, negatives, signed zeros, infinities and NaN (no reading);
// and no readings at all. A mutation check: with compress merging equal means into one centroid,
// or without the stable sort, the long cases differ.
func TestTDigestStateIsTheEngines(t *testing.T) {
	st := testenv.CHDB(t)
	ctx := context.Background()
	rnd := rand.New(rand.NewPCG(4, 2))
	gen := func(n int, f func(i int) float32) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	inf, nan := float32(math.Inf(1)), float32(math.NaN())
	cases := []struct {
		name string
		vals []float32
	}{
		{"none", nil},
		{"one", []float32{42.5}},
		{"five", []float32{3, 1, 4, 1, 5}},
		{"utilisation minute", gen(60, func(i int) float32 { return float32(95 + rnd.IntN(6)) })},
		{"edge values", []float32{float32(math.Copysign(0, -1)), 0, -3.25, inf, -inf, nan, 7, nan, 1e30, -1e-30}},
		{"199 distinct", gen(199, func(i int) float32 { return rnd.Float32() * 700 })},
		{"hour of power", gen(3600, func(i int) float32 { return float32(math.Round(float64(300+rnd.Float32()*400)*1000) / 1000) })},
		{"hour of utilisation", gen(3600, func(i int) float32 { return float32(rnd.IntN(101)) })},
		{"5000 normal", gen(5000, func(i int) float32 { return float32(rnd.NormFloat64()*50 + 60) })},
		{"9000 sorted", gen(9000, func(i int) float32 { return float32(i) })},
		{"infinities mixed", gen(3000, func(i int) float32 {
			switch i % 7 {
			case 0:
				return inf
			case 3:
				return -inf
			}
			return float32(rnd.IntN(50))
		})},
	}
	var d tdigest
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d.reset()
			bits := make([]string, len(tc.vals))
			for i, v := range tc.vals {
				d.add(v)
				bits[i] = fmt.Sprint(math.Float32bits(v))
			}
			got := strings.ToUpper(hex.EncodeToString(d.appendState(nil)))
			// The readings in order, as the Nullable(Float32) the view aggregates, one thread.
			sql := fmt.Sprintf("SELECT hex(%s(v)) FROM (SELECT toNullable(reinterpretAsFloat32(toUInt32(b))) AS v FROM "+
				"(SELECT arrayJoin(CAST([%s] AS Array(UInt32))) AS b)) SETTINGS max_threads = 1", schema.QuantileFunc("State"), strings.Join(bits, ","))
			r, err := st.Query(ctx, sql)
			if err != nil {
				t.Fatal(err)
			}
			want := r.Rows[0][0].(string)
			if got != want {
				t.Fatalf("state of %d readings:\n ingest %.200s… (%d bytes)\n engine %.200s… (%d bytes)", len(tc.vals), got, len(got)/2, want, len(want)/2)
			}
		})
	}
}
