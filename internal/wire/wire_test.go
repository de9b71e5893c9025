package wire_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// Golden files: the bytes a v1 agent puts on Kafka. They are committed so that a change to the
// schema or the encoder that would stop old messages decoding fails here.
const (
	goldenSamples     = "testdata/samples_v1.bin"
	goldenSamplesText = "testdata/samples_v1.txt"
	goldenEvents      = "testdata/events_v1.bin"
	// goldenEventsBeforeHealth is events_v1.bin as agents sent it before EVENT_KIND_HEALTH
	// existed (one event of each of the first six kinds); never rewritten by -update.
	goldenEventsBeforeHealth = "testdata/events_v1_before_health.bin"
)

// Fixed instants (milliseconds since the epoch) so the golden batches never depend on time.Now.
const (
	t0   = int64(1735689600000) // 2025-01-01T00:00:00Z
	step = int64(10000)
)

// fullBatch is a v1 sample batch with 3 GPUs read at 4 instants (12 rows, so presence bitmaps span
// two bytes), one column for every metric in the catalogue, and a fan column with absent rows.
// It is deterministic: the golden files are made from it.
func fullBatch() *wirepb.SampleBatch {
	const gpus, instants = 3, 4
	b := &wirepb.SampleBatch{
		SchemaVersion: 1,
		AgentId:       "agent-golden-0001",
		Seq:           42,
		Cluster:       "golden",
		Node:          "node-00007",
		DriverVersion: "550.54.15",
		CudaVersion:   "12.4",
	}
	for g := 0; g < gpus; g++ {
		b.Gpus = append(b.Gpus, &wirepb.GPU{
			Index:    uint32(g),
			Uuid:     fmt.Sprintf("GPU-0000abcd-0007-%04x-0001-%012x", g, 0x1234567890+g),
			Model:    "NVIDIA H100 80GB HBM3",
			Serial:   fmt.Sprintf("%013d", 1650923000000+g),
			PciBusId: fmt.Sprintf("00000000:%02X:00.0", 0x18+g*0x10),
			JobId:    fmt.Sprintf("job-%d", 1000+g),
		})
	}
	for k := 0; k < instants; k++ {
		for g := 0; g < gpus; g++ {
			b.TimeUnixMs = append(b.TimeUnixMs, t0+int64(k)*step)
			b.Gpu = append(b.Gpu, uint32(g))
		}
	}
	rows := len(b.TimeUnixMs)
	// The metrics of the first v1 agents (ids 1–22): the golden file is what they sent, and it must
	// keep decoding. Later metrics are new columns in the same format.
	for _, m := range gpumetric.All()[:goldenMetrics] {
		c := &wirepb.MetricColumn{Metric: uint32(m.ID)}
		for i := 0; i < rows; i++ {
			if m.Kind.Integer() {
				c.Counts = append(c.Counts, uint64(m.ID)*1000+uint64(i)*7)
			} else {
				c.Values = append(c.Values, float64(m.ID)*10+float64(i)/4)
			}
		}
		switch m.ID {
		case gpumetric.FanSpeed: // passively cooled: GPU 1 never reports, and row 9 was missed
			c.Present = wire.SetPresent(rows, func(i int) bool { return b.Gpu[i] != 1 && i != 9 })
		case gpumetric.TempMem: // only the first row absent
			c.Present = wire.SetPresent(rows, func(i int) bool { return i != 0 })
		}
		b.Metrics = append(b.Metrics, c)
	}
	return b
}

// goldenMetrics is how many registry metrics the v1 golden vector carries.
const goldenMetrics = 22

// emptyBatch is a valid batch with no rows: an agent that found no GPUs still sends its heartbeat.
func emptyBatch() *wirepb.SampleBatch {
	b := &wirepb.SampleBatch{SchemaVersion: 1, AgentId: "agent-empty", Seq: 1, Cluster: "c", Node: "n"}
	for _, m := range gpumetric.All() {
		b.Metrics = append(b.Metrics, &wirepb.MetricColumn{Metric: uint32(m.ID)})
	}
	return b
}

// eventKinds is every event kind in the order the golden batch carries them; kinds are appended.
var eventKinds = []wirepb.EventKind{
	wirepb.EventKind_EVENT_KIND_UNSPECIFIED,
	wirepb.EventKind_EVENT_KIND_XID,
	wirepb.EventKind_EVENT_KIND_ECC_SINGLE_BIT,
	wirepb.EventKind_EVENT_KIND_ECC_DOUBLE_BIT,
	wirepb.EventKind_EVENT_KIND_THROTTLE,
	wirepb.EventKind_EVENT_KIND_FELL_OFF_BUS,
	wirepb.EventKind_EVENT_KIND_HEALTH,
}

// fullEvents is a v1 event batch with one event of every kind. Deterministic: golden files use it.
func fullEvents() *wirepb.EventBatch { return eventsOfKinds(eventKinds) }

// eventsOfKinds is the golden event batch with one event of each of kinds.
func eventsOfKinds(kinds []wirepb.EventKind) *wirepb.EventBatch {
	b := &wirepb.EventBatch{SchemaVersion: 1, AgentId: "agent-golden-0001", Seq: 43, Cluster: "golden", Node: "node-00007"}
	for i, k := range kinds {
		b.Events = append(b.Events, &wirepb.Event{
			TimeUnixMs: t0 + int64(i)*step,
			GpuIndex:   uint32(i % 3),
			GpuUuid:    fmt.Sprintf("GPU-0000abcd-0007-%04x-0001-%012x", i%3, 0x1234567890+i%3),
			Kind:       k,
			Code:       uint64(10 * i),
			Pid:        uint32(4000 + i),
			Message:    fmt.Sprintf("event %d (%s)", i, k),
		})
	}
	return b
}

func TestSamplesRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    *wirepb.SampleBatch
	}{
		{"full", fullBatch()},
		{"with rack and pool", func() *wirepb.SampleBatch { b := fullBatch(); b.Rack, b.Pool = "r12", "train-h100"; return b }()},
		{"empty rows", emptyBatch()},
		{"no metrics", &wirepb.SampleBatch{SchemaVersion: 1, AgentId: "a"}},
		{"version unset before encode", func() *wirepb.SampleBatch { b := fullBatch(); b.SchemaVersion = 0; return b }()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := wire.EncodeSamples(tc.b)
			if err != nil {
				t.Fatal(err)
			}
			if tc.b.SchemaVersion != wire.SchemaVersion {
				t.Errorf("EncodeSamples left schema_version %d, want %d", tc.b.SchemaVersion, wire.SchemaVersion)
			}
			// Decode into a batch holding stale data: DecodeSamples must reset it.
			got := fullBatch()
			got.AgentId = "stale"
			if err := wire.DecodeSamples(data, got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tc.b) {
				t.Errorf("round trip changed the batch:\n got %v\nwant %v", got, tc.b)
			}
		})
	}
}

func TestEventsRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    *wirepb.EventBatch
	}{
		{"full", fullEvents()},
		{"no events", &wirepb.EventBatch{SchemaVersion: 1, AgentId: "a", Seq: 9}},
		{"version unset before encode", func() *wirepb.EventBatch { b := fullEvents(); b.SchemaVersion = 0; return b }()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := wire.EncodeEvents(tc.b)
			if err != nil {
				t.Fatal(err)
			}
			got := fullEvents()
			got.Node = "stale"
			if err := wire.DecodeEvents(data, got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tc.b) {
				t.Errorf("round trip changed the batch:\n got %v\nwant %v", got, tc.b)
			}
		})
	}
}

// TestGolden pins the v1 encoding: the fixed batches must encode to the committed bytes, and the
// committed bytes must decode to the fixed batches. Run with -update after a deliberate change.
func TestGolden(t *testing.T) {
	t.Run("samples", func(t *testing.T) {
		want := fullBatch()
		data, err := wire.EncodeSamples(fullBatch())
		if err != nil {
			t.Fatal(err)
		}
		if *update {
			writeGolden(t, goldenSamples, data)
			var dec wirepb.SampleBatch
			if err := wire.DecodeSamples(data, &dec); err != nil {
				t.Fatal(err)
			}
			// prototext output is deliberately unstable in whitespace, so the .txt is for humans
			// reviewing a diff and is never compared.
			txt := "# Human-readable form of samples_v1.bin (prototext); regenerate with go test ./wire/ -run Golden -update\n" +
				prototext.MarshalOptions{Multiline: true, Indent: "  "}.Format(&dec) + "\n"
			writeGolden(t, goldenSamplesText, []byte(txt))
		}
		checkGoldenBytes(t, goldenSamples, data)
		golden := readGolden(t, goldenSamples)
		var got wirepb.SampleBatch
		if err := wire.DecodeSamples(golden, &got); err != nil {
			t.Fatalf("golden %s no longer decodes: %v", goldenSamples, err)
		}
		if !proto.Equal(&got, want) {
			t.Errorf("golden %s decodes to\n%v\nwant\n%v", goldenSamples, &got, want)
		}
	})
	t.Run("events", func(t *testing.T) {
		want := fullEvents()
		data, err := wire.EncodeEvents(fullEvents())
		if err != nil {
			t.Fatal(err)
		}
		if *update {
			writeGolden(t, goldenEvents, data)
		}
		checkGoldenBytes(t, goldenEvents, data)
		golden := readGolden(t, goldenEvents)
		var got wirepb.EventBatch
		if err := wire.DecodeEvents(golden, &got); err != nil {
			t.Fatalf("golden %s no longer decodes: %v", goldenEvents, err)
		}
		if !proto.Equal(&got, want) {
			t.Errorf("golden %s decodes to\n%v\nwant\n%v", goldenEvents, &got, want)
		}
	})
}

// TestGoldenEventsBeforeHealth: the event batches agents sent before EVENT_KIND_HEALTH was added
// still decode, to the same events, and the kind list only grew (append-only enum: the old
// kinds keep their numbers).
func TestGoldenEventsBeforeHealth(t *testing.T) {
	old := eventKinds[:6]
	for i, k := range old {
		if int32(k) != int32(i) {
			t.Fatalf("event kind %s is number %d, was %d: enum values are never renumbered", k, k, i)
		}
	}
	var got wirepb.EventBatch
	if err := wire.DecodeEvents(readGolden(t, goldenEventsBeforeHealth), &got); err != nil {
		t.Fatalf("golden %s no longer decodes: %v", goldenEventsBeforeHealth, err)
	}
	if want := eventsOfKinds(old); !proto.Equal(&got, want) {
		t.Errorf("golden %s decodes to\n%v\nwant\n%v", goldenEventsBeforeHealth, &got, want)
	}
	if n := len(got.Events); n != 6 {
		t.Errorf("%d events in the pre-health golden, want 6", n)
	}
	if int32(wirepb.EventKind_EVENT_KIND_HEALTH) != 6 {
		t.Errorf("EVENT_KIND_HEALTH is %d, want 6 (appended after FELL_OFF_BUS)", wirepb.EventKind_EVENT_KIND_HEALTH)
	}
}

func writeGolden(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readGolden(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./wire/ -run Golden -update to create it)", err)
	}
	return data
}

// checkGoldenBytes compares an encoding with the golden file. proto.Marshal is not promised to be
// byte-stable, so on a mismatch it falls back to deterministic marshaling of both sides before
// failing: a real change to the wire bytes still fails, an ordering quirk of the library does not.
func checkGoldenBytes(t *testing.T, path string, data []byte) {
	t.Helper()
	golden := readGolden(t, path)
	if bytes.Equal(golden, data) {
		return
	}
	det := proto.MarshalOptions{Deterministic: true}
	var a, b []byte
	var err error
	switch {
	case strings.Contains(path, "samples"):
		var ga, gb wirepb.SampleBatch
		err = errors.Join(proto.Unmarshal(golden, &ga), proto.Unmarshal(data, &gb))
		if err == nil {
			a, _ = det.Marshal(&ga)
			b, _ = det.Marshal(&gb)
		}
	default:
		var ga, gb wirepb.EventBatch
		err = errors.Join(proto.Unmarshal(golden, &ga), proto.Unmarshal(data, &gb))
		if err == nil {
			a, _ = det.Marshal(&ga)
			b, _ = det.Marshal(&gb)
		}
	}
	if err != nil || !bytes.Equal(a, b) {
		t.Errorf("encoding differs from %s (%d bytes, golden %d bytes): the v1 wire format changed; "+
			"if that is deliberate run go test ./wire/ -run Golden -update", path, len(data), len(golden))
	}
}

func TestDecodeSamplesMalformed(t *testing.T) {
	long := strings.Repeat("x", wire.MaxLabelLen+1)
	for _, tc := range []struct {
		name   string
		data   []byte                    // raw input, or nil to marshal fullBatch after mutate
		mutate func(*wirepb.SampleBatch) // applied to a valid batch
		reason string                    // substring of the error
	}{
		{name: "garbage", data: []byte{0xff, 0xff, 0xff, 0xff}, reason: "sample batch"},
		{name: "truncated field", data: []byte{0x12, 0x10, 'a'}, reason: "sample batch"},
		{name: "empty input", data: []byte{}, reason: "schema_version 0"},
		{name: "schema_version 0", mutate: func(b *wirepb.SampleBatch) { b.SchemaVersion = 0 }, reason: "unsupported schema_version 0"},
		{name: "schema_version 2", mutate: func(b *wirepb.SampleBatch) { b.SchemaVersion = 2 }, reason: "unsupported schema_version 2"},
		{name: "empty agent_id", mutate: func(b *wirepb.SampleBatch) { b.AgentId = "" }, reason: "empty agent_id"},
		{name: "long agent_id", mutate: func(b *wirepb.SampleBatch) { b.AgentId = long }, reason: "agent_id is 257 bytes"},
		{name: "long cluster", mutate: func(b *wirepb.SampleBatch) { b.Cluster = long }, reason: "cluster is 257 bytes"},
		{name: "long pool", mutate: func(b *wirepb.SampleBatch) { b.Pool = long }, reason: "pool is 257 bytes"},
		{name: "long node", mutate: func(b *wirepb.SampleBatch) { b.Node = long }, reason: "node is 257 bytes"},
		{name: "long driver_version", mutate: func(b *wirepb.SampleBatch) { b.DriverVersion = long }, reason: "driver_version is 257 bytes"},
		{name: "long cuda_version", mutate: func(b *wirepb.SampleBatch) { b.CudaVersion = long }, reason: "cuda_version is 257 bytes"},
		{name: "long gpu uuid", mutate: func(b *wirepb.SampleBatch) { b.Gpus[1].Uuid = long }, reason: "gpus[1] has a label over 256 bytes"},
		{name: "long gpu job_id", mutate: func(b *wirepb.SampleBatch) { b.Gpus[2].JobId = long }, reason: "gpus[2] has a label over"},
		{name: "long gpu parent_uuid", mutate: func(b *wirepb.SampleBatch) { b.Gpus[0].ParentUuid = long }, reason: "gpus[0] has a label over"},
		{name: "too many gpus", mutate: func(b *wirepb.SampleBatch) {
			for len(b.Gpus) <= wire.MaxGPUs {
				b.Gpus = append(b.Gpus, &wirepb.GPU{})
			}
		}, reason: "1025 gpus, limit 1024"},
		{name: "duplicate gpu index", mutate: func(b *wirepb.SampleBatch) { b.Gpus[2].Index = b.Gpus[0].Index }, reason: "appears twice"},
		{name: "duplicate metric column", mutate: func(b *wirepb.SampleBatch) { b.Metrics = append(b.Metrics, b.Metrics[0]) }, reason: "has two columns"},
		{name: "gpu ref out of range", mutate: func(b *wirepb.SampleBatch) { b.Gpu[5] = 3 }, reason: "row 5 refers to gpu 3 of 3"},
		{name: "gpu ref huge", mutate: func(b *wirepb.SampleBatch) { b.Gpu[0] = 1<<32 - 1 }, reason: "row 0 refers to gpu 4294967295 of 3"},
		{name: "gpu ref with no gpus", mutate: func(b *wirepb.SampleBatch) { b.Gpus = nil }, reason: "row 0 refers to gpu 0 of 0"},
		{name: "fewer gpu refs than rows", mutate: func(b *wirepb.SampleBatch) { b.Gpu = b.Gpu[:11] }, reason: "11 gpu refs for 12 rows"},
		{name: "more gpu refs than rows", mutate: func(b *wirepb.SampleBatch) { b.Gpu = append(b.Gpu, 0) }, reason: "13 gpu refs for 12 rows"},
		{name: "gauge short", mutate: func(b *wirepb.SampleBatch) { c := col(b, gpumetric.Power); c.Values = c.Values[:11] },
			reason: fmt.Sprintf("metric %d has 11 entries for 12 rows", gpumetric.Power)},
		{name: "counter long", mutate: func(b *wirepb.SampleBatch) { c := col(b, gpumetric.Energy); c.Counts = append(c.Counts, 1) },
			reason: fmt.Sprintf("metric %d has 13 entries for 12 rows", gpumetric.Energy)},
		{name: "column empty", mutate: func(b *wirepb.SampleBatch) { c := col(b, gpumetric.TempGPU); c.Values = nil },
			reason: fmt.Sprintf("metric %d has 0 entries for 12 rows", gpumetric.TempGPU)},
		{name: "both values and counts", mutate: func(b *wirepb.SampleBatch) { c := col(b, gpumetric.Energy); c.Values = []float64{1} },
			reason: fmt.Sprintf("metric %d has both values and counts", gpumetric.Energy)},
		{name: "presence bitmap short", mutate: func(b *wirepb.SampleBatch) { col(b, gpumetric.FanSpeed).Present = []byte{0xff} },
			reason: fmt.Sprintf("metric %d presence bitmap is 1 bytes for 12 rows", gpumetric.FanSpeed)},
		{name: "presence bitmap long", mutate: func(b *wirepb.SampleBatch) { col(b, gpumetric.GPUUtil).Present = []byte{0xff, 0xff, 0xff} },
			reason: fmt.Sprintf("metric %d presence bitmap is 3 bytes for 12 rows", gpumetric.GPUUtil)},
		{name: "presence bitmap with no rows", data: mustMarshal(&wirepb.SampleBatch{SchemaVersion: 1, AgentId: "a",
			Metrics: []*wirepb.MetricColumn{{Metric: 1, Present: []byte{0}}}}), reason: "presence bitmap is 1 bytes for 0 rows"},
		{name: "too many metric columns", mutate: func(b *wirepb.SampleBatch) {
			for len(b.Metrics) <= wire.MaxMetricCol {
				b.Metrics = append(b.Metrics, &wirepb.MetricColumn{Metric: 999, Values: make([]float64, 12)})
			}
		}, reason: "1025 metric columns, limit 1024"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := tc.data
			if tc.mutate != nil {
				b := fullBatch()
				tc.mutate(b)
				data = mustMarshal(b) // not EncodeSamples: it would stamp schema_version
			}
			got := &wirepb.SampleBatch{}
			err := wire.DecodeSamples(data, got)
			if !errors.Is(err, wire.ErrMalformed) {
				t.Fatalf("DecodeSamples = %v, want an error wrapping ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("DecodeSamples = %q, want it to say %q", err, tc.reason)
			}
			if tc.mutate != nil { // CheckSamples on the decoded message says the same
				if cerr := wire.CheckSamples(got); cerr == nil || cerr.Error() != err.Error() {
					t.Errorf("CheckSamples = %v, DecodeSamples = %v", cerr, err)
				}
			}
		})
	}
	// The base of every mutation is itself valid, so each case fails for its own reason only.
	if err := wire.DecodeSamples(mustMarshal(fullBatch()), &wirepb.SampleBatch{}); err != nil {
		t.Fatalf("unmutated batch: %v", err)
	}
}

func TestDecodeEventsMalformed(t *testing.T) {
	long := strings.Repeat("x", wire.MaxLabelLen+1)
	for _, tc := range []struct {
		name   string
		data   []byte
		mutate func(*wirepb.EventBatch)
		reason string
	}{
		{name: "garbage", data: []byte{0xff, 0xff, 0xff, 0xff}, reason: "event batch"},
		{name: "sample batch is not an event batch", data: func() []byte {
			b := fullBatch()
			b.AgentId = ""
			return mustMarshal(b)
		}(), reason: "event batch"},
		{name: "schema_version 0", mutate: func(b *wirepb.EventBatch) { b.SchemaVersion = 0 }, reason: "unsupported schema_version 0"},
		{name: "schema_version 2", mutate: func(b *wirepb.EventBatch) { b.SchemaVersion = 2 }, reason: "unsupported schema_version 2"},
		{name: "empty agent_id", mutate: func(b *wirepb.EventBatch) { b.AgentId = "" }, reason: "empty agent_id"},
		{name: "long node", mutate: func(b *wirepb.EventBatch) { b.Node = long }, reason: "a label is over 256 bytes"},
		{name: "long event uuid", mutate: func(b *wirepb.EventBatch) { b.Events[2].GpuUuid = long }, reason: "event 2 has an over-long uuid or message"},
		{name: "long event message", mutate: func(b *wirepb.EventBatch) { b.Events[0].Message = strings.Repeat("m", 4*wire.MaxLabelLen+1) },
			reason: "event 0 has an over-long uuid or message"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := tc.data
			if tc.mutate != nil {
				b := fullEvents()
				tc.mutate(b)
				data = mustMarshal(b)
			}
			err := wire.DecodeEvents(data, &wirepb.EventBatch{})
			if !errors.Is(err, wire.ErrMalformed) {
				t.Fatalf("DecodeEvents = %v, want an error wrapping ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("DecodeEvents = %q, want it to say %q", err, tc.reason)
			}
		})
	}
	if err := wire.DecodeEvents(mustMarshal(fullEvents()), &wirepb.EventBatch{}); err != nil {
		t.Fatalf("unmutated batch: %v", err)
	}
}

func TestPresentBitmap(t *testing.T) {
	for _, tc := range []struct {
		name string
		rows int
		has  func(int) bool
		want []byte // nil: every row present
	}{
		{"no rows", 0, func(int) bool { return false }, nil},
		{"all present", 13, func(int) bool { return true }, nil},
		{"none present", 9, func(int) bool { return false }, []byte{0x00, 0xfe}},
		{"none present, whole bytes", 16, func(int) bool { return false }, []byte{0x00, 0x00}},
		// Bits past the last row stay set: only rows' bits carry meaning.
		{"rows 1 and 8 absent", 10, func(i int) bool { return i != 1 && i != 8 }, []byte{0xfd, 0xfe}},
		{"odd rows present", 8, func(i int) bool { return i%2 == 1 }, []byte{0xaa}},
		{"last row absent", 17, func(i int) bool { return i != 16 }, []byte{0xff, 0xff, 0xfe}},
		{"first row absent", 1, func(i int) bool { return i != 0 }, []byte{0xfe}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bm := wire.SetPresent(tc.rows, tc.has)
			if !bytes.Equal(bm, tc.want) || (bm == nil) != (tc.want == nil) {
				t.Fatalf("SetPresent(%d) = %#v, want %#v", tc.rows, bm, tc.want)
			}
			if bm != nil && len(bm) != (tc.rows+7)/8 {
				t.Errorf("bitmap is %d bytes for %d rows", len(bm), tc.rows)
			}
			c := &wirepb.MetricColumn{Present: bm}
			for i := 0; i < tc.rows; i++ {
				if got := wire.Present(c, i); got != tc.has(i) {
					t.Errorf("Present(row %d) = %v, want %v", i, got, tc.has(i))
				}
			}
		})
	}
	// An empty bitmap means every row is present, whatever the row.
	for _, i := range []int{0, 7, 8, 1 << 20} {
		if !wire.Present(&wirepb.MetricColumn{}, i) {
			t.Errorf("Present(empty bitmap, %d) = false", i)
		}
	}
}

func col(b *wirepb.SampleBatch, id gpumetric.ID) *wirepb.MetricColumn {
	for _, c := range b.Metrics {
		if gpumetric.ID(c.Metric) == id {
			return c
		}
	}
	panic(fmt.Sprintf("no column for metric %d", id))
}

func mustMarshal(m proto.Message) []byte {
	data, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return data
}
