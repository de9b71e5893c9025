package ingest

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// What lands in a gauge column for each kind of reading: values, absent rows, NaN/Inf and
// implausible values (NULL, counted), and metrics the build does not know (ignored).
func TestSampleColumnsGaugeValues(t *testing.T) {
	now := time.Now()
	ms := now.UnixMilli()
	batch := &wirepb.SampleBatch{AgentId: "a", Seq: 1, Cluster: "c", Node: "n", Rack: "r7", Pool: "train",
		// GPU 1's row is a MIG instance of GPU 0.
		Gpus:       []*wirepb.GPU{{Index: 0, Uuid: "GPU-0"}, {Index: 128, Uuid: "MIG-0-0", ParentUuid: "GPU-0"}},
		TimeUnixMs: []int64{ms, ms, ms, ms, ms, ms}, Gpu: []uint32{0, 1, 0, 1, 0, 1},
		Metrics: []*wirepb.MetricColumn{
			{Metric: uint32(gpumetric.GPUUtil), Present: []byte{0b111101},
				Values: []float64{42.5, 99, math.NaN(), math.Inf(1), 101, -0.5}},
			{Metric: uint32(gpumetric.Energy), Present: []byte{0b000011}, Counts: []uint64{7, 8, 0, 0, 0, 0}},
			{Metric: 9999, Values: []float64{1, 2, 3, 4, 5, 6}}, // a newer agent's metric
		}}
	data, err := wire.EncodeSamples(batch)
	if err != nil {
		t.Fatal(err)
	}
	var dec wire.SampleDecoder
	sb, err := dec.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	c := newSampleColumns()
	if err := c.check(sb, now); err != nil {
		t.Fatal(err)
	}
	c.appendBatch(sb)
	for r := range 6 {
		uuid, parent, gpu := "GPU-0", "", uint8(0)
		if r%2 == 1 {
			uuid, parent, gpu = "MIG-0-0", "GPU-0", 128
		}
		if c.uuid.Value(r) != uuid || c.parent.Value(r) != parent || c.gpu.V[r] != gpu {
			t.Errorf("row %d: uuid %q parent %q gpu %d, want %q %q %d", r, c.uuid.Value(r), c.parent.Value(r), c.gpu.V[r], uuid, parent, gpu)
		}
	}
	util := c.gauges[gpumetric.Index(gpumetric.GPUUtil)]
	wantNull := []uint8{0, 1, 1, 1, 1, 1} // row 1 absent; NaN, +Inf, 101 and -0.5 implausible
	for r, w := range wantNull {
		if util.Null[r] != w {
			t.Errorf("gpu_util row %d null=%d, want %d", r, util.Null[r], w)
		}
	}
	if util.V[0] != 42.5 {
		t.Errorf("gpu_util row 0 = %v, want 42.5", util.V[0])
	}
	if n := c.nulled[gpumetric.Index(gpumetric.GPUUtil)]; n != 4 {
		t.Errorf("counted %d implausible gpu_util readings, want 4", n)
	}
	energy := c.counters[gpumetric.Index(gpumetric.Energy)]
	if energy.Null[0] != 0 || energy.V[1] != 8 || energy.Null[2] != 1 {
		t.Errorf("energy column %v / nulls %v", energy.V, energy.Null)
	}
	fan := c.gauges[gpumetric.Index(gpumetric.FanSpeed)]
	for r := range 6 {
		if fan.Null[r] != 1 {
			t.Errorf("fan_pct row %d is not NULL though the batch has no fan column", r)
		}
	}
	if c.block.Rows() != 6 || c.uuid.Value(3) != "MIG-0-0" || c.agent.Value(5) != "a" || c.rack.Value(2) != "r7" || c.pool.Value(4) != "train" {
		t.Errorf("row labels wrong: rows %d uuid[3] %q agent[5] %q rack[2] %q pool[4] %q", c.block.Rows(), c.uuid.Value(3),
			c.agent.Value(5), c.rack.Value(2), c.pool.Value(4))
	}
	for _, col := range c.block.Columns {
		if col.Len() != 6 {
			t.Errorf("column %s has %d rows, want 6", col.Name(), col.Len())
		}
	}
}

// Batches check rejects leave the columns untouched and wrap ErrMalformed.
func TestSampleColumnsCheckRejects(t *testing.T) {
	now := time.Now()
	base := func() *wirepb.SampleBatch {
		return &wirepb.SampleBatch{AgentId: "a", Gpus: []*wirepb.GPU{{Index: 0}},
			TimeUnixMs: []int64{now.UnixMilli()}, Gpu: []uint32{0}}
	}
	cases := map[string]func(b *wirepb.SampleBatch){
		"time far in the future": func(b *wirepb.SampleBatch) { b.TimeUnixMs[0] = now.Add(2 * time.Hour).UnixMilli() },
		"time in 2001":           func(b *wirepb.SampleBatch) { b.TimeUnixMs[0] = 978307200000 },
		"gpu index over 255":     func(b *wirepb.SampleBatch) { b.Gpus[0].Index = 300 },
		"counter sent as gauge": func(b *wirepb.SampleBatch) {
			b.Metrics = []*wirepb.MetricColumn{{Metric: uint32(gpumetric.Energy), Values: []float64{1}}}
		},
		"gauge sent as counter": func(b *wirepb.SampleBatch) {
			b.Metrics = []*wirepb.MetricColumn{{Metric: uint32(gpumetric.Power), Counts: []uint64{1}}}
		},
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			b := base()
			mutate(b)
			data, err := wire.EncodeSamples(b)
			if err != nil {
				t.Fatal(err)
			}
			var dec wire.SampleDecoder
			sb, err := dec.Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			c := newSampleColumns()
			if err := c.check(sb, now); !errors.Is(err, wire.ErrMalformed) {
				t.Fatalf("check = %v, want ErrMalformed", err)
			}
		})
	}
}
