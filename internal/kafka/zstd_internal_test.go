package kafka

import (
	"bytes"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/segmentio/kafka-go/compress"

	"github.com/gpufleet/gpufleet/agent/sim"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// nodeMessages are n seconds of one simulated 8-GPU node as the agent encodes them.
func nodeMessages(tb testing.TB, n int) [][]byte {
	tb.Helper()
	node := sim.NewNode(1, "c", 0, 8)
	var out [][]byte
	for s := range n {
		b := &wirepb.SampleBatch{AgentId: node.Name, Seq: uint64(s + 1), Cluster: node.Cluster, Node: node.Name}
		node.Sample(time.Unix(1_700_000_000+int64(s), 0), b, nil)
		data, err := wire.EncodeSamples(b)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, data)
	}
	return out
}

func compressWith(tb testing.TB, c compress.Codec, data []byte) []byte {
	tb.Helper()
	var buf bytes.Buffer
	w := c.NewWriter(&buf)
	if _, err := w.Write(data); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// The lean encoder's frames decode with kafka-go's reader to the input, encoder after encoder from
// the pool, empty input included.
func TestLeanZstdRoundTrip(t *testing.T) {
	c := &leanZstd{}
	msgs := nodeMessages(t, 30)
	for i, in := range append(msgs, nil, bytes.Join(msgs, nil)) {
		z := compressWith(t, c, in)
		out, err := io.ReadAll(c.NewReader(bytes.NewReader(z)))
		if err != nil {
			t.Fatalf("input %d: %v", i, err)
		}
		if !bytes.Equal(out, in) {
			t.Fatalf("input %d: %d bytes back, want %d", i, len(out), len(in))
		}
		if len(in) > 1000 && len(z) > len(in)/2 {
			t.Errorf("input %d: %d bytes compressed to %d", i, len(in), len(z))
		}
	}
}

// BenchmarkZstdEncoder compares the lean encoder with kafka-go's own (level 3, its options as in
// kafka-go's compress/zstd): the live heap one encoder holds after compressing a message, as the
// pool keeps it between the agent's sends, and the bytes of one 8-GPU message and of 60 of them
// compressed together, each as a ratio to kafka-go's:
//
//	go test -run '^$' -bench ZstdEncoder ./internal/kafka/
func BenchmarkZstdEncoder(b *testing.B) {
	msgs := nodeMessages(b, 60)
	one, minute := msgs[0], bytes.Join(msgs, nil)
	kafkagoOpts := []zstd.EOption{zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(3)), zstd.WithEncoderConcurrency(1), zstd.WithZeroFrames(true)}
	measure := func(opts []zstd.EOption) (heap, oneZ, minuteZ float64) {
		before := liveHeap()
		enc, err := zstd.NewWriter(nil, opts...)
		if err != nil {
			b.Fatal(err)
		}
		size := func(data []byte) float64 {
			var buf bytes.Buffer
			enc.Reset(&buf)
			if _, err := enc.Write(data); err != nil {
				b.Fatal(err)
			}
			if err := enc.Close(); err != nil {
				b.Fatal(err)
			}
			return float64(buf.Len())
		}
		oneZ = size(one)
		heap = float64(liveHeap() - before)
		minuteZ = size(minute)
		runtime.KeepAlive(enc)
		return heap, oneZ, minuteZ
	}
	var lean, kgo [3]float64
	for range b.N {
		lh, lo, lm := measure(LeanZstdOptions())
		kh, ko, km := measure(kafkagoOpts)
		lean, kgo = [3]float64{lh, lo, lm}, [3]float64{kh, ko, km}
	}
	b.ReportMetric(lean[0]/1024, "lean_heap_KiB")
	b.ReportMetric(kgo[0]/1024, "kafkago_heap_KiB")
	b.ReportMetric(lean[0]/kgo[0], "heap_vs_kafkago")
	b.ReportMetric(lean[1], "lean_message_bytes")
	b.ReportMetric(float64(len(one))/lean[1], "message_ratio")
	b.ReportMetric(lean[1]/kgo[1], "message_bytes_vs_kafkago")
	b.ReportMetric(lean[2]/kgo[2], "minute_bytes_vs_kafkago")
	b.ReportMetric(0, "ns/op")
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
