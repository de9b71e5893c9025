package wire_test

import (
	"bytes"
	"os"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// addGolden seeds a fuzz target with a golden file when it exists.
func addGolden(f *testing.F, path string) {
	if data, err := os.ReadFile(path); err == nil {
		f.Add(data)
	}
}

// FuzzDecodeSamples: whatever ingest reads off Kafka, DecodeSamples never panics, and a batch it
// accepts can be indexed the way ingest indexes it and survives a re-encode.
func FuzzDecodeSamples(f *testing.F) {
	addGolden(f, goldenSamples)
	f.Add(mustMarshal(fullBatch()))
	f.Add(mustMarshal(emptyBatch()))
	f.Add([]byte{})
	f.Add([]byte{0x08, 0x01, 0x12, 0x01, 'a'})                   // version 1, agent "a", nothing else
	f.Add([]byte{0x08, 0x01, 0x12, 0x01, 'a', 0x52, 0x01, 0x00}) // gpu ref 0 with no gpus and no rows
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add(mustMarshal(&wirepb.SampleBatch{SchemaVersion: 1, AgentId: "a", Gpus: []*wirepb.GPU{{}},
		TimeUnixMs: []int64{1, 2, 3}, Gpu: []uint32{0, 0, 0},
		Metrics: []*wirepb.MetricColumn{{Metric: 1, Present: []byte{0x05}, Values: []float64{1, 2, 3}}}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		var b wirepb.SampleBatch
		if err := wire.DecodeSamples(data, &b); err != nil {
			return
		}
		rows := len(b.TimeUnixMs)
		if len(b.Gpu) != rows {
			t.Fatalf("accepted %d gpu refs for %d rows", len(b.Gpu), rows)
		}
		for i := 0; i < rows; i++ {
			if int(b.Gpu[i]) >= len(b.Gpus) {
				t.Fatalf("accepted row %d referring to gpu %d of %d", i, b.Gpu[i], len(b.Gpus))
			}
			_ = b.Gpus[b.Gpu[i]].GetUuid()
		}
		for _, c := range b.Metrics {
			if n := len(c.Values) + len(c.Counts); n != rows {
				t.Fatalf("accepted metric %d with %d entries for %d rows", c.Metric, n, rows)
			}
			if len(c.Values) != 0 && len(c.Counts) != 0 {
				t.Fatalf("accepted metric %d with both values and counts", c.Metric)
			}
			for i := 0; i < rows; i++ {
				_ = wire.Present(c, i) // must not panic
			}
		}
		// Re-encoding an accepted batch gives bytes that decode again to the same batch.
		again, err := wire.EncodeSamples(&b)
		if err != nil {
			t.Fatalf("re-encode of an accepted batch: %v", err)
		}
		var b2 wirepb.SampleBatch
		if err := wire.DecodeSamples(again, &b2); err != nil {
			t.Fatalf("re-encoded batch no longer decodes: %v", err)
		}
		det := proto.MarshalOptions{Deterministic: true}
		x, err1 := det.Marshal(&b)
		y, err2 := det.Marshal(&b2)
		if err1 != nil || err2 != nil || !bytes.Equal(x, y) { // bytes, not proto.Equal: NaN != NaN
			t.Fatalf("re-encode changed the batch (%v, %v)", err1, err2)
		}
	})
}

// FuzzDecodeEvents: DecodeEvents never panics, and what it accepts survives a re-encode.
func FuzzDecodeEvents(f *testing.F) {
	addGolden(f, goldenEvents)
	f.Add(mustMarshal(fullEvents()))
	f.Add([]byte{})
	f.Add([]byte{0x08, 0x01, 0x12, 0x01, 'a'})
	f.Add([]byte{0x08, 0x01, 0x12, 0x01, 'a', 0x32, 0x02, 0x20, 0x63}) // one event of unknown kind 99
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		var b wirepb.EventBatch
		if err := wire.DecodeEvents(data, &b); err != nil {
			return
		}
		if b.SchemaVersion != wire.SchemaVersion || b.AgentId == "" {
			t.Fatalf("accepted version %d agent %q", b.SchemaVersion, b.AgentId)
		}
		for i, e := range b.Events {
			if e == nil {
				t.Fatalf("accepted nil event %d", i)
			}
		}
		again, err := wire.EncodeEvents(&b)
		if err != nil {
			t.Fatalf("re-encode of an accepted batch: %v", err)
		}
		var b2 wirepb.EventBatch
		if err := wire.DecodeEvents(again, &b2); err != nil {
			t.Fatalf("re-encoded batch no longer decodes: %v", err)
		}
		if !proto.Equal(&b, &b2) {
			t.Fatalf("re-encode changed the batch:\n%v\n%v", &b, &b2)
		}
	})
}
