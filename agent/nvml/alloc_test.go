//go:build cgo

package nvml

import (
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"

	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// resetBatch empties b for the next cycle and keeps every slice's room (its columns, their values
// and bitmaps), as the agent does between sends: refilling it then allocates nothing.
func resetBatch(b *wirepb.SampleBatch) {
	b.TimeUnixMs, b.Gpu = b.TimeUnixMs[:0], b.Gpu[:0]
	for _, c := range b.Metrics {
		c.Values, c.Counts, c.Present = c.Values[:0], c.Counts[:0], c.Present[:0]
	}
}

// TestSampleAllocs holds the source to no allocation per cycle in steady state on an 8-GPU H100
// node, with the readings a real H100 gives: a fan and several fields not supported (errors on
// every tick), GPM answering from the second tick, columns with presence bitmaps. Encoding adds
// exactly one: the message's bytes, which the agent hands to the producer or spool to keep.
//
// The mocks record every NVML call in slices that grow by doubling; over runs cycles after as many
// warm-up cycles each slice grows at most twice, far fewer times than runs in all, so
// AllocsPerRun's integer mean rounds them away while one allocation of the source's own per cycle
// would show as 1.
func TestSampleAllocs(t *testing.T) {
	const runs = 200
	n := newNode(t, dgxh100.New())
	s := newSource(t, n, nil)
	cluster, node := s.Identity()
	b := &wirepb.SampleBatch{AgentId: node, Cluster: cluster, Node: node}
	var ev []*wirepb.Event
	cycle := func() {
		resetBatch(b)
		ev = s.Sample(t0, b, ev[:0])
	}
	for range runs {
		cycle()
	}
	if len(b.TimeUnixMs) != len(n.devs) || len(ev) != 0 {
		t.Fatalf("warm-up cycle: %d rows, %d events; want %d rows, no events", len(b.TimeUnixMs), len(ev), len(n.devs))
	}
	absent := 0
	for _, c := range b.Metrics {
		if len(c.Present) > 0 {
			absent++
		}
	}
	if absent == 0 {
		t.Fatal("no column has an absent reading: the bitmap path is not exercised")
	}
	tests := []struct {
		name string
		f    func()
		want float64
	}{
		{"Sample", cycle, 0},
		{"Sample+EncodeSamples", func() {
			cycle()
			if _, err := wire.EncodeSamples(b); err != nil {
				t.Fatal(err)
			}
		}, 1},
	}
	for _, tt := range tests {
		if got := testing.AllocsPerRun(runs, tt.f); got != tt.want {
			t.Errorf("%s: %v allocations per 8-GPU cycle in steady state, want %v", tt.name, got, tt.want)
		}
	}
}
