package wire_test

import (
	"math"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// sameAsProto reports how the decoder's result differs from proto.Unmarshal + CheckSamples, or "".
func sameAsProto(got *wire.Samples, want *wirepb.SampleBatch) string {
	switch {
	case got.SchemaVersion != want.SchemaVersion || got.AgentID != want.AgentId || got.Seq != want.Seq ||
		got.Cluster != want.Cluster || got.Node != want.Node || got.DriverVersion != want.DriverVersion ||
		got.CudaVersion != want.CudaVersion || got.Rack != want.Rack || got.Pool != want.Pool ||
		got.IntervalMs != want.IntervalMs:
		return "header fields"
	case len(got.GPUs) != len(want.Gpus) || len(got.TimeUnixMs) != len(want.TimeUnixMs) ||
		len(got.GPU) != len(want.Gpu) || len(got.Metrics) != len(want.Metrics):
		return "lengths"
	}
	for i, g := range got.GPUs {
		w := want.Gpus[i]
		if g.Index != w.Index || g.UUID != w.Uuid || g.Model != w.Model || g.Serial != w.Serial ||
			g.PCIBusID != w.PciBusId || g.JobID != w.JobId || g.ParentUUID != w.ParentUuid {
			return "gpus"
		}
	}
	for i := range got.TimeUnixMs {
		if got.TimeUnixMs[i] != want.TimeUnixMs[i] || got.GPU[i] != want.Gpu[i] {
			return "rows"
		}
	}
	for i, m := range got.Metrics {
		w := want.Metrics[i]
		if m.ID != w.Metric || string(m.Present) != string(w.Present) || len(m.Values) != len(w.Values) ||
			len(m.Counts) != len(w.Counts) {
			return "metric header"
		}
		for j := range m.Values {
			if math.Float64bits(m.Values[j]) != math.Float64bits(w.Values[j]) {
				return "metric values"
			}
		}
		for j := range m.Counts {
			if m.Counts[j] != w.Counts[j] {
				return "metric counts"
			}
		}
	}
	return ""
}

func checkAgainstProto(t *testing.T, d *wire.SampleDecoder, data []byte) {
	t.Helper()
	var want wirepb.SampleBatch
	wantErr := wire.DecodeSamples(data, &want)
	got, err := d.Decode(data)
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("decoder error %v, proto error %v, on %x", err, wantErr, data)
	}
	if err != nil {
		return
	}
	if diff := sameAsProto(got, &want); diff != "" {
		t.Fatalf("decoder and proto disagree on %s for %x", diff, data)
	}
}

// The hand-written decoder reads what proto.Unmarshal reads: unpacked repeated fields, unknown
// fields, fields repeated (last scalar wins), wrong wire types (kept aside as unknown), bad UTF-8.
func TestSampleDecoderMatchesProto(t *testing.T) {
	tag := func(num protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(nil, num, typ) }
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	str := func(num protowire.Number, s string) []byte {
		return protowire.AppendString(tag(num, protowire.BytesType), s)
	}
	varint := func(num protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(tag(num, protowire.VarintType), v)
	}
	gpu := protowire.AppendBytes(tag(8, protowire.BytesType), cat(varint(1, 0), str(2, "GPU-0")))
	head := cat(varint(1, 1), str(2, "agent"))
	metricUnpacked := protowire.AppendBytes(tag(11, protowire.BytesType), cat(varint(1, 1),
		protowire.AppendFixed64(tag(3, protowire.Fixed64Type), math.Float64bits(42.5)),
		protowire.AppendFixed64(tag(3, protowire.Fixed64Type), math.Float64bits(math.NaN()))))
	cases := map[string][]byte{
		"golden full":   mustMarshal(fullBatch()),
		"rack and pool": mustMarshal(func() *wirepb.SampleBatch { b := fullBatch(); b.Rack, b.Pool = "r12", "train-h100"; return b }()),
		"interval":      mustMarshal(func() *wirepb.SampleBatch { b := fullBatch(); b.IntervalMs = 100; return b }()),
		"huge interval": cat(head, varint(14, 1<<40)),
		"MIG instance": mustMarshal(func() *wirepb.SampleBatch {
			b := fullBatch()
			b.Gpus = append(b.Gpus, &wirepb.GPU{Index: 128, Uuid: "MIG-5c89852c-d268-c3f3-1b07-005d5ae1dc3f", Model: "NVIDIA H100 80GB HBM3 MIG 1g.10gb",
				ParentUuid: b.Gpus[0].Uuid})
			b.TimeUnixMs, b.Gpu = append(b.TimeUnixMs, b.TimeUnixMs[0]), append(b.Gpu, uint32(len(b.Gpus)-1))
			for _, m := range b.Metrics {
				m.Values, m.Counts, m.Present = nil, nil, nil
			}
			return b
		}()),
		"empty":                 mustMarshal(emptyBatch()),
		"unpacked rows":         cat(head, gpu, varint(9, 1000), varint(9, 2000), varint(10, 0), varint(10, 0), metricUnpacked),
		"unknown fields":        cat(head, varint(99, 7), str(100, "x"), protowire.AppendFixed32(tag(101, protowire.Fixed32Type), 1)),
		"last scalar wins":      cat(head, str(2, "other"), varint(3, 5), varint(3, 6)),
		"wrong wire type":       cat(head, protowire.AppendFixed64(tag(3, protowire.Fixed64Type), 9), str(1, "v")),
		"bad utf8":              cat(head, str(4, "\xff\xfe")),
		"bad utf8 in gpu":       cat(head, protowire.AppendBytes(tag(8, protowire.BytesType), str(3, "\xc0"))),
		"truncated":             cat(head, tag(4, protowire.BytesType), []byte{10, 'a'}),
		"field zero":            cat(head, []byte{0x00, 0x01}),
		"stray end group":       cat(head, tag(20, protowire.EndGroupType)),
		"group":                 cat(head, tag(20, protowire.StartGroupType), varint(1, 1), tag(20, protowire.EndGroupType)),
		"odd packed doubles":    cat(head, protowire.AppendBytes(tag(11, protowire.BytesType), protowire.AppendBytes(tag(3, protowire.BytesType), []byte{1, 2, 3}))),
		"version 2":             cat(varint(1, 2), str(2, "agent")),
		"duplicate metric":      cat(head, protowire.AppendBytes(tag(11, protowire.BytesType), varint(1, 3)), protowire.AppendBytes(tag(11, protowire.BytesType), varint(1, 3))),
		"row refers past gpus":  cat(head, varint(9, 1), varint(10, 3)),
		"overlong varint":       cat(head, tag(3, protowire.VarintType), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}),
		"gpu and metric reused": cat(head, gpu, gpu),
	}
	d := &wire.SampleDecoder{}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) { checkAgainstProto(t, d, data) })
	}
	// The same decoder across calls: nothing of one message leaks into the next.
	for _, data := range [][]byte{cases["golden full"], cases["unpacked rows"], cases["golden full"], cases["empty"]} {
		checkAgainstProto(t, d, data)
	}
}

// FuzzSampleDecoderMatchesProto: on any input the fast decoder accepts exactly what
// proto.Unmarshal + CheckSamples accepts, and decodes it to the same values.
func FuzzSampleDecoderMatchesProto(f *testing.F) {
	addGolden(f, goldenSamples)
	f.Add(mustMarshal(fullBatch()))
	f.Add(mustMarshal(emptyBatch()))
	f.Add([]byte{0x08, 0x01, 0x12, 0x01, 'a'})
	f.Add([]byte{0x08, 0x01, 0x12, 0x01, 'a', 0x48, 0x01, 0x50, 0x00, 0x42, 0x00})
	d := &wire.SampleDecoder{}
	f.Fuzz(func(t *testing.T, data []byte) { checkAgainstProto(t, d, data) })
}
