package ingest

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// fuzzNow is the ingest clock of the build fuzz targets: fixed, so that a failing input fails again,
// and near the seeds' timestamps, so that they pass the clock check and reach appendBatch.
var fuzzNow = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

// mustEncode is a seed: panics are fine here, the fuzz function never calls it.
func mustEncode(data []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return data
}

// checkReason fails t unless err is a dead-letter reason: wire.ErrMalformed and something more.
func checkReason(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, wire.ErrMalformed) {
		t.Fatalf("%s: error %q does not wrap wire.ErrMalformed (it would not be dead-lettered as bad input)", what, err)
	}
	if msg := strings.TrimPrefix(err.Error(), wire.ErrMalformed.Error()); strings.TrimLeft(msg, ": ") == "" {
		t.Fatalf("%s: error %q gives no reason", what, err)
	}
}

// checkBlock fails t unless every column of b has rows rows and the block encodes.
func checkBlock(t *testing.T, b *store.Block, rows int) {
	t.Helper()
	for _, c := range b.Columns {
		if c.Len() != rows {
			t.Fatalf("column %s has %d rows, want %d", c.Name(), c.Len(), rows)
		}
	}
	_ = b.AppendNative(nil)
}

// FuzzBuildSamples drives what ingest does with a message of the samples topic: decode, check
// against the clock and catalogue, append to the columns. Nothing panics; a rejected message says
// why (the dead letter's reason) and leaves the columns as they were; an accepted one adds exactly
// its rows to every column, each row's gpu being its GPU's index. A message is appended twice, the
// second time through the reused decoder, as ingest reuses both.
func FuzzBuildSamples(f *testing.F) {
	if data, err := os.ReadFile("../internal/wire/testdata/samples_v1.bin"); err == nil {
		f.Add(data)
	}
	ms := fuzzNow.UnixMilli()
	f.Add(mustEncode(wire.EncodeSamples(&wirepb.SampleBatch{AgentId: "a", Seq: 7, Cluster: "c", Node: "n", Rack: "r", Pool: "p",
		Gpus:       []*wirepb.GPU{{Index: 0, Uuid: "GPU-0", Model: "H100", JobId: "j"}, {Index: 3, Uuid: "GPU-3", ParentUuid: "GPU-0"}},
		TimeUnixMs: []int64{ms - 2000, ms - 2000, ms - 1000}, Gpu: []uint32{0, 1, 1},
		Metrics: []*wirepb.MetricColumn{
			{Metric: uint32(gpumetric.GPUUtil), Values: []float64{50, 101, 7}, Present: []byte{0x05}},
			{Metric: uint32(gpumetric.Energy), Counts: []uint64{1, 1 << 63, 3}},
			{Metric: 9999, Values: []float64{1, 2, 3}}, // a newer agent's metric
		}})))
	f.Add(mustEncode(wire.EncodeSamples(&wirepb.SampleBatch{AgentId: "a", Gpus: []*wirepb.GPU{{Index: 300}},
		TimeUnixMs: []int64{ms}, Gpu: []uint32{0}}))) // gpu index over 255
	f.Add(mustEncode(wire.EncodeSamples(&wirepb.SampleBatch{AgentId: "a", Gpus: []*wirepb.GPU{{}},
		TimeUnixMs: []int64{ms + int64(48*time.Hour/time.Millisecond)}, Gpu: []uint32{0}}))) // clock ahead
	f.Add(mustEncode(wire.EncodeSamples(&wirepb.SampleBatch{AgentId: "a", Gpus: []*wirepb.GPU{{}},
		TimeUnixMs: []int64{ms}, Gpu: []uint32{0},
		Metrics: []*wirepb.MetricColumn{{Metric: uint32(gpumetric.GPUUtil), Counts: []uint64{1}}}}))) // wrong value type
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0xff, 0x01})
	// Every run starts from columns holding another batch, decoded by the same decoder: a rejected
	// message must leave those rows alone, and the decoder must not carry anything over.
	before := mustEncode(wire.EncodeSamples(&wirepb.SampleBatch{AgentId: "b", Cluster: "c", Node: "m",
		Gpus: []*wirepb.GPU{{Index: 5, Uuid: "GPU-5"}}, TimeUnixMs: []int64{ms, ms}, Gpu: []uint32{0, 0},
		Metrics: []*wirepb.MetricColumn{{Metric: uint32(gpumetric.Power), Values: []float64{100, 200}}}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		var dec wire.SampleDecoder
		c := newSampleColumns()
		sb, err := dec.Decode(before)
		if err != nil || c.check(sb, fuzzNow) != nil {
			t.Fatalf("the batch before does not pass: %v", err)
		}
		c.appendBatch(sb)
		rows := len(sb.TimeUnixMs)
		for pass := range 2 {
			sb, err := dec.Decode(data)
			if err != nil {
				checkReason(t, "decode", err)
				return
			}
			if err := c.check(sb, fuzzNow); err != nil {
				checkReason(t, "check", err)
				checkBlock(t, &c.block, rows)
				return
			}
			c.appendBatch(sb)
			n := len(sb.TimeUnixMs)
			checkBlock(t, &c.block, rows+n)
			for r, gi := range sb.GPU {
				if got, want := c.gpu.V[rows+r], sb.GPUs[gi].Index; uint32(got) != want {
					t.Fatalf("pass %d row %d: gpu %d, want %d", pass, r, got, want)
				}
			}
			for i, col := range c.counters {
				if col == nil {
					continue
				}
				for r := rows; r < rows+n; r++ {
					if col.Null[r] == 0 && col.V[r] > maxCounter {
						t.Fatalf("%s row %d: %d stored, over the counter bound", gpumetric.All()[i].Column, r, col.V[r])
					}
				}
			}
			rows += n
		}
	})
}

// FuzzBuildEvents is FuzzBuildSamples for the events topic, including ingest's refusal of a sample
// batch sent there (it decodes as an event batch too).
func FuzzBuildEvents(f *testing.F) {
	if data, err := os.ReadFile("../internal/wire/testdata/events_v1.bin"); err == nil {
		f.Add(data)
	}
	ms := fuzzNow.UnixMilli()
	f.Add(mustEncode(wire.EncodeEvents(&wirepb.EventBatch{AgentId: "a", Seq: 2, Cluster: "c", Node: "n", Events: []*wirepb.Event{
		{TimeUnixMs: ms, GpuIndex: 1, GpuUuid: "GPU-1", Kind: wirepb.EventKind_EVENT_KIND_XID, Code: 79, Pid: 42, Message: "fell off"},
		{TimeUnixMs: ms - 1, Kind: wirepb.EventKind(99)},
	}})))
	f.Add(mustEncode(wire.EncodeEvents(&wirepb.EventBatch{AgentId: "a", Events: []*wirepb.Event{{TimeUnixMs: ms, GpuIndex: 256}}})))
	f.Add(mustEncode(wire.EncodeEvents(&wirepb.EventBatch{AgentId: "a"}))) // no events
	f.Add(mustEncode(wire.EncodeSamples(&wirepb.SampleBatch{AgentId: "a", Gpus: []*wirepb.GPU{{}}, TimeUnixMs: []int64{ms}, Gpu: []uint32{0}})))
	f.Add([]byte{})
	before := mustEncode(wire.EncodeEvents(&wirepb.EventBatch{AgentId: "b", Events: []*wirepb.Event{
		{TimeUnixMs: ms, Kind: wirepb.EventKind_EVENT_KIND_THROTTLE, Message: "hot"}}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		var sd wire.SampleDecoder
		var eb wirepb.EventBatch
		c := newEventColumns()
		if err := wire.DecodeEvents(before, &eb); err != nil || c.check(&eb, fuzzNow) != nil {
			t.Fatalf("the batch before does not pass: %v", err)
		}
		c.appendBatch(&eb)
		rows := len(eb.Events)
		for range 2 {
			if sb, err := sd.Decode(data); err == nil && len(sb.TimeUnixMs) > 0 {
				return // refused as a sample batch on the events topic
			}
			if err := wire.DecodeEvents(data, &eb); err != nil {
				checkReason(t, "decode", err)
				return
			}
			if err := c.check(&eb, fuzzNow); err != nil {
				checkReason(t, "check", err)
				checkBlock(t, &c.block, rows)
				return
			}
			c.appendBatch(&eb)
			checkBlock(t, &c.block, rows+len(eb.Events))
			for i, e := range eb.Events {
				if got := c.kind.V[rows+i]; got != EventKindName(e.Kind) || got == "" {
					t.Fatalf("event %d: kind %q, want %q", i, got, EventKindName(e.Kind))
				}
				if uint32(c.gpu.V[rows+i]) != e.GpuIndex {
					t.Fatalf("event %d: gpu %d, want %d", i, c.gpu.V[rows+i], e.GpuIndex)
				}
			}
			rows += len(eb.Events)
		}
	})
}
